"""The benchmarks' common result shape: goals parsed, ``met`` derived, files written whole."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.bench.machine import machine_info
from tests.bench.results import Figure, bound, write_results

MACHINE = {"cpu_model": "Test CPU", "usable_cores": 2, "load_average_at_start": [0.5, 0.4, 0.3]}


@pytest.mark.parametrize(
    ("goal", "expected"),
    [
        (">= 0.6", (">=", 0.6)),
        ("<=1.5", ("<=", 1.5)),
        (">= 8,000", (">=", 8000.0)),
        ("  <= .3 ", ("<=", 0.3)),
        ("", None),
        ("   ", None),
    ],
)
def test_bound_reads_the_operator_and_number(goal: str, expected: tuple[str, float] | None) -> None:
    assert bound(goal) == expected


@pytest.mark.parametrize("goal", ["> 0.6", "0.6", ">= ", ">= six", "== 1", ">= 1 MiB", ">= -1"])
def test_bound_refuses_anything_else_naming_it(goal: str) -> None:
    with pytest.raises(ValueError, match="is not '>= number' or '<= number'"):
        bound(goal)


@pytest.mark.parametrize(
    ("value", "goal", "met"),
    [
        (0.6, ">= 0.6", True),
        (0.59, ">= 0.6", False),
        (1.5, "<= 1.5", True),
        (1.51, "<= 1.5", False),
        (7_999, ">= 8,000", False),
        (12.0, "", None),
    ],
)
def test_met_is_derived_from_the_goal(value: float, goal: str, met: bool | None) -> None:
    assert Figure("f", value, goal=goal).met is met


def test_a_figure_refuses_a_bad_goal_or_value_when_made() -> None:
    with pytest.raises(ValueError, match="is not '>= number'"):
        Figure("ratio", 1.0, goal="at least 1")
    with pytest.raises(ValueError, match="'ratio': value nan is not a finite number"):
        Figure("ratio", math.nan)
    with pytest.raises(ValueError, match="needs a name"):
        Figure("", 1.0)


def test_write_results_writes_the_common_shape(tmp_path: Path) -> None:
    figures = [Figure("ratio", 0.7, goal=">= 0.6"), Figure("rate", 10_000.0, "msg/s")]
    path = write_results(
        "ingest", figures, {"summary": {"raw": 1}}, machine=MACHINE, directory=tmp_path
    )
    assert path == tmp_path / "ingest.json"
    document = json.loads(path.read_text())
    assert set(document) == {"bench", "machine", "figures", "details", "written_at"}
    assert document["bench"] == "ingest"
    assert document["machine"] == MACHINE
    assert document["details"] == {"summary": {"raw": 1}}
    assert document["figures"] == [
        {"name": "ratio", "value": 0.7, "unit": "", "goal": ">= 0.6", "met": True},
        {"name": "rate", "value": 10_000.0, "unit": "msg/s", "goal": "", "met": None},
    ]
    assert document["written_at"].endswith("+00:00")
    assert [p.name for p in tmp_path.iterdir()] == ["ingest.json"]


def test_write_results_takes_the_machine_now_when_not_given(tmp_path: Path) -> None:
    path = write_results("drift", [], {}, directory=tmp_path)
    machine = json.loads(path.read_text())["machine"]
    assert set(machine) == set(machine_info())
    assert machine["logical_cores"] >= 1


def test_write_results_refuses_what_the_summary_could_not_use(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bench name '../x'"):
        write_results("../x", [], {}, machine=MACHINE, directory=tmp_path)
    twice = [Figure("ratio", 1.0), Figure("ratio", 2.0)]
    with pytest.raises(ValueError, match=r"figure names repeat: \['ratio'\]"):
        write_results("agent", twice, {}, machine=MACHINE, directory=tmp_path)
    with pytest.raises(ValueError, match="Out of range float"):
        write_results("agent", [], {"x": math.inf}, machine=MACHINE, directory=tmp_path)
    assert list(tmp_path.iterdir()) == []
