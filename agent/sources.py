"""Where a headless device's inputs come from: a CSV replay, stdin, or a sensor reader.

Every source is an iterator of float arrays, one sample each; :func:`feed`
runs one through the :class:`~edgefleet.agent.inference.InferenceService`,
so replayed and live inputs are counted, timed and sketched like any other.
A flat row is reshaped to the model's input when the sizes agree, so a CSV
line can feed a model that takes a (window, channels) tensor.

Bad input is counted and logged, never fatal: a sensor glitch or a
malformed line must not stop a device that nobody is watching. Logging is
thinned out after the first few complaints so a broken feed cannot fill the
disk with warnings.

Sensor hardware (camera, GPIO, I2C) plugs in through :class:`SensorReader`;
the readers themselves live with the application, not here.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np
import numpy.typing as npt

from edgefleet.agent.errors import InferenceFailedError, InferenceInputError, NoModelError
from edgefleet.agent.inference import InferenceService
from edgefleet.shared import jsoncodec
from edgefleet.shared.errors import MessageError

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 1 << 20
LOUD_COMPLAINTS = 10
"""Bad inputs logged one by one; after that, one line per thousand."""

Values = npt.NDArray[np.float64]


class InputSource(Protocol):
    """An iterator of samples; each is a float array of one model input."""

    def __iter__(self) -> Iterator[Values]: ...


class SensorReader(Protocol):
    """A hardware reading: block until the next one, None when there will be no more."""

    def read(self) -> npt.ArrayLike | None: ...


@dataclass(slots=True)
class SourceStats:
    read: int = 0
    bad: int = 0


def _complain(count: int, message: str, *args: object, trace: bool = False) -> None:
    if count <= LOUD_COMPLAINTS or count % 1000 == 0:
        log.warning(message + " (%d so far)", *args, count, exc_info=trace)


def parse_line(line: str) -> Values:
    """One sample from a JSON array (nesting allowed) or comma-separated numbers."""
    text = line.strip()
    if text.startswith("["):
        try:
            parsed = jsoncodec.parse(text.encode(), max_bytes=MAX_LINE_BYTES)
        except MessageError as err:
            raise ValueError(f"not a JSON array: {err}") from err
        values = np.asarray(parsed)
        if values.dtype.kind not in "iuf" or values.size == 0:
            raise ValueError("a JSON sample must be a non-empty array of numbers")
        return values.astype(np.float64)
    return np.asarray([float(cell) for cell in text.split(",")], dtype=np.float64)


class _Pacer:
    """Holds a source to ``rate_hz`` samples per second (no limit when None)."""

    def __init__(
        self, rate_hz: float | None, sleep: Callable[[float], None], clock: Callable[[], float]
    ) -> None:
        if rate_hz is not None and not (rate_hz > 0 and math.isfinite(rate_hz)):
            raise ValueError(f"rate must be a positive number of samples per second, got {rate_hz}")
        self._period = None if rate_hz is None else 1.0 / rate_hz
        self._sleep = sleep
        self._clock = clock
        self._due: float | None = None

    def wait(self) -> None:
        if self._period is None:
            return
        now = self._clock()
        self._due = now if self._due is None else max(self._due + self._period, now)
        if self._due > now:
            self._sleep(self._due - now)


class CsvReplaySource:
    """Rows of a CSV file (or one JSON array per line), once or in a loop.

    With ``header=None`` a first line that is not numbers is taken as a header.
    """

    def __init__(
        self,
        path: Path,
        *,
        loop: bool = False,
        rate_hz: float | None = None,
        header: bool | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.loop = loop
        self.header = header
        self.stats = SourceStats()
        self._pacer = _Pacer(rate_hz, sleep, clock)

    def __iter__(self) -> Iterator[Values]:
        while True:
            good = 0
            with self.path.open(encoding="utf-8", errors="replace") as rows:
                for number, line in enumerate(rows, start=1):
                    if not line.strip():
                        continue
                    try:
                        values = parse_line(line)
                    except ValueError as err:
                        if number == 1 and self.header is not False:
                            continue
                        self.stats.bad += 1
                        _complain(self.stats.bad, "%s line %d skipped: %s", self.path, number, err)
                        continue
                    if number == 1 and self.header:
                        continue
                    self._pacer.wait()
                    self.stats.read += 1
                    good += 1
                    yield values
            if not self.loop or good == 0:  # an empty file must not spin forever
                return


class StdinSource:
    """One sample per line on a text stream: a JSON array or comma-separated numbers."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self.stats = SourceStats()

    def __iter__(self) -> Iterator[Values]:
        for line in self._stream or sys.stdin:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                values = parse_line(line)
            except ValueError as err:
                self.stats.bad += 1
                _complain(self.stats.bad, "stdin line skipped: %s", err)
                continue
            self.stats.read += 1
            yield values


class SensorSource:
    """Turns a :class:`SensorReader` into a source; a failing read is counted and retried."""

    def __init__(
        self,
        reader: SensorReader,
        *,
        rate_hz: float | None = None,
        retry_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._retry = retry_seconds
        self._sleep = sleep
        self._pacer = _Pacer(rate_hz, sleep, clock)
        self.stats = SourceStats()

    def __iter__(self) -> Iterator[Values]:
        while True:
            self._pacer.wait()
            try:
                reading = self._reader.read()
                if reading is None:
                    return
                values = np.asarray(reading, dtype=np.float64)
            except Exception:  # noqa: BLE001  (any driver error; logged with its traceback)
                # The next reading may well work: a glitch must not stop the device.
                self.stats.bad += 1
                _complain(self.stats.bad, "sensor read failed", trace=True)
                self._sleep(self._retry)
                continue
            self.stats.read += 1
            yield values


@dataclass(slots=True)
class FeedStats:
    served: int = 0
    bad: int = 0
    """Samples the model could not take (shape, NaN)."""
    failed: int = 0
    """Samples the model failed on."""
    unserved: int = 0
    """Samples that arrived while no model was active."""


def feed(source: InputSource, service: InferenceService, stop: threading.Event) -> FeedStats:
    """Run ``source`` through ``service`` until it ends or ``stop`` is set.

    ``stop`` is checked between samples: a source blocked waiting for input
    (stdin, a sensor) ends at its next sample.
    """
    stats = FeedStats()
    for values in source:
        if stop.is_set():
            break
        active = service.active
        sample = values
        if active is not None:
            shape = active.runner.input_shape
            if values.shape != shape and values.size == math.prod(shape):
                sample = values.reshape(shape)
        try:
            service.predict(sample)
        except NoModelError:
            stats.unserved += 1
        except InferenceInputError as err:
            stats.bad += 1
            _complain(stats.bad, "input refused by the model: %s", err)
        except InferenceFailedError as err:
            stats.failed += 1
            _complain(stats.failed, "the model failed on an input: %s", err)
        else:
            stats.served += 1
    return stats
