"""Initial schema: tracking, datasets, artifacts, audit chain.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(32)
KEY = sa.String(250)
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("name", name="uq_experiments_name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id", name="fk_runs_experiment_id_experiments"), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", sa.BigInteger, nullable=False),
        sa.Column("end_time", sa.BigInteger),
        sa.Column("user", sa.String(256), nullable=False),
        sa.Column("source_commit", sa.String(64)),
        sa.Column("source_dirty", sa.Boolean),
        sa.Column("entry_point", sa.String(1024)),
        sa.Column("parent_run_id", ID, sa.ForeignKey("runs.id", name="fk_runs_parent_run_id_runs")),
    )
    op.create_index("ix_runs_experiment_id", "runs", ["experiment_id"])
    op.create_index("ix_runs_parent_run_id", "runs", ["parent_run_id"])
    # Tables keyed by (run_id, key) are clustered on that key in SQLite
    # (WITHOUT ROWID): one b-tree instead of two, fewer pages per commit.
    for name in ("params", "tags"):
        op.create_table(
            name,
            sa.Column("run_id", ID, sa.ForeignKey("runs.id", name=f"fk_{name}_run_id_runs"), primary_key=True),
            sa.Column("key", KEY, primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
            sqlite_with_rowid=False,
        )
    op.create_table(
        "metric_chunks",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("run_id", ID, sa.ForeignKey("runs.id", name="fk_metric_chunks_run_id_runs"), nullable=False),
        sa.Column("key", KEY, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("first_step", sa.BigInteger, nullable=False),
        sa.Column("last_step", sa.BigInteger, nullable=False),
        sa.Column("steps", sa.LargeBinary, nullable=False),
        sa.Column("vals", sa.LargeBinary, nullable=False),
        sa.Column("timestamps", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_metric_chunks_run_id_key", "metric_chunks", ["run_id", "key"])
    op.create_table(
        "latest_metrics",
        sa.Column("run_id", ID, sa.ForeignKey("runs.id", name="fk_latest_metrics_run_id_runs"), primary_key=True),
        sa.Column("key", KEY, primary_key=True),
        sa.Column("value", sa.Float(precision=53)),
        sa.Column("is_nan", sa.Boolean, nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_latest_metrics_key_value", "latest_metrics", ["key", "value"])
    op.create_table(
        "artifacts",
        sa.Column("run_id", ID, sa.ForeignKey("runs.id", name="fk_artifacts_run_id_runs"), primary_key=True),
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_artifacts_sha256", "artifacts", ["sha256"])
    op.create_table(
        "datasets",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("source", sa.String(2048)),
        sa.Column("schema", sa.JSON, nullable=False),
        sa.Column("num_rows", sa.BigInteger, nullable=False),
        sa.Column("profile", sa.JSON, nullable=False),
        sa.Column("data_sha256", sa.String(64)),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("name", "digest", name="uq_datasets_name_digest"),
    )
    op.create_table(
        "run_inputs",
        sa.Column("run_id", ID, sa.ForeignKey("runs.id", name="fk_run_inputs_run_id_runs"), primary_key=True),
        sa.Column("dataset_id", ID, sa.ForeignKey("datasets.id", name="fk_run_inputs_dataset_id_datasets"), primary_key=True),
        sa.Column("context", sa.String(64), primary_key=True),
    )
    op.create_table(
        "audit_events",
        sa.Column("seq", BIGINT_PK, primary_key=True, autoincrement=False),  # SQLite: the rowid itself
        sa.Column("time", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(256), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_events_object", "audit_events", ["object_type", "object_id"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    # Genesis: the first event's prev_hash is 64 zeros.
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    for name in (
        "audit_head", "audit_events", "run_inputs", "datasets", "artifacts",
        "latest_metrics", "metric_chunks", "tags", "params", "runs", "experiments",
    ):
        op.drop_table(name)
