"""Token use is recorded, but not as a database write on every request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from edgefleet.server import tokens
from edgefleet.server.db import migrate
from edgefleet.server.db.engine import make_engine
from edgefleet.server.db.models import ApiToken, Role

T = 1_767_225_600.0


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def test_last_use_is_written_at_most_once_a_minute(engine: Engine) -> None:
    with Session(engine) as session:
        token, secret = tokens.create_token(
            session=session, name="ops", role=Role.OPERATOR, actor="test", now=T
        )
        session.commit()
        seen: list[float | None] = []
        for now in (T + 1, T + 30, T + 61.5, T + 62):
            tokens.authenticate(session=session, secret=secret, now=now)
            # Nothing to write means nothing in the session to flush: no write lock taken.
            seen.append(token.last_used_at)
            dirty = bool(session.dirty)
            session.commit()
            seen.append(float(dirty))
        stored = session.get(ApiToken, token.id)
        assert stored is not None
    assert seen == [T + 1, 1.0, T + 1, 0.0, T + 61.5, 1.0, T + 61.5, 0.0]
    assert stored.last_used_at == T + 61.5


def test_a_dashboard_session_marks_its_token_used_the_same_way(engine: Engine) -> None:
    with Session(engine) as session:
        token, _secret = tokens.create_token(
            session=session, name="viewer", role=Role.VIEWER, actor="test", now=T
        )
        session.commit()
        for now in (T + 5, T + 20):
            principal = tokens.authenticate_session(
                session=session, token_id=token.id, name="viewer", now=now
            )
            assert principal.role is Role.VIEWER
        assert token.last_used_at == T + 5
