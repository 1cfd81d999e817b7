"""The Markdown summary of the benchmarks: formatting, order, stale and failed benches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.bench.results import Figure, write_results
from tests.bench.summary import (
    SUITE_FILE,
    format_goal,
    format_number,
    load,
    render,
    write_summary,
)

GIB = 2**30


def machine(cpu: str = "AMD EPYC", load_1min: float = 0.5) -> dict[str, Any]:
    return {
        "cpu_model": cpu,
        "usable_cores": 2,
        "ram_bytes": 24 * GIB,
        "load_average_at_start": [load_1min, 0.4, 0.3],
    }


def document(bench: str, figures: list[Figure], **fields: Any) -> dict[str, Any]:
    return {
        "bench": bench,
        "machine": machine(),
        "figures": [f.as_json() for f in figures],
        "details": {},
        "written_at": "2026-11-22T10:00:00+00:00",
    } | fields


def run(bench: str, seconds: float, returncode: int = 0, timed_out: bool = False) -> dict[str, Any]:
    return {
        "bench": bench,
        "module": f"tests.bench.bench_{bench}",
        "started_at": "2026-11-22T12:00:00+00:00",
        "seconds": seconds,
        "returncode": returncode,
        "timed_out": timed_out,
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (10_407.26, "10,407"),
        (77_076.7, "77,077"),
        (234, "234"),
        (100.0, "100"),
        (63.33, "63.33"),
        (0.6863, "0.69"),
        (1.0, "1.00"),
        (0.0, "0.00"),
        (0.0052, "0.0052"),
        (-0.37, "-0.37"),
    ],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize(
    ("goal", "unit", "text"),
    [
        (">= 0.6", "", "≥ 0.6"),
        (">= 8000", "", "≥ 8,000"),
        (">= 10,000", "/min", "≥ 10,000 /min"),
        ("<= 70.72", "MiB", "≤ 70.72 MiB"),
        ("", "µs", "—"),
    ],
)
def test_format_goal(goal: str, unit: str, text: str) -> None:
    assert format_goal(goal, unit) == text


def test_render_a_table_in_the_readme_order_with_the_machine() -> None:
    documents = [
        document("rollout", [Figure("delivery ÷ ideal", 1.15, goal="<= 1.5")]),
        document(
            "ingest",
            [
                Figure("ingest ÷ raw | SQLite", 0.62, goal=">= 0.6"),
                Figure("windows per CPU-second", 5025.1, goal=">= 8,000"),
                Figure("raw rate", 10996.4, "msg/s"),
            ],
            written_at="2026-11-22T11:30:00+00:00",
            machine=machine(load_1min=1.5),
        ),
    ]
    assert render(documents).splitlines() == [
        "Measured on AMD EPYC, 2 cores, 24 GiB RAM, 2026-11-22 11:30 UTC; "
        "load average at each bench's start 0.50–1.50.",
        "",
        "| figure | result | goal | met |",
        "|---|---:|---:|---|",
        "| ingest ÷ raw \\| SQLite | 0.62 | ≥ 0.6 | yes |",
        "| windows per CPU-second | 5,025 | ≥ 8,000 | **no** |",
        "| raw rate | 10,996 msg/s | — | — |",
        "| delivery ÷ ideal | 1.15 | ≤ 1.5 | yes |",
    ]


def test_render_recomputes_met_rather_than_trusting_the_file() -> None:
    tampered = document("agent", [Figure("ratio", 1.2, goal="<= 1.05")])
    tampered["figures"][0]["met"] = True
    assert render([tampered]).splitlines()[-1] == "| ratio | 1.20 | ≤ 1.05 | **no** |"


def test_render_says_when_benches_ran_on_different_machines() -> None:
    documents = [
        document("ingest", [Figure("a", 1.0)]),
        document("drift", [Figure("b", 1.0)], machine=machine(cpu="Intel Xeon")),
    ]
    assert "Not every bench ran on this machine" in render(documents).splitlines()[0]


def test_render_marks_only_figures_that_a_failed_run_did_not_replace() -> None:
    documents = [
        document("ingest", [Figure("fresh", 1.0)], written_at="2026-11-22T12:05:00+00:00"),
        document("agent", [Figure("stale", 1.0)], written_at="2026-11-21T09:00:00+00:00"),
        document("drift", [Figure("not run", 1.0)], written_at="2026-11-21T09:00:00+00:00"),
    ]
    runs = [run("ingest", 312.4), run("agent", 1200.0, -9, timed_out=True)]
    lines = render(documents, runs).splitlines()
    assert "| fresh | 1.00 | — | — |" in lines
    assert "| stale *(earlier run)* | 1.00 | — | — |" in lines
    assert "| not run | 1.00 | — | — |" in lines
    assert lines[-3:] == [
        "|---|---:|---|",
        "| ingest | 5 min 12 s | ok |",
        "| agent | 20 min 00 s | **timed out** |",
    ]


def test_render_without_results_still_lists_the_failed_runs() -> None:
    assert render([], [run("drift", 41.6, 1)]).splitlines() == [
        "No benchmark results with figures yet: run `make bench`.",
        "",
        "| bench | wall time | status |",
        "|---|---:|---|",
        "| drift | 42 s | **failed** (exit 1) |",
    ]


def test_render_names_the_bench_of_a_malformed_figure() -> None:
    broken = document("fleet", [])
    broken["figures"] = [{"name": "lag", "value": "fast"}]
    with pytest.raises(ValueError, match="fleet: malformed figure"):
        render([broken])


def test_summary_reads_only_documents_with_figures(tmp_path: Path) -> None:
    """Other JSON there (an end-to-end test's notes, the suite's record) is not a bench."""
    write_results("quantization", [Figure("size", 0.27, goal="<= 0.3")], {}, directory=tmp_path)
    (tmp_path / "drift_loop.json").write_text(json.dumps({"measured": 1}))
    runs = [run("quantization", 61.0)]
    (tmp_path / SUITE_FILE).write_text(json.dumps({"runs": runs}))
    documents, loaded = load(tmp_path)
    assert [d["bench"] for d in documents] == ["quantization"]
    assert loaded == runs
    summary = write_summary(tmp_path)
    assert (tmp_path / "summary.md").read_text() == summary
    assert "| size | 0.27 | ≤ 0.3 | yes |" in summary.splitlines()
    assert "| quantization | 1 min 01 s | ok |" in summary.splitlines()
