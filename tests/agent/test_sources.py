"""Input sources on real files and streams, fed through a real InferenceService."""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edgefleet.agent.inference import InferenceService
from edgefleet.agent.sources import (
    CsvReplaySource,
    SensorSource,
    StdinSource,
    feed,
    parse_line,
)
from tests.agent.conftest import ServedModel


class FakeClock:
    """Time that moves only when the source sleeps: pacing is exact and instant."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeAccelerometer:
    """Stands in for a GPIO/I2C sensor, which cannot run here: scripted readings and glitches."""

    def __init__(self, script: list[list[float] | Exception | None]) -> None:
        self._script = iter(script)

    def read(self) -> npt.ArrayLike | None:
        step = next(self._script)
        if isinstance(step, Exception):
            raise step
        return step


@pytest.fixture
def service(float_model: ServedModel) -> Iterator[InferenceService]:
    running = InferenceService()
    running.activate(float_model.load())
    yield running
    running.close()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0.1,0.2,0.3,0.4\n", [0.1, 0.2, 0.3, 0.4]),
        (" 1, -2e3 ,3,4", [1.0, -2000.0, 3.0, 4.0]),
        ("[0.1, 0.2, 0.3, 0.4]", [0.1, 0.2, 0.3, 0.4]),
        ("[[1, 2], [3, 4]]", [[1.0, 2.0], [3.0, 4.0]]),
    ],
)
def test_lines_are_json_arrays_or_csv(line: str, expected: list[float]) -> None:
    assert parse_line(line).tolist() == expected


@pytest.mark.parametrize(
    "line", ["a,b,c", "1,,2", "[1, 2", '["x"]', "[]", "[true, false]", '{"inputs": [1]}']
)
def test_bad_lines_are_refused(line: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (each case has its own message)
        parse_line(line)


def test_csv_replay_skips_a_header_and_counts_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    path.write_text("ax,ay,az,t\n0.1,0.2,0.3,0.4\n\nbroken,row\n0.5,0.6,0.7,0.8\n")
    source = CsvReplaySource(path)
    assert [row.tolist() for row in source] == [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]
    assert (source.stats.read, source.stats.bad) == (2, 1)


def test_csv_replay_loops_at_the_requested_rate(tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    path.write_text("1,1,1,1\n2,2,2,2\n3,3,3,3\n")
    clock = FakeClock()
    source = CsvReplaySource(path, loop=True, rate_hz=50.0, sleep=clock.sleep, clock=clock)
    first = [int(row[0]) for row in itertools.islice(source, 7)]
    assert first == [1, 2, 3, 1, 2, 3, 1]
    assert clock.slept == pytest.approx([0.02] * 6)


def test_a_looping_file_without_one_good_row_ends_instead_of_spinning(tmp_path: Path) -> None:
    path = tmp_path / "junk.csv"
    path.write_text("header\njunk\nmore junk\n")
    source = CsvReplaySource(path, loop=True)
    assert list(source) == []
    assert source.stats.bad == 2


def test_stdin_takes_json_and_csv_lines_and_skips_comments() -> None:
    stream = io.StringIO("# sensor dump\n[0.1, 0.2, 0.3, 0.4]\n\n1,2,3,4\nnot numbers\n")
    source = StdinSource(stream)
    assert [row.tolist() for row in source] == [[0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0]]
    assert (source.stats.read, source.stats.bad) == (2, 1)


def test_a_sensor_glitch_is_counted_and_retried() -> None:
    clock = FakeClock()
    reader = FakeAccelerometer(
        [[0.1, 0.2, 0.3, 0.4], OSError("I2C bus timeout"), [0.5, 0.6, 0.7, 0.8], None]
    )
    source = SensorSource(reader, retry_seconds=0.5, sleep=clock.sleep, clock=clock)
    assert len(list(source)) == 2
    assert (source.stats.read, source.stats.bad) == (2, 1)
    assert clock.slept == [0.5]


def test_feed_runs_a_replay_through_the_model_and_counts_what_it_could_not_use(
    tmp_path: Path, service: InferenceService
) -> None:
    path = tmp_path / "readings.csv"
    rows = np.random.default_rng(0).uniform(-1, 1, (40, 4))
    lines = [",".join(map(str, row)) for row in rows]
    lines[5] = "0.1,0.2,0.3"  # parses, but the model takes 4 values
    lines[9] = "0.1,nan,0.3,0.4"
    path.write_text("\n".join(lines) + "\n")
    stats = feed(CsvReplaySource(path), service, threading.Event())
    assert (stats.served, stats.bad, stats.failed, stats.unserved) == (38, 2, 0, 0)
    assert service.counters().inferences == 38
    assert service.counters().rejected == 2


def test_a_flat_row_is_reshaped_to_the_model_input(
    service: InferenceService,
) -> None:
    stats = feed(StdinSource(io.StringIO("[[0.1, 0.2, 0.3, 0.4]]\n")), service, threading.Event())
    assert stats.served == 1


def test_samples_before_any_model_are_counted_as_unserved() -> None:
    idle = InferenceService()
    stats = feed(StdinSource(io.StringIO("1,2,3,4\n5,6,7,8\n")), idle, threading.Event())
    assert (stats.served, stats.unserved) == (0, 2)


def test_stop_ends_an_endless_replay(tmp_path: Path, service: InferenceService) -> None:
    path = tmp_path / "readings.csv"
    path.write_text("0.1,0.2,0.3,0.4\n")
    stop = threading.Event()
    result = []
    worker = threading.Thread(
        target=lambda: result.append(feed(CsvReplaySource(path, loop=True), service, stop))
    )
    worker.start()
    deadline = time.monotonic() + 10
    while service.counters().inferences < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert result[0].served >= 100
