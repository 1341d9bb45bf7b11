"""The platform process: card service, admin service and settlement service over one database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crosspark.auth import TokenAuthenticator
from crosspark.clock import Clock, SystemClock
from crosspark.db import Database, upgrade
from crosspark.server import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ConfigError,
    GrpcServer,
    Registration,
    ServerOptions,
    tls_files_for,
)

DEFAULT_TIME_ZONE = "Asia/Shanghai"


@dataclass
class PlatformSettings:
    """Every setting of ``crosspark platform serve`` (flags, environment or the TOML file)."""

    admin_token: str
    listen: str = "127.0.0.1:50051"
    db_url: str | None = None
    data_dir: Path = Path("data/platform")
    tls_dir: Path | None = None
    insecure: bool = False
    metrics_listen: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    #: Threads serving RPCs. Every connected lot holds up to three streams (WatchCards,
    #: WatchStatements, ReportPassages), each occupying a thread while open.
    max_workers: int = 256
    time_zone: str = DEFAULT_TIME_ZONE
    #: Issue statements automatically in the background (off in some tests).
    scheduler: bool = True
    scheduler_interval_seconds: float = 5.0

    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'platform.db'}"

    def check(self) -> None:
        if not self.admin_token:
            raise ConfigError("no admin credential: set CROSSPARK_ADMIN_TOKEN or admin_token in the config file")
        if len(self.admin_token) < 16:
            raise ConfigError("the admin token must be at least 16 characters")


@dataclass
class PlatformContext:
    """What the platform's services are built from."""

    db: Database
    clock: Clock
    settings: PlatformSettings
    stop_event: threading.Event = field(default_factory=threading.Event)
    workers: list[threading.Thread] = field(default_factory=list)
    wakers: list[Callable[[], None]] = field(default_factory=list)

    def spawn(
        self, name: str, target: Callable[[threading.Event], None], wake: Callable[[], None] | None = None
    ) -> None:
        """Run ``target(stop_event)`` in a daemon thread until the platform stops; ``wake``, for a
        target that sleeps on something other than the stop event, is called once that is set."""
        thread = threading.Thread(target=target, args=(self.stop_event,), name=name, daemon=True)
        self.workers.append(thread)
        if wake is not None:
            self.wakers.append(wake)
        thread.start()


def platform_services(ctx: PlatformContext) -> list[Registration]:
    from card_service.grpc_api import services as card_services
    from settlement.grpc_api import services as settlement_services

    return [*card_services(ctx), *settlement_services(ctx)]


class Platform:
    """A running platform: migrations applied, services mounted, background workers started."""

    def __init__(self, settings: PlatformSettings, clock: Clock | None = None) -> None:
        settings.check()
        self.settings = settings
        db = Database(settings.database_url())
        upgrade(db, "platform")
        self.ctx = PlatformContext(db=db, clock=clock or SystemClock(), settings=settings)
        from card_service.store import HotReads

        # Runs on every lot call: a raw prepared read, no pool checkout or Core execution.
        self.token_reads = HotReads(db)
        authenticator = TokenAuthenticator(admin_token=settings.admin_token, lot_lookup=self.token_reads.lot_for_token)
        options = ServerOptions(
            listen=settings.listen,
            insecure=settings.insecure,
            tls=None if settings.insecure else tls_files_for(settings.tls_dir, settings.data_dir),
            max_message_bytes=settings.max_message_bytes,
            max_workers=settings.max_workers,
        )
        self.server = GrpcServer(options, authenticator, platform_services(self.ctx))

    @property
    def address(self) -> str:
        return self.server.address

    def start(self) -> Platform:
        self.server.start()
        from settlement.grpc_api import background as settlement_background

        settlement_background(self.ctx)
        return self

    def stop(self, grace: float | None = None) -> None:
        self.ctx.stop_event.set()
        for wake in self.ctx.wakers:
            wake()
        self.server.stop(grace)
        for worker in self.ctx.workers:
            worker.join(timeout=10)
        self.token_reads.close()
        self.ctx.db.dispose()
