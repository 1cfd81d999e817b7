"""Uploaded data to :class:`~edgefleet.server.training.datasets.Samples`, or an error naming where.

CSV comes in two layouts: one row per sample (features plus an optional
label column), or a time series with a series id and a time column, cut into
windows of ``window`` rows every ``stride`` rows (a window takes the label of
its last row). NPZ holds ``x`` (samples first) and optionally ``y``,
``feature_names``. Every refusal names the row (counting data rows from 1,
with the file line), the column, or the array index at fault; nothing is
half-imported since parsing is all-or-nothing and has no side effects.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training.datasets import (
    MAX_FEATURES,
    MAX_LABELS,
    MAX_SAMPLES,
    DatasetKind,
    DatasetSchema,
    Labels,
    Samples,
)
from edgefleet.shared.errors import MessageError

MAX_FIELD = 1024
MAX_WINDOW = 65_536
_KINDS = {2: DatasetKind.TABULAR, 3: DatasetKind.TIMESERIES, 4: DatasetKind.IMAGE}


def _bad(message: str, reason: str = "bad_dataset") -> InvalidInputError:
    return InvalidInputError(message, reason=reason)


@dataclass(frozen=True, slots=True)
class CsvOptions:
    label_column: str | None = "label"
    """None for unlabelled data (anomaly detection)."""
    feature_columns: tuple[str, ...] | None = None
    """Default: every column that is not the label, series or time column."""
    series_column: str | None = None
    time_column: str | None = None
    window: int | None = None
    stride: int | None = None
    """Default: ``window`` (windows do not overlap)."""

    @property
    def windowed(self) -> bool:
        return self.time_column is not None or self.window is not None


def _label_set(values: Sequence[str], where: str) -> tuple[tuple[str, ...], Labels]:
    """Label names (numeric ones in numeric order) and each value's index."""
    names = sorted(set(values))
    try:
        names.sort(key=float)
    except ValueError:
        pass
    if len(names) < 2:
        only = repr(names[0]) if names else "none"
        raise _bad(
            f"{where} has a single class ({only}): a classifier needs at least two; "
            "leave the labels out for unlabelled anomaly-detection data",
            reason="single_class",
        )
    if len(names) > MAX_LABELS:
        raise _bad(f"{where} has {len(names)} classes; at most {MAX_LABELS}")
    index = {name: i for i, name in enumerate(names)}
    return tuple(names), np.fromiter((index[v] for v in values), np.int32, len(values))


# -- CSV -------------------------------------------------------------------------


def _rows(data: bytes) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _bad(f"the CSV is not UTF-8 (byte {err.start})") from err
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise _bad("the CSV is empty: want a header row, then one row per sample")
        header = [h.strip() for h in header]
        rows: list[tuple[int, list[str]]] = []
        for row in reader:
            if not row:
                continue
            if len(rows) >= MAX_SAMPLES:
                raise _bad(f"more than {MAX_SAMPLES} rows")
            rows.append((reader.line_num, row))
    except csv.Error as err:
        raise _bad(f"line {reader.line_num}: malformed CSV ({err})") from err
    for position, name in enumerate(header, 1):
        if not name or len(name) > 128:
            raise _bad(f"header column {position} needs a name of 1..128 characters")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise _bad(f"header names column(s) {', '.join(map(repr, repeated))} more than once")
    if not rows:
        raise _bad("the CSV has a header but no rows")
    for number, (line, row) in enumerate(rows, 1):
        if len(row) != len(header):
            raise _bad(
                f"row {number} (line {line}) has {len(row)} columns, the header has {len(header)}",
                reason="wrong_column_count",
            )
    return header, rows


def _column(header: list[str], name: str, role: str) -> int:
    if name not in header:
        shown = ", ".join(map(repr, header[:20]))
        raise _bad(f"no {role} column {name!r}; the header has {shown}", reason="missing_column")
    return header.index(name)


def _number(text: str, number: int, line: int, column: str) -> float:
    where = f"row {number} (line {line}), column {column!r}"
    if not text.strip():
        raise _bad(f"{where} is empty", reason="missing_value")
    try:
        value = float(text)
    except ValueError as err:
        raise _bad(f"{where}: {text[:40]!r} is not a number", reason="not_a_number") from err
    if not math.isfinite(value):
        raise _bad(f"{where}: {text.strip()[:40]} is not a finite number", reason="not_finite")
    return value


def _layout(header: list[str], options: CsvOptions) -> tuple[int | None, list[int]]:
    label = None if options.label_column is None else _column(header, options.label_column, "label")
    reserved = {label}
    if options.windowed:
        if options.time_column is None or options.window is None:
            raise _bad("a windowed time series needs both time_column and window")
        reserved.add(_column(header, options.time_column, "time"))
        if options.series_column is not None:
            reserved.add(_column(header, options.series_column, "series"))
    if options.feature_columns is not None:
        features = [_column(header, name, "feature") for name in options.feature_columns]
    else:
        features = [i for i in range(len(header)) if i not in reserved]
    if not features:
        raise _bad("no feature columns left besides the label, series and time columns")
    if len(features) > MAX_FEATURES:
        raise _bad(f"{len(features)} feature columns; at most {MAX_FEATURES}")
    return label, features


def _labels(rows: list[tuple[int, list[str]]], label: int, name: str) -> list[str]:
    values = []
    for number, (line, row) in enumerate(rows, 1):
        value = row[label].strip()
        if not value:
            raise _bad(
                f"row {number} (line {line}), column {name!r}: missing label",
                reason="missing_label",
            )
        if len(value) > 128:
            raise _bad(f"row {number} (line {line}), column {name!r}: label over 128 characters")
        values.append(value)
    return values


def parse_csv(data: bytes, options: CsvOptions) -> Samples:
    header, rows = _rows(data)
    label, features = _layout(header, options)
    names = tuple(header[i] for i in features)
    x = np.empty((len(rows), len(features)), dtype=np.float64)
    for number, (line, row) in enumerate(rows, 1):
        x[number - 1] = [_number(row[i], number, line, header[i]) for i in features]
    values = None if label is None else _labels(rows, label, header[label])
    if options.windowed:
        return _windows(header, rows, options, x, names, values)
    if np.abs(x).max() > np.finfo(np.float32).max:
        raise _bad("a feature value does not fit in float32", reason="not_finite")
    labels: tuple[str, ...] = ()
    y = None
    if values is not None:
        labels, y = _label_set(values, f"label column {options.label_column!r}")
    schema = DatasetSchema(
        kind=DatasetKind.TABULAR, shape=(len(features),), feature_names=names, labels=labels
    )
    return Samples(schema, x.astype(np.float32), y)


def _windows(
    header: list[str],
    rows: list[tuple[int, list[str]]],
    options: CsvOptions,
    x: npt.NDArray[np.float64],
    names: tuple[str, ...],
    values: list[str] | None,
) -> Samples:
    window = options.window or 0
    stride = options.stride or window
    if not 2 <= window <= MAX_WINDOW or not 1 <= stride <= MAX_WINDOW:
        raise _bad(f"window must be 2..{MAX_WINDOW} rows and stride 1..{MAX_WINDOW}")
    time_column = options.time_column or ""  # _layout made sure it is set
    time = _column(header, time_column, "time")
    series = None if options.series_column is None else header.index(options.series_column)
    members: dict[str, list[int]] = {}
    times = np.empty(len(rows))
    for number, (line, row) in enumerate(rows, 1):
        times[number - 1] = _number(row[time], number, line, time_column)
        members.setdefault("" if series is None else row[series].strip(), []).append(number - 1)
    starts: list[tuple[list[int], int]] = []
    for key, indices in members.items():
        ordered = sorted(indices, key=lambda i: times[i])
        for before, after in zip(ordered, ordered[1:], strict=False):
            if times[before] == times[after]:
                first, second = sorted((before, after))
                raise _bad(
                    f"rows {first + 1} and {second + 1} of series {key!r} have the same time "
                    f"{times[before]:g}",
                    reason="duplicate_time",
                )
        starts += [(ordered, s) for s in range(0, len(ordered) - window + 1, stride)]
    if not starts:
        raise _bad(f"no series has {window} rows: nothing to cut into windows")
    if len(starts) > MAX_SAMPLES:
        raise _bad(f"{len(starts)} windows; at most {MAX_SAMPLES}")
    picks = np.asarray([ordered[s : s + window] for ordered, s in starts])
    labels: tuple[str, ...] = ()
    y = None
    if values is not None:
        labels, y = _label_set(
            [values[p[-1]] for p in picks], f"label column {options.label_column!r}"
        )
    schema = DatasetSchema(
        kind=DatasetKind.TIMESERIES, shape=(window, len(names)), feature_names=names, labels=labels
    )
    return Samples(schema, x[picks].astype(np.float32), y)


# -- NPZ -------------------------------------------------------------------------


def _npz_arrays(data: bytes, max_bytes: int) -> dict[str, npt.NDArray[np.generic]]:
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise _bad(f"not an NPZ archive: {err}") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _bad("not an NPZ archive (a single .npy array?): save with numpy.savez(x=..., y=...)")
    with archive:
        unpacked = sum(info.file_size for info in archive.zip.infolist())
        if unpacked > max_bytes:
            raise _bad(f"the NPZ unpacks to {unpacked} bytes; the limit is {max_bytes}")
        try:
            return {name: archive[name] for name in archive.files}
        except (ValueError, OSError, zipfile.BadZipFile) as err:
            raise _bad(f"the NPZ holds an unreadable array: {err}") from err


def _npz_features(x: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    if x.dtype.kind not in "biuf" or x.ndim not in _KINDS:
        raise _bad(f"'x' must be numbers of 2 to 4 axes (samples first), got {x.dtype} {x.shape}")
    if not 1 <= len(x) <= MAX_SAMPLES or not 1 <= x.shape[-1] <= MAX_FEATURES:
        raise _bad(f"'x' of shape {x.shape}: want 1..{MAX_SAMPLES} samples, ..{MAX_FEATURES}")
    with np.errstate(over="ignore", invalid="ignore"):
        values = x.astype(np.float32)
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        at = tuple(int(i) for i in bad[0])
        raise _bad(
            f"x[{', '.join(map(str, at))}] (sample {at[0]}, feature {at[-1]}) is "
            f"{x[at]} and not a finite float32",
            reason="not_finite",
        )
    return values


def parse_npz(data: bytes, *, max_bytes: int) -> Samples:
    arrays = _npz_arrays(data, max_bytes)
    unknown = sorted(set(arrays) - {"x", "y", "feature_names"})
    if "x" not in arrays or unknown:
        raise _bad(f"want arrays 'x' and optionally 'y', 'feature_names'; found {sorted(arrays)}")
    x = _npz_features(arrays["x"])
    features = arrays.get("feature_names")
    if features is None:
        names = tuple(f"f{i}" for i in range(x.shape[-1]))
    elif features.dtype.kind != "U" or features.shape != (x.shape[-1],):
        raise _bad(f"'feature_names' must be {x.shape[-1]} strings, one per feature (last axis)")
    else:
        names = tuple(str(n) for n in features)
    labels: tuple[str, ...] = ()
    y = None
    if "y" in arrays:
        raw = arrays["y"]
        if raw.shape != (len(x),) or raw.dtype.kind not in "iuU":
            raise _bad(
                f"'y' must be {len(x)} integer or string labels, got {raw.dtype} {raw.shape}"
            )
        values = [str(v).strip() for v in raw.tolist()]
        if "" in values:
            raise _bad(f"y[{values.index('')}]: missing label", reason="missing_label")
        labels, y = _label_set(values, "'y'")
    try:
        schema = DatasetSchema(
            kind=_KINDS[x.ndim], shape=x.shape[1:], feature_names=names, labels=labels
        )
    except MessageError as err:
        raise _bad(f"invalid dataset schema: {err}") from err
    return Samples(schema, x, y)
