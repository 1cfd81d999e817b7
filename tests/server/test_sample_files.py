"""Label CSVs in, samples out (pure): every refusal names its line."""

from __future__ import annotations

import io

import numpy as np
import pytest

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.sample_files import (
    Export,
    ExportRow,
    few,
    label_pairs,
    parse_label_csv,
    to_csv,
    to_npz,
)


def test_a_label_csv_reads_as_ids_to_labels() -> None:
    text = '\ufeff ID , Label \r\n1,idle\r\n\r\n  7 , fault \r\n42,"worn, left bearing"\r\n'
    assert parse_label_csv(text) == {1: "idle", 7: "fault", 42: "worn, left bearing"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "line 1: want the header id,label, got ''"),
        ("sample,label\n1,idle\n", "line 1: want the header id,label, got 'sample,label'"),
        ("id,label\n", "line 1: no labels after the header"),
        ("id,label\n\n\n", "line 3: no labels after the header"),
        ("id,label\n1,idle\nabc,fault\n", "line 3: id 'abc' is not a positive whole number"),
        ("id,label\n0,idle\n", "line 2: id '0' is not"),
        ("id,label\n-4,idle\n", "line 2: id '-4' is not"),
        ("id,label\n\u00b2,idle\n", "line 2: id '\u00b2' is not"),
        (f"id,label\n{2**63},idle\n", "line 2: id"),
        ("id,label\n1,idle,extra\n", "line 2: want 2 fields (id,label), got 3"),
        ("id,label\n1\n", "line 2: want 2 fields (id,label), got 1"),
        ("id,label\n1, \n", "line 2: a label is 1..128 characters"),
        ("id,label\n1," + "x" * 129 + "\n", "line 2: a label is 1..128 characters"),
        ("id,label\n5,idle\n6,idle\n\n5,idle\n", "line 5: id 5 was given on line 2 already"),
        ('id,label\n1,"two\nlines"\n2,"open\n', "line 4: "),
    ],
)
def test_a_bad_label_csv_is_refused_at_its_line(text: str, words: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_label_csv(text)
    assert words in str(caught.value)
    assert caught.value.reason == "bad_label_csv"


def test_label_pairs_refuse_an_id_given_twice() -> None:
    assert label_pairs([(3, "a"), (1, "b")]) == {3: "a", 1: "b"}
    with pytest.raises(InvalidInputError, match="sample 3 is labelled twice"):
        label_pairs([(3, "a"), (1, "b"), (3, "a")])


def test_few_names_ten_and_counts_the_rest() -> None:
    assert few([1, 2]) == "1, 2"
    assert few(range(10)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"
    assert few(range(13)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 3 more"


def _row(sample_id: int, values: list[float], label: str | None = None) -> ExportRow:
    return ExportRow(
        id=sample_id,
        device="d",
        model="m",
        version=1,
        reason="reservoir",
        confidence=None,
        label=label,
        values=np.asarray(values, dtype="<f4").tobytes(),
    )


def test_npz_takes_the_input_shape_only_when_it_fits() -> None:
    rows = (_row(1, [1, 2, 3, 4, 5, 6], "a"), _row(2, [6, 5, 4, 3, 2, 1]))
    shaped = np.load(io.BytesIO(to_npz(Export(rows, (3, 2)))))
    assert shaped["x"].shape == (2, 3, 2)
    assert shaped["x"][0, 2].tolist() == [5.0, 6.0]
    assert shaped["labels"].tolist() == ["a", ""]
    flat = np.load(io.BytesIO(to_npz(Export(rows, (4,)))))
    assert flat["x"].shape == (2, 6)
    empty = np.load(io.BytesIO(to_npz(Export((), (4,)))))
    assert (empty["x"].shape, empty["ids"].tolist()) == ((0, 0), [])


def test_csv_quotes_what_needs_quoting() -> None:
    text = to_csv(Export((_row(9, [0.5], 'worn, "left"'),), None))
    assert text.splitlines()[1] == '9,d,m,1,reservoir,,"worn, ""left""",0.5'
