"""Score a ``.tflite`` variant by running the file itself through the device's TFLite runtime.

The work happens in :mod:`~edgefleet.server.training.interpreter_child`; a
model the runtime cannot load (an op or op version newer than
tflite-runtime 2.14, say) or that crashes it comes back as
:class:`VariantError` naming the problem, never as a dead worker.
"""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.server.errors import InvalidInputError, ServerError
from edgefleet.server.training import scoring
from edgefleet.server.training.recipe_specs import Task
from edgefleet.server.training.scoring import Metric, Scores
from edgefleet.shared import jsoncodec
from edgefleet.shared.errors import MessageError

CHILD = "edgefleet.server.training.interpreter_child"
DEFAULT_TIMEOUT = 600.0


class VariantError(InvalidInputError):
    """The device runtime cannot load or run a converted variant."""

    reason = "variant_unusable"


@dataclass(frozen=True, slots=True, eq=False)
class TfliteRun:
    outputs: npt.NDArray[np.float32]
    """Real-valued outputs, one row per sample."""
    seconds: npt.NDArray[np.float64]
    """The time of each ``invoke()``."""

    @property
    def latency_ms(self) -> float:
        return float(np.mean(self.seconds) * 1000.0)

    @property
    def latency_p50_ms(self) -> float:
        return float(np.median(self.seconds) * 1000.0)


def run_tflite(
    data: bytes, x: npt.NDArray[np.float32], *, timeout: float = DEFAULT_TIMEOUT
) -> TfliteRun:
    """Outputs and per-inference times of the model ``data`` on inputs ``x`` (batch of one)."""
    request = io.BytesIO()
    np.savez(request, model=np.frombuffer(data, dtype=np.uint8), x=x.astype(np.float32))
    try:
        done = subprocess.run(  # noqa: S603  (our own interpreter and module, no shell)
            [sys.executable, "-P", "-m", CHILD],
            input=request.getvalue(),
            capture_output=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    except subprocess.TimeoutExpired as err:
        raise VariantError(f"the TFLite runtime took over {timeout:g} s") from err
    if done.returncode < 0:
        raise VariantError(
            f"the TFLite runtime crashed ({signal.Signals(-done.returncode).name}) running it"
        )
    try:
        (length,) = struct.unpack_from("<I", done.stdout, 0)
        header = jsoncodec.parse(done.stdout[4 : 4 + length], max_bytes=length)
        if not header["ok"]:
            raise VariantError(f"the device runtime cannot run it: {header['message']}")
        with np.load(io.BytesIO(done.stdout[4 + length :]), allow_pickle=False) as reply:
            return TfliteRun(outputs=reply["outputs"], seconds=reply["seconds"])
    except (struct.error, MessageError, KeyError, ValueError) as err:
        stderr = done.stderr.decode("utf-8", "replace")[-2000:]
        raise ServerError(
            f"the TFLite evaluation process failed (exit {done.returncode}): {stderr}",
            reason="tflite_child_failed",
        ) from err


@dataclass(frozen=True, slots=True)
class Judge:
    """How outputs on a split become :class:`~edgefleet.server.training.scoring.Scores`."""

    task: Task
    classes: int
    primary: Metric = Metric.ACCURACY
    """For classifiers; an anomaly model is judged by AUC (or the inlier rate, unlabelled)."""
    normal: int | None = None
    threshold: float = 0.0

    def score(
        self, outputs: npt.NDArray[np.floating[Any]], y: npt.NDArray[np.int32] | None
    ) -> Scores:
        if self.task is Task.CLASSIFIER:
            if y is None:
                raise InvalidInputError("a classifier is scored against labels")
            return scoring.classification(y, outputs, self.classes, self.primary)
        anomalous = None if y is None or self.normal is None else y != self.normal
        return scoring.anomaly(anomalous, outputs, self.threshold)
