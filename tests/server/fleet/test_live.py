"""The live stream's fingerprint on SQLite and PostgreSQL: which writes move which topic."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import insert, update
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.server.db import migrate
from edgefleet.server.db.engine import make_engine
from edgefleet.server.db.models import (
    Model,
    ModelVersion,
    RetrainingPolicyRecord,
    RetrainingRun,
    VersionStage,
)
from edgefleet.server.fleet.changes import changed_topics
from edgefleet.server.fleet.live import fingerprint

T = 1_767_225_600.0


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    yield sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def model_id(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        model = Model(name="vib", description="", created_at=T)
        session.add(model)
        session.flush()
        return model.id


def test_a_retraining_run_or_policy_change_moves_only_its_topic(
    sessions: sessionmaker[Session], model_id: int
) -> None:
    with sessions.begin() as session:
        session.add(
            RetrainingPolicyRecord(
                model_id=model_id, policy={}, updated_at=T, updated_by="op", last_checked_at=T
            )
        )
    before = fingerprint(sessions)
    assert "retraining" in before

    with sessions.begin() as session:
        session.execute(update(RetrainingPolicyRecord).values(last_checked_at=T + 30))
    assert changed_topics(before, fingerprint(sessions)) == []

    with sessions.begin() as session:
        session.execute(
            insert(RetrainingRun).values(
                model_name="vib", state="awaiting_approval", trigger={}, created_at=T, updated_at=T
            )
        )
    after_run = fingerprint(sessions)
    assert changed_topics(before, after_run) == ["retraining"]

    with sessions.begin() as session:
        session.execute(update(RetrainingRun).values(state="declined", updated_at=T + 60))
    after_decision = fingerprint(sessions)
    assert changed_topics(after_run, after_decision) == ["retraining"]

    with sessions.begin() as session:
        session.execute(update(RetrainingPolicyRecord).values(updated_at=T + 90))
    assert changed_topics(after_decision, fingerprint(sessions)) == ["retraining"]


def test_a_new_version_or_a_promotion_moves_the_models_topic(
    sessions: sessionmaker[Session], model_id: int
) -> None:
    before = fingerprint(sessions)

    with sessions.begin() as session:
        session.add(
            ModelVersion(
                model_id=model_id,
                version=1,
                stage=VersionStage.CANDIDATE,
                metrics={},
                quantization={},
                created_at=T,
                created_by="op",
            )
        )
    added = fingerprint(sessions)
    assert changed_topics(before, added) == ["models"]

    with sessions.begin() as session:
        session.execute(update(ModelVersion).values(stage=VersionStage.APPROVED))
    assert changed_topics(added, fingerprint(sessions)) == ["models"]
