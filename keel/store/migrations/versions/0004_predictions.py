"""Served traffic: prediction log segments and labels.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_segments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("segment", sa.String(256), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("first_ms", sa.BigInteger, nullable=False),
        sa.Column("last_ms", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("segment", name="uq_prediction_segments_segment"),
    )
    op.create_index("ix_prediction_segments_model_time", "prediction_segments", ["model", "version", "first_ms"])
    op.create_table(
        "prediction_labels",
        sa.Column("model", sa.String(256), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("prediction_labels")
    op.drop_table("prediction_segments")
