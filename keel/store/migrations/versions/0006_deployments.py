"""Deployments: one row per `keel deploy` (target, stage, model, files with hashes, state).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(256)),
        sa.Column("model_version", sa.Integer),
        sa.Column("model_uri", sa.String(1024), nullable=False),
        sa.Column("bundle_sha256", sa.String(64), nullable=False),
        sa.Column("out_dir", sa.String(4096), nullable=False),
        sa.Column("files", sa.JSON, nullable=False),
        sa.Column("profile", sa.JSON, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("stopped_by", sa.String(256)),
        sa.Column("stopped_at", sa.BigInteger),
    )
    op.create_index("ix_deployments_model", "deployments", ["model_name", "model_version"])


def downgrade() -> None:
    op.drop_index("ix_deployments_model", table_name="deployments")
    op.drop_table("deployments")
