"""Edge samples: the raw inputs devices keep for retraining, their labels and their lineage.

Ingest fills the ``edge_samples`` table; this is everything done with it
afterwards: list, label (all or nothing, so a half-applied CSV can never
leave a training set with some labels from an old file and some from a
new one), export, and fold the labelled ones into a dataset version. A
sample's label set is the one its model version was trained with, read from
that version's training dataset. File formats and array conversions are
pure and live in :mod:`edgefleet.server.sample_files`.

Folding keeps lineage both ways: the new version's source names the model,
id range and versions the rows came from, and each sample's ``folded_into``
names the version that took it, so it is folded once. The new version
extends the dataset's newest one, whose rows keep their split (see
:meth:`~edgefleet.server.training.datasets.SplitSpec.extended`); the version
and the lineage are written in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from edgefleet.server import audit, registry
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db.models import AuditRecord, DatasetVersion, EdgeSample, ModelVersion
from edgefleet.server.errors import ConflictError, InvalidInputError, NotFoundError
from edgefleet.server.sample_files import (
    MAX_LABEL_LENGTH,
    Export,
    ExportRow,
    as_dataset,
    few,
    fold_source,
)
from edgefleet.server.training import dataset_registry
from edgefleet.shared.messages import SampleReason

MAX_LIST = 1000
MAX_LABELS = 10_000
"""Labels per request: enough for a labelling session, small enough to check in one query."""
MAX_EXPORT = 100_000
MAX_FOLD = 5000


@dataclass(frozen=True, slots=True)
class SampleFilter:
    """Which samples of ``model``; None matches anything."""

    model: str
    version: int | None = None
    device: str | None = None
    labelled: bool | None = None
    reason: SampleReason | None = None
    since: float | None = None


@dataclass(frozen=True, slots=True)
class Labelled:
    """What one labelling request changed."""

    labelled: int
    """Samples that had no label."""
    relabelled: int
    """Samples whose label changed."""
    unchanged: int
    """Samples that had this label already."""
    first_id: int
    last_id: int


def filtered(where: SampleFilter) -> Select[EdgeSample]:
    """The query for ``where``, by id (the keyset every listing pages on)."""
    query = select(EdgeSample).where(EdgeSample.model == where.model)
    if where.version is not None:
        query = query.where(EdgeSample.version == where.version)
    if where.device is not None:
        query = query.where(EdgeSample.device_id == where.device)
    if where.labelled is not None:
        query = query.where(
            EdgeSample.label.is_not(None) if where.labelled else EdgeSample.label.is_(None)
        )
    if where.reason is not None:
        query = query.where(EdgeSample.reason == where.reason.value)
    if where.since is not None:
        query = query.where(EdgeSample.received_at >= where.since)
    return query.order_by(EdgeSample.id)


def list_samples(
    session: Session,
    *,
    model: str,
    version: int | None = None,
    device: str | None = None,
    labelled: bool | None = None,
    reason: SampleReason | None = None,
    since: float | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> Sequence[EdgeSample]:
    """Oldest first, ids above ``after_id``: pass the last id back for the next page."""
    registry.get_model(session=session, name=model)
    where = SampleFilter(model, version, device, labelled, reason, since)
    query = filtered(where).where(EdgeSample.id > after_id).limit(max(1, min(limit, MAX_LIST)))
    return session.scalars(query).all()


def get_sample(session: Session, sample_id: int) -> EdgeSample:
    found = session.get(EdgeSample, sample_id)
    if found is None:
        raise NotFoundError(f"no edge sample {sample_id}")
    return found


def training_dataset(session: Session, version: ModelVersion) -> DatasetVersion | None:
    """The dataset version ``version`` was trained on (matched by content hash), if stored here."""
    if version.dataset_hash is None:
        return None
    return session.scalar(
        select(DatasetVersion)
        .where(DatasetVersion.sha256 == version.dataset_hash)
        .order_by(DatasetVersion.id)
        .limit(1)
    )


def label_set(session: Session, model: str, version: int) -> tuple[str, ...]:
    """The label names ``model`` v``version`` was trained with: the only labels its samples take."""
    found = registry.get_version(session=session, name=model, version=version)
    dataset = training_dataset(session, found)
    if dataset is None:
        raise InvalidInputError(
            f"{model} v{version} names no training dataset stored here, so its label set is "
            "unknown: register versions with the dataset they were trained on",
            reason="no_label_set",
        )
    labels = dataset_registry.version_schema(dataset).labels
    if not labels:
        raise InvalidInputError(
            f"{model} v{version} was trained on unlabelled data "
            f"({dataset.dataset.name} v{dataset.version}): its samples take no labels",
            reason="no_label_set",
        )
    return labels


def _check_request(labels: Mapping[int, str]) -> None:
    if not labels:
        raise InvalidInputError("no labels given", reason="bad_labels")
    if len(labels) > MAX_LABELS:
        raise InvalidInputError(
            f"{len(labels)} labels in one request; at most {MAX_LABELS}: split the file",
            reason="too_many_labels",
        )
    bad = sorted(i for i, label in labels.items() if not 0 < len(label) <= MAX_LABEL_LENGTH)
    if bad:
        raise InvalidInputError(
            f"labels must be 1..{MAX_LABEL_LENGTH} characters; not so for samples {few(bad)}",
            reason="bad_labels",
        )


def _checked_samples(session: Session, labels: Mapping[int, str]) -> list[EdgeSample]:
    """The samples to label, once every id is known and every label is in its model's set."""
    ids = sorted(labels)
    found = {s.id: s for s in session.scalars(select(EdgeSample).where(EdgeSample.id.in_(ids)))}
    unknown = [i for i in ids if i not in found]
    if unknown:
        raise NotFoundError(f"no edge samples {few(unknown)}; nothing was labelled")
    sets: dict[tuple[str, int], tuple[str, ...]] = {}
    outside: dict[tuple[str, int], list[int]] = {}
    for sample_id in ids:
        sample = found[sample_id]
        key = (sample.model, sample.version)
        if key not in sets:
            sets[key] = label_set(session, *key)
        if labels[sample_id] not in sets[key]:
            outside.setdefault(key, []).append(sample_id)
    if outside:
        problems = "; ".join(
            f"samples {few(bad)} of {model} v{version} take only {', '.join(sets[model, version])}"
            for (model, version), bad in sorted(outside.items())
        )
        raise InvalidInputError(
            f"labels outside the label set: {problems}; nothing was labelled",
            reason="unknown_label",
        )
    moved = [i for i in ids if found[i].folded_into is not None and found[i].label != labels[i]]
    if moved:
        raise ConflictError(
            f"samples {few(moved)} are in a dataset version already "
            f"({found[moved[0]].folded_into}, ...) with their old label, which a new label "
            "would not reach; nothing was labelled",
            reason="sample_folded",
        )
    return [found[i] for i in ids]


def apply_labels(session: Session, labels: Mapping[int, str], actor: str, now: float) -> Labelled:
    """Label every sample in ``labels`` or none of them, with one audit record for the request.

    Relabelling is allowed (people correct each other); the record keeps each
    changed sample's old and new label.
    """
    _check_request(labels)
    samples = _checked_samples(session, labels)
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    counts = {"labelled": 0, "relabelled": 0, "unchanged": 0}
    for sample in samples:
        new = labels[sample.id]
        if sample.label == new:
            counts["unchanged"] += 1
            continue
        if sample.label is None:
            counts["labelled"] += 1
        else:
            counts["relabelled"] += 1
            before[str(sample.id)] = sample.label
            after[str(sample.id)] = new
        sample.label, sample.labelled_at, sample.labelled_by = new, now, actor
    done = Labelled(first_id=samples[0].id, last_id=samples[-1].id, **counts)
    per_label: dict[str, int] = {}
    for new in labels.values():
        per_label[new] = per_label.get(new, 0) + 1
    audit.record(
        session=session,
        actor=actor,
        action="samples.label",
        target_type="edge_samples",
        target_id=f"{done.first_id}-{done.last_id}",
        now=now,
        before={"relabelled": before} if before else None,
        after={
            **counts,
            "first_id": done.first_id,
            "last_id": done.last_id,
            "labels": per_label,
            **({"relabelled_to": after} if after else {}),
        },
    )
    session.commit()
    return done


def input_shape(session: Session, model: str, version: int) -> tuple[int, ...] | None:
    """The shape of one input of ``model`` v``version``, from its training dataset's schema."""
    found = registry.get_version(session=session, name=model, version=version)
    dataset = training_dataset(session, found)
    return None if dataset is None else dataset_registry.version_schema(dataset).shape


def export(
    session: Session,
    *,
    model: str,
    version: int | None = None,
    labelled: bool | None = None,
    device: str | None = None,
    reason: SampleReason | None = None,
    since: float | None = None,
    after_id: int = 0,
    limit: int = MAX_EXPORT,
) -> Export:
    """Samples with their values, oldest first; ``after_id`` pages past :data:`MAX_EXPORT`."""
    registry.get_model(session=session, name=model)
    where = SampleFilter(model, version, device, labelled, reason, since)
    query = filtered(where).where(EdgeSample.id > after_id)
    rows = tuple(
        ExportRow(
            id=s.id,
            device=s.device_id,
            model=s.model,
            version=s.version,
            reason=s.reason,
            confidence=s.confidence,
            label=s.label,
            values=s.values,
        )
        for s in session.scalars(query.limit(max(1, min(limit, MAX_EXPORT))))
    )
    shapes = {input_shape(session, model, v) for v in {r.version for r in rows}}
    shape = shapes.pop() if len(shapes) == 1 else None
    return Export(rows=rows, shape=shape)


def _given(
    session: Session, model: str, sample_ids: Sequence[int], max_samples: int
) -> list[EdgeSample]:
    ids = sorted(set(sample_ids))
    if not ids:
        raise InvalidInputError("no sample ids given", reason="nothing_to_fold")
    if len(ids) > max_samples:
        raise InvalidInputError(
            f"{len(ids)} samples in one fold; at most {max_samples}", reason="too_many_samples"
        )
    query = select(EdgeSample).where(EdgeSample.id.in_(ids)).with_for_update()
    found = {s.id: s for s in session.scalars(query)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFoundError(f"no edge samples {few(missing)}; nothing was folded")
    chosen = [found[i] for i in ids]
    for offenders, problem in (
        ([s.id for s in chosen if s.model != model], f"are not samples of {model}"),
        ([s.id for s in chosen if s.label is None], "have no label"),
    ):
        if offenders:
            raise InvalidInputError(f"samples {few(offenders)} {problem}; nothing was folded")
    folded = [f"{s.id} (in {s.folded_into})" for s in chosen if s.folded_into is not None]
    if folded:
        raise ConflictError(
            f"samples {few(folded)} are folded already; nothing was folded",
            reason="sample_folded",
        )
    return chosen


def _pending(session: Session, model: str, max_samples: int) -> list[EdgeSample]:
    query = (
        select(EdgeSample)
        .where(
            EdgeSample.model == model,
            EdgeSample.label.is_not(None),
            EdgeSample.folded_into.is_(None),
        )
        .order_by(EdgeSample.id)
        .limit(max_samples)
        .with_for_update()
    )
    return list(session.scalars(query))


def fold(
    session: Session,
    store: ArtifactStore,
    *,
    model: str,
    dataset: str,
    sample_ids: Sequence[int] | None,
    actor: str,
    now: float,
    max_samples: int = MAX_FOLD,
) -> tuple[DatasetVersion, tuple[int, ...]]:
    """Fold ``sample_ids`` of ``model`` into a new version of ``dataset``; returns it and the ids.

    Without ids, the oldest ``max_samples`` labelled samples not folded yet
    are taken and the rest wait for the next fold. With ids, every one must
    be a labelled, unfolded sample of ``model``, or nothing is folded.
    """
    registry.get_model(session=session, name=model)
    newest = dataset_registry.get_version(session=session, name=dataset)
    layout = dataset_registry.version_schema(newest)
    if not layout.labelled:
        raise InvalidInputError(
            f"dataset {dataset!r} is unlabelled; labelled samples cannot extend it",
            reason="schema_mismatch",
        )
    chosen = (
        _pending(session, model, max_samples)
        if sample_ids is None
        else _given(session, model, sample_ids, max_samples)
    )
    if not chosen:
        raise ConflictError(
            f"nothing to fold: {model} has no labelled samples that are not folded yet",
            reason="nothing_to_fold",
        )
    extra = as_dataset(chosen, layout, dataset)
    source = fold_source(model, chosen)
    lineage = f"{dataset}:{newest.version + 1}"
    for sample in chosen:
        sample.folded_into = lineage
    record = audit.record(
        session=session,
        actor=actor,
        action="samples.fold",
        target_type="dataset",
        target_id=lineage,
        now=now,
        after=source,
    )
    try:
        created = dataset_registry.import_version(
            session=session,
            store=store,
            name=dataset,
            samples=extra,
            split=dataset_registry.version_split(newest),
            source=source,
            actor=actor,
            now=now,
            extend=True,
        ).version
    except Exception:
        session.rollback()
        raise
    _settle(session, chosen, record, f"{dataset}:{created.version}")
    return created, tuple(s.id for s in chosen)


def _settle(
    session: Session, chosen: Sequence[EdgeSample], record: AuditRecord, lineage: str
) -> None:
    """Correct the lineage when an import committed in between took the version number."""
    if record.target_id == lineage:
        return
    for sample in chosen:
        sample.folded_into = lineage
    record.target_id = lineage
    session.commit()
