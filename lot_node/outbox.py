"""The passage outbox (DESIGN section 6): passages the gate committed are streamed to the platform
with ``ReportPassages`` and removed only when acknowledged.

Delivery is at-least-once: a passage stays ``PENDING`` until its ack arrives, so a crash, a
platform restart or a cut network only means it is sent again, and the platform's idempotent
ingest answers ``DUPLICATE``. A ``REJECTED`` passage is kept with its reason for an operator and
never sent again by itself. A broken stream is re-opened with exponential backoff and jitter.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import grpc
import structlog

from crosspark.clock import Clock
from crosspark.db import Database
from crosspark.v1 import settlement_pb2, settlement_pb2_grpc
from lot_node import store
from lot_node.convert import DIRECTION_TO_PB, flags_to_pb, identity_to_pb, timestamp
from lot_node.gate import Direction, Flag
from lot_node.retrying import PlatformStream

log = structlog.get_logger("lot_node.outbox")

#: Passages per ReportPassages batch (the platform accepts 1–1000).
BATCH_SIZE = 500
#: How long an idle stream waits for new passages before looking again.
IDLE_POLL_S = 1.0


class StreamBroken(Exception):
    """The platform's stream ended or answered out of turn."""


def passage_to_pb(row: store.PassageRow, lot_id: str) -> settlement_pb2.Passage:
    flags = row.flag_set()
    message = settlement_pb2.Passage(
        passage_id=row.passage_id,
        lot_id=lot_id,
        gate_id=row.gate_id,
        direction=DIRECTION_TO_PB[Direction(row.direction)],
        vehicle=identity_to_pb(row.identity()),
        occurred_at=timestamp(row.occurred_at),
        card_id=row.card_id,
        stay_id=row.stay_id,
        entry_passage_id=row.entry_passage_id,
        flags=flags_to_pb(flags),
        membership_answer_id=row.membership_answer_id,
    )
    if Flag.CARD_ENDED_IN_STAY in flags and row.card_valid_until is not None:
        message.card_valid_until.FromDatetime(row.card_valid_until)
    return message


class OutboxSender(PlatformStream):
    """Streams the outbox to the platform until stopped. ``wake()`` after a commit sends at once.
    The backoff starts afresh once a stream has delivered something."""

    failure_event = "outbox.stream_failed"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        lot_id: str,
        connect: Callable[[], grpc.Channel],
        *,
        reachability: Callable[[bool], None] | None = None,
        batch_size: int = BATCH_SIZE,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 10.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.lot_id = lot_id
        # A fresh channel per stream: gRPC's own reconnect backoff (up to two minutes) would
        # otherwise delay the first stream after the platform comes back.
        self.connect = connect
        self.reachability = reachability or (lambda _ok: None)
        self.batch_size = batch_size
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self._wake = threading.Event()
        self._call: grpc.Future | None = None
        self._stop: threading.Event | None = None
        self.delivered = 0
        self.rejected = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Cut the stream now (the thread's stop event must be set too)."""
        self._wake.set()
        super().stop()

    def _stream(self, stop: threading.Event) -> None:
        """One ReportPassages stream: send a batch, apply its acks, repeat; returns when stopped or
        (to reset the backoff) when the stream breaks after having delivered something."""
        requests: queue.Queue[settlement_pb2.PassageBatch | None] = queue.Queue()

        def outgoing() -> Iterator[settlement_pb2.PassageBatch]:
            while True:
                item = requests.get()
                if item is None:
                    return
                yield item

        channel = self.connect()
        call = settlement_pb2_grpc.SettlementServiceStub(channel).ReportPassages(outgoing())
        self._call = call
        progressed = False
        batch_seq = 0
        try:
            while not stop.is_set():
                with self.db.read_session() as session:
                    pending = store.pending_outbox(session, self.batch_size)
                    depth, oldest = store.outbox_depth(session)
                if not pending:
                    self._wake.wait(IDLE_POLL_S)
                    self._wake.clear()
                    continue
                batch_seq += 1
                # What stays in the outbox once this batch is delivered; its oldest row is at
                # most as old as the oldest now (the batch holds the oldest rows).
                left = depth - len(pending)
                batch = settlement_pb2.PassageBatch(
                    lot_id=self.lot_id,
                    batch_seq=batch_seq,
                    passages=[passage_to_pb(row, self.lot_id) for _, row in pending],
                    outbox_depth=left,
                    outbox_oldest_at=timestamp(oldest) if left > 0 else None,
                )
                requests.put(batch)
                with self.db.session() as session:
                    store.count_attempt(session, [row.passage_id for _, row in pending])
                try:
                    ack = next(call)
                except StopIteration:
                    raise StreamBroken("the platform closed the passage stream") from None
                if ack.batch_seq != batch_seq:
                    raise StreamBroken(f"ack for batch {ack.batch_seq}, expected {batch_seq}")
                self._apply(ack, {row.passage_id for _, row in pending})
                self.reachability(True)
                progressed = True
        except (grpc.RpcError, StreamBroken):
            if stop.is_set():
                return
            if progressed:
                log.info("outbox.stream_restarting")
                return
            raise
        finally:
            requests.put(None)
            self._call = None
            call.cancel()
            channel.close()

    def _apply(self, ack: settlement_pb2.PassageAckBatch, sent: set[str]) -> None:
        now: datetime = self.clock.now()
        delivered = []
        with self.db.session() as session:
            for item in ack.acks:
                if item.passage_id not in sent:
                    continue
                if item.result in (settlement_pb2.ACK_RESULT_ACCEPTED, settlement_pb2.ACK_RESULT_DUPLICATE):
                    delivered.append(item.passage_id)
                elif item.result == settlement_pb2.ACK_RESULT_REJECTED:
                    store.mark_rejected(session, item.passage_id, item.reason or "rejected", now)
                    self.rejected += 1
                    log.error("outbox.rejected", passage_id=item.passage_id, reason=item.reason)
            store.mark_delivered(session, delivered, now)
        self.delivered += len(delivered)
