"""Alembic environment: the engine comes from the caller, never from a config file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from edgefleet.server.db.models import Base

engine: Engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode recreates the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
