"""A vendor's lot system talking to the crosspark platform through the generated stubs.

This is the whole integration a lot vendor needs when it does not run crosspark's own lot node:
ask about a vehicle, mirror the card list, report passages, and check statements. It uses only
``grpcio``, the stubs generated from ``protos/`` (``crosspark.v1``) and ``cryptography``.

    python docs/examples/vendor_lot_client.py --platform HOST:PORT --ca ca.pem --lot-id LOT \\
        --token TOKEN --card-hash-key HEX
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import hmac
import io
import uuid
from datetime import UTC, datetime

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.timestamp_pb2 import Timestamp

from crosspark.v1 import cards_pb2, cards_pb2_grpc, common_pb2, settlement_pb2, settlement_pb2_grpc


def timestamp(instant: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(instant.astimezone(UTC))
    return stamp


class VendorLot:
    """One lot's connection to the platform; every call carries the lot's bearer token."""

    def __init__(self, channel: grpc.Channel, lot_id: str, token: str, card_hash_key: bytes) -> None:
        self.lot_id = lot_id
        self.key = card_hash_key
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.cards = cards_pb2_grpc.CardServiceStub(channel)
        self.settlement = settlement_pb2_grpc.SettlementServiceStub(channel)

    # -- membership ----------------------------------------------------------------------------

    def check(self, plate: str, color: int, at: datetime) -> cards_pb2.MembershipAnswer:
        """Online check (patent Fig. 2): is this vehicle a monthly-card vehicle here, now?"""
        return self.cards.CheckMembership(
            cards_pb2.CheckMembershipRequest(
                lot_id=self.lot_id, vehicle=common_pb2.VehicleIdentity(plate=plate, color=color), at=timestamp(at)
            ),
            metadata=self.metadata,
            timeout=0.3,  # the gate's deadline
        )

    def vehicle_hash(self, plate: str, color_name: str) -> bytes:
        """The card list's keyed hash: HMAC-SHA256(key, plate + "|" + colour name in lower case)."""
        return hmac.new(self.key, f"{plate}|{color_name}".encode(), hashlib.sha256).digest()

    def card_snapshot(self) -> tuple[dict[bytes, cards_pb2.CardListEntry], int]:
        """The card list (patent Figs. 3, 6): a snapshot, then (not shown) live deltas on the same
        stream; a real lot keeps the stream open and resumes with ``since_version`` after a restart."""
        entries: dict[bytes, cards_pb2.CardListEntry] = {}
        stream = self.cards.WatchCards(
            cards_pb2.WatchCardsRequest(lot_id=self.lot_id, since_version=0), metadata=self.metadata
        )
        for message in stream:
            body = message.WhichOneof("body")
            if body == "chunk":
                for entry in message.chunk.entries:
                    entries[entry.vehicle_hash] = entry
            elif body == "snapshot_end":
                stream.cancel()
                return entries, message.snapshot_end.version
        raise RuntimeError("card stream ended before its snapshot did")

    # -- passages ------------------------------------------------------------------------------

    def passage(self, direction: int, plate: str, color: int, at: datetime, card_id: str, **more: object):  # type: ignore[no-untyped-def]
        return settlement_pb2.Passage(
            passage_id=str(uuid.uuid4()), lot_id=self.lot_id, gate_id="gate-1", direction=direction,
            vehicle=common_pb2.VehicleIdentity(plate=plate, color=color, source=common_pb2.IDENTITY_SOURCE_CAMERA,
                                               confidence=0.98),
            occurred_at=timestamp(at), card_id=card_id, **more,
        )  # fmt: skip

    def report(self, passages: list[settlement_pb2.Passage]) -> list[settlement_pb2.PassageAck]:
        """Send passages in one batch and wait for their acks. Delivery is at-least-once: resend
        anything not acknowledged; ``DUPLICATE`` means the platform already holds it."""
        batches = iter([settlement_pb2.PassageBatch(lot_id=self.lot_id, batch_seq=1, passages=passages)])
        acks: list[settlement_pb2.PassageAck] = []
        for reply in self.settlement.ReportPassages(batches, metadata=self.metadata):
            acks.extend(reply.acks)
        return acks

    # -- statements ----------------------------------------------------------------------------

    def next_statement(self, after_seq: int) -> settlement_pb2.Statement:
        """Wait for the next statement issued for this lot."""
        stream = self.settlement.WatchStatements(
            settlement_pb2.WatchStatementsRequest(lot_id=self.lot_id, after_seq=after_seq), metadata=self.metadata
        )
        statement = next(iter(stream))
        stream.cancel()
        return statement

    def fetch_verified(self, statement_id: str) -> tuple[settlement_pb2.Statement, bytes]:
        """The statement file, refused unless its SHA-256 and Ed25519 signature check."""
        meta, parts = None, []
        for chunk in self.settlement.FetchStatement(
            settlement_pb2.FetchStatementRequest(statement_id=statement_id), metadata=self.metadata
        ):
            if chunk.WhichOneof("body") == "statement":
                meta = chunk.statement
            else:
                parts.append(chunk.data)
        assert meta is not None
        data = b"".join(parts)
        if hashlib.sha256(data).hexdigest() != meta.sha256:
            raise ValueError(f"{statement_id}: SHA-256 does not match")
        keys = self.settlement.GetSigningKeys(settlement_pb2.GetSigningKeysRequest(), metadata=self.metadata).keys
        key = next(k for k in keys if k.key_id == meta.key_id)
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(meta.signature, data)  # raises if forged
        return meta, data

    @staticmethod
    def lines(data: bytes) -> list[dict[str, str]]:
        """Detail rows of a statement file (see docs/statement-format.md)."""
        text = data.decode("utf-8-sig")
        body = [line for line in text.splitlines() if line and not line.startswith("#")]
        return list(csv.DictReader(io.StringIO("\n".join(body))))

    def reconcile(self, meta: settlement_pb2.Statement, data: bytes, my_fees_fen: dict[str, int]):  # type: ignore[no-untyped-def]
        """Compare each line with the lot's own fee for that stay and submit the result."""
        items, matched = [], 0
        for row in self.lines(data):
            if row["kind"] != "STAY":
                matched += 1
                continue
            platform_fen = round(float(row["fee_yuan"]) * 100)
            mine = my_fees_fen.get(row["stay_id"])
            if mine is None:
                items.append(settlement_pb2.ReconciliationItem(
                    stay_id=row["stay_id"], result=settlement_pb2.LINE_RESULT_UNKNOWN_TO_LOT,
                    line_no=int(row["line_no"]), platform_fee_fen=platform_fen))  # fmt: skip
            elif mine != platform_fen:
                items.append(settlement_pb2.ReconciliationItem(
                    stay_id=row["stay_id"], result=settlement_pb2.LINE_RESULT_FEE_MISMATCH,
                    line_no=int(row["line_no"]), platform_fee_fen=platform_fen, lot_fee_fen=mine))  # fmt: skip
            else:
                matched += 1
        return self.settlement.SubmitReconciliation(
            settlement_pb2.Reconciliation(lot_id=self.lot_id, statement_id=meta.statement_id, sha256=meta.sha256,
                                          items=items, matched_count=matched),
            metadata=self.metadata,
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", required=True)
    parser.add_argument("--ca", required=True, help="the platform's CA certificate (PEM)")
    parser.add_argument("--lot-id", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--card-hash-key", required=True, help="hex, from `crosspark lot register`")
    parser.add_argument("--plate", default="粤B12345")
    args = parser.parse_args()
    with open(args.ca, "rb") as handle:
        channel = grpc.secure_channel(args.platform, grpc.ssl_channel_credentials(handle.read()))
    lot = VendorLot(channel, args.lot_id, args.token, bytes.fromhex(args.card_hash_key))
    answer = lot.check(args.plate, common_pb2.PLATE_COLOR_BLUE, datetime.now(UTC))
    print(args.plate, cards_pb2.MembershipStatus.Name(answer.status), answer.card_id)
    entries, version = lot.card_snapshot()
    print(f"{len(entries)} cards at version {version}; {args.plate} listed:",
          lot.vehicle_hash(args.plate, "blue") in entries)  # fmt: skip


if __name__ == "__main__":
    main()
