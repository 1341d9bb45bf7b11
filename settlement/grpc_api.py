"""gRPC entry points of settlement: thin servicers that convert messages, call one service function
and convert the result back. Domain errors become status codes in the interceptor (crosspark.rpc)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from crosspark.auth import Role, require_lot
from crosspark.errors import InvalidArgument, PermissionDenied
from crosspark.rpc import principal_of
from crosspark.server import Registration
from crosspark.v1 import common_pb2, settlement_pb2, settlement_pb2_grpc
from settlement import issuing, service
from settlement.domain import MAX_BATCH, Decision, Passage
from settlement.ingest import PassageIngest
from settlement.store import DisputeRow, StatementRow
from settlement.tariff import Band, Tariff, TariffError, TariffKind

if TYPE_CHECKING:
    from crosspark.platform import PlatformContext

log = structlog.get_logger("settlement.grpc")

pb = settlement_pb2
_COLOR_NAMES = {
    common_pb2.PLATE_COLOR_BLUE: "blue",
    common_pb2.PLATE_COLOR_YELLOW: "yellow",
    common_pb2.PLATE_COLOR_BLACK: "black",
    common_pb2.PLATE_COLOR_WHITE: "white",
    common_pb2.PLATE_COLOR_GREEN: "green",
    common_pb2.PLATE_COLOR_YELLOW_GREEN: "yellow_green",
    common_pb2.PLATE_COLOR_BLUE_WHITE: "blue_white",
}
_COLOR_CODES = {name: code for code, name in _COLOR_NAMES.items()}
_SOURCE_NAMES = {
    common_pb2.IDENTITY_SOURCE_CAMERA: "camera",
    common_pb2.IDENTITY_SOURCE_ETC: "etc",
    common_pb2.IDENTITY_SOURCE_MANUAL: "manual",
}
_PERIOD_CODES = {
    "PER_EXIT": common_pb2.SETTLEMENT_PERIOD_PER_EXIT,
    "DAILY": common_pb2.SETTLEMENT_PERIOD_DAILY,
    "WEEKLY": common_pb2.SETTLEMENT_PERIOD_WEEKLY,
    "MONTHLY": common_pb2.SETTLEMENT_PERIOD_MONTHLY,
}
_KIND_CODES = {TariffKind.PER_VISIT: pb.TARIFF_KIND_PER_VISIT, TariffKind.PER_TIME: pb.TARIFF_KIND_PER_TIME}
_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
_RESULT_NAMES = {
    pb.LINE_RESULT_MATCHED: "MATCHED",
    pb.LINE_RESULT_FEE_MISMATCH: "FEE_MISMATCH",
    pb.LINE_RESULT_MISSING_IN_STATEMENT: "MISSING_IN_STATEMENT",
    pb.LINE_RESULT_UNKNOWN_TO_LOT: "UNKNOWN_TO_LOT",
}
_RESULT_CODES = {name: code for code, name in _RESULT_NAMES.items()}
_DISPUTE_STATES = {
    "OPEN": pb.DISPUTE_STATE_OPEN,
    "ACCEPTED": pb.DISPUTE_STATE_ACCEPTED,
    "REJECTED": pb.DISPUTE_STATE_REJECTED,
}
_DISPUTE_STATE_NAMES = {code: name for name, code in _DISPUTE_STATES.items()}
#: Batches of one ReportPassages stream handed to the writer before their acks are sent.
REPORT_AHEAD = 8
#: How often a WatchStatements stream looks for statements other replicas issued.
WATCH_POLL_SECONDS = 1.0


# ---------------------------------------------------------------------------------------- conversions


def _us(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def _instant(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def _ts(instant: datetime | None) -> Timestamp | None:
    if instant is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(instant)
    return ts


def passage_of(message: pb.Passage, lot_id: str) -> Passage:
    """The domain passage of a reported one (ids are taken as sent: canonical UUIDs are lower-case).
    Each field is read once (reading a protobuf field builds a Python object) and the flags only
    when there are some: this runs for every passage ingested."""
    vehicle = message.vehicle
    occurred = message.occurred_at
    flags = 0
    if message.flags:
        for flag in message.flags:
            flags |= 1 << flag
    return Passage(  # positional, for the same reason
        message.passage_id,
        message.lot_id or lot_id,
        message.gate_id,
        message.direction,
        vehicle.plate,
        _COLOR_NAMES.get(vehicle.color, ""),
        _SOURCE_NAMES.get(vehicle.source, "manual"),
        occurred.seconds * 1_000_000 + occurred.nanos // 1000,
        message.card_id,
        message.stay_id,
        message.entry_passage_id,
        flags,
        message.membership_answer_id,
        _us(message.card_valid_until) if message.HasField("card_valid_until") else None,
    )


def ack_batch(batch_seq: int, passages: Sequence[Passage], decisions: Sequence[Decision]) -> pb.PassageAckBatch:
    """The acks of a batch, in its order. Fields are set one by one: with the upb runtime that is
    about three times cheaper than keyword arguments, and this runs for every passage ingested."""
    acks = pb.PassageAckBatch(batch_seq=batch_seq)
    add = acks.acks.add
    for passage, decision in zip(passages, decisions, strict=True):
        ack = add()
        ack.passage_id = passage.passage_id
        ack.result = decision.ack  # type: ignore[assignment]
        if decision.reason:
            ack.reason = decision.reason
    return acks


def tariff_from_message(message: pb.Tariff) -> Tariff:
    kind = _KINDS.get(message.kind)
    if kind is None:
        raise InvalidArgument.field("tariff.kind", "must be PER_VISIT or PER_TIME")
    if not message.HasField("effective_from"):
        raise InvalidArgument.field("tariff.effective_from", "is required")
    try:
        return Tariff(
            kind=kind,
            visit_fee_fen=message.visit_fee_fen,
            unit_minutes=message.unit_minutes or 60,
            bands=tuple(Band.parse(b.start, b.unit_fee_fen, f"bands[{i}]") for i, b in enumerate(message.bands)),
            free_minutes=message.free_minutes,
            cap_per_24h_fen=message.cap_per_24h_fen,
            max_per_stay_fen=message.max_per_stay_fen,
            effective_from=_instant(message.effective_from),
            lot_id=message.lot_id,
        )
    except TariffError as exc:
        raise InvalidArgument.field(f"tariff.{exc.field}", exc.description) from None


def tariff_message(tariff: Tariff, created_at: datetime | None) -> pb.Tariff:
    return pb.Tariff(
        lot_id=tariff.lot_id,
        version=tariff.version,
        effective_from=_ts(tariff.effective_from),
        kind=_KIND_CODES[tariff.kind],
        visit_fee_fen=tariff.visit_fee_fen,
        unit_minutes=tariff.unit_minutes if tariff.kind is TariffKind.PER_TIME else 0,
        bands=[pb.TariffBand(start=b.start, unit_fee_fen=b.unit_fee_fen) for b in tariff.bands],
        free_minutes=tariff.free_minutes,
        cap_per_24h_fen=tariff.cap_per_24h_fen,
        max_per_stay_fen=tariff.max_per_stay_fen,
        created_at=_ts(created_at),
    )


def statement_message(row: StatementRow) -> pb.Statement:
    return pb.Statement(
        statement_id=row.statement_id,
        lot_id=row.lot_id,
        seq=row.seq,
        period=_PERIOD_CODES[row.period],
        period_from=_ts(row.period_from),
        period_to=_ts(row.period_to),
        time_zone=row.time_zone,
        issued_at=_ts(row.issued_at),
        line_count=row.line_count,
        visit_count=row.visit_count,
        total_fee_fen=row.total_fee_fen,
        file_size=row.file_size,
        sha256=row.sha256,
        signature=row.signature,
        key_id=row.key_id,
        status=f"STATEMENT_STATUS_{row.status}",
        fetched_at=_ts(row.fetched_at),
    )


def dispute_message(row: DisputeRow) -> pb.Dispute:
    return pb.Dispute(
        dispute_id=row.dispute_id,
        lot_id=row.lot_id,
        statement_id=row.statement_id,
        item=pb.ReconciliationItem(
            stay_id=row.stay_id,
            result=_RESULT_CODES[row.result],
            line_no=row.line_no,
            platform_fee_fen=row.platform_fee_fen,
            lot_fee_fen=row.lot_fee_fen,
            note=row.note,
        ),
        state=_DISPUTE_STATES[row.state],
        resolution_note=row.resolution_note,
        opened_at=_ts(row.opened_at),
        resolved_at=_ts(row.resolved_at),
        adjusted_in_statement_id=row.adjusted_in_statement_id or "",
    )


# ---------------------------------------------------------------------------------------- servicer


class SettlementServicer(settlement_pb2_grpc.SettlementServiceServicer):
    def __init__(self, ctx: PlatformContext) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.clock = ctx.clock
        self.keys = service.SigningKeys(ctx.db, ctx.clock)
        self.notifier = service.StatementNotifier()
        self.wake_scheduler = threading.Event()
        self.ingest = PassageIngest(ctx.db, ctx.clock, ctx.stop_event, on_stays=lambda _lots: self.wake_scheduler.set())

    def ReportPassages(self, request_iterator: Iterator[pb.PassageBatch], context: Any) -> Iterator[pb.PassageAckBatch]:
        """Acks in the order of the batches. A reader thread takes the stream's batches and hands
        them to the writer as they come, so the batches a lot keeps in flight are committed
        together; acks are sent as each batch's commit completes."""
        principal = principal_of(context)
        pending: queue.Queue[tuple[int, Any] | BaseException | None] = queue.Queue(REPORT_AHEAD)

        def hand_over(item: tuple[int, Any] | BaseException | None) -> bool:
            while context.is_active() and not self.ctx.stop_event.is_set():
                try:
                    pending.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                for batch in request_iterator:
                    require_lot(principal, batch.lot_id)
                    if not 1 <= len(batch.passages) <= MAX_BATCH:
                        raise InvalidArgument.field(
                            "passages", f"a batch holds 1–{MAX_BATCH} passages, not {len(batch.passages)}"
                        )
                    passages = [passage_of(p, batch.lot_id) for p in batch.passages]
                    oldest = _us(batch.outbox_oldest_at) if batch.HasField("outbox_oldest_at") else None
                    job = self.ingest.enqueue(batch.lot_id, passages, batch.outbox_depth, oldest)
                    if not hand_over((batch.batch_seq, job)):
                        return
            except BaseException as exc:  # raised to the caller, in order, after the acks before it
                hand_over(exc)
            else:
                hand_over(None)

        threading.Thread(target=read, name="report-passages", daemon=True).start()
        while True:
            try:
                item = pending.get(timeout=0.5)
            except queue.Empty:
                if context.is_active() and not self.ctx.stop_event.is_set():
                    continue
                return
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            batch_seq, job = item
            yield ack_batch(batch_seq, job.passages, self.ingest.wait(job))

    def PutTariff(self, request: pb.PutTariffRequest, context: Any) -> pb.Tariff:
        tariff, created_at = service.put_tariff(self.db, self.clock, tariff_from_message(request.tariff))
        return tariff_message(tariff, created_at)

    def GetTariff(self, request: pb.GetTariffRequest, context: Any) -> pb.GetTariffResponse:
        require_lot(principal_of(context), request.lot_id)
        at = _instant(request.at) if request.HasField("at") else None
        found = service.get_tariffs(self.db, request.lot_id, at)
        return pb.GetTariffResponse(tariffs=[tariff_message(t, created) for t, created in found])

    def IssueStatements(self, request: pb.IssueStatementsRequest, context: Any) -> pb.IssueStatementsResponse:
        issued = self.issue(_instant(request.as_of) if request.HasField("as_of") else None, request.lot_id or None)
        return pb.IssueStatementsResponse(statements=[statement_message(r) for r in issued])

    def issue(self, as_of: datetime | None, lot_id: str | None = None) -> list[StatementRow]:
        now = self.clock.now()
        issued = issuing.issue_due(self.db, self.keys.current(), as_of or now, now, lot_id)
        if issued:
            self.notifier.notify()
        return issued

    def ListStatements(self, request: pb.ListStatementsRequest, context: Any) -> pb.ListStatementsResponse:
        principal = principal_of(context)
        if principal.role is not Role.ADMIN or request.lot_id:
            require_lot(principal, request.lot_id)
        rows, token = service.list_statements(self.db, request.lot_id, request.page.page_size, request.page.page_token)
        return pb.ListStatementsResponse(statements=[statement_message(r) for r in rows], next_page_token=token)

    def WatchStatements(self, request: pb.WatchStatementsRequest, context: Any) -> Iterator[pb.Statement]:
        require_lot(principal_of(context), request.lot_id)
        after = request.after_seq
        while context.is_active() and not self.ctx.stop_event.is_set():
            for row in service.statements_after(self.db, request.lot_id, after):
                yield statement_message(row)
                after = row.seq
            self.notifier.wait(WATCH_POLL_SECONDS)

    def FetchStatement(self, request: pb.FetchStatementRequest, context: Any) -> Iterator[pb.StatementChunk]:
        principal = principal_of(context)
        row = service.get_statement(self.db, request.statement_id)
        if principal.role is not Role.ADMIN and principal.lot_id != row.lot_id:
            raise PermissionDenied(f"statement {request.statement_id!r} is not a statement of lot {principal.lot_id!r}")
        yield pb.StatementChunk(statement=statement_message(row))
        for data in service.statement_chunks(self.db, row.statement_id):
            yield pb.StatementChunk(data=data)
        if principal.role is Role.LOT:
            service.record_fetch(self.db, self.clock, row.statement_id)

    def SubmitReconciliation(self, request: pb.Reconciliation, context: Any) -> pb.ReconciliationReceipt:
        require_lot(principal_of(context), request.lot_id)
        items = [
            service.ReconciliationItem(
                stay_id=i.stay_id,
                result=_RESULT_NAMES.get(i.result, ""),
                line_no=i.line_no,
                platform_fee_fen=i.platform_fee_fen,
                lot_fee_fen=i.lot_fee_fen,
                note=i.note,
            )
            for i in request.items
        ]
        statement, disputes = service.submit_reconciliation(
            self.db, self.clock, request.lot_id, request.statement_id, request.sha256, items, request.matched_count
        )
        return pb.ReconciliationReceipt(
            statement=statement_message(statement), disputes=[dispute_message(d) for d in disputes]
        )

    def ListDisputes(self, request: pb.ListDisputesRequest, context: Any) -> pb.ListDisputesResponse:
        state = _DISPUTE_STATE_NAMES.get(request.state, "")
        rows, token = service.list_disputes(
            self.db, request.lot_id, state, request.page.page_size, request.page.page_token
        )
        return pb.ListDisputesResponse(disputes=[dispute_message(r) for r in rows], next_page_token=token)

    def ResolveDispute(self, request: pb.ResolveDisputeRequest, context: Any) -> pb.Dispute:
        if request.decision == pb.DISPUTE_DECISION_UNSPECIFIED:
            raise InvalidArgument.field("decision", "must be ACCEPT_LOT or KEEP_PLATFORM")
        row = service.resolve_dispute(
            self.db, self.clock, request.dispute_id, request.decision == pb.DISPUTE_DECISION_ACCEPT_LOT, request.note
        )
        return dispute_message(row)

    def GetSigningKeys(self, request: pb.GetSigningKeysRequest, context: Any) -> pb.GetSigningKeysResponse:
        return pb.GetSigningKeysResponse(
            keys=[
                pb.SigningKey(key_id=k.key_id, public_key=k.public_key, created_at=_ts(k.created_at))
                for k in self.keys.published()
            ]
        )


_servicers: dict[int, SettlementServicer] = {}


def services(ctx: PlatformContext) -> list[Registration]:
    servicer = SettlementServicer(ctx)
    _servicers[id(ctx)] = servicer
    return [
        Registration(
            settlement_pb2_grpc.add_SettlementServiceServicer_to_server,
            servicer,
            settlement_pb2.DESCRIPTOR.services_by_name["SettlementService"].full_name,
        )
    ]


def background(ctx: PlatformContext) -> None:
    """Start the statement scheduler: issues due statements every ``scheduler_interval_seconds``
    and soon after ingest closes a stay (PER_EXIT lots)."""
    servicer = _servicers.get(id(ctx))
    if servicer is None or not ctx.settings.scheduler:
        return

    def run(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                servicer.issue(None)
            except Exception as exc:  # the next round retries
                log.error("statement.scheduler_failed", error=str(exc))
            deadline = time.monotonic() + ctx.settings.scheduler_interval_seconds
            while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                if servicer.wake_scheduler.wait(left):
                    break
            servicer.wake_scheduler.clear()

    ctx.spawn("statement-scheduler", run, wake=servicer.wake_scheduler.set)
