"""settlement: passages, stays, per-lot ingest counts, tariffs, statements, signing keys, disputes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UNSTATED = sa.text("statement_seq IS NULL")


def upgrade() -> None:
    op.create_table(
        "passages",
        sa.Column("passage_id", sa.String(36), primary_key=True),
        sa.Column("lot_id", sa.String(64), nullable=False),
        sa.Column("gate_id", sa.String(64), nullable=False),
        sa.Column("direction", sa.SmallInteger, nullable=False),
        sa.Column("plate", sa.String(16), nullable=False),
        sa.Column("color", sa.String(16), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("stay_id", sa.String(36), nullable=False),
        sa.Column("entry_passage_id", sa.String(36), nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("membership_answer_id", sa.String(64), nullable=False),
        sa.Column("occurred_us", sa.BigInteger, nullable=False),
        sa.Column("card_valid_until_us", sa.BigInteger, nullable=True),
        sa.Column("received_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "stays",
        sa.Column("stay_id", sa.String(36), primary_key=True),
        sa.Column("lot_id", sa.String(64), nullable=False),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("plate", sa.String(16), nullable=False),
        sa.Column("color", sa.String(16), nullable=False),
        sa.Column("entry_us", sa.BigInteger, nullable=False),
        sa.Column("exit_us", sa.BigInteger, nullable=False),
        sa.Column("settle_to_us", sa.BigInteger, nullable=False),
        sa.Column("entry_passage_id", sa.String(36), nullable=False),
        sa.Column("exit_passage_id", sa.String(36), nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.Column("statement_seq", sa.BigInteger, nullable=True),
    )
    op.create_index(
        "ix_stays_unstated", "stays", ["lot_id", "exit_us"], sqlite_where=UNSTATED, postgresql_where=UNSTATED
    )
    op.create_table(
        "lot_ingest",
        sa.Column("lot_id", sa.String(64), primary_key=True),
        sa.Column("passages_received", sa.BigInteger, nullable=False),
        sa.Column("last_received_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tariffs",
        sa.Column("lot_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("visit_fee_fen", sa.BigInteger, nullable=False),
        sa.Column("unit_minutes", sa.Integer, nullable=False),
        sa.Column("bands", sa.JSON, nullable=False),
        sa.Column("free_minutes", sa.Integer, nullable=False),
        sa.Column("cap_per_24h_fen", sa.BigInteger, nullable=False),
        sa.Column("max_per_stay_fen", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "statement_schedule",
        sa.Column("lot_id", sa.String(64), primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("issued_through", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "statements",
        sa.Column("statement_id", sa.String(96), primary_key=True),
        sa.Column("lot_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("period_key", sa.String(96), nullable=False),
        sa.Column("period_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("line_count", sa.BigInteger, nullable=False),
        sa.Column("visit_count", sa.BigInteger, nullable=False),
        sa.Column("total_fee_fen", sa.BigInteger, nullable=False),
        sa.Column("file_size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fetch_count", sa.Integer, nullable=False),
        sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("matched_count", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("lot_id", "seq", name="uq_statements_lot_seq"),
        sa.UniqueConstraint("lot_id", "period_key", name="uq_statements_lot_period"),
    )
    op.create_table(
        "statement_chunks",
        sa.Column("statement_id", sa.String(96), primary_key=True),
        sa.Column("chunk_no", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "signing_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("private_key", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "disputes",
        sa.Column("dispute_id", sa.String(40), primary_key=True),
        sa.Column("lot_id", sa.String(64), nullable=False),
        sa.Column("statement_id", sa.String(96), nullable=False),
        sa.Column("stay_id", sa.String(64), nullable=False),
        sa.Column("result", sa.String(24), nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("platform_fee_fen", sa.BigInteger, nullable=False),
        sa.Column("lot_fee_fen", sa.BigInteger, nullable=False),
        sa.Column("note", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("resolution_note", sa.String(512), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("adjusted_in_statement_id", sa.String(96), nullable=True),
        sa.Column("line", sa.JSON, nullable=True),
    )
    op.create_index("ix_disputes_lot_state", "disputes", ["lot_id", "state"])
    op.create_index("ix_disputes_statement", "disputes", ["statement_id"])


def downgrade() -> None:
    op.drop_index("ix_disputes_statement", table_name="disputes")
    op.drop_index("ix_disputes_lot_state", table_name="disputes")
    op.drop_table("disputes")
    op.drop_table("signing_keys")
    op.drop_table("statement_chunks")
    op.drop_table("statements")
    op.drop_table("statement_schedule")
    op.drop_table("tariffs")
    op.drop_table("lot_ingest")
    op.drop_index("ix_stays_unstated", table_name="stays")
    op.drop_table("stays")
    op.drop_table("passages")
