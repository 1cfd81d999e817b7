"""Edge samples in other forms (pure): a label CSV read in, CSV and NPZ out, a dataset's arrays.

A label file is what a person or a labelling tool produces, so every refusal
names the line. Exports keep the values exactly: the CSV writes each float32
with the shortest text that reads back to the same float32, and the NPZ holds
the arrays themselves.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefleet.server.db.models import EdgeSample
from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training.datasets import DatasetSchema, Samples

MAX_LABEL_LENGTH = 128
SHOWN_IDS = 10
"""How many offending ids a refusal names; the rest are counted."""

LABEL_HEADER = ("id", "label")
EXPORT_HEADER = ("id", "device", "model", "version", "reason", "confidence", "label", "values")
MAX_ID = 2**63 - 1


def few(ids: Iterable[object]) -> str:
    """``"3, 5, 8 and 12 more"``: a refusal names some offenders without echoing thousands."""
    listed = list(ids)
    shown = ", ".join(str(i) for i in listed[:SHOWN_IDS])
    rest = len(listed) - SHOWN_IDS
    return f"{shown} and {rest} more" if rest > 0 else shown


@dataclass(frozen=True, slots=True, eq=False)
class ExportRow:
    id: int
    device: str
    model: str
    version: int
    reason: str
    confidence: float | None
    label: str | None
    values: bytes
    """Little-endian float32, as stored."""


@dataclass(frozen=True, slots=True, eq=False)
class Export:
    rows: tuple[ExportRow, ...]
    shape: tuple[int, ...] | None
    """One sample's input shape, when every exported version was trained on data of that shape."""


def _bad(line: int, problem: str) -> InvalidInputError:
    return InvalidInputError(f"label CSV line {line}: {problem}", reason="bad_label_csv")


def parse_label_csv(text: str) -> dict[int, str]:
    """``id,label`` rows (a header line first) as ``{id: label}``; blank lines are skipped.

    An id given twice is refused even with the same label: a file that
    repeats itself was probably put together from two sources.
    """
    rows = _rows(text)
    _, header = next(rows, (1, []))
    if tuple(c.strip().lower() for c in header) != LABEL_HEADER:
        raise _bad(1, f"want the header {','.join(LABEL_HEADER)}, got {','.join(header)!r}")
    labels: dict[int, str] = {}
    seen: dict[int, int] = {}
    line = 1
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(LABEL_HEADER):
            raise _bad(line, f"want 2 fields (id,label), got {len(row)}")
        raw_id, label = row[0].strip(), row[1].strip()
        if not (raw_id.isascii() and raw_id.isdigit()) or not 0 < int(raw_id) <= MAX_ID:
            raise _bad(line, f"id {raw_id[:40]!r} is not a positive whole number")
        if not 0 < len(label) <= MAX_LABEL_LENGTH:
            raise _bad(line, f"a label is 1..{MAX_LABEL_LENGTH} characters")
        sample_id = int(raw_id)
        if sample_id in seen:
            raise _bad(line, f"id {sample_id} was given on line {seen[sample_id]} already")
        seen[sample_id] = line
        labels[sample_id] = label
    if not labels:
        raise _bad(line, "no labels after the header")
    return labels


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """Records with the line each ends on; quoting that never closes is refused, not guessed."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as err:
        raise _bad(reader.line_num, f"not CSV ({err})") from err


def label_pairs(pairs: Iterable[tuple[int, str]]) -> dict[int, str]:
    """``(id, label)`` pairs as a mapping; an id given twice is refused, as in a label CSV."""
    labels: dict[int, str] = {}
    for sample_id, label in pairs:
        if sample_id in labels:
            raise InvalidInputError(f"sample {sample_id} is labelled twice", reason="bad_labels")
        labels[sample_id] = label
    return labels


def _floats(values: bytes) -> np.ndarray[tuple[int], np.dtype[np.float32]]:
    return np.frombuffer(values, dtype="<f4").astype(np.float32)


def to_csv(exported: Export) -> str:
    """One row per sample; ``values`` are space-separated, flattened in C order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_HEADER)
    for row in exported.rows:
        values = " ".join(str(v) for v in _floats(row.values))
        writer.writerow(
            (
                row.id,
                row.device,
                row.model,
                row.version,
                row.reason,
                "" if row.confidence is None else repr(row.confidence),
                "" if row.label is None else row.label,
                values,
            )
        )
    return buffer.getvalue()


def to_npz(exported: Export) -> bytes:
    """``x`` (n, *shape) float32, ``ids`` int64, ``labels`` text ("" for none).

    ``x`` takes the input shape when it is known and fits; otherwise it is
    flat (n, values), which needs every sample to be the same length.
    """
    lengths = sorted({len(row.values) // 4 for row in exported.rows})
    if len(lengths) > 1:
        raise InvalidInputError(
            f"the samples have different lengths ({', '.join(map(str, lengths[:5]))} values): "
            "export one model version at a time",
            reason="mixed_shapes",
        )
    width = lengths[0] if lengths else 0
    shape = exported.shape
    if shape is None or int(np.prod(shape)) != width:
        shape = (width,)
    x = np.frombuffer(b"".join(row.values for row in exported.rows), dtype="<f4")
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x=x.astype(np.float32).reshape((len(exported.rows), *shape)),
        ids=np.asarray([row.id for row in exported.rows], dtype=np.int64),
        labels=np.asarray([row.label or "" for row in exported.rows], dtype=np.str_),
    )
    return buffer.getvalue()


def as_dataset(chosen: Sequence[EdgeSample], layout: DatasetSchema, dataset: str) -> Samples:
    """Labelled samples as rows for ``dataset`` (of schema ``layout``), or a refusal naming them.

    The label names are the samples' own; merging into the dataset maps them
    onto its label indices (and adds any it lacks).
    """
    width = math.prod(layout.shape)
    wrong = [s.id for s in chosen if len(s.values) != 4 * width]
    if wrong:
        raise InvalidInputError(
            f"samples {few(wrong)} do not have the {width} values of dataset {dataset!r}'s "
            f"{layout.kind.value} shape {layout.shape}; nothing was folded",
            reason="schema_mismatch",
        )
    x = np.frombuffer(b"".join(s.values for s in chosen), dtype="<f4").astype(np.float32)
    x = x.reshape((len(chosen), *layout.shape))
    finite = np.isfinite(x.reshape(len(chosen), -1)).all(axis=1)
    if not finite.all():
        bad = [s.id for s, ok in zip(chosen, finite, strict=True) if not ok]
        raise InvalidInputError(
            f"samples {few(bad)} hold NaN or infinite values; nothing was folded",
            reason="bad_values",
        )
    names = tuple(sorted({s.label for s in chosen if s.label is not None}))
    index = {name: i for i, name in enumerate(names)}
    y = np.asarray([index[s.label or ""] for s in chosen], dtype=np.int32)
    labelled = DatasetSchema(
        kind=layout.kind, shape=layout.shape, feature_names=layout.feature_names, labels=names
    )
    return Samples(labelled, x, y)


def fold_source(model: str, chosen: Sequence[EdgeSample]) -> dict[str, Any]:
    """The new dataset version's ``source``: where its extra rows came from."""
    return {
        "format": "edge_samples",
        "model": model,
        "samples": len(chosen),
        "devices": len({s.device_id for s in chosen}),
        "first_id": chosen[0].id,
        "last_id": chosen[-1].id,
        "versions": sorted({s.version for s in chosen}),
    }
