"""Governance: model tags, users and API tokens, promotion requests, model cards, version artifacts.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NAME = sa.String(256)
USER = sa.String(256)
MS = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "registered_model_tags",
        sa.Column("name", NAME, sa.ForeignKey("registered_models.name",
                                              name="fk_registered_model_tags_name_registered_models"),
                  primary_key=True),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("name", USER, primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_by", USER, nullable=False),
        sa.Column("created_at", MS, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user", USER, sa.ForeignKey("users.name", name="fk_api_tokens_user_users"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_by", USER, nullable=False),
        sa.Column("created_at", MS, nullable=False),
        sa.Column("expires_at", MS),
        sa.Column("revoked_at", MS),
        sa.Column("revoked_by", USER),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_user", "api_tokens", ["user"])
    op.create_table(
        "promotion_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", NAME, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("alias", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requester", USER, nullable=False),
        sa.Column("requested_at", MS, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("checks", sa.JSON, nullable=False),
        sa.Column("checks_passed", sa.Boolean, nullable=False),
        sa.Column("decided_by", USER),
        sa.Column("decided_at", MS),
        sa.Column("reason", sa.Text),
        sa.Column("decision_checks", sa.JSON),
        sa.Column("previous_version", sa.Integer),
        sa.ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"],
                                name="fk_promotion_requests_name_model_versions"),
    )
    op.create_index("ix_promotion_requests_name_status", "promotion_requests", ["name", "status"])
    op.create_table(
        "model_cards",
        sa.Column("name", NAME, sa.ForeignKey("registered_models.name", name="fk_model_cards_name_registered_models"),
                  primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("updated_by", USER, nullable=False),
        sa.Column("updated_at", MS, nullable=False),
    )
    op.create_table(
        "version_artifacts",
        sa.Column("name", NAME, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", MS, nullable=False),
        sa.Column("created_by", USER, nullable=False),
        sa.Column("created_at", MS, nullable=False),
        sa.ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"],
                                name="fk_version_artifacts_name_model_versions"),
    )


def downgrade() -> None:
    for table in ("version_artifacts", "model_cards", "promotion_requests", "api_tokens", "users",
                  "registered_model_tags"):
        op.drop_table(table)
