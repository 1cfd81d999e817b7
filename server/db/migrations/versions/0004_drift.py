"""drift and the retraining loop: judged drift windows, edge samples, retraining policies
and runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_windows",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("device_id", sa.String(length=63), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("window_end", sa.Float(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("max_psi", sa.Float(), nullable=True),
        sa.Column("max_ks", sa.Float(), nullable=True),
        sa.Column("output_psi", sa.Float(), nullable=True),
        sa.Column("mean_confidence", sa.Float(), nullable=True),
        sa.Column("confidence_change", sa.Float(), nullable=True),
        sa.Column(
            "statistics",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_windows")),
        sa.UniqueConstraint("device_id", "seq", name=op.f("uq_drift_windows_device_id_seq")),
    )
    op.create_index(
        "ix_drift_windows_device_end", "drift_windows", ["device_id", "window_end"], unique=False
    )
    op.create_index(
        "ix_drift_windows_model_end", "drift_windows", ["model", "window_end"], unique=False
    )
    op.create_table(
        "edge_samples",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("device_id", sa.String(length=63), nullable=False),
        sa.Column("sample_id", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("window_seq", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("values", sa.LargeBinary(), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=True),
        sa.Column("labelled_at", sa.Float(), nullable=True),
        sa.Column("labelled_by", sa.String(length=63), nullable=True),
        sa.Column("folded_into", sa.String(length=160), nullable=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edge_samples")),
        sa.UniqueConstraint(
            "device_id", "sample_id", name=op.f("uq_edge_samples_device_id_sample_id")
        ),
    )
    op.create_index(
        "ix_edge_samples_model_received", "edge_samples", ["model", "received_at"], unique=False
    )
    op.create_table(
        "retraining_policies",
        sa.Column("model_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(length=63), nullable=False),
        sa.Column("last_triggered_at", sa.Float(), nullable=True),
        sa.Column("last_checked_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_retraining_policies_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_retraining_policies")),
    )
    op.create_table(
        "retraining_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("model_name", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("active_key", sa.String(length=63), nullable=True),
        sa.Column(
            "trigger",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("champion_version", sa.Integer(), nullable=True),
        sa.Column("dataset_name", sa.String(length=63), nullable=True),
        sa.Column("dataset_version", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("challenger_version", sa.Integer(), nullable=True),
        sa.Column(
            "decision",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("rollout_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["training_jobs.id"], name=op.f("fk_retraining_runs_job_id_training_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retraining_runs")),
        sa.UniqueConstraint("active_key", name=op.f("uq_retraining_runs_active_key")),
    )
    op.create_index(
        op.f("ix_retraining_runs_model_name"), "retraining_runs", ["model_name"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_retraining_runs_model_name"), table_name="retraining_runs")
    op.drop_table("retraining_runs")
    op.drop_table("retraining_policies")
    op.drop_index("ix_edge_samples_model_received", table_name="edge_samples")
    op.drop_table("edge_samples")
    op.drop_index("ix_drift_windows_model_end", table_name="drift_windows")
    op.drop_index("ix_drift_windows_device_end", table_name="drift_windows")
    op.drop_table("drift_windows")
