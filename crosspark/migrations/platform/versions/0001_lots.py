"""Lots and their credentials.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lots",
        sa.Column("lot_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("vendor", sa.String(64), nullable=False, server_default=""),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("close_delay_seconds", sa.Integer, nullable=False, server_default="3600"),
        sa.Column("membership_deadline_ms", sa.Integer, nullable=False, server_default="300"),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("card_hash_key", sa.LargeBinary(32), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("card_version_held", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("outbox_depth", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("outbox_oldest_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_lots_token_hash", "lots", ["token_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_lots_token_hash", table_name="lots")
    op.drop_table("lots")
