"""Uploaded CSV and NPZ: parsed into samples, or refused with the row, column or index named."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training import synthetic
from edgefleet.server.training.datasets import DatasetKind
from edgefleet.server.training.parsing import CsvOptions, parse_csv, parse_npz

GOOD = b"temp,rpm,label\n20.5,1000,ok\n21.0,1200,ok\n35.5,900,hot\n"
MAX = 1 << 24


def npz(**arrays: object) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def test_csv_with_features_and_labels() -> None:
    samples = parse_csv(GOOD, CsvOptions())
    assert samples.schema.kind is DatasetKind.TABULAR
    assert samples.schema.feature_names == ("temp", "rpm")
    assert samples.schema.labels == ("hot", "ok")
    np.testing.assert_allclose(samples.x[2], [35.5, 900])
    assert samples.y is not None
    assert samples.y.tolist() == [1, 1, 0]


def test_numeric_labels_sort_as_numbers() -> None:
    rows = b"a,label\n" + b"".join(f"{i},{i % 11}\n".encode() for i in range(22))
    assert parse_csv(rows, CsvOptions()).schema.labels[:4] == ("0", "1", "2", "3")


def test_unlabelled_csv_and_chosen_feature_columns() -> None:
    samples = parse_csv(GOOD, CsvOptions(label_column=None, feature_columns=("rpm",)))
    assert samples.y is None
    assert samples.x.shape == (3, 1)


@pytest.mark.parametrize(
    ("data", "options", "reason", "message"),
    [
        (
            b"temp,rpm,label\n1,2,ok\n3,4\n",
            CsvOptions(),
            "wrong_column_count",
            r"row 2 \(line 3\) has 2 columns, the header has 3",
        ),
        (
            b"temp,rpm,label\n1,2,ok\n3,4,\n",
            CsvOptions(),
            "missing_label",
            r"row 2 \(line 3\), column 'label': missing label",
        ),
        (
            b"temp,rpm,label\n1,nan,ok\n3,4,hot\n",
            CsvOptions(),
            "not_finite",
            r"row 1 \(line 2\), column 'rpm': nan is not a finite number",
        ),
        (
            b"temp,rpm,label\n1,2,ok\n-inf,4,hot\n",
            CsvOptions(),
            "not_finite",
            r"row 2 \(line 3\), column 'temp': -inf is not a finite number",
        ),
        (
            b"temp,rpm,label\n1,2,ok\n3,warm,hot\n",
            CsvOptions(),
            "not_a_number",
            r"row 2 \(line 3\), column 'rpm': 'warm' is not a number",
        ),
        (
            b"temp,rpm,label\n1,,ok\n",
            CsvOptions(),
            "missing_value",
            r"row 1 \(line 2\), column 'rpm' is empty",
        ),
        (
            b"temp,rpm,label\n1,2,ok\n3,4,ok\n",
            CsvOptions(),
            "single_class",
            r"label column 'label' has a single class \('ok'\)",
        ),
        (b"temp,rpm\n1,2\n", CsvOptions(), "missing_column", "no label column 'label'"),
        (b"temp,temp,label\n1,2,ok\n", CsvOptions(), "bad_dataset", "more than once"),
        (b"", CsvOptions(), "bad_dataset", "the CSV is empty"),
        (b"temp,label\n", CsvOptions(), "bad_dataset", "no rows"),
        (b"\xff\xfe\x00t", CsvOptions(), "bad_dataset", "not UTF-8"),
    ],
)
def test_bad_csv_names_the_row_and_column(
    data: bytes, options: CsvOptions, reason: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        parse_csv(data, options)
    assert caught.value.reason == reason


def _series_csv(windows: int, *, spec: synthetic.SensorSpec) -> bytes:
    samples = synthetic.generate(windows, seed=4, spec=spec)
    text = io.StringIO()
    csv.writer(text).writerows(synthetic.csv_rows(samples, spec=spec))
    return text.getvalue().encode()


def test_time_series_csv_is_cut_into_windows_per_series() -> None:
    spec = synthetic.SensorSpec(window=8)
    expected = synthetic.generate(5, seed=4, spec=spec)
    options = CsvOptions(series_column="machine", time_column="t", window=8)
    samples = parse_csv(_series_csv(5, spec=spec), options)
    assert samples.schema.kind is DatasetKind.TIMESERIES
    assert samples.schema.shape == (8, 3)
    assert samples.schema.feature_names == synthetic.CHANNELS
    np.testing.assert_allclose(
        np.sort(samples.x.reshape(5, -1), axis=0), np.sort(expected.x.reshape(5, -1), axis=0)
    )
    overlapping = parse_csv(
        _series_csv(5, spec=spec),
        CsvOptions(series_column="machine", time_column="t", window=4, stride=2),
    )
    assert len(overlapping) == 5 * 3


def test_time_series_rows_out_of_order_are_sorted_and_duplicates_refused() -> None:
    rows = b"s,t,v,label\na,2,20,x\na,1,10,x\nb,1,1,y\nb,2,2,y\n"
    samples = parse_csv(rows, CsvOptions(series_column="s", time_column="t", window=2))
    assert sorted(samples.x[:, :, 0].tolist()) == [[1.0, 2.0], [10.0, 20.0]]
    duplicate = b"s,t,v,label\na,1,20,x\na,1,10,x\nb,1,1,y\nb,2,2,y\n"
    with pytest.raises(InvalidInputError, match="rows 1 and 2 of series 'a' have the same time 1"):
        parse_csv(duplicate, CsvOptions(series_column="s", time_column="t", window=2))


def test_npz_with_string_labels_and_feature_names() -> None:
    x = np.arange(24, dtype=np.float64).reshape(6, 2, 2)
    data = npz(x=x, y=np.array(["on", "off"] * 3), feature_names=np.array(["i", "q"]))
    samples = parse_npz(data, max_bytes=MAX)
    assert samples.schema.kind is DatasetKind.TIMESERIES
    assert samples.schema.labels == ("off", "on")
    assert samples.schema.feature_names == ("i", "q")
    assert samples.x.dtype == np.float32


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04 truncated zip", "not an NPZ archive"),
        (b"plain text", "not an NPZ archive"),
        (npz(y=np.arange(3)), r"want arrays 'x'"),
        (
            npz(x=np.array([[1.0, np.inf], [2.0, 3.0]]), y=np.array([0, 1])),
            r"x\[0, 1\] \(sample 0, feature 1\) is inf",
        ),
        (npz(x=np.ones((3, 2)), y=np.array([0, 1])), "'y' must be 3"),
        (npz(x=np.ones((3, 2)), y=np.array([1, 1, 1])), "single class"),
        (npz(x=np.array(["a", "b"])), "must be numbers"),
        (npz(x=np.array([{"pickled": 1}], dtype=object)), "unreadable array"),
        (npz(x=np.ones((3, 2)), feature_names=np.array(["only-one"])), "'feature_names' must be 2"),
    ],
)
def test_bad_npz_is_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_npz(data, max_bytes=MAX)


def test_npz_that_unpacks_past_the_limit_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="unpacks to"):
        parse_npz(npz(x=np.zeros((1000, 100))), max_bytes=1000)
