"""Plays the demo's month against real processes: a platform and three lot nodes over TLS."""

from __future__ import annotations

import secrets
import socket
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from crosspark.client import open_channel
from crosspark.clock import ScaledClock
from crosspark.demo.processes import ServiceProcess
from crosspark.demo.report import LotSummary
from crosspark.demo.scenario import LotPlan, Plan, Visit
from crosspark.tls import ensure_dev_tls
from crosspark.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    cards_pb2,
    cards_pb2_grpc,
    common_pb2,
    gate_pb2,
    gate_pb2_grpc,
    settlement_pb2,
    settlement_pb2_grpc,
)


def _ts(instant: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(instant.astimezone(UTC))
    return stamp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LotRuntime:
    plan: LotPlan
    token: str = ""
    card_hash_key: bytes = b""
    process: ServiceProcess | None = None
    gate: gate_pb2_grpc.GateServiceStub | None = None
    summary: LotSummary | None = None


@dataclass
class DemoRun:
    """Everything the demo started and learned, for the summary and the report."""

    plan: Plan
    root: Path
    speed: float
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    lots: dict[str, LotRuntime] = field(default_factory=dict)
    platform: ServiceProcess | None = None
    clock: ScaledClock | None = None
    notes: list[str] = field(default_factory=list)
    flags: Counter[str] = field(default_factory=Counter)
    disputes: list[dict[str, object]] = field(default_factory=list)
    events_done: int = 0

    # -- processes ------------------------------------------------------------------------------

    def start_platform(self) -> None:
        self.tls = ensure_dev_tls(self.root / "tls")
        self.platform_port = _free_port()
        # The month is played fast: every process reads one clock, ``speed`` times real time. It
        # stands still a little before the month while everything is set up; ``start_month`` fires it.
        lead = timedelta(hours=2)
        self.clock = ScaledClock(self.plan.month_start - lead, self.speed, epoch_file=self.root / "clock.epoch")
        self.clock_spec = self.clock.spec
        self.platform = ServiceProcess(
            "platform",
            [
                "platform",
                "serve",
                "--listen",
                f"127.0.0.1:{self.platform_port}",
                "--data-dir",
                str(self.root / "platform"),
                "--tls-dir",
                str(self.root / "tls"),
                "--clock",
                self.clock_spec,
            ],
            log_path=self.root / "logs" / "platform.log",
            env={"CROSSPARK_ADMIN_TOKEN": self.admin_token},
        )
        self.platform.start()
        channel = open_channel(f"127.0.0.1:{self.platform_port}", token=self.admin_token, ca_cert=self.tls.ca_cert)
        self.admin = admin_pb2_grpc.AdminServiceStub(channel)
        self.cards = cards_pb2_grpc.CardServiceStub(channel)
        self.settlement = settlement_pb2_grpc.SettlementServiceStub(channel)

    def register(self) -> None:
        for lot in self.plan.lots:
            credentials = self.admin.RegisterLot(
                admin_pb2.RegisterLotRequest(
                    lot=admin_pb2.Lot(
                        lot_id=lot.lot_id,
                        name=lot.name,
                        vendor=lot.vendor,
                        time_zone="Asia/Shanghai",
                        mode=f"MEMBERSHIP_MODE_{lot.mode}",
                        period=f"SETTLEMENT_PERIOD_{lot.period}",
                        close_delay_seconds=3600,
                        membership_deadline_ms=300,
                    )
                )
            )
            tariff = settlement_pb2.Tariff(
                lot_id=lot.lot_id,
                effective_from=_ts(self.plan.month_start - timedelta(days=60)),
                kind=f"TARIFF_KIND_{lot.tariff['kind']}",
                visit_fee_fen=int(lot.tariff.get("visit_fee_fen", 0)),  # type: ignore[call-overload]
                unit_minutes=int(lot.tariff.get("unit_minutes", 0)),  # type: ignore[call-overload]
                bands=[settlement_pb2.TariffBand(start=s, unit_fee_fen=f) for s, f in lot.tariff.get("bands", [])],  # type: ignore[attr-defined]
                free_minutes=int(lot.tariff.get("free_minutes", 0)),  # type: ignore[call-overload]
                cap_per_24h_fen=int(lot.tariff.get("cap_per_24h_fen", 0)),  # type: ignore[call-overload]
            )
            self.settlement.PutTariff(settlement_pb2.PutTariffRequest(tariff=tariff))
            self.lots[lot.lot_id] = LotRuntime(lot, credentials.token, credentials.card_hash_key)

    def apply_cards(self) -> None:
        for card in self.plan.cards:
            self.cards.ApplyCard(
                cards_pb2.ApplyCardRequest(
                    request_id=card.request_id,
                    vehicle=common_pb2.VehicleIdentity(plate=card.plate, color=f"PLATE_COLOR_{card.color.name}"),
                    holder_name=card.holder_name,
                    holder_phone=card.holder_phone,
                    start_date=card.start_date.isoformat(),
                    months=card.months,
                    scope_lot_ids=list(card.scope),
                )
            )

    def start_lots(self) -> None:
        for runtime in self.lots.values():
            lot = runtime.plan
            folder = self.root / lot.lot_id
            folder.mkdir(parents=True, exist_ok=True)
            tariff_file = folder / "temporary-tariff.toml"
            tariff_file.write_text(_temporary_tariff_toml(lot), encoding="utf-8")
            runtime.process = ServiceProcess(
                lot.lot_id,
                [
                    "lot",
                    "serve",
                    "--lot-id",
                    lot.lot_id,
                    "--platform",
                    f"127.0.0.1:{self.platform_port}",
                    "--listen",
                    "127.0.0.1:0",
                    "--data-dir",
                    str(folder),
                    "--ca",
                    str(self.tls.ca_cert),
                    "--tls-dir",
                    str(self.root / "tls"),
                    "--mode",
                    lot.mode,
                    "--card-hash-key",
                    runtime.card_hash_key.hex(),
                    "--temp-tariff",
                    str(tariff_file),
                    "--clock",
                    self.clock_spec,
                ],
                log_path=self.root / "logs" / f"{lot.lot_id}.log",
                env={"CROSSPARK_LOT_TOKEN": runtime.token},
            )
        for runtime in self.lots.values():
            assert runtime.process is not None
            address = runtime.process.start()
            port = address.rsplit(":", 1)[1]
            runtime.gate = gate_pb2_grpc.GateServiceStub(open_channel(f"127.0.0.1:{port}", ca_cert=self.tls.ca_cert))

    def start_month(self) -> None:
        assert self.clock is not None
        self.clock.fire()

    def stop_all(self) -> None:
        for runtime in self.lots.values():
            if runtime.process is not None:
                runtime.process.stop()
        if self.platform is not None:
            self.platform.stop()


def _temporary_tariff_toml(lot: LotPlan) -> str:
    """The lot's own temporary tariff (临时车收费): here the agreed one, doubled."""
    t = lot.tariff
    lines = [f'kind = "{str(t["kind"]).lower()}"']
    if t["kind"] == "PER_VISIT":
        lines.append(f"visit_fee_fen = {int(t['visit_fee_fen']) * 2}")  # type: ignore[call-overload]
    else:
        lines.append(f"unit_minutes = {t['unit_minutes']}")
        lines.append(f"free_minutes = {t.get('free_minutes', 0)}")
        bands = ", ".join(f'{{ start = "{s}", unit_fee_fen = {f * 2} }}' for s, f in t["bands"])  # type: ignore[attr-defined]
        lines.append(f"bands = [{bands}]")
        lines.append(f"cap_per_24h_fen = {int(t.get('cap_per_24h_fen', 0)) * 2}")  # type: ignore[call-overload]
    return "\n".join(lines) + "\n"


class Evidence:
    """Gate photos and ETC frames for the plan's vehicles, made before the month starts."""

    def __init__(self, plan: Plan, seed: int) -> None:
        from recognition_core.etc import VehicleInfo, encode, vehicle_file_for
        from recognition_core.synth import composite_scene, render_plate

        rng = np.random.default_rng(seed)
        self.photos: dict[str, bytes] = {}
        self.frames: dict[str, bytes] = {}
        camera_lots = {lot.lot_id for lot in plan.lots if lot.evidence in ("camera", "both")}
        etc_lots = {lot.lot_id for lot in plan.lots if lot.evidence in ("etc", "both")}
        for visit in plan.visits:
            key = visit.plate
            if visit.lot_id in camera_lots and key not in self.photos:
                scene = composite_scene(render_plate(visit.plate, visit.color, px_per_mm=1.0, rng=rng), rng)
                ok, jpeg = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
                assert ok
                self.photos[key] = jpeg.tobytes()
            if visit.lot_id in etc_lots and visit.has_obu and key not in self.frames:
                obu = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
                record = VehicleInfo(obu, 0, vehicle_file_for(visit.plate, visit.color, size=16))
                self.frames[key] = encode("lane", record)

    def request(self, lot: LotPlan, visit: Visit, direction: str, at: datetime) -> gate_pb2.PassRequest:
        request = gate_pb2.PassRequest(
            gate_id=f"{direction}-1",
            direction=settlement_pb2.DIRECTION_ENTRY if direction == "entry" else settlement_pb2.DIRECTION_EXIT,
            occurred_at=_ts(at),
        )
        if lot.evidence in ("camera", "both"):
            request.image = self.photos[visit.plate]
        if lot.evidence in ("etc", "both") and visit.has_obu:
            request.etc_frame = self.frames[visit.plate]
            request.etc_framing = "lane"
        if not request.image and not request.etc_frame:
            # No OBU at an ETC-only lane: the lane's own camera controller sends its reading.
            request.identity.CopyFrom(
                common_pb2.VehicleIdentity(
                    plate=visit.plate,
                    color=f"PLATE_COLOR_{visit.color.name}",
                    source=common_pb2.IDENTITY_SOURCE_MANUAL,
                    confidence=1.0,
                )
            )
        return request


def corrupt_platform_fee(db_path: Path, visit: Visit, hours: int = 2) -> str | None:
    """The deliberate error: while the platform is down, stretch one stay's settled end in its
    database, so the platform charges for ``hours`` more than the lot recorded. Returns the stay id."""
    entry_us = int(visit.entry_at.timestamp() * 1_000_000)
    with sqlite3.connect(db_path) as connection:
        row = connection.execute(
            "SELECT stay_id FROM stays WHERE lot_id = ? AND plate = ? AND entry_us = ? AND statement_seq IS NULL",
            (visit.lot_id, visit.plate, entry_us),
        ).fetchone()
        if row is None:
            return None
        connection.execute(
            "UPDATE stays SET settle_to_us = settle_to_us + ? WHERE stay_id = ?", (hours * 3_600_000_000, row[0])
        )
    return str(row[0])
