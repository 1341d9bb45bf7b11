"""The lot node: stays, passages and their outbox, payments, the card list, agreed tariffs,
statements received and their reconciliation.

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

Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "lot_stays",
        sa.Column("stay_id", sa.String(36), primary_key=True),
        sa.Column("plate", sa.String(16), nullable=False),
        sa.Column("color", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("card_valid_until", Instant, nullable=True),
        sa.Column("entry_gate", sa.String(64), nullable=False),
        sa.Column("entered_at", Instant, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("exit_passage_id", sa.String(36), nullable=True),
        sa.Column("exited_at", Instant, nullable=True),
        sa.Column("split_at", Instant, nullable=True),
        sa.Column("fee_fen", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_lot_stays_open_vehicle", "lot_stays", ["state", "plate", "color"])
    op.create_index("ix_lot_stays_exited_at", "lot_stays", ["exited_at"])

    op.create_table(
        "lot_passages",
        sa.Column("passage_id", sa.String(36), primary_key=True),
        sa.Column("gate_id", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("plate", sa.String(16), nullable=False),
        sa.Column("color", sa.String(16), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("obu_serial", sa.String(16), nullable=False),
        sa.Column("obu_issuer", sa.String(16), nullable=False),
        sa.Column("vehicle_class", sa.Integer, nullable=False),
        sa.Column("occurred_at", Instant, nullable=False),
        sa.Column("decided_at", Instant, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("membership", sa.String(24), nullable=False),
        sa.Column("card_id", sa.String(64), nullable=False),
        sa.Column("stay_id", sa.String(36), nullable=False),
        sa.Column("entry_passage_id", sa.String(36), nullable=False),
        sa.Column("flags", sa.String(160), nullable=False),
        sa.Column("membership_answer_id", sa.String(64), nullable=False),
        sa.Column("card_valid_until", Instant, nullable=True),
        sa.Column("opened", sa.Boolean, nullable=False),
        sa.Column("fee_due_fen", sa.BigInteger, nullable=False),
        sa.Column("display", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("delivered_at", Instant, nullable=True),
    )
    op.create_index("ux_lot_passages_request", "lot_passages", ["gate_id", "request_id"], unique=True)

    op.create_table(
        "lot_outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("passage_id", sa.String(36), sa.ForeignKey("lot_passages.passage_id"), nullable=False, unique=True),
        sa.Column("enqueued_at", Instant, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("rejected_at", Instant, nullable=True),
    )
    op.create_index("ix_lot_outbox_state_seq", "lot_outbox", ["state", "seq"])

    op.create_table(
        "lot_payments",
        sa.Column("passage_id", sa.String(36), sa.ForeignKey("lot_passages.passage_id"), primary_key=True),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("payment_ref", sa.String(64), nullable=False),
        sa.Column("paid_at", Instant, nullable=False),
    )

    op.create_table(
        "lot_cards",
        sa.Column("card_id", sa.String(64), primary_key=True),
        sa.Column("vehicle_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("valid_from", Instant, nullable=False),
        sa.Column("valid_until", Instant, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("valid_at_lot", sa.Boolean, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_lot_cards_vehicle_hash", "lot_cards", ["vehicle_hash"])

    op.create_table(
        "lot_tariffs",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("effective_from", Instant, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("fetched_at", Instant, nullable=False),
    )

    op.create_table(
        "lot_statements",
        sa.Column("statement_id", sa.String(96), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("file_path", sa.String(512), nullable=False),
        sa.Column("received_at", Instant, nullable=False),
        sa.Column("checked_at", Instant, nullable=True),
        sa.Column("submitted_at", Instant, nullable=True),
        sa.Column("matched_count", sa.BigInteger, nullable=False),
        sa.Column("disputed_count", sa.BigInteger, nullable=False),
        sa.Column("report_csv", sa.String(512), nullable=False),
        sa.Column("report_html", sa.String(512), nullable=False),
    )
    op.create_index("ix_lot_statements_seq", "lot_statements", ["seq"])

    op.create_table(
        "lot_reconciliation_items",
        sa.Column("statement_id", sa.String(96), sa.ForeignKey("lot_statements.statement_id"), primary_key=True),
        sa.Column("stay_id", sa.String(36), primary_key=True),
        sa.Column("result", sa.String(24), nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("platform_fee_fen", sa.BigInteger, nullable=False),
        sa.Column("lot_fee_fen", sa.BigInteger, nullable=False),
        sa.Column("note", sa.String(256), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lot_reconciliation_items")
    op.drop_index("ix_lot_statements_seq", table_name="lot_statements")
    op.drop_table("lot_statements")
    op.drop_table("lot_tariffs")
    op.drop_index("ix_lot_cards_vehicle_hash", table_name="lot_cards")
    op.drop_table("lot_cards")
    op.drop_table("lot_payments")
    op.drop_index("ix_lot_outbox_state_seq", table_name="lot_outbox")
    op.drop_table("lot_outbox")
    op.drop_index("ux_lot_passages_request", table_name="lot_passages")
    op.drop_table("lot_passages")
    op.drop_index("ix_lot_stays_exited_at", table_name="lot_stays")
    op.drop_index("ix_lot_stays_open_vehicle", table_name="lot_stays")
    op.drop_table("lot_stays")
