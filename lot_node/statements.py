"""Statement intake (对账文件, DESIGN sections 8–9): watch for statements, fetch each file, verify
its digest and the platform's signature, reconcile it against the lot's own records, submit the
result, and keep a CSV and an HTML report of every statement — refused ones included.

A file whose bytes do not match the published SHA-256 or whose signature does not verify is
refused: nothing in it is trusted or reconciled, and the refusal is logged and reported. Signing
keys are pinned on first sight; a key id that later comes with other key bytes is refused too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import grpc
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from crosspark.clock import Clock
from crosspark.db import Database
from crosspark.v1 import settlement_pb2, settlement_pb2_grpc
from lot_node import store
from lot_node.convert import instant
from lot_node.fees import tariff_from_pb
from lot_node.reconcile import LotStay, Outcome, reconcile
from lot_node.report import ReportHeader, render_csv, render_html
from lot_node.retrying import PlatformStream
from settlement import statement_file
from settlement.tariff import Tariff

log = structlog.get_logger("lot_node.statements")

#: Largest statement file the lot accepts.
MAX_STATEMENT_BYTES = 256 * 1024 * 1024
KEY_PREFIX = "signing_key:"

RECONCILED = "RECONCILED"
DISPUTED = "DISPUTED"
REFUSED = "REFUSED"
RECEIVED = "RECEIVED"


class Refused(Exception):
    """A statement the lot will not trust; the message says why."""


@dataclass(frozen=True)
class Handled:
    statement_id: str
    state: str
    reason: str = ""
    outcome: Outcome | None = None


class StatementIntake(PlatformStream):
    """Receives the lot's statements until stopped (``run``), or one at a time (``handle``)."""

    failure_event = "statements.watch_failed"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        lot_id: str,
        connect: Callable[[], grpc.Channel],
        reports_dir: Path,
        *,
        time_zone: str = "Asia/Shanghai",
        reachability: Callable[[bool], None] | None = None,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.lot_id = lot_id
        self.connect = connect
        self.reports_dir = Path(reports_dir)
        self.time_zone = time_zone
        self.reachability = reachability or (lambda _ok: None)
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self._call: grpc.Future | None = None
        self.handled = threading.Condition()
        self.handled_count = 0

    # --- the watch loop -----------------------------------------------------------------------------

    def _stream(self, stop: threading.Event) -> None:
        channel = self.connect()
        stub = settlement_pb2_grpc.SettlementServiceStub(channel)
        call = stub.WatchStatements(
            settlement_pb2.WatchStatementsRequest(lot_id=self.lot_id, after_seq=self.handled_up_to())
        )
        self._call = call
        try:
            for statement in call:
                self.reachability(True)
                if stop.is_set():
                    return
                self.handle(stub, statement)
        except grpc.RpcError as error:
            if stop.is_set() or error.code() == grpc.StatusCode.CANCELLED:
                return
            raise
        finally:
            self._call = None
            call.cancel()
            channel.close()

    def handled_up_to(self) -> int:
        """The highest sequence number below which every statement was submitted or refused."""
        with self.db.read_session() as session:
            rows = session.execute(
                select(store.StatementRow.seq, store.StatementRow.state, store.StatementRow.submitted_at).order_by(
                    store.StatementRow.seq
                )
            ).all()
        done = 0
        for seq, state, submitted_at in rows:
            if state == REFUSED or submitted_at is not None:
                done = seq
            else:
                break
        return done

    # --- one statement --------------------------------------------------------------------------------

    def handle(self, stub: settlement_pb2_grpc.SettlementServiceStub, statement: settlement_pb2.Statement) -> Handled:
        """Fetch, verify, reconcile, submit and report one statement."""
        with self.db.read_session() as session:
            row = session.get(store.StatementRow, statement.statement_id)
            if row is not None and (row.state == REFUSED or row.submitted_at is not None):
                return Handled(row.statement_id, row.state, row.reason)
        try:
            meta, data = self._fetch(stub, statement.statement_id)
            self._keep_file(meta, data)
            self._verify(stub, meta, data)
            document = statement_file.parse(data)
            _check_header(meta, document.header, self.lot_id)
        except (Refused, statement_file.StatementFileError) as exc:
            return self._refuse(statement, str(exc))
        tariffs = self._tariffs(stub, meta.time_zone or self.time_zone)
        outcome = self._reconcile(meta, document.lines, tariffs)
        verdict = RECONCILED if outcome.all_matched else DISPUTED
        self._record(meta, verdict, outcome)
        self._submit(stub, meta, outcome)
        self._report(meta, verdict, outcome)
        log.info(
            "statement.reconciled",
            statement_id=meta.statement_id,
            verdict=verdict,
            matched=outcome.matched_count,
            disputed=len(outcome.disputed),
        )
        self._notify()
        return Handled(meta.statement_id, verdict, outcome=outcome)

    def _fetch(
        self, stub: settlement_pb2_grpc.SettlementServiceStub, statement_id: str
    ) -> tuple[settlement_pb2.Statement, bytes]:
        meta: settlement_pb2.Statement | None = None
        parts: list[bytes] = []
        size = 0
        for chunk in stub.FetchStatement(settlement_pb2.FetchStatementRequest(statement_id=statement_id), timeout=300):
            body = chunk.WhichOneof("body")
            if body == "statement":
                meta = chunk.statement
            elif body == "data":
                size += len(chunk.data)
                if size > MAX_STATEMENT_BYTES:
                    raise Refused(f"file larger than {MAX_STATEMENT_BYTES} bytes")
                parts.append(chunk.data)
        if meta is None:
            raise Refused("the platform sent no statement metadata")
        data = b"".join(parts)
        if meta.file_size and len(data) != meta.file_size:
            raise Refused(f"received {len(data)} bytes, the statement says {meta.file_size}")
        return meta, data

    def _verify(
        self, stub: settlement_pb2_grpc.SettlementServiceStub, meta: settlement_pb2.Statement, data: bytes
    ) -> None:
        if meta.lot_id != self.lot_id:
            raise Refused(f"statement is for lot {meta.lot_id!r}, not {self.lot_id!r}")
        if not meta.sha256:
            raise Refused("the statement carries no SHA-256")
        key = self._signing_key(stub, meta.key_id)
        statement_file.verify(data, meta.signature, key, meta.sha256)

    def _signing_key(self, stub: settlement_pb2_grpc.SettlementServiceStub, key_id: str) -> bytes:
        """The platform's public key ``key_id``, pinned in the store the first time it is seen."""
        with self.db.read_session() as session:
            pinned = store.get_meta(session, KEY_PREFIX + key_id)
        if pinned is not None:
            return bytes.fromhex(pinned)
        keys = stub.GetSigningKeys(settlement_pb2.GetSigningKeysRequest(), timeout=30).keys
        found = None
        now = self.clock.now()
        with self.db.session() as session:
            for key in keys:
                if statement_file.key_id(key.public_key) != key.key_id:
                    continue  # a key whose id is not its digest is not pinned
                if store.get_meta(session, KEY_PREFIX + key.key_id) is None:
                    store.put_meta(session, KEY_PREFIX + key.key_id, key.public_key.hex(), now)
                if key.key_id == key_id:
                    found = bytes(key.public_key)
        if found is None:
            raise Refused(f"signing key {key_id!r} is unknown to the platform")
        return found

    def _tariffs(self, stub: settlement_pb2_grpc.SettlementServiceStub, time_zone: str) -> list[Tariff]:
        """The tariff versions agreed with the platform (refreshed; the stored copy when offline)."""
        now = self.clock.now()
        try:
            reply = stub.GetTariff(settlement_pb2.GetTariffRequest(lot_id=self.lot_id), timeout=30)
        except grpc.RpcError as error:
            log.warning("statements.tariff_fetch_failed", error=error.code().name)
        else:
            with self.db.session() as session:
                for message in reply.tariffs:
                    row = session.get(store.TariffRow, message.version)
                    body = message.SerializeToString()
                    if row is None:
                        session.add(
                            store.TariffRow(
                                version=message.version,
                                effective_from=instant(message.effective_from),
                                body=body,
                                fetched_at=now,
                            )
                        )
                    else:
                        row.body, row.fetched_at = body, now
        with self.db.read_session() as session:
            bodies = session.scalars(select(store.TariffRow.body).order_by(store.TariffRow.version)).all()
        tariffs = []
        for body in bodies:
            message = settlement_pb2.Tariff()
            message.ParseFromString(body)
            tariffs.append(tariff_from_pb(message, time_zone))
        return tariffs

    def _reconcile(
        self, meta: settlement_pb2.Statement, lines: Sequence[statement_file.StatementLine], tariffs: list[Tariff]
    ) -> Outcome:
        period_from, period_to = instant(meta.period_from), instant(meta.period_to)
        with self.db.read_session() as session:
            named = [line.stay_id for line in lines if line.kind == "STAY"]
            known = {s.stay_id: s for s in _monthly_stays(session, stay_ids=named)}
            in_period = (
                _monthly_stays(session, exited_from=period_from, exited_to=period_to) if period_to > period_from else []
            )
        for stay in in_period:
            known.setdefault(stay.stay_id, stay)
        return reconcile(lines, known, in_period, tariffs, instant(meta.issued_at))

    def _submit(
        self, stub: settlement_pb2_grpc.SettlementServiceStub, meta: settlement_pb2.Statement, outcome: Outcome
    ) -> None:
        request = settlement_pb2.Reconciliation(
            lot_id=self.lot_id,
            statement_id=meta.statement_id,
            sha256=meta.sha256,
            matched_count=outcome.matched_count,
            items=[
                settlement_pb2.ReconciliationItem(
                    stay_id=i.stay_id,
                    result=cast(Any, settlement_pb2.LineResult.Value(f"LINE_RESULT_{i.result.value}")),
                    line_no=i.line_no,
                    platform_fee_fen=i.platform_fee_fen,
                    lot_fee_fen=i.lot_fee_fen,
                    note=i.note[:256],
                )
                for i in outcome.disputed
            ],
        )
        try:
            stub.SubmitReconciliation(request, timeout=60)
        except grpc.RpcError as error:
            # Submitted before a crash: the platform already holds it.
            if error.code() not in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION):
                raise
            log.info("statement.already_submitted", statement_id=meta.statement_id, detail=error.details())
        with self.db.session() as session:
            row = session.get(store.StatementRow, meta.statement_id)
            assert row is not None
            row.submitted_at = self.clock.now()

    # --- records and reports -------------------------------------------------------------------------

    def _file_path(self, statement_id: str, suffix: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in statement_id)
        return self.reports_dir / f"{safe}{suffix}"

    def _keep_file(self, meta: settlement_pb2.Statement, data: bytes) -> None:
        path = self._file_path(meta.statement_id, ".statement.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def _record(self, meta: settlement_pb2.Statement, state: str, outcome: Outcome | None, reason: str = "") -> None:
        now = self.clock.now()
        with self.db.session() as session:
            row = session.get(store.StatementRow, meta.statement_id)
            if row is None:
                row = store.StatementRow(
                    statement_id=meta.statement_id,
                    seq=meta.seq,
                    body=b"",
                    state=state,
                    reason="",
                    file_path="",
                    received_at=now,
                    matched_count=0,
                    disputed_count=0,
                    report_csv="",
                    report_html="",
                )
                session.add(row)
            row.body = meta.SerializeToString()
            row.state = state
            row.reason = reason[:512]
            row.file_path = str(self._file_path(meta.statement_id, ".statement.csv"))
            row.checked_at = now
            row.report_csv = str(self._file_path(meta.statement_id, ".report.csv"))
            row.report_html = str(self._file_path(meta.statement_id, ".report.html"))
            if outcome is not None:
                row.matched_count = outcome.matched_count
                row.disputed_count = len(outcome.disputed)
                session.flush()
                session.query(store.ReconciliationItemRow).filter_by(statement_id=meta.statement_id).delete()
                session.add_all(
                    store.ReconciliationItemRow(
                        statement_id=meta.statement_id,
                        stay_id=i.stay_id,
                        result=i.result.value,
                        line_no=i.line_no,
                        platform_fee_fen=i.platform_fee_fen,
                        lot_fee_fen=i.lot_fee_fen,
                        note=i.note[:256],
                    )
                    for i in outcome.items
                )

    def _report(self, meta: settlement_pb2.Statement, verdict: str, outcome: Outcome | None, reason: str = "") -> None:
        header = ReportHeader(
            lot_id=self.lot_id,
            statement_id=meta.statement_id,
            period_from=instant(meta.period_from),
            period_to=instant(meta.period_to),
            time_zone=meta.time_zone or self.time_zone,
            issued_at=instant(meta.issued_at),
            checked_at=self.clock.now(),
            sha256=meta.sha256,
            verdict=verdict,
            reason=reason,
        )
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        self._file_path(meta.statement_id, ".report.csv").write_bytes(render_csv(header, outcome))
        self._file_path(meta.statement_id, ".report.html").write_text(render_html(header, outcome), encoding="utf-8")

    def _refuse(self, meta: settlement_pb2.Statement, reason: str) -> Handled:
        log.error("statement.refused", statement_id=meta.statement_id, reason=reason)
        self._record(meta, REFUSED, None, reason)
        self._report(meta, REFUSED, None, reason)
        self._notify()
        return Handled(meta.statement_id, REFUSED, reason)

    def _notify(self) -> None:
        with self.handled:
            self.handled_count += 1
            self.handled.notify_all()


def _check_header(meta: settlement_pb2.Statement, header: statement_file.StatementHeader, lot_id: str) -> None:
    """The signed file must say what the metadata says."""
    if header.statement_id != meta.statement_id or header.lot_id != lot_id or header.seq != meta.seq:
        raise Refused(
            f"file header names {header.statement_id} (lot {header.lot_id}, seq {header.seq}), "
            f"metadata {meta.statement_id} (lot {meta.lot_id}, seq {meta.seq})"
        )


def _monthly_stays(
    session: Session,
    *,
    stay_ids: Sequence[str] | None = None,
    exited_from: datetime | None = None,
    exited_to: datetime | None = None,
) -> list[LotStay]:
    """The lot's ended monthly-card stays, by id or by exit instant in ``[exited_from, exited_to)``."""
    exit_passage = aliased(store.PassageRow)
    query = (
        select(store.StayRow, exit_passage.delivered_at)
        .join(exit_passage, exit_passage.passage_id == store.StayRow.exit_passage_id)
        # An exit without entry is a stay of its own id that the platform never bills.
        .where(
            store.StayRow.kind == "MONTHLY",
            store.StayRow.state != store.OPEN,
            store.StayRow.stay_id != store.StayRow.exit_passage_id,
        )
    )
    found: list[LotStay] = []
    if stay_ids is not None:
        for start in range(0, len(stay_ids), 500):
            part = stay_ids[start : start + 500]
            found.extend(_lot_stay(s, d) for s, d in session.execute(query.where(store.StayRow.stay_id.in_(part))))
        return found
    assert exited_from is not None and exited_to is not None
    rows = session.execute(query.where(store.StayRow.exited_at >= exited_from, store.StayRow.exited_at < exited_to))
    return [_lot_stay(s, d) for s, d in rows]


def _lot_stay(row: store.StayRow, delivered_at: datetime | None) -> LotStay:
    assert row.exited_at is not None
    return LotStay(
        stay_id=row.stay_id,
        card_id=row.card_id,
        plate=row.plate,
        color=row.color,
        entered_at=row.entered_at,
        exited_at=row.exited_at,
        split_at=row.split_at,
        delivered_at=delivered_at,
    )
