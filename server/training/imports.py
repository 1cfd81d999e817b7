"""Where a dataset version's samples come from: an upload, a bundled demo or the generator.

One function for the API (and through it the CLI) to turn an import request
into :class:`~edgefleet.server.training.datasets.Samples` and the provenance
the version records.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training import demo_data, synthetic
from edgefleet.server.training.datasets import Samples
from edgefleet.server.training.parsing import CsvOptions, parse_csv, parse_npz
from edgefleet.shared import schema
from edgefleet.shared.schema import Length, Range


class DataFormat(StrEnum):
    CSV = "csv"
    NPZ = "npz"
    DEMO = "demo"
    SYNTHETIC = "synthetic"


@dataclass(frozen=True, slots=True)
class SyntheticSpec:
    """Arguments of :func:`edgefleet.server.training.synthetic.generate`."""

    count: Annotated[int, Range(10, 200_000)] = 1000
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    window: Annotated[int, Range(2, 4096)] = 64
    drift: Annotated[float, Range(-100.0, 100.0)] = 0.0
    classes: Annotated[tuple[str, ...], Length(min=1, max=4)] = synthetic.FAULT_CLASSES
    weights: Annotated[tuple[Annotated[float, Range(0.0, 1e6)], ...], Length(max=4)] | None = None


def read_samples(
    fmt: DataFormat,
    *,
    data: bytes | None,
    filename: str | None,
    csv: CsvOptions,
    demo: str | None,
    generator: SyntheticSpec | None,
    max_bytes: int,
) -> tuple[Samples, dict[str, Any]]:
    """The samples and a ``source`` record of where they came from."""
    source: dict[str, Any] = {"format": fmt.value}
    if fmt in (DataFormat.CSV, DataFormat.NPZ):
        if data is None:
            raise InvalidInputError(f"format {fmt.value} needs an uploaded file")
        if len(data) > max_bytes:
            raise InvalidInputError(f"the upload is over the limit of {max_bytes} bytes")
        if filename:
            source["filename"] = filename[:255]
        if fmt is DataFormat.NPZ:
            return parse_npz(data, max_bytes=4 * max_bytes), source
        source["options"] = {k: v for k, v in schema.to_json(csv).items() if v is not None}
        return parse_csv(data, csv), source
    if data is not None:
        raise InvalidInputError(f"format {fmt.value} takes no uploaded file")
    if fmt is DataFormat.DEMO:
        name = demo or demo_data.DEFAULT_DEMO
        source["demo"] = name
        return demo_data.load_demo(name), source
    spec = generator or SyntheticSpec()
    source["synthetic"] = schema.to_json(spec)
    samples = synthetic.generate(
        spec.count,
        seed=spec.seed,
        spec=synthetic.SensorSpec(window=spec.window),
        classes=spec.classes,
        weights=spec.weights,
        drift=spec.drift,
    )
    return samples, source
