"""The simulator's summary: fleet state from the live report, counters from the stopped one."""

from __future__ import annotations

from typing import Any

from edgefleet.server.sim.summary import (
    device_rows,
    fleet_state,
    render,
    status_line,
    summarize,
    unsettled,
)


def row(device_id: str, **changes: Any) -> dict[str, Any]:
    """A host's report row (see ``SimDevice.report``) of a device at rest on v2."""
    base: dict[str, Any] = {
        "id": device_id,
        "group": "fleet",
        "powered": True,
        "connected": True,
        "phase": "committed",
        "version": 2,
        "pending": 0,
        "dropped": 0,
        "inferences": 10,
        "inference_errors": 0,
        "updates_applied": 1,
        "rolled_back": 0,
        "failed": 0,
        "power_cuts": 0,
        "restarts": 0,
        "corrupted_chunks": 0,
        "acked": 5,
    }
    return base | changes


def host(*rows: dict[str, Any], connects: int = 2, drops: int = 1) -> dict[str, Any]:
    return {
        "devices": list(rows),
        "connects": connects,
        "drops": drops,
        "step_lag_p95": 0.01,
        "cpu_seconds": 1.25,
    }


def stopped(live: dict[str, Any]) -> dict[str, Any]:
    """The same devices after a clean stop: off, their counters grown by the last flush."""
    rows = [
        r
        | {
            "powered": False,
            "connected": False,
            "phase": None,
            "version": None,
            "pending": None,
            "dropped": None,
            "acked": r["acked"] + 1,
        }
        for r in live["devices"]
    ]
    return host(*rows, connects=live["connects"], drops=live["drops"])


def test_rows_keep_the_live_state_and_take_the_final_counters() -> None:
    live = host(row("a", pending=2), row("b", phase="active", version=3))
    rows = device_rows([live], [stopped(live)])
    assert [(r["id"], r["phase"], r["version"], r["pending"], r["acked"]) for r in rows] == [
        ("a", "committed", 2, 2, 6),
        ("b", "active", 3, 0, 6),
    ]


def test_rows_without_a_stopped_report_are_the_live_ones() -> None:
    live = host(row("a"))
    assert device_rows([live]) == live["devices"]


def test_the_fleet_by_power_connection_phase_and_model() -> None:
    rows = [
        row("a"),
        row("b"),
        row("c", phase="downloading", version=1, pending=3, dropped=2),
        row("d", powered=False, connected=False, phase=None, version=None, pending=None),
        row("e", connected=False, phase="idle", version=None),
    ]
    assert fleet_state(rows) == {
        "devices": 5,
        "powered": 4,
        "connected": 3,
        "by_phase": {"committed": 2, "downloading": 1, "idle": 1, "off": 1},
        "by_version": {"v2": 2, "none": 1, "off": 1, "v1": 1},
        "outbox_pending": 3,
        "outbox_dropped": 2,
    }


def test_a_fleet_at_rest_has_nothing_unsettled() -> None:
    rows = [
        row("a"),
        row("b", phase="idle"),
        row("c", phase="rolled_back"),
        row("d", phase="failed"),
    ]
    assert unsettled(rows) == []


def test_what_keeps_a_fleet_from_rest() -> None:
    rows = [
        row("a", powered=False, connected=False, phase=None, pending=None),
        row("b", connected=False),
        row("c", phase="testing"),
        row("d", phase="staged", pending=1),
    ]
    assert unsettled(rows) == [
        "1 device(s) powered off",
        "1 device(s) not connected",
        "2 device(s) updating",
        "1 device(s) with a message in the outbox",
    ]


def test_the_status_line() -> None:
    rows = [
        row("a"),
        row("b", phase="downloading", version=1, pending=4),
        row("c", connected=False),
    ]
    assert status_line(12.4, rows) == (
        "    12s  powered 3/3, connected 2; phases: committed 2, downloading 1; "
        "models: v2 2, v1 1; outbox pending 4"
    )


def _summary() -> dict[str, Any]:
    first = host(row("a", power_cuts=1, inferences=7), row("b", rolled_back=1), drops=3)
    second = host(row("c", corrupted_chunks=2, inference_errors=1, phase="rolled_back"))
    return summarize(
        [first, second],
        [stopped(first), stopped(second)],
        scenario="chaos.toml",
        elapsed=75.04,
        settled=True,
        rollouts=[
            {"id": "ro-1", "group": "sim-canary", "version": 2, "flaw": None, "state": "completed"},
            {
                "id": "ro-2",
                "group": "sim-rest",
                "version": 3,
                "flaw": "nan",
                "state": "aborted",
                "reason": "error_share 40% > limit 5%",
            },
        ],
        failures=["60s rollout  latest to rest: group has an active rollout"],
    )


def test_the_summary_adds_up_devices_and_hosts() -> None:
    summary = _summary()
    assert summary | {"rollouts": None, "event_failures": None} == {
        "scenario": "chaos.toml",
        "elapsed_seconds": 75.0,
        "settled": True,
        "devices": 3,
        "powered": 3,
        "connected": 3,
        "by_phase": {"committed": 2, "rolled_back": 1},
        "by_version": {"v2": 3},
        "outbox_pending": 0,
        "outbox_dropped": 0,
        "inferences": 27,
        "inference_errors": 1,
        "updates_applied": 3,
        "rolled_back": 1,
        "failed": 0,
        "power_cuts": 1,
        "restarts": 0,
        "corrupted_chunks": 2,
        "acked": 18,
        "connects": 4,
        "drops": 4,
        "host_cpu_seconds": 2.5,
        "step_lag_p95_seconds": 0.01,
        "rollouts": None,
        "event_failures": None,
    }
    assert [r["id"] for r in summary["rollouts"]] == ["ro-1", "ro-2"]


def test_the_summary_as_aligned_text() -> None:
    assert render(_summary()).splitlines() == [
        "scenario:       chaos.toml (3 devices, 75 s)",
        "settled:        yes",
        "devices:        3 powered, 3 connected",
        "by phase:       committed 2, rolled_back 1",
        "by model:       v2 3",
        "messages acked: 18",
        "outbox:         0 pending, 0 dropped by the cap",
        "updates:        3 applied, 1 rolled back, 0 failed",
        "faults:         1 power cuts, 0 agent restarts, 2 corrupted chunks",
        "connections:    4 connects, 4 drops",
        "inferences:     27 (1 errors)",
        "hosts:          2.5 CPU s, step lag p95 0.01 s",
        "rollout 1:      ro-1 v2 -> sim-canary: completed",
        "rollout 2:      ro-2 v3 ['nan' model] -> sim-rest: aborted (error_share 40% > limit 5%)",
        "event failed:   60s rollout  latest to rest: group has an active rollout",
    ]


def test_an_unsettled_run_says_so() -> None:
    summary = summarize([host(row("a"))], [], scenario="s.toml", elapsed=1.0, settled=False)
    assert "settled:        no: some devices or rollouts were still busy" in render(summary)
    assert summary["connects"] == 2
