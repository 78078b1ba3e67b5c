"""Pipelines and retraining: pipeline runs, steps, the step cache, gate decisions, triggers.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.String(32)


def _run_fk(table: str, column: str) -> sa.ForeignKey:
    return sa.ForeignKey("runs.id", name=f"fk_{table}_{column}_runs")


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        sa.Column("run_id", ID, _run_fk("pipeline_runs", "run_id"), primary_key=True),
        sa.Column("pipeline", sa.String(256), nullable=False),
        sa.Column("file", sa.String(1024), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("datasets", sa.JSON, nullable=False),
        sa.Column("record_sha256", sa.String(64), nullable=False),
        sa.Column("lock_sha256", sa.String(64), nullable=False),
        sa.Column("executor", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("outputs", sa.JSON),
        sa.Column("replay_of", ID),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("ended_at", sa.BigInteger),
    )
    op.create_index("ix_pipeline_runs_pipeline", "pipeline_runs", ["pipeline"])
    op.create_table(
        "pipeline_steps",
        sa.Column("pipeline_run_id", ID, _run_fk("pipeline_steps", "pipeline_run_id"), primary_key=True),
        sa.Column("step", sa.String(256), primary_key=True),
        sa.Column("run_id", ID, _run_fk("pipeline_steps", "run_id"), nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "pipeline_cache",
        sa.Column("cache_key", sa.String(64), primary_key=True),
        sa.Column("step", sa.String(256), nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("run_id", ID, _run_fk("pipeline_cache", "run_id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "gate_decisions",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("champion_version", sa.Integer),
        sa.Column("blessed", sa.Boolean, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("checks", sa.JSON, nullable=False),
        sa.Column("promotion_request_id", ID),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"],
                                name="fk_gate_decisions_name_model_versions"),
    )
    op.create_index("ix_gate_decisions_name_version", "gate_decisions", ["name", "version"])
    op.create_table(
        "triggers",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("action", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("name", name="uq_triggers_name"),
    )
    op.create_table(
        "trigger_firings",
        sa.Column("id", ID, primary_key=True),
        sa.Column("trigger_id", ID, sa.ForeignKey("triggers.id", name="fk_trigger_firings_trigger_id_triggers"),
                  nullable=False),
        sa.Column("dedupe_key", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.JSON, nullable=False),
        sa.Column("fired_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger),
        sa.UniqueConstraint("trigger_id", "dedupe_key", name="uq_trigger_firings_trigger_id_dedupe_key"),
    )


def downgrade() -> None:
    for name in ("trigger_firings", "triggers", "gate_decisions", "pipeline_cache", "pipeline_steps",
                 "pipeline_runs"):
        op.drop_table(name)
