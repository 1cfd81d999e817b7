"""Dataset versions in memory: canonical bytes, content hash, merge, seeded stratified split."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training import datasets, synthetic
from edgefleet.server.training.datasets import DatasetKind, DatasetSchema, Samples, SplitSpec


def tabular(n: int = 60, classes: tuple[str, ...] = ("a", "b", "c"), seed: int = 0) -> Samples:
    rng = np.random.default_rng(seed)
    schema = DatasetSchema(
        kind=DatasetKind.TABULAR, shape=(4,), feature_names=("w", "x", "y", "z"), labels=classes
    )
    y = (np.arange(n) % len(classes)).astype(np.int32)
    return Samples(schema, rng.normal(size=(n, 4)).astype(np.float32), y)


def test_stored_bytes_are_canonical_and_round_trip() -> None:
    samples = tabular()
    data = datasets.to_bytes(samples)
    assert datasets.to_bytes(tabular()) == data  # no timestamps in the archive
    back = datasets.from_bytes(data)
    assert back.schema == samples.schema
    np.testing.assert_array_equal(back.x, samples.x)
    np.testing.assert_array_equal(back.y, samples.y)  # type: ignore[arg-type]
    assert datasets.content_hash(samples) != datasets.content_hash(tabular(seed=1))


def test_unlabelled_samples_round_trip() -> None:
    windows = synthetic.generate(12, seed=3, classes=("normal",))
    assert windows.y is None
    assert windows.schema.labels == ()
    back = datasets.from_bytes(datasets.to_bytes(windows))
    assert back.y is None
    np.testing.assert_array_equal(back.x, windows.x)


def test_samples_refuse_labels_that_do_not_fit_the_schema() -> None:
    samples = tabular()
    with pytest.raises(InvalidInputError, match="int32 indices below 3"):
        Samples(samples.schema, samples.x, np.full(len(samples), 3, dtype=np.int32))
    with pytest.raises(InvalidInputError, match="do not match the schema"):
        Samples(samples.schema, samples.x[:, :3], samples.y)


def test_split_is_seeded_stratified_and_disjoint() -> None:
    samples = tabular(n=300)
    spec = SplitSpec(seed=7, validation=0.2, test=0.1)
    first, again = datasets.split(samples, spec), datasets.split(samples, spec)
    np.testing.assert_array_equal(first.test, again.test)
    parts = [first.train, first.validation, first.test]
    assert sorted(np.concatenate(parts).tolist()) == list(range(300))
    assert first.counts() == {"train": 210, "validation": 60, "test": 30}
    assert samples.y is not None
    for part in parts:  # each class keeps its share in every part
        shares = np.bincount(samples.y[part], minlength=3) / len(part)
        assert np.allclose(shares, 1 / 3)
    other = datasets.split(samples, SplitSpec(seed=8, validation=0.2, test=0.1))
    assert not np.array_equal(other.test, first.test)


def test_too_few_samples_to_split_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="too few to split"):
        datasets.split(tabular(n=4, classes=("a", "b")), SplitSpec())


def test_merge_appends_and_unites_labels_keeping_old_indices() -> None:
    base = tabular(n=6, classes=("a", "b"))
    extra = tabular(n=4, classes=("b", "c"), seed=2)
    merged = datasets.merge(base, extra)
    assert merged.schema.labels == ("a", "b", "c")
    assert len(merged) == 10
    assert merged.y is not None
    assert extra.y is not None
    names = [merged.schema.labels[i] for i in merged.y[6:]]
    assert names == [extra.schema.labels[i] for i in extra.y]


def test_merge_refuses_other_features() -> None:
    windows = synthetic.generate(10, seed=0)
    with pytest.raises(InvalidInputError, match="do not match the dataset"):
        datasets.merge(tabular(), windows)


def test_an_extended_split_keeps_every_old_row_in_its_part() -> None:
    old = synthetic.generate(300, seed=1)
    spec = datasets.SplitSpec(seed=7)
    before = datasets.split(old, spec)
    extra = synthetic.generate(80, seed=2, drift=1.0)
    after = datasets.split(datasets.merge(old, extra), spec.extended(len(old)))
    for part in ("train", "validation", "test"):
        kept = getattr(after, part)
        assert np.array_equal(kept[kept < len(old)], getattr(before, part))
    assert (after.test >= len(old)).any()
    assert (after.train >= len(old)).any()


def test_a_split_whose_segments_overrun_the_rows_is_refused() -> None:
    samples = synthetic.generate(50, seed=1)
    with pytest.raises(InvalidInputError, match="segments end at row 50"):
        datasets.split(samples, datasets.SplitSpec(segments=(50,)))
