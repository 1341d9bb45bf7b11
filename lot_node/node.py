"""The lot node process (车场系统): its store, the gate API, and the workers that talk to the
platform (card list, passage outbox, statements)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import grpc
import structlog

from crosspark.auth import TokenAuthenticator
from crosspark.client import open_channel
from crosspark.clock import Clock, SystemClock
from crosspark.db import Database, upgrade
from crosspark.identity import VehicleIdentity
from crosspark.server import ConfigError, GrpcServer, ServerOptions, tls_files_for
from crosspark.v1 import cards_pb2, cards_pb2_grpc, common_pb2
from lot_node import grpc_api
from lot_node.card_cache import CardCache
from lot_node.card_sync import CardSync, cached_answer
from lot_node.convert import answer_from_pb, color_to_pb, timestamp
from lot_node.fees import load_tariff, temporary_pricer
from lot_node.gate import MembershipAnswer
from lot_node.membership import MembershipDecider, Mode
from lot_node.outbox import OutboxSender
from lot_node.service import GateService, GateSettings, NodeStatus, Reachability, status

log = structlog.get_logger("lot_node")

DEFAULT_LISTEN = "127.0.0.1:50061"
#: Page cache per SQLite connection: the gate's working set (open stays, recent passages) is small,
#: and a lot node must hold a million cards, its recognition models and all in 200 MB.
LOT_SQLITE_CACHE_MIB = 4


@dataclass
class LotSettings:
    """Every setting of ``crosspark lot serve`` (flags, environment or the TOML file)."""

    lot_id: str
    platform: str
    token: str
    listen: str = DEFAULT_LISTEN
    db_url: str | None = None
    data_dir: Path = Path("data/lot")
    ca: Path | None = None
    tls_dir: Path | None = None
    insecure: bool = False
    gate_token: str | None = None
    mode: Mode = Mode.CACHED
    deadline_ms: int = 300
    card_hash_key: bytes | None = None
    time_zone: str = "Asia/Shanghai"
    temp_tariff: Path | None = None
    exit_without_entry_fee_fen: int = 0
    etc_framing: str = "auto"
    statements: bool = True
    #: Statement files and reconciliation reports go under data_dir unless set.
    reports_dir: Path | None = None
    max_message_bytes: int = 8 * 1024 * 1024
    extra: dict[str, object] = field(default_factory=dict)

    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'lot.db'}"

    def check(self) -> None:
        if not self.lot_id:
            raise ConfigError("--lot-id is required")
        if not self.token:
            raise ConfigError("--token (the lot's bearer token from `crosspark lot register`) is required")
        if not self.platform:
            raise ConfigError("--platform HOST:PORT is required")
        if self.mode is not Mode.ONLINE and not self.card_hash_key:
            raise ConfigError(f"mode {self.mode.value} needs --card-hash-key (from `crosspark lot register`)")
        if not 1 <= self.deadline_ms <= 60_000:
            raise ConfigError("--deadline-ms must be in 1..60000")
        if self.exit_without_entry_fee_fen < 0:
            raise ConfigError("--exit-without-entry-fee must not be negative")


class LotNode:
    """A running lot node: migrations applied, card cache loaded, gate API served, workers started."""

    def __init__(self, settings: LotSettings, clock: Clock | None = None) -> None:
        settings.check()
        self.settings = settings
        self.clock = clock or SystemClock()
        self.db = Database(settings.database_url(), sqlite_cache_mib=LOT_SQLITE_CACHE_MIB)
        upgrade(self.db, "lot")
        self.stop_event = threading.Event()
        self.workers: list[threading.Thread] = []
        self.reachability = Reachability(self.clock)
        self.channel = self.connect()
        self.cards = CardSync(
            self.db, self.clock, settings.lot_id, CardCache(settings.card_hash_key), self.connect,
            reachability=self.reachability.report,
        )
        self.cards.load()
        self.outbox = OutboxSender(
            self.db, self.clock, settings.lot_id, self.connect, reachability=self.reachability.report
        )
        self.membership = MembershipDecider(
            settings.mode,
            deadline_s=settings.deadline_ms / 1000,
            cached=self._cached_answer if settings.card_hash_key else None,
            online=self._online_answer,
            reachability=self.reachability.report,
        )
        tariff = load_tariff(settings.temp_tariff, settings.time_zone) if settings.temp_tariff else None
        if tariff is None:
            log.warning("lot.no_temporary_tariff", hint="temporary vehicles leave free until --temp-tariff is set")
        self.gate = GateService(
            self.db,
            self.clock,
            GateSettings(
                lot_id=settings.lot_id,
                exit_without_entry_fee_fen=settings.exit_without_entry_fee_fen,
                etc_framing=settings.etc_framing,
            ),
            self.membership,
            temporary_pricer(tariff),
            on_enqueued=self.outbox.wake,
        )
        self.statements = None
        if settings.statements:
            from lot_node.statements import StatementIntake

            self.statements = StatementIntake(
                self.db, self.clock, settings.lot_id, self.connect,
                settings.reports_dir or settings.data_dir / "statements",
                time_zone=settings.time_zone, reachability=self.reachability.report,
            )
        authenticator = TokenAuthenticator(gate_token=settings.gate_token)
        options = ServerOptions(
            listen=settings.listen,
            insecure=settings.insecure,
            tls=None if settings.insecure else tls_files_for(settings.tls_dir, settings.data_dir),
            max_message_bytes=max(settings.max_message_bytes, 17 * 1024 * 1024),  # a 16 MiB photo fits
        )
        self.server = GrpcServer(options, authenticator, grpc_api.services(self.gate, self.status))

    # --- platform ---------------------------------------------------------------------------------

    def connect(self) -> grpc.Channel:
        s = self.settings
        return open_channel(s.platform, token=s.token, ca_cert=s.ca, insecure=s.insecure,
                            max_message_bytes=s.max_message_bytes)

    def _cached_answer(self, identity: VehicleIdentity, at: datetime) -> MembershipAnswer:
        return cached_answer(self.cards.cache, identity, at)

    def _online_answer(self, identity: VehicleIdentity, at: datetime, timeout_s: float) -> MembershipAnswer:
        request = cards_pb2.CheckMembershipRequest(
            lot_id=self.settings.lot_id,
            vehicle=common_pb2.VehicleIdentity(plate=identity.plate, color=color_to_pb(identity.color)),
            at=timestamp(at),
        )
        reply = cards_pb2_grpc.CardServiceStub(self.channel).CheckMembership(request, timeout=timeout_s)
        return answer_from_pb(reply)

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.server.address

    def status(self) -> NodeStatus:
        return status(self.db, self.settings.lot_id, self.settings.mode.value, self.reachability,
                      self.cards.version, len(self.cards.cache))

    def spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=target, args=(self.stop_event,), name=name, daemon=True)
        self.workers.append(thread)
        thread.start()

    def start(self) -> LotNode:
        self.server.start()
        if self.settings.card_hash_key:
            self.spawn("card-sync", self.cards.run)
        self.spawn("outbox", self.outbox.run)
        if self.statements is not None:
            self.spawn("statements", self.statements.run)
        log.info("lot.started", lot_id=self.settings.lot_id, mode=self.settings.mode.value, address=self.address,
                 card_version=self.cards.version)
        return self

    def stop(self, grace: float | None = None) -> None:
        """Refuse new gate calls, finish those running, then stop the workers."""
        self.server.stop(grace)
        self.stop_event.set()
        self.outbox.stop()
        self.cards.stop()
        if self.statements is not None:
            self.statements.stop()
        for worker in self.workers:
            worker.join(timeout=10)
        self.channel.close()
        self.db.dispose()

