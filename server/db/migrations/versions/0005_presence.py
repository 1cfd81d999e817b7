"""presence roll-up: distinct reporting devices per minute, its watermark, and the
telemetry index that recounts a minute

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_telemetry_start_end_device",
        "telemetry",
        ["window_start", "window_end", "device_id"],
        unique=False,
    )
    op.create_table(
        "presence_minutes",
        sa.Column("start", sa.Float(), autoincrement=False, nullable=False),
        sa.Column("reporting", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("start", name=op.f("pk_presence_minutes")),
    )
    marks = op.create_table(
        "rollup_marks",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("longest_window", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rollup_marks")),
    )
    op.bulk_insert(marks, [{"name": "presence", "last_id": 0, "longest_window": 0.0}])


def downgrade() -> None:
    op.drop_table("rollup_marks")
    op.drop_table("presence_minutes")
    op.drop_index("ix_telemetry_start_end_device", table_name="telemetry")
