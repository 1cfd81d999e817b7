"""The closed loop, one tick at a time: drift -> samples -> retrain -> compare -> rollout.

APScheduler calls :meth:`RetrainingLoop.tick` every few seconds. For each
model with a policy it either looks for a trigger (when no run is
unfinished) or moves the model's one unfinished run a step:

::

    (trigger) -> waiting_for_labels --enough labels--> training --job done--> ...
        ... -> rejected | failed | awaiting_approval --approve--> promoted
                                 \\--------------automatic-----------/

A run waits for labels because a challenger can only be judged on labelled
rows it never trained on: the fold into a new dataset version happens once
the newest labelled samples would give the comparison its ``min_holdout``
test rows. Promotion approves the challenger and opens a staged rollout
with the policy's rollout policy; the rollout's own gates then guard the
fleet. Every step is audited and raised as an alert; a failure or a lost
comparison leaves the champion where it is and the run says why.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.server import groups, registry, samples
from edgefleet.server.alerts import Alerts
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db.models import (
    DatasetVersion,
    DriftWindow,
    EdgeSample,
    JobState,
    Model,
    ModelVersion,
    RetrainingPolicyRecord,
    RetrainingRun,
    RetrainingState,
    TrainingJob,
    VersionStage,
)
from edgefleet.server.drift import series
from edgefleet.server.errors import InvalidInputError
from edgefleet.server.metrics import Metrics
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.retraining import triggers
from edgefleet.server.retraining.compare import verdict
from edgefleet.server.retraining.policy import Approval, RetrainingPolicy, policy_from_dict
from edgefleet.server.retraining.runs import finish_run, promote, record_policy_time
from edgefleet.server.services import Clock
from edgefleet.server.training import dataset_registry, datasets, jobs
from edgefleet.server.training.scoring import Metric
from edgefleet.shared.errors import EdgefleetError

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "edgefleet"
BASELINE_SAMPLES = 2000
"""Recent reservoir draws a challenger's drift baseline is counted over, at most."""
MIN_BASELINE_SAMPLES = 100
"""Fewer than this and the challenger's baseline comes from its training rows instead."""


@dataclass(frozen=True, slots=True)
class LoopParts:
    sessions: sessionmaker[Session]
    store: ArtifactStore
    catalog: ProfileCatalog
    alerts: Alerts
    metrics: Metrics
    clock: Clock
    wake_training: Callable[[], None] = lambda: None


class RetrainingLoop:
    def __init__(self, parts: LoopParts) -> None:
        self._parts = parts

    def tick(self) -> None:
        """One pass over every model with a policy; one model's failure never stops the rest."""
        with self._parts.sessions() as session:
            models = session.scalars(
                select(Model.name).join(
                    RetrainingPolicyRecord, RetrainingPolicyRecord.model_id == Model.id
                )
            ).all()
        for model in models:
            try:
                with self._parts.sessions() as session:
                    self._step(session, model)
            except Exception:
                logger.exception("retraining: the tick failed for %s", model)

    def _step(self, session: Session, model: str) -> None:
        record = session.scalars(
            select(RetrainingPolicyRecord)
            .join(Model, Model.id == RetrainingPolicyRecord.model_id)
            .where(Model.name == model)
        ).one()
        policy = policy_from_dict(record.policy)
        now = self._parts.clock()
        self._refresh_gauge(session, model)
        run = session.scalars(
            select(RetrainingRun).where(RetrainingRun.active_key == model)
        ).one_or_none()
        if run is None:
            self._look_for_trigger(session, model, record, policy, now)
        elif run.state == RetrainingState.WAITING_FOR_LABELS:
            self._try_to_train(session, run, policy, now)
        elif run.state == RetrainingState.TRAINING:
            self._judge(session, run, policy, now)

    # -- trigger -----------------------------------------------------------------

    def _look_for_trigger(
        self,
        session: Session,
        model: str,
        record: RetrainingPolicyRecord,
        policy: RetrainingPolicy,
        now: float,
    ) -> None:
        seen = triggers.Observations(
            now=now,
            last_triggered_at=record.last_triggered_at,
            last_checked_at=record.last_checked_at,
            recent_scores=self._recent_scores(session, model, policy, record.last_triggered_at),
            group_members=None
            if policy.group is None
            else frozenset(_members(session, policy.group)),
            new_labelled=_unfolded_labelled(session, model),
        )
        fired = triggers.evaluate(policy, seen)
        record_policy_time(record, checked_at=now, triggered_at=now if fired else None)
        if fired is None:
            session.commit()
            return
        champion = _champion(session, model)
        run = RetrainingRun(
            model_name=model,
            state=RetrainingState.WAITING_FOR_LABELS,
            active_key=model,
            trigger={"reason": fired.reason, "message": fired.message, **fired.detail},
            champion_version=None if champion is None else champion.version,
            created_at=now,
            updated_at=now,
        )
        session.add(run)
        session.flush()
        kind = "drift.detected" if fired.reason == "drift" else "retraining.triggered"
        self._parts.alerts.raise_alert(
            session,
            kind=kind,
            model=model,
            message=fired.message,
            detail={"run": run.id, "trigger": run.trigger},
            now=now,
        )
        self._parts.metrics.retraining_runs.labels("triggered").inc()
        if champion is None:
            self._end(
                session, run, RetrainingState.FAILED, "the model has no approved version", now
            )
            return
        session.commit()
        self._try_to_train(session, run, policy, now)

    def _recent_scores(
        self, session: Session, model: str, policy: RetrainingPolicy, since: float | None
    ) -> dict[str, list[float | None]]:
        """Each device's newest windows since the last trigger (oldest first), N at most."""
        if policy.drift is None:
            return {}
        depth = policy.drift.consecutive_windows
        ranked = (
            select(
                DriftWindow.device_id,
                DriftWindow.score,
                DriftWindow.window_end,
                func.row_number()
                .over(partition_by=DriftWindow.device_id, order_by=DriftWindow.window_end.desc())
                .label("rank"),
            )
            .where(DriftWindow.model == model)
            .where(DriftWindow.received_at > (since or float("-inf")))
            .subquery()
        )
        rows = session.execute(
            select(ranked.c.device_id, ranked.c.score)
            .where(ranked.c.rank <= depth)
            .order_by(ranked.c.device_id, ranked.c.window_end)
        ).all()
        found: dict[str, list[float | None]] = {}
        for device_id, score in rows:
            found.setdefault(device_id, []).append(score)
        return found

    # -- labels and training --------------------------------------------------------

    def _try_to_train(
        self, session: Session, run: RetrainingRun, policy: RetrainingPolicy, now: float
    ) -> None:
        try:
            champion = registry.get_version(
                session=session, name=run.model_name, version=run.champion_version or 0
            )
            request = _champion_request(session, champion)
            base = _champion_dataset(session, request, policy)
        except EdgefleetError as err:
            self._end(session, run, RetrainingState.FAILED, f"cannot retrain: {err}", now)
            return
        split = dataset_registry.version_split(base)
        needed = (
            math.ceil(policy.comparison.min_holdout / split.test)
            if policy.data.include_edge_samples
            else 0
        )
        have = _unfolded_labelled(session, run.model_name)
        if have < needed:
            waiting = (
                f"waiting for {needed} labelled edge samples (have {have}): label them with "
                f"`edgefleet samples label` or POST /api/v1/samples/labels"
            )
            if run.reason != waiting:
                run.reason, run.updated_at = waiting, now
                session.commit()
            return
        try:
            job = self._start_job(session, run, policy, champion, request, base, now)
        except EdgefleetError as err:
            session.rollback()
            self._end(session, run, RetrainingState.FAILED, f"could not start training: {err}", now)
            return
        run.state, run.job_id, run.reason, run.updated_at = (
            RetrainingState.TRAINING,
            job.id,
            None,
            now,
        )
        self._parts.alerts.raise_alert(
            session,
            kind="retraining.started",
            model=run.model_name,
            message=f"training a challenger to v{champion.version} as job {job.id} on "
            f"{run.dataset_name} v{run.dataset_version}",
            detail={"run": run.id, "job": job.id},
            now=now,
        )
        session.commit()
        self._parts.wake_training()

    def _start_job(
        self,
        session: Session,
        run: RetrainingRun,
        policy: RetrainingPolicy,
        champion: ModelVersion,
        request: dict[str, Any],
        base: DatasetVersion,
        now: float,
    ) -> TrainingJob:
        dataset = base.dataset.name
        version = base
        if policy.data.include_edge_samples:
            version, _ = samples.fold(
                session=session,
                store=self._parts.store,
                model=run.model_name,
                dataset=dataset,
                sample_ids=None,
                actor=SYSTEM_ACTOR,
                now=now,
                max_samples=policy.data.max_edge_samples,
            )
        run.dataset_name, run.dataset_version = dataset, version.version
        spec = jobs.JobSpec(
            model=run.model_name,
            dataset=dataset,
            dataset_version=version.version,
            recipe=request["recipe"],
            params=dict(champion.metrics.get("lineage", {}).get("params") or request["params"]),
            trials=1,
            seed=int(request["seed"]),
            profiles=tuple(request["profiles"]),
            budget_points=float(request["budget_points"]),
            metric=Metric(str(request["metric"])),
            challenge=jobs.Challenge(
                champion=champion.version,
                retraining_run=run.id,
                edge_weight=policy.data.edge_weight,
                baseline_sha256=self._baseline_inputs(session, run, policy, base),
            ),
        )
        return jobs.create_job(
            session=session, spec=spec, catalog=self._parts.catalog, actor=SYSTEM_ACTOR, now=now
        )

    def _baseline_inputs(
        self,
        session: Session,
        run: RetrainingRun,
        policy: RetrainingPolicy,
        base: DatasetVersion,
    ) -> str | None:
        """Recent reservoir draws from the policy's devices, stored for the job; None if too few.

        Reservoir draws are a uniform sample of what devices saw (hard examples
        are not: they are the least confident), so the challenger's drift
        baseline describes the inputs it will meet. After a drift trigger only
        draws from windows flagged since the previous run's trigger count (the
        windows this trigger looked at): draws from before the shift, or from
        an earlier shift, would blend other inputs into the new baseline, and
        the challenger would then be flagged against its own baseline on the
        inputs it was made for.
        """
        query = (
            select(EdgeSample.values)
            .where(EdgeSample.model == run.model_name, EdgeSample.reason == "reservoir")
            .order_by(EdgeSample.id.desc())
            .limit(BASELINE_SAMPLES)
        )
        if run.trigger.get("reason") == "drift":
            previous = session.scalar(
                select(func.max(RetrainingRun.created_at)).where(
                    RetrainingRun.model_name == run.model_name, RetrainingRun.id < run.id
                )
            )
            query = query.join(
                DriftWindow,
                (DriftWindow.device_id == EdgeSample.device_id)
                & (DriftWindow.seq == EdgeSample.window_seq),
            ).where(
                DriftWindow.flagged.is_(True),
                DriftWindow.received_at > (previous or float("-inf")),
            )
        if policy.group is not None:
            query = query.where(EdgeSample.device_id.in_(_members(session, policy.group)))
        rows = session.scalars(query).all()
        schema = dataset_registry.version_schema(base)
        size = math.prod(schema.shape)
        rows = [r for r in rows if len(r) == size * 4]
        if len(rows) < MIN_BASELINE_SAMPLES:
            return None
        x = np.frombuffer(b"".join(rows), dtype="<f4").reshape(len(rows), *schema.shape)
        unlabelled = datasets.DatasetSchema(
            kind=schema.kind, shape=schema.shape, feature_names=schema.feature_names, labels=()
        )
        data = datasets.to_bytes(datasets.Samples(unlabelled, x.astype(np.float32), None))
        return self._parts.store.put(data).sha256

    # -- judging ------------------------------------------------------------------------

    def _judge(
        self, session: Session, run: RetrainingRun, policy: RetrainingPolicy, now: float
    ) -> None:
        job = session.get(TrainingJob, run.job_id)
        if job is None or job.state in (JobState.QUEUED, JobState.RUNNING):
            return
        if job.state != JobState.SUCCEEDED:
            why = f"training job {job.id} {job.state}: {job.error or 'no reason given'}"
            self._end(session, run, RetrainingState.FAILED, why, now)
            return
        measured = (job.result or {}).get("challenge") or {}
        found = verdict(policy.comparison, measured)
        run.challenger_version = job.model_version
        run.decision = {"measured": measured, **found.numbers()}
        if not found.promote:
            self._end(session, run, RetrainingState.REJECTED, found.reason, now)
            return
        if policy.approval is Approval.MANUAL:
            run.state, run.reason, run.updated_at = (
                RetrainingState.AWAITING_APPROVAL,
                found.reason,
                now,
            )
            self._parts.alerts.raise_alert(
                session,
                kind="retraining.awaiting_approval",
                model=run.model_name,
                message=f"challenger v{run.challenger_version} wins ({found.reason}); "
                "approve it to roll it out",
                detail={"run": run.id, "decision": run.decision},
                now=now,
            )
            session.commit()
            return
        promote(
            session=session,
            run=run,
            policy=policy,
            alerts=self._parts.alerts,
            metrics=self._parts.metrics,
            actor=SYSTEM_ACTOR,
            now=now,
        )

    def _end(
        self, session: Session, run: RetrainingRun, state: RetrainingState, why: str, now: float
    ) -> None:
        finish_run(
            session=session,
            run=run,
            state=state,
            reason=why,
            alerts=self._parts.alerts,
            metrics=self._parts.metrics,
            now=now,
        )

    def _refresh_gauge(self, session: Session, model: str) -> None:
        flagged = series.drift_status(session, model=model).flagged_devices
        self._parts.metrics.drift_flagged_devices.labels(model).set(flagged)


def _members(session: Session, group: str) -> list[str]:
    return groups.members_of(session=session, group=groups.get_group(session=session, name=group))


def _unfolded_labelled(session: Session, model: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(EdgeSample)
            .where(
                EdgeSample.model == model,
                EdgeSample.label.is_not(None),
                EdgeSample.folded_into.is_(None),
            )
        )
        or 0
    )


def _champion(session: Session, model: str) -> ModelVersion | None:
    """The newest approved version: what the fleet is meant to run."""
    return session.scalars(
        select(ModelVersion)
        .join(Model, Model.id == ModelVersion.model_id)
        .where(Model.name == model, ModelVersion.stage == VersionStage.APPROVED)
        .order_by(ModelVersion.version.desc())
        .limit(1)
    ).first()


def _champion_request(session: Session, champion: ModelVersion) -> dict[str, Any]:
    """The request of the job that trained the champion: its recipe, seed, profiles, budget."""
    run = champion.training_run or ""
    job = session.get(TrainingJob, int(run[4:])) if run.startswith("job-") else None
    if job is None or job.request.get("recipe") is None:
        raise InvalidInputError(
            f"v{champion.version} was not trained from a recipe here; there is no recipe to "
            "retrain it with"
        )
    return job.request


def _champion_dataset(
    session: Session, request: dict[str, Any], policy: RetrainingPolicy
) -> DatasetVersion:
    """The newest version of the policy's dataset, or of the one the champion was trained on."""
    name = policy.data.dataset or str(request["dataset"]["name"])
    return dataset_registry.get_version(session=session, name=name)
