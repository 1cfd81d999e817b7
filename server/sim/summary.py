"""What a simulation ended with, from the hosts' reports: pure, for the CLI's text and JSON.

Two reports go in. The *live* one is taken once the fleet has settled,
while every agent still runs: it knows each device's phase, its model and
its outbox. The *stopped* one comes back from the clean stop, after every
agent closed its last window and flushed its outbox: its counters are the
final ones, but it knows no more phases or outboxes (the agents are gone).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from edgefleet.server.cli.output import fields

COUNTERS = (
    "inferences",
    "inference_errors",
    "updates_applied",
    "rolled_back",
    "failed",
    "power_cuts",
    "restarts",
    "corrupted_chunks",
    "acked",
)
RESTING = frozenset({"idle", "committed", "failed", "rolled_back"})
"""Update phases a device stays in until told otherwise."""
OFF = "off"
NO_MODEL = "none"

HostReport = Mapping[str, Any]
Row = Mapping[str, Any]


def device_rows(live: Sequence[HostReport], stopped: Sequence[HostReport] = ()) -> list[Row]:
    """Each device's row from ``live``, with its counters from ``stopped`` where it has them."""
    final = {row["id"]: row for host in stopped for row in host["devices"]}
    rows: list[Row] = []
    for host in live:
        for row in host["devices"]:
            counters = final.get(row["id"], row)
            rows.append({**row, **{name: counters[name] for name in COUNTERS}})
    return rows


def _version(row: Row) -> str:
    if not row["powered"]:
        return OFF
    return NO_MODEL if row["version"] is None else f"v{row['version']}"


def _ordered(counts: Counter[str]) -> dict[str, int]:
    """Largest first, then by name, so the same fleet always reads the same."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def fleet_state(rows: Iterable[Row]) -> dict[str, Any]:
    """Devices by power, connection, update phase and running version; outbox totals."""
    listed = list(rows)
    return {
        "devices": len(listed),
        "powered": sum(1 for r in listed if r["powered"]),
        "connected": sum(1 for r in listed if r["connected"]),
        "by_phase": _ordered(Counter(r["phase"] or OFF for r in listed)),
        "by_version": _ordered(Counter(_version(r) for r in listed)),
        "outbox_pending": sum(r["pending"] or 0 for r in listed),
        "outbox_dropped": sum(r["dropped"] or 0 for r in listed),
    }


def _counts(mapping: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in mapping.items()) or "-"


def unsettled(rows: Iterable[Row]) -> list[str]:
    """Why the fleet is not at rest yet, one phrase per kind of reason; empty when it is."""
    listed = list(rows)
    checks: tuple[tuple[str, Callable[[Row], bool]], ...] = (
        ("powered off", lambda r: not r["powered"]),
        ("not connected", lambda r: r["powered"] and not r["connected"]),
        ("updating", lambda r: r["powered"] and r["phase"] not in RESTING),
        ("with a message in the outbox", lambda r: (r["pending"] or 0) > 0),
    )
    reasons = []
    for what, test in checks:
        count = sum(1 for row in listed if test(row))
        if count:
            reasons.append(f"{count} device(s) {what}")
    return reasons


def status_line(elapsed: float, rows: Iterable[Row]) -> str:
    """One progress line while the scenario plays."""
    state = fleet_state(rows)
    return (
        f"{elapsed:6.0f}s  powered {state['powered']}/{state['devices']}, "
        f"connected {state['connected']}; phases: {_counts(state['by_phase'])}; "
        f"models: {_counts(state['by_version'])}; outbox pending {state['outbox_pending']}"
    )


def summarize(
    live: Sequence[HostReport],
    stopped: Sequence[HostReport],
    *,
    scenario: str,
    elapsed: float,
    settled: bool,
    rollouts: Sequence[Mapping[str, Any]] = (),
    failures: Sequence[str] = (),
) -> dict[str, Any]:
    """The run's outcome as plain data (the CLI's ``--json``)."""
    rows = device_rows(live, stopped)
    hosts = stopped or live
    return {
        "scenario": scenario,
        "elapsed_seconds": round(elapsed, 1),
        "settled": settled,
        **fleet_state(rows),
        **{name: sum(r[name] for r in rows) for name in COUNTERS},
        "connects": sum(h["connects"] for h in hosts),
        "drops": sum(h["drops"] for h in hosts),
        "host_cpu_seconds": round(sum(h["cpu_seconds"] for h in hosts), 1),
        "step_lag_p95_seconds": round(max((h["step_lag_p95"] for h in hosts), default=0.0), 3),
        "rollouts": [dict(r) for r in rollouts],
        "event_failures": list(failures),
    }


def _rollout(rollout: Mapping[str, Any]) -> str:
    reason = f" ({rollout['reason']})" if rollout.get("reason") else ""
    flaw = f" ['{rollout['flaw']}' model]" if rollout.get("flaw") else ""
    return (
        f"{rollout['id']} v{rollout['version']}{flaw} -> {rollout['group']}: "
        f"{rollout['state']}{reason}"
    )


def render(summary: Mapping[str, Any]) -> str:
    """Aligned ``label: value`` lines."""
    s = summary
    items: list[tuple[str, object]] = [
        ("scenario", f"{s['scenario']} ({s['devices']} devices, {s['elapsed_seconds']:g} s)"),
        ("settled", "yes" if s["settled"] else "no: some devices or rollouts were still busy"),
        ("devices", f"{s['powered']} powered, {s['connected']} connected"),
        ("by phase", _counts(s["by_phase"])),
        ("by model", _counts(s["by_version"])),
        ("messages acked", s["acked"]),
        (
            "outbox",
            f"{s['outbox_pending']} pending, {s['outbox_dropped']} dropped by the cap",
        ),
        (
            "updates",
            f"{s['updates_applied']} applied, {s['rolled_back']} rolled back, {s['failed']} failed",
        ),
        (
            "faults",
            f"{s['power_cuts']} power cuts, {s['restarts']} agent restarts, "
            f"{s['corrupted_chunks']} corrupted chunks",
        ),
        ("connections", f"{s['connects']} connects, {s['drops']} drops"),
        ("inferences", f"{s['inferences']} ({s['inference_errors']} errors)"),
        ("hosts", f"{s['host_cpu_seconds']:g} CPU s, step lag p95 {s['step_lag_p95_seconds']:g} s"),
    ]
    items += [(f"rollout {i}", _rollout(r)) for i, r in enumerate(s["rollouts"], start=1)]
    items += [("event failed", failure) for failure in s["event_failures"]]
    return fields(items)
