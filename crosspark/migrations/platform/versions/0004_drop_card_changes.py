"""cards: drop card_changes, a change log that was written and pruned but never read.

Deltas are served from ``cards`` (each card once, at the version of its last change); the
``card_version.log_floor`` alone says how far back a lot may resume.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("card_changes")


def downgrade() -> None:
    op.create_table(
        "card_changes",
        sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("card_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
