"""Use cases of the gate: a vehicle passes, a temporary fee is paid, the node reports its state.

Each use case gathers the facts (readings, membership answer, open stays), asks ``gate`` for the
decision, and records it — passage, stay, outbox — in one transaction that commits before the
answer goes back to the barrier.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from crosspark.clock import Clock
from crosspark.db import Database
from crosspark.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from crosspark.identity import IdentitySource, PlateColor, VehicleIdentity
from lot_node import store
from lot_node.gate import (
    Decision,
    Direction,
    ExitMatch,
    Flag,
    Membership,
    MembershipAnswer,
    OpenStay,
    PriceTemporary,
    StayClosure,
    VehicleKind,
    confusable_variants,
    decide_entry,
    decide_exit,
    match_exit,
    resolve_identity,
)
from lot_node.membership import MembershipDecider, Mode
from lot_node.readings import CameraReading, checked_identity, read_camera, read_etc

log = structlog.get_logger("lot_node.gate")

MAX_GATE_ID = 64
MAX_REQUEST_ID = 64
MAX_PAYMENT_TEXT = 64
MAX_FEE_FEN = 10_000_000_00  # 10 million yuan: anything above is a device error


@dataclass(frozen=True)
class GateSettings:
    lot_id: str
    #: What a temporary vehicle pays when it leaves with no open stay (the lot's rule), fen.
    exit_without_entry_fee_fen: int = 0
    #: Framing of RSU frames when a request does not name one.
    etc_framing: str = "auto"
    #: A device's ``occurred_at`` may be at most this far ahead of the lot's clock …
    max_future: timedelta = timedelta(minutes=5)
    #: … and at most this far behind it (a controller replaying what it buffered).
    max_past: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Evidence:
    """What a gate controller sends about one vehicle (``PassRequest`` in domain terms)."""

    gate_id: str
    direction: Direction | None
    image: bytes = b""
    etc_frame: bytes = b""
    etc_framing: str = ""
    identity: VehicleIdentity | None = None
    occurred_at: datetime | None = None
    request_id: str = ""


@dataclass(frozen=True)
class PassResult:
    """A decision (None when no vehicle could be identified) and every plate the camera read."""

    decision: Decision | None
    candidates: tuple[VehicleIdentity, ...] = ()
    display: str = ""


@dataclass(frozen=True)
class Receipt:
    passage_id: str
    paid_fen: int
    paid_at: datetime


@dataclass(frozen=True)
class NodeStatus:
    lot_id: str
    mode: str
    platform_reachable: bool
    platform_last_ok_at: datetime | None
    outbox_depth: int
    outbox_oldest_at: datetime | None
    rejected_count: int
    card_version: int
    cards_cached: int
    open_stays: int
    last_statement: bytes | None  # serialised crosspark.v1.Statement


@dataclass
class Reachability:
    """Whether the platform answered the node's last call, for ``Status``."""

    clock: Clock
    reachable: bool = False
    last_ok_at: datetime | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, ok: bool) -> None:
        with self._lock:
            self.reachable = ok
            if ok:
                self.last_ok_at = self.clock.now()


class GateService:
    """Decides at the gate; every decision is committed before it is returned."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: GateSettings,
        membership: MembershipDecider,
        price_temporary: PriceTemporary,
        *,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.membership = membership
        self.price_temporary = price_temporary
        self.on_enqueued = on_enqueued or (lambda: None)
        # One writer at a time: a vehicle's stays are read and changed in one critical section
        # (SQLite serialises writers anyway; on PostgreSQL this keeps two gates from both
        # opening a stay for the same vehicle).
        self._write_lock = threading.Lock()

    # --- Pass ------------------------------------------------------------------------------------

    def pass_vehicle(self, evidence: Evidence) -> PassResult:
        started = time.monotonic()
        self._check(evidence)
        if evidence.request_id:
            replay = self._replay(evidence.gate_id, evidence.request_id)
            if replay is not None:
                return replay
        now = self.clock.now()
        at = evidence.occurred_at or now
        if at > now + self.settings.max_future:
            raise InvalidArgument.field("occurred_at", f"{(at - now).total_seconds():.0f} s ahead of the lot's clock")
        if at < now - self.settings.max_past:
            raise InvalidArgument.field("occurred_at", f"more than {self.settings.max_past.days} days in the past")
        identity, flags, camera = self._identify(evidence)
        if identity is None:
            return PassResult(None, camera.candidates if camera else (), display="未识别车牌 请稍候")
        candidates = camera.candidates if camera else ()
        assert evidence.direction is not None
        if evidence.direction is Direction.ENTRY:
            answer = self.membership.answer(identity, at, started)
            decision = self._record(evidence, lambda s: self._entry(s, identity, at, answer, flags))
        else:
            decision = self._exit(evidence, identity, at, flags, started)
        if decision.report or any(c.report for c in decision.closures):
            self.on_enqueued()
        log.info(
            "gate.decision", gate=evidence.gate_id, direction=decision.direction.value, kind=decision.kind.value,
            open=decision.open, fee_fen=decision.fee_due_fen, flags=sorted(f.value for f in decision.flags),
            passage_id=decision.passage_id,
        )
        return PassResult(decision, candidates)

    def _check(self, evidence: Evidence) -> None:
        violations = []
        if not evidence.gate_id or len(evidence.gate_id) > MAX_GATE_ID:
            violations.append(("gate_id", f"1-{MAX_GATE_ID} characters required"))
        if evidence.direction is None:
            violations.append(("direction", "ENTRY or EXIT required"))
        if len(evidence.request_id) > MAX_REQUEST_ID:
            violations.append(("request_id", f"at most {MAX_REQUEST_ID} characters"))
        if not (evidence.image or evidence.etc_frame or evidence.identity):
            violations.append(("image", "one of image, etc_frame or identity is required"))
        if violations:
            raise InvalidArgument("; ".join(f"{f}: {d}" for f, d in violations), violations)

    def _identify(
        self, evidence: Evidence
    ) -> tuple[VehicleIdentity | None, frozenset[Flag], CameraReading | None]:
        camera = etc = None
        reading = None
        if evidence.image:
            reading = read_camera(evidence.image)
            camera = reading.best
        if evidence.etc_frame:
            etc = read_etc(evidence.etc_frame, evidence.etc_framing or self.settings.etc_framing)
        if evidence.identity is not None:
            given = checked_identity(evidence.identity)
            if given.source is IdentitySource.ETC:
                etc = etc or given
            else:
                camera = camera or given
        identity, flags = resolve_identity(camera, etc)
        return identity, flags, reading

    def _entry(
        self,
        session: Session,
        identity: VehicleIdentity,
        at: datetime,
        answer: MembershipAnswer,
        flags: frozenset[Flag],
    ) -> Decision:
        inside = _open_stays(session, [identity.plate], identity.color)
        return decide_entry(
            _new_id(), identity, at, answer, inside, [_new_id() for _ in inside], flags
        )

    def _exit(
        self, evidence: Evidence, identity: VehicleIdentity, at: datetime, flags: frozenset[Flag], started: float
    ) -> Decision:
        # ONLINE modes may wait on the network: match outside the write lock, ask, then match
        # again inside it (another gate may have closed the stay meanwhile). CACHED answers at once.
        answer: MembershipAnswer | None = None
        if self.membership.mode is not Mode.CACHED:
            with self.db.read_session() as session:
                match = _match(session, identity)
            answer = self._exit_answer(match, identity, at, started)

        def decide(session: Session) -> Decision:
            nonlocal answer
            again = _match(session, identity)
            if answer is None and _needs_answer(again):
                answer = self._exit_answer(again, identity, at, None)
            return decide_exit(
                _new_id(), identity, at, again, answer, self.price_temporary,
                self.settings.exit_without_entry_fee_fen, flags,
            )

        return self._record(evidence, decide)

    def _exit_answer(
        self, match: ExitMatch, identity: VehicleIdentity, at: datetime, started: float | None
    ) -> MembershipAnswer | None:
        if not _needs_answer(match):
            return None
        stay = match.stay
        # A monthly stay is re-checked for the vehicle that entered (a fuzzy read is not asked about).
        who = identity if stay is None else VehicleIdentity(stay.plate, stay.color, identity.source)
        return self.membership.answer(who, at, started if started is not None else time.monotonic())

    def _record(self, evidence: Evidence, decide: Callable[[Session], Decision]) -> Decision:
        with self._write_lock, self.db.session() as session:
            if evidence.request_id:
                previous = store.passage_for_request(session, evidence.gate_id, evidence.request_id)
                if previous is not None:  # a retry that raced the first attempt
                    return _decision_from_row(previous)
            decision = decide(session)
            _write(session, decision, evidence, self.clock.now())
        return decision

    def _replay(self, gate_id: str, request_id: str) -> PassResult | None:
        with self.db.read_session() as session:
            row = store.passage_for_request(session, gate_id, request_id)
            return PassResult(_decision_from_row(row)) if row is not None else None

    # --- Pay -------------------------------------------------------------------------------------

    def pay(self, passage_id: str, amount_fen: int, method: str = "", payment_ref: str = "") -> Receipt:
        """Record a temporary fee paid at the exit; paying the same passage twice with the same
        amount returns the first receipt."""
        violations = []
        if not passage_id:
            violations.append(("passage_id", "required"))
        if not 0 < amount_fen <= MAX_FEE_FEN:
            violations.append(("amount_fen", f"must be in 1..{MAX_FEE_FEN}"))
        if len(method) > MAX_PAYMENT_TEXT:
            violations.append(("method", f"at most {MAX_PAYMENT_TEXT} characters"))
        if len(payment_ref) > MAX_PAYMENT_TEXT:
            violations.append(("payment_ref", f"at most {MAX_PAYMENT_TEXT} characters"))
        if violations:
            raise InvalidArgument("; ".join(f"{f}: {d}" for f, d in violations), violations)
        with self._write_lock, self.db.session() as session:
            passage = session.get(store.PassageRow, passage_id)
            if passage is None:
                raise NotFound(f"passage {passage_id!r} not found")
            if passage.direction != Direction.EXIT.value or passage.fee_due_fen == 0:
                raise FailedPrecondition(f"passage {passage_id} has no fee due")
            paid = session.get(store.PaymentRow, passage_id)
            if paid is not None:
                if paid.amount_fen != amount_fen:
                    raise AlreadyExists(f"passage {passage_id} was already paid ({paid.amount_fen} fen)")
                return Receipt(passage_id, paid.amount_fen, paid.paid_at)
            if amount_fen != passage.fee_due_fen:
                raise InvalidArgument.field(
                    "amount_fen", f"{amount_fen} fen paid but {passage.fee_due_fen} fen is due"
                )
            now = self.clock.now()
            session.add(
                store.PaymentRow(
                    passage_id=passage_id, amount_fen=amount_fen, method=method, payment_ref=payment_ref, paid_at=now
                )
            )
        log.info("gate.paid", passage_id=passage_id, fee_fen=amount_fen, method=method)
        return Receipt(passage_id, amount_fen, now)


# --- helpers ---------------------------------------------------------------------------------------


def _new_id() -> str:
    return str(uuid.uuid4())


def _needs_answer(match: ExitMatch) -> bool:
    return match.stay is None or match.stay.kind is VehicleKind.MONTHLY


def _match(session: Session, identity: VehicleIdentity) -> ExitMatch:
    plates = [identity.plate, *confusable_variants(identity.plate)]
    return match_exit(identity.plate, identity.color, _open_stays(session, plates, identity.color))


def _open_stays(session: Session, plates: list[str], color: PlateColor) -> list[OpenStay]:
    rows = session.connection().execute(store.OPEN_STAYS, {"plates": plates, "color": color.value})
    return [
        OpenStay(
            stay_id=r.stay_id, plate=r.plate, color=PlateColor(r.color), kind=VehicleKind(r.kind), card_id=r.card_id,
            card_valid_until=r.card_valid_until, entered_at=r.entered_at,
        )
        for r in rows
    ]


def _flags_text(flags: frozenset[Flag]) -> str:
    return ",".join(sorted(f.value for f in flags))


def _passage_values(
    decision: Decision, gate_id: str, request_id: str | None, now: datetime
) -> dict[str, object]:
    identity = decision.identity
    return {
        "passage_id": decision.passage_id, "gate_id": gate_id, "direction": decision.direction.value,
        "plate": identity.plate, "color": identity.color.value, "source": identity.source.value,
        "confidence": identity.confidence, "obu_serial": identity.obu_serial, "obu_issuer": identity.obu_issuer,
        "vehicle_class": identity.vehicle_class, "occurred_at": decision.occurred_at, "decided_at": now,
        "kind": decision.kind.value, "membership": decision.membership.status.value, "card_id": decision.card_id,
        "stay_id": decision.stay_id, "entry_passage_id": decision.entry_passage_id,
        "flags": _flags_text(decision.flags), "membership_answer_id": decision.membership.answer_id,
        "card_valid_until": decision.card_valid_until, "opened": decision.open,
        "fee_due_fen": decision.fee_due_fen, "display": decision.display[:64], "request_id": request_id,
        "delivered_at": None,
    }


def _write(session: Session, decision: Decision, evidence: Evidence, now: datetime) -> None:
    """Passage, stays and outbox of one decision, in the caller's transaction (Core statements:
    this is the gate's hot path)."""
    connection = session.connection()
    passages: list[dict[str, object]] = [
        _passage_values(decision, evidence.gate_id, evidence.request_id or None, now)
    ]
    outbox = [decision.passage_id] if decision.report else []
    for closure in decision.closures:
        if closure.exit_passage_id != decision.passage_id:
            passages.append(_closing_passage(closure, evidence.gate_id, now))
            if closure.report:
                outbox.append(closure.exit_passage_id)
    connection.execute(store.INSERT_PASSAGES, passages)
    if decision.new_stay is not None:
        stay = decision.new_stay
        connection.execute(
            store.INSERT_STAY,
            {
                "stay_id": stay.stay_id, "plate": stay.plate, "color": stay.color.value, "kind": stay.kind.value,
                "card_id": stay.card_id, "card_valid_until": stay.card_valid_until, "entry_gate": evidence.gate_id,
                "entered_at": stay.entered_at, "state": store.OPEN, "exit_passage_id": None, "exited_at": None,
                "split_at": None, "fee_fen": 0,
            },
        )
    for closure in decision.closures:
        connection.execute(
            store.CLOSE_STAY,
            {
                "closed_stay_id": closure.stay.stay_id, "state": closure.state,
                "exit_passage_id": closure.exit_passage_id, "exited_at": closure.exited_at,
                "split_at": closure.split_at, "fee_fen": closure.fee_fen,
            },
        )
    if outbox:
        connection.execute(
            store.INSERT_OUTBOX,
            [
                {"passage_id": pid, "enqueued_at": now, "state": store.PENDING, "attempts": 0, "reason": "",
                 "rejected_at": None}
                for pid in outbox
            ],
        )


def _closing_passage(closure: StayClosure, gate_id: str, now: datetime) -> dict[str, object]:
    """The exit record the lot writes itself for an abandoned stay."""
    stay = closure.stay
    return {
        "passage_id": closure.exit_passage_id, "gate_id": gate_id, "direction": Direction.EXIT.value,
        "plate": stay.plate, "color": stay.color.value, "source": IdentitySource.MANUAL.value, "confidence": 1.0,
        "obu_serial": "", "obu_issuer": "", "vehicle_class": 0, "occurred_at": closure.exited_at, "decided_at": now,
        "kind": stay.kind.value, "membership": Membership.UNKNOWN.value, "card_id": stay.card_id,
        "stay_id": stay.stay_id, "entry_passage_id": stay.stay_id, "flags": _flags_text(closure.flags),
        "membership_answer_id": "", "card_valid_until": closure.split_at, "opened": True, "fee_due_fen": 0,
        "display": "", "request_id": None, "delivered_at": None,
    }


def _decision_from_row(row: store.PassageRow) -> Decision:
    """The decision a passage recorded (a device's retried request gets the same answer)."""
    flags = row.flag_set()
    return Decision(
        passage_id=row.passage_id,
        direction=Direction(row.direction),
        identity=row.identity(),
        occurred_at=row.occurred_at,
        open=row.opened,
        kind=VehicleKind(row.kind),
        membership=MembershipAnswer(
            Membership(row.membership), row.card_id, row.card_valid_until, row.membership_answer_id,
            offline=Flag.OFFLINE_DECISION in flags,
        ),
        stay_id=row.stay_id,
        card_id=row.card_id,
        entry_passage_id=row.entry_passage_id,
        fee_due_fen=row.fee_due_fen,
        flags=flags,
        card_valid_until=row.card_valid_until,
        display=row.display,
        report=False,
    )


def status(
    db: Database, lot_id: str, mode: str, reachability: Reachability, card_version: int, cards_cached: int
) -> NodeStatus:
    with db.read_session() as session:
        depth, oldest = store.outbox_depth(session)
        rejected = store.rejected_count(session)
        open_stays = store.count_open_stays(session)
        last = session.scalar(select(store.StatementRow.body).order_by(store.StatementRow.seq.desc()).limit(1))
    return NodeStatus(
        lot_id=lot_id, mode=mode, platform_reachable=reachability.reachable,
        platform_last_ok_at=reachability.last_ok_at, outbox_depth=depth, outbox_oldest_at=oldest,
        rejected_count=rejected, card_version=card_version, cards_cached=cards_cached, open_stays=open_stays,
        last_statement=last,
    )
