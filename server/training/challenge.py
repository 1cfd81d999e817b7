"""Champion against challenger, measured the way devices would run them.

Both are scored with the device runtime on the same two sets of test rows
of the challenger's dataset: the rows of its newest segment (edge samples
labelled since the champion; the challenger never trained on them, see
``SplitSpec.segments``) and the older rows, the champion's own test split.
The first says whether retraining helped on what the fleet sees now, the
second whether it forgot what it knew. Judging the numbers is the
retraining policy's business (``retraining.compare``); this only measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training import datasets
from edgefleet.server.training.datasets import Samples, SplitSpec
from edgefleet.server.training.evaluate import Judge, run_tflite


@dataclass(frozen=True, slots=True)
class Contenders:
    profile: str
    """The hardware profile both artifacts are built for."""
    champion: bytes
    challenger: bytes


def measure(
    samples: Samples, split: SplitSpec, judge: Judge, contenders: Contenders
) -> dict[str, Any]:
    """Scores of both models on the new rows and on the old test rows, with their counts."""
    if not split.segments:
        raise InvalidInputError(
            "the challenger's dataset has no rows newer than the champion's: nothing to judge on",
            reason="no_new_data",
        )
    boundary = split.segments[-1]
    test = datasets.split(samples, split).test
    found: dict[str, Any] = {"metric": judge.primary.value, "profile": contenders.profile}
    for name, rows in (("new", test[test >= boundary]), ("old", test[test < boundary])):
        part = samples.take(rows)
        found[name] = {"samples": len(rows)}
        if not len(rows):
            continue
        for side, data in (
            ("champion", contenders.champion),
            ("challenger", contenders.challenger),
        ):
            outputs = run_tflite(data, part.x).outputs
            found[name][side] = judge.score(np.asarray(outputs), part.y).value
    return found
