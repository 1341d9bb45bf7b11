"""The lot's ETC roadside unit (RSU, 路侧单元): a TCP client that turns its frames into vehicle
identities, and a simulated RSU server for tests and the demo.

The client reads the RSU's byte stream with ``StreamReader`` (configured framing or ``auto``),
remembers each OBU's ``B2`` information so that identities carry the contract serial and issuer,
and puts every vehicle whose plate is valid on ``identities``. A dropped or silent connection is
re-opened with exponential backoff (``tenacity``); the backoff starts afresh after each successful
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential, wait_random

from crosspark.identity import PlateColor, VehicleIdentity
from recognition_core.etc import (
    AUTO,
    CardInfo,
    Frame,
    FrameError,
    FrameType,
    Framing,
    Heartbeat,
    ObuInfo,
    RsuStatus,
    StreamReader,
    VehicleInfo,
    card_file_for,
    encode,
    to_identity,
    vehicle_file_for,
)

log = structlog.get_logger(__name__)

READ_CHUNK = 4096
OBU_MEMORY = 256  # B2 records kept for pairing with the B3/B4 frames that follow them


@dataclass
class RsuStats:
    connections: int = 0
    frames: int = 0
    errors: int = 0
    heartbeats: int = 0
    vehicles: int = 0
    invalid_plates: int = 0
    last_frame_at: float | None = None  # time.monotonic()


class RsuClient:
    """Connects to an RSU at ``host:port`` and keeps reading until ``stop()``.

    ``identities`` receives ``(VehicleIdentity, Frame)`` for each vehicle with a valid plate;
    ``on_frame`` (optional) sees every decoded frame and ``on_error`` every ``FrameError``.
    A connection with no bytes for ``idle_timeout`` seconds (heartbeats come every 3–60 s) is
    treated as dead and re-opened."""

    def __init__(
        self,
        host: str,
        port: int,
        framing: Framing | str = AUTO,
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 10.0,
        idle_timeout: float = 90.0,
        on_frame: Callable[[Frame], None] | None = None,
        on_error: Callable[[FrameError], None] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.framing = framing if framing == AUTO else Framing(framing)
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.idle_timeout = idle_timeout
        self.on_frame, self.on_error = on_frame, on_error
        self.identities: asyncio.Queue[tuple[VehicleIdentity, Frame]] = asyncio.Queue()
        self.stats = RsuStats()
        self.connected = asyncio.Event()
        self.heartbeat = asyncio.Event()  # set on each heartbeat; clear it to wait for the next
        self._obus: OrderedDict[bytes, ObuInfo] = OrderedDict()
        self._stopping = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        """Connect, read, reconnect with backoff; returns after ``stop()``."""
        while not self._stopping.is_set():
            reader = await self._connect()
            if reader is None:
                return
            try:
                await self._read(reader)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                log.warning("rsu.connection_lost", host=self.host, port=self.port, error=str(exc))
            finally:
                self.connected.clear()
                await self._close()

    def stop(self) -> None:
        self._stopping.set()
        if self._writer is not None:
            self._writer.close()

    async def _connect(self) -> asyncio.StreamReader | None:
        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=self.min_backoff, max=self.max_backoff) + wait_random(0, self.min_backoff),
            retry=retry_if_exception_type(OSError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if self._stopping.is_set():
                    return None
                reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self.stats.connections += 1
        self.connected.set()
        log.info("rsu.connected", host=self.host, port=self.port, framing=str(self.framing))
        return reader

    async def _read(self, reader: asyncio.StreamReader) -> None:
        stream = StreamReader(self.framing)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                read = asyncio.ensure_future(reader.read(READ_CHUNK))
                done, _ = await asyncio.wait(
                    {read, stopping}, timeout=self.idle_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if stopping in done:
                    read.cancel()
                    return
                if read not in done:
                    read.cancel()
                    raise TimeoutError(f"no bytes from the RSU for {self.idle_timeout} s")
                chunk = read.result()
                if not chunk:
                    raise ConnectionResetError("the RSU closed the connection")
                for item in stream.feed(chunk):
                    self._handle(item)
        finally:
            stopping.cancel()
            for error in stream.flush():
                self._handle(error)

    def _handle(self, item: Frame | FrameError) -> None:
        if isinstance(item, FrameError):
            self.stats.errors += 1
            log.warning("rsu.bad_frame", reason=item.reason, error=str(item))
            if self.on_error is not None:
                self.on_error(item)
            return
        self.stats.frames += 1
        self.stats.last_frame_at = time.monotonic()
        if self.on_frame is not None:
            self.on_frame(item)
        record = item.record
        if isinstance(record, Heartbeat):
            self.stats.heartbeats += 1
            self.heartbeat.set()
        elif isinstance(record, ObuInfo):
            self._obus[record.obu_id] = record
            self._obus.move_to_end(record.obu_id)
            while len(self._obus) > OBU_MEMORY:
                self._obus.popitem(last=False)
        if item.vehicle is None:
            return
        if not item.vehicle.plate_valid:
            self.stats.invalid_plates += 1
            log.info("rsu.invalid_plate", plate=item.vehicle.plate, obu_id=item.obu_id)
            return
        obu_id = getattr(record, "obu_id", None)
        identity = to_identity(item, self._obus.get(obu_id) if obu_id is not None else None)
        self.stats.vehicles += 1
        self.identities.put_nowait((identity, item))

    async def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


# -- simulated RSU ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedVehicle:
    """A vehicle passing the simulated RSU: its OBU sends B2 then B3 (lane, its) or B4 (genvict)."""

    plate: str
    color: PlateColor
    vehicle_class: int = 1
    obu_id: bytes = b"\x01\x02\x03\x04"
    serial: bytes = b"\x44\x01\x00\x00\x12\x34\x56\x78"
    issuer: bytes = b"\xb9\xe3\xb6\xab\x44\x01\x00\x01"
    card_info: bool = False  # send B4 (card and vehicle files) instead of B3


@dataclass
class _Connection:
    writer: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class SimulatedRsu:
    """A TCP server that plays an RSU in ``framing``: on each connection it sends the RSU status,
    then every configured vehicle, then a heartbeat every ``heartbeat_interval`` seconds;
    ``pass_vehicle`` and ``send_raw`` reach every connected client."""

    def __init__(
        self,
        framing: Framing | str,
        vehicles: Sequence[SimulatedVehicle] = (),
        *,
        heartbeat_interval: float = 5.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.framing = Framing(framing)
        self.vehicles = list(vehicles)
        self.heartbeat_interval = heartbeat_interval
        self.host, self.port = host, port
        self.total_connections = 0
        self._connections: list[_Connection] = []
        self._server: asyncio.Server | None = None
        self._seq = 0
        self._changed = asyncio.Condition()

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        return self.host, self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.disconnect_all()
        if self._server is not None:
            await self._server.wait_closed()

    async def wait_for_connections(self, total: int) -> None:
        """Wait until ``total`` connections have been accepted since start."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.total_connections >= total)

    async def disconnect_all(self) -> None:
        """Drop every client (as a rebooting RSU would)."""
        connections, self._connections = self._connections, []
        for connection in connections:
            for task in connection.tasks:
                task.cancel()
            connection.writer.close()
            with contextlib.suppress(OSError):
                await connection.writer.wait_closed()

    async def pass_vehicle(self, vehicle: SimulatedVehicle) -> None:
        """A vehicle drives through: send its frames to every connected client."""
        await self.send_raw(b"".join(self.frames_for(vehicle)))

    async def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (garbage, torn frames) to every connected client."""
        for connection in list(self._connections):
            connection.writer.write(data)
            with contextlib.suppress(OSError):
                await connection.writer.drain()

    def frames_for(self, vehicle: SimulatedVehicle) -> list[bytes]:
        obu = ObuInfo(
            vehicle.obu_id,
            0,
            vehicle.issuer,
            1,
            0x40,
            vehicle.serial,
            b"\x20\x24\x01\x01",
            b"\x20\x34\x01\x01",
            0,
            0,
            antenna=1,
            device_type=1,
            tamper=0,
        )
        frames = [] if self.framing is Framing.GENVICT else [self._encode(obu)]
        if vehicle.card_info or self.framing is Framing.GENVICT:
            frames.append(self._encode(self._card_info(vehicle)))
        else:
            short = 16 if self.framing is Framing.LANE else 79
            vehicle_file = vehicle_file_for(vehicle.plate, vehicle.color, vehicle.vehicle_class, size=short)
            frames.append(self._encode(VehicleInfo(vehicle.obu_id, 0, vehicle_file)))
        return frames

    def _card_info(self, vehicle: SimulatedVehicle) -> CardInfo:
        card = card_file_for(vehicle.plate, vehicle.color, vehicle.vehicle_class, size=43)
        if self.framing is Framing.LANE:
            return CardInfo(
                vehicle.obu_id,
                0,
                card,
                bytes(43),
                10_000,
                trans_type=6,
                card_type=0x16,
                physical_card_type=1,
                card_id=vehicle.obu_id,
            )
        card = card_file_for(vehicle.plate, vehicle.color, vehicle.vehicle_class, size=50)
        vehicle_file = vehicle_file_for(vehicle.plate, vehicle.color, vehicle.vehicle_class, size=79)
        if self.framing is Framing.ITS:
            return CardInfo(vehicle.obu_id, 0, card, bytes(43), 10_000, trans_type=6, vehicle_file=vehicle_file)
        return CardInfo(
            vehicle.obu_id,
            None,
            card,
            bytes(43),
            10_000,
            vehicle_file=vehicle_file,
            obu_type=1,
            card_present=1,
            obu_status=0,
            system_info=bytes(26),
        )

    def heartbeat(self) -> bytes:
        if self.framing is Framing.GENVICT:
            return self._encode(Heartbeat(b""), FrameType.HEARTBEAT)
        return self._encode(Heartbeat(b"\x00\x00\x00\x00\x80"), FrameType.OBU_INFO)

    def _encode(self, record, frame_type: FrameType | None = None) -> bytes:  # type: ignore[no-untyped-def]
        self._seq = (self._seq + 1) % 0x100
        return encode(self.framing, record, self._seq, frame_type)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer)
        self._connections.append(connection)
        async with self._changed:
            self.total_connections += 1
            self._changed.notify_all()
        if self.framing is Framing.GENVICT:
            writer.write(self._encode(RsuStatus(0, 0, 1, b"\x00\x00\x01")))
        else:
            writer.write(self._encode(RsuStatus(0, None, None, b"\x00")))
        for vehicle in self.vehicles:
            writer.write(b"".join(self.frames_for(vehicle)))
        with contextlib.suppress(OSError):
            await writer.drain()
        connection.tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                await asyncio.sleep(self.heartbeat_interval)
                writer.write(self.heartbeat())
                await writer.drain()
        except OSError:
            pass
        finally:
            if connection in self._connections:
                self._connections.remove(connection)
            writer.close()
