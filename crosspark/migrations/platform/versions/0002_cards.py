"""cards: monthly cards, renewals, the global card version and its change log; lot stream columns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cards",
        sa.Column("card_id", sa.String(40), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("request_digest", sa.String(64), nullable=False, server_default=""),
        sa.Column("plate", sa.String(16), nullable=False),
        sa.Column("color", sa.String(16), nullable=False),
        sa.Column("holder_name", sa.String(64), nullable=False),
        sa.Column("holder_phone", sa.String(24), nullable=False),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("months", sa.Integer, nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scope", sa.Text, nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cancel_reason", sa.String(256), nullable=False, server_default=""),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("request_id", name="uq_cards_request_id"),
        sa.UniqueConstraint("version", name="uq_cards_version"),
    )
    op.create_index("ix_cards_vehicle", "cards", ["plate", "color"])
    op.create_table(
        "card_renewals",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("card_id", sa.String(40), nullable=False),
        sa.Column("months", sa.Integer, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_card_renewals_card_id", "card_renewals", ["card_id"])
    version = op.create_table(
        "card_version",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("log_floor", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0, "log_floor": 0}])
    op.create_table(
        "card_changes",
        sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("card_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("lots") as batch:
        batch.add_column(sa.Column("card_stream_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("snapshot_required", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("lots") as batch:
        batch.drop_column("snapshot_required")
        batch.drop_column("card_stream_seen_at")
    op.drop_table("card_changes")
    op.drop_table("card_version")
    op.drop_index("ix_card_renewals_card_id", table_name="card_renewals")
    op.drop_table("card_renewals")
    op.drop_index("ix_cards_vehicle", table_name="cards")
    op.drop_table("cards")
