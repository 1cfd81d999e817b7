"""The edge-sample service on SQLite and PostgreSQL: list, all-or-nothing labels, export, fold."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from edgefleet.server import keys, sample_files, samples
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db import migrate
from edgefleet.server.db.engine import make_engine, make_sessionmaker
from edgefleet.server.db.models import AuditRecord, DatasetVersion, EdgeSample, ModelVersion
from edgefleet.server.errors import ConflictError, InvalidInputError, NotFoundError
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.signing import SigningService
from edgefleet.server.training import dataset_registry, datasets
from edgefleet.server.training.datasets import DatasetKind, DatasetSchema, Samples, SplitSpec
from edgefleet.shared.messages import SampleReason
from tests.harness.models import TfliteModels
from tests.server.edge_data import LABELS, TRAIN_ROWS, Registered, add_samples, register

REPO = Path(__file__).resolve().parents[2]
T = 1_767_225_600.0
MODEL = "vib"
DATASET = "vib-data"


@dataclass
class Env:
    session: Session
    store: ArtifactStore
    registered: Registered

    def add(self, count: int, **fields: Any) -> list[int]:
        """``count`` samples of v1 from ``dev-a`` (4 values each: 10*i + column)."""
        rows = [[10.0 * i + c for c in range(4)] for i in range(count)]
        defaults: dict[str, Any] = {
            "model": MODEL,
            "version": 1,
            "device": "dev-a",
            "values": rows,
            "received_at": T,
        }
        return add_samples(self.session, **{**defaults, **fields})

    def labels(self) -> dict[int, str | None]:
        self.session.expire_all()
        return dict(self.session.execute(select(EdgeSample.id, EdgeSample.label)).all())

    def audit(self, action: str) -> list[AuditRecord]:
        return list(self.session.scalars(select(AuditRecord).where(AuditRecord.action == action)))

    def dataset(self, name: str, rows: Samples) -> str:
        """``rows`` imported as dataset ``name``; its content hash."""
        return dataset_registry.import_version(
            session=self.session,
            store=self.store,
            name=name,
            samples=rows,
            split=SplitSpec(),
            source={},
            actor="test",
            now=T,
        ).version.sha256

    def fold(
        self, ids: list[int] | None = None, **options: Any
    ) -> tuple[DatasetVersion, tuple[int, ...]]:
        """``samples.fold`` of model vib into dataset vib-data, unless ``options`` say otherwise."""
        fields = {"model": MODEL, "dataset": DATASET, "actor": "alice", "now": T, **options}
        return samples.fold(self.session, self.store, sample_ids=ids, **fields)

    def version(self, number: int, dataset_hash: str | None) -> None:
        """A bare version row of the model, as a registry without artifacts would hold it."""
        self.session.add(
            ModelVersion(
                model=self.registered.version.model,
                version=number,
                dataset_hash=dataset_hash,
                created_at=T,
                created_by="test",
            )
        )
        self.session.commit()


@pytest.fixture
def env(db_url: str, tmp_path: Path, tflite_models: TfliteModels) -> Iterator[Env]:
    keys.init_keys(root_dir=tmp_path / "root", signing_dir=tmp_path / "signing", now=int(T))
    store = ArtifactStore(tmp_path / "artifacts")
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    try:
        with make_sessionmaker(engine)() as session:
            registered = register(
                session,
                store=store,
                signing=SigningService.load(tmp_path / "signing"),
                catalog=ProfileCatalog.load(REPO / "firmware_configs"),
                tflite=tflite_models.float32,
                model=MODEL,
                dataset=DATASET,
                now=T,
            )
            yield Env(session, store, registered)
    finally:
        engine.dispose()


# -- label set and listing --------------------------------------------------------


def test_the_label_set_is_the_training_datasets(env: Env) -> None:
    assert samples.label_set(env.session, MODEL, 1) == LABELS
    with pytest.raises(NotFoundError, match="no version 9"):
        samples.label_set(env.session, MODEL, 9)
    with pytest.raises(NotFoundError, match="no model"):
        samples.label_set(env.session, "nope", 1)
    env.version(2, None)
    with pytest.raises(InvalidInputError, match="names no training dataset"):
        samples.label_set(env.session, MODEL, 2)
    env.version(3, "cd" * 32)
    with pytest.raises(InvalidInputError, match="names no training dataset"):
        samples.label_set(env.session, MODEL, 3)
    layout = DatasetSchema(
        kind=DatasetKind.TABULAR, shape=(4,), feature_names=("a", "b", "c", "d"), labels=()
    )
    env.version(4, env.dataset("anomaly", Samples(layout, np.zeros((30, 4), np.float32), None)))
    with pytest.raises(InvalidInputError, match="unlabelled data"):
        samples.label_set(env.session, MODEL, 4)


def test_listing_filters_and_pages_by_id(env: Env) -> None:
    first = env.add(3)
    hard = env.add(2, device="dev-b", reason="low_confidence", received_at=T + 100)
    labelled = env.add(1, label="fault", received_at=T + 200)

    def ids(**where: Any) -> list[int]:
        return [s.id for s in samples.list_samples(env.session, model=MODEL, **where)]

    assert ids() == first + hard + labelled
    assert ids(device="dev-b") == hard
    assert ids(reason=SampleReason.LOW_CONFIDENCE) == hard
    assert ids(labelled=True) == labelled
    assert ids(labelled=False) == first + hard
    assert ids(since=T + 100) == hard + labelled
    assert ids(version=2) == []
    assert ids(limit=2) == first[:2]
    assert ids(after_id=first[1], limit=2) == [first[2], hard[0]]
    assert ids(after_id=labelled[0]) == []
    with pytest.raises(NotFoundError, match="no model"):
        samples.list_samples(env.session, model="nope")
    assert samples.get_sample(env.session, hard[0]).device_id == "dev-b"
    with pytest.raises(NotFoundError, match="no edge sample 999999"):
        samples.get_sample(env.session, 999_999)


# -- labels -------------------------------------------------------------------


def test_labels_apply_with_one_audit_record(env: Env) -> None:
    ids = env.add(4)
    done = samples.apply_labels(
        env.session, {ids[0]: "idle", ids[1]: "fault", ids[3]: "fault"}, "alice", T + 5
    )
    assert (done.labelled, done.relabelled, done.unchanged) == (3, 0, 0)
    assert (done.first_id, done.last_id) == (ids[0], ids[3])
    assert env.labels() == {ids[0]: "idle", ids[1]: "fault", ids[2]: None, ids[3]: "fault"}
    sample = samples.get_sample(env.session, ids[0])
    assert (sample.labelled_by, sample.labelled_at) == ("alice", T + 5)
    (record,) = env.audit("samples.label")
    assert (record.actor, record.target_type, record.target_id) == (
        "alice",
        "edge_samples",
        f"{ids[0]}-{ids[3]}",
    )
    assert record.before is None
    assert record.after is not None
    assert record.after["labels"] == {"idle": 1, "fault": 2}
    assert record.after["labelled"] == 3


def test_relabelling_is_audited_with_before_and_after(env: Env) -> None:
    ids = env.add(3)
    samples.apply_labels(env.session, {ids[0]: "idle", ids[1]: "idle"}, "alice", T)
    done = samples.apply_labels(
        env.session, {ids[0]: "fault", ids[1]: "idle", ids[2]: "normal"}, "bob", T + 1
    )
    assert (done.labelled, done.relabelled, done.unchanged) == (1, 1, 1)
    assert env.labels() == {ids[0]: "fault", ids[1]: "idle", ids[2]: "normal"}
    assert samples.get_sample(env.session, ids[1]).labelled_by == "alice"
    second = env.audit("samples.label")[-1]
    assert second.actor == "bob"
    assert second.before == {"relabelled": {str(ids[0]): "idle"}}
    assert second.after is not None
    assert second.after["relabelled_to"] == {str(ids[0]): "fault"}


def _refused(env: Env, labels: dict[int, str], error: type[Exception], words: str) -> str:
    before = env.labels()
    with pytest.raises(error, match=words) as caught:
        samples.apply_labels(env.session, labels, "mallory", T)
    env.session.rollback()
    assert env.labels() == before
    assert env.audit("samples.label") == []
    return str(caught.value)


def test_labels_are_all_or_nothing(env: Env) -> None:
    ids = env.add(3)
    message = _refused(
        env, {ids[0]: "idle", 999_998: "idle", 999_999: "fault"}, NotFoundError, "no edge samples"
    )
    assert "999998, 999999" in message
    assert "nothing was labelled" in message
    message = _refused(
        env, {ids[0]: "idle", ids[1]: "broken", ids[2]: "Idle"}, InvalidInputError, "label set"
    )
    assert f"samples {ids[1]}, {ids[2]} of vib v1 take only idle, normal, fault" in message
    _refused(env, {}, InvalidInputError, "no labels")
    _refused(env, {ids[0]: ""}, InvalidInputError, "1..128 characters")
    _refused(env, {ids[0]: "x" * 129}, InvalidInputError, "1..128 characters")
    too_many = dict.fromkeys(range(1, samples.MAX_LABELS + 2), "idle")
    _refused(env, too_many, InvalidInputError, "10001 labels in one request; at most 10000")


def test_ten_thousand_labels_go_in_one_request(env: Env) -> None:
    values = np.zeros(4, dtype="<f4").tobytes()
    env.session.execute(
        insert(EdgeSample),
        [
            {
                "device_id": "dev-bulk",
                "sample_id": f"b{i}",
                "model": MODEL,
                "version": 1,
                "window_seq": 1,
                "reason": "reservoir",
                "values": values,
                "received_at": T,
            }
            for i in range(samples.MAX_LABELS)
        ],
    )
    env.session.commit()
    ids = env.session.scalars(select(EdgeSample.id).order_by(EdgeSample.id)).all()
    done = samples.apply_labels(env.session, dict.fromkeys(ids, "normal"), "alice", T)
    assert (done.labelled, done.first_id, done.last_id) == (samples.MAX_LABELS, ids[0], ids[-1])
    assert set(env.labels().values()) == {"normal"}


def test_a_refusal_names_a_few_offenders_and_counts_the_rest(env: Env) -> None:
    ids = env.add(15)
    message = _refused(env, dict.fromkeys(ids, "nope"), InvalidInputError, "label set")
    assert ", ".join(map(str, ids[:10])) + " and 5 more" in message
    assert str(ids[10]) not in message


def test_samples_of_a_version_without_a_label_set_take_no_labels(env: Env) -> None:
    env.version(2, None)
    (sample,) = env.add(1, version=2)
    _refused(env, {sample: "idle"}, InvalidInputError, "names no training dataset")


def test_a_folded_sample_keeps_its_label(env: Env) -> None:
    ids = env.add(2, label="idle")
    env.fold([ids[0]])
    message = _refused(env, {ids[0]: "fault", ids[1]: "fault"}, ConflictError, "dataset version")
    assert f"{DATASET}:2" in message
    done = samples.apply_labels(env.session, {ids[0]: "idle", ids[1]: "fault"}, "bob", T)
    assert (done.unchanged, done.relabelled) == (1, 1)


# -- export ---------------------------------------------------------------------


def test_export_keeps_every_value_and_the_input_shape(env: Env) -> None:
    ids = env.add(2, label="fault")
    odd = [0.1, -3.4028235e38, 1e-45, 123456.789]
    ids += env.add(1, values=[odd], device="dev-b", reason="low_confidence")
    exported = samples.export(env.session, model=MODEL)
    assert exported.shape == (4,)
    lines = sample_files.to_csv(exported).splitlines()
    assert lines[0] == "id,device,model,version,reason,confidence,label,values"
    assert lines[1] == f"{ids[0]},dev-a,vib,1,reservoir,,fault,0.0 1.0 2.0 3.0"
    fields = lines[3].split(",")
    assert fields[:7] == [str(ids[2]), "dev-b", "vib", "1", "low_confidence", "0.5", ""]
    read = np.asarray([float(v) for v in fields[7].split()], dtype=np.float32)
    np.testing.assert_array_equal(read, np.asarray(odd, dtype=np.float32))

    archive = np.load(io.BytesIO(sample_files.to_npz(exported)), allow_pickle=False)
    assert archive["x"].dtype == np.float32
    assert archive["x"].shape == (3, 4)
    np.testing.assert_array_equal(archive["x"][2], np.asarray(odd, dtype=np.float32))
    assert archive["ids"].tolist() == ids
    assert archive["labels"].tolist() == ["fault", "fault", ""]
    assert [r.id for r in samples.export(env.session, model=MODEL, labelled=True).rows] == ids[:2]
    assert [
        r.id for r in samples.export(env.session, model=MODEL, after_id=ids[0], limit=1).rows
    ] == [ids[1]]


def test_export_shapes_follow_each_version(env: Env) -> None:
    layout = DatasetSchema(
        kind=DatasetKind.TIMESERIES, shape=(2, 2), feature_names=("x", "y"), labels=LABELS
    )
    y = (np.arange(30) % 3).astype(np.int32)
    env.version(2, env.dataset("windows", Samples(layout, np.zeros((30, 2, 2), np.float32), y)))
    env.version(3, None)
    env.add(2, version=2)
    env.add(1, version=3, values=[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])

    def npz(**where: Any) -> Any:
        found = samples.export(env.session, model=MODEL, **where)
        return np.load(io.BytesIO(sample_files.to_npz(found)), allow_pickle=False)

    assert npz(version=2)["x"].shape == (2, 2, 2)
    assert npz(version=3)["x"].shape == (1, 6)
    assert npz(version=1)["x"].shape == (0, 0)
    with pytest.raises(InvalidInputError, match=r"different lengths \(4, 6 values\)"):
        npz()
    assert len(sample_files.to_csv(samples.export(env.session, model=MODEL)).splitlines()) == 4


# -- fold -------------------------------------------------------------------------


def _versions(env: Env) -> int:
    env.session.expire_all()
    return env.session.scalar(select(func.count()).select_from(DatasetVersion)) or 0


def test_fold_extends_the_dataset_with_lineage_and_keeps_its_split(env: Env) -> None:
    with pytest.raises(ConflictError, match="nothing to fold"):
        env.fold()
    first = env.add(4, label="fault")
    env.add(1, device="dev-b", label="normal")
    unlabelled = env.add(1)
    version, folded = env.fold(now=T + 1)
    assert folded == (*first, first[-1] + 1)
    assert (version.version, version.samples) == (2, TRAIN_ROWS + 5)
    assert version.source == {
        "format": "edge_samples",
        "model": MODEL,
        "samples": 5,
        "devices": 2,
        "first_id": folded[0],
        "last_id": folded[-1],
        "versions": [1],
        "extends": 1,
    }
    env.session.expire_all()
    lineage = dict(env.session.execute(select(EdgeSample.id, EdgeSample.folded_into)).all())
    assert {lineage[i] for i in folded} == {f"{DATASET}:2"}
    assert lineage[unlabelled[0]] is None

    old = dataset_registry.get_version(session=env.session, name=DATASET, version=1)
    old_parts = datasets.split(
        dataset_registry.load_samples(store=env.store, version=old),
        dataset_registry.version_split(old),
    )
    new_rows = dataset_registry.load_samples(store=env.store, version=version)
    new_parts = datasets.split(new_rows, dataset_registry.version_split(version))
    assert dataset_registry.version_split(version).segments == (TRAIN_ROWS,)
    for part in ("train", "validation", "test"):
        kept = getattr(new_parts, part)
        np.testing.assert_array_equal(kept[kept < TRAIN_ROWS], getattr(old_parts, part))
    np.testing.assert_array_equal(new_rows.x[TRAIN_ROWS], [0.0, 1.0, 2.0, 3.0])
    assert new_rows.y is not None
    assert [new_rows.schema.labels[i] for i in new_rows.y[TRAIN_ROWS:]] == ["fault"] * 4 + [
        "normal"
    ]
    (record,) = env.audit("samples.fold")
    assert (record.target_id, record.actor) == (f"{DATASET}:2", "alice")
    assert [r.target_id for r in env.audit("dataset.import")] == [f"{DATASET}:1", f"{DATASET}:2"]

    with pytest.raises(ConflictError, match="nothing to fold"):
        env.fold(now=T + 2)
    assert _versions(env) == 2


def test_fold_takes_the_oldest_up_to_its_limit(env: Env) -> None:
    ids = env.add(5, label="idle")
    _, folded = env.fold(max_samples=2)
    assert folded == tuple(ids[:2])
    version, folded = env.fold(max_samples=10)
    assert folded == tuple(ids[2:])
    assert (version.version, version.samples) == (3, TRAIN_ROWS + 5)


def test_fold_of_given_ids_refuses_any_that_do_not_qualify(env: Env) -> None:
    good = env.add(2, label="idle")
    (bare,) = env.add(1)
    env.session.add(
        EdgeSample(
            device_id="dev-z",
            sample_id="other",
            model="other",
            version=1,
            window_seq=1,
            reason="reservoir",
            values=b"\0" * 16,
            label="idle",
            received_at=T,
        )
    )
    env.session.commit()
    other = env.session.scalars(select(EdgeSample.id).where(EdgeSample.model == "other")).one()
    (folded,) = env.add(1, label="idle")
    env.fold([folded])
    env.version(2, None)
    (short,) = env.add(1, version=2, values=[[1.0, 2.0]], label="idle")

    def refused(ids: list[int], error: type[Exception], words: str, **options: Any) -> None:
        with pytest.raises(error, match=words):
            env.fold(ids, **options)
        env.session.rollback()
        assert _versions(env) == 2
        lineage = dict(env.session.execute(select(EdgeSample.id, EdgeSample.folded_into)).all())
        assert lineage[good[0]] is None

    refused([*good, 999_999], NotFoundError, "no edge samples 999999")
    refused([*good, bare], InvalidInputError, f"samples {bare} have no label")
    refused([*good, other], InvalidInputError, f"samples {other} are not samples of vib")
    refused([*good, folded], ConflictError, rf"{folded} \(in {DATASET}:2\) are folded already")
    refused([*good, short], InvalidInputError, f"samples {short} do not have the 4 values")
    refused(good, InvalidInputError, "2 samples in one fold; at most 1", max_samples=1)
    refused([], InvalidInputError, "no sample ids")
    with pytest.raises(NotFoundError, match="no dataset"):
        env.fold(good, dataset="nope")
    with pytest.raises(NotFoundError, match="no model"):
        env.fold(good, model="nope")

    version, ids = env.fold([good[1], good[0], good[1]])
    assert (version.version, ids) == (3, tuple(good))
