"""The statement file (对账文件, DESIGN section 8): writer, parser, digest and Ed25519 signature.

Pure (no I/O): the platform writes and signs statements with it; the lot node verifies and parses
them with the same code. Layout, UTF-8 with a byte-order mark, CRLF line ends::

    # crosspark statement 对账文件
    # lot: lot-a
    # statement_id: stmt_lot-a_3
    # seq: 3
    # settlement_period: MONTHLY
    # period: [2026-11-01T00:00:00+08:00, 2026-12-01T00:00:00+08:00) Asia/Shanghai
    # issued_at: 2026-12-01T01:00:04+08:00
    # key_id: 5f0c…
    line_no,kind,stay_id,…,fee_yuan,…            (the column header, COLUMNS)
    1,STAY,…,25.00,…                              (money in yuan, 2 decimals)
    # line_count: 1
    # visit_count: 0
    # total_fee_yuan: 25.00

Instants are ISO 8601 in the lot's zone with their UTC offset, to the second.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

BOM = "\ufeff"
TITLE = "crosspark statement 对账文件"
COLUMNS = (
    "line_no",
    "kind",
    "stay_id",
    "card_id",
    "plate",
    "color",
    "entry_at",
    "exit_at",
    "duration_seconds",
    "units",
    "visits",
    "tariff_version",
    "fee_yuan",
    "entry_passage_id",
    "exit_passage_id",
    "late",
    "adjusts",
)
LINE_KINDS = ("STAY", "ADJUSTMENT")


class StatementFileError(ValueError):
    """A statement file that cannot be read, or whose digest or signature does not check."""


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One detail row; ``fee_fen`` in fen (the file carries yuan). ``adjusts`` is
    ``"<statement_id>#<line_no>"`` on ADJUSTMENT lines."""

    line_no: int
    kind: str
    stay_id: str
    card_id: str
    plate: str
    color: str
    entry_at: datetime
    exit_at: datetime
    duration_seconds: int
    units: int
    visits: int
    tariff_version: int
    fee_fen: int
    entry_passage_id: str
    exit_passage_id: str
    late: bool = False
    adjusts: str = ""


@dataclass(frozen=True, slots=True)
class StatementHeader:
    statement_id: str
    lot_id: str
    seq: int
    settlement_period: str
    period_from: datetime
    period_to: datetime
    time_zone: str
    issued_at: datetime
    key_id: str


@dataclass(frozen=True, slots=True)
class StatementTotals:
    line_count: int
    visit_count: int
    total_fee_fen: int

    @classmethod
    def of(cls, lines: Sequence[StatementLine]) -> StatementTotals:
        return cls(len(lines), sum(line.visits for line in lines), sum(line.fee_fen for line in lines))


@dataclass(frozen=True)
class StatementDocument:
    header: StatementHeader
    lines: list[StatementLine]
    totals: StatementTotals


# ---------------------------------------------------------------------------------------- money


def yuan(fen: int) -> str:
    """Fen as yuan with exactly two decimals: 2500 → ``"25.00"``, -5 → ``"-0.05"``."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def fen_of(text: str) -> int:
    """``"25.00"`` → 2500, exactly (no floating point)."""
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    whole, sep, cents = body.lstrip("+-").partition(".")
    if not whole.isdigit() or not sep or len(cents) != 2 or not cents.isdigit():
        raise StatementFileError(f"{text!r} is not an amount in yuan with two decimals")
    return sign * (int(whole) * 100 + int(cents))


# ---------------------------------------------------------------------------------------- writing


def render(header: StatementHeader, lines: Sequence[StatementLine]) -> bytes:
    """The file's bytes."""
    zone = ZoneInfo(header.time_zone)
    return render_rows(header, (line_row(line, zone) for line in lines), StatementTotals.of(lines))


def line_row(line: StatementLine, zone: ZoneInfo) -> tuple[object, ...]:
    """A line as its formatted detail row."""
    return (
        line.line_no,
        line.kind,
        line.stay_id,
        line.card_id,
        line.plate,
        line.color,
        line.entry_at.astimezone(zone).isoformat(timespec="seconds"),
        line.exit_at.astimezone(zone).isoformat(timespec="seconds"),
        line.duration_seconds,
        line.units,
        line.visits,
        line.tariff_version,
        yuan(line.fee_fen),
        line.entry_passage_id,
        line.exit_passage_id,
        "true" if line.late else "false",
        line.adjusts,
    )


def render_rows(header: StatementHeader, rows: Iterable[Sequence[object]], totals: StatementTotals) -> bytes:
    """The file's bytes from detail rows already formatted in ``COLUMNS`` order (the issuing fast
    path; ``format_instants`` and ``yuan`` give the formats ``render`` uses)."""
    zone = ZoneInfo(header.time_zone)

    def local(instant: datetime) -> str:
        return instant.astimezone(zone).isoformat(timespec="seconds")

    out = io.StringIO()
    out.write(BOM)
    out.write(f"# {TITLE}\r\n")
    for key, value in (
        ("lot", header.lot_id),
        ("statement_id", header.statement_id),
        ("seq", header.seq),
        ("settlement_period", header.settlement_period),
        ("period", f"[{local(header.period_from)}, {local(header.period_to)}) {header.time_zone}"),
        ("issued_at", local(header.issued_at)),
        ("key_id", header.key_id),
    ):
        out.write(f"# {key}: {value}\r\n")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    out.write(
        f"# line_count: {totals.line_count}\r\n# visit_count: {totals.visit_count}\r\n"
        f"# total_fee_yuan: {yuan(totals.total_fee_fen)}\r\n"
    )
    return out.getvalue().encode("utf-8")


def format_instants(epoch_seconds: np.ndarray, time_zone: str) -> list[str]:
    """ISO 8601 texts of many instants in a zone, exactly as ``datetime.isoformat(timespec="seconds")``
    writes them after ``astimezone`` (vectorised: statements hold a million of them)."""
    from settlement.tariff import offset_changes

    seconds = np.asarray(epoch_seconds, dtype=np.int64)
    if seconds.size == 0:
        return []
    changes, offsets = offset_changes(time_zone, int(seconds.min()) // 86_400, int(seconds.max()) // 86_400)
    offset = (
        offsets[np.searchsorted(changes, seconds, side="right")] if changes.size else np.full_like(seconds, offsets[0])
    )
    texts = np.datetime_as_string((seconds + offset).astype("datetime64[s]"), unit="s").tolist()
    suffixes = {int(o): _offset_text(int(o)) for o in np.unique(offset)}
    if len(suffixes) == 1:
        suffix = next(iter(suffixes.values()))
        return [t + suffix for t in texts]
    return [t + suffixes[o] for t, o in zip(texts, offset.tolist(), strict=True)]


def _offset_text(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


# ---------------------------------------------------------------------------------------- reading


def _instant(text: str, what: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise StatementFileError(f"{what}: {text!r} is not an ISO 8601 instant") from None
    if value.tzinfo is None:
        raise StatementFileError(f"{what}: {text!r} has no UTC offset")
    return value


def parse(data: bytes) -> StatementDocument:
    """Read a statement file; its summary must agree with its lines."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StatementFileError(f"not UTF-8: {exc}") from None
    if not text.startswith(BOM):
        raise StatementFileError("no UTF-8 byte-order mark")
    comments: dict[str, str] = {}
    body: list[str] = []
    for raw in text[1:].splitlines():
        if raw.startswith("#"):
            key, sep, value = raw[1:].strip().partition(": ")
            if sep:
                comments[key] = value
        elif raw:
            body.append(raw)
    try:
        period_text, zone_name = comments["period"].rsplit(" ", 1)
        period_from_text, period_to_text = period_text.strip("[)").split(", ")
        header = StatementHeader(
            statement_id=comments["statement_id"],
            lot_id=comments["lot"],
            seq=int(comments["seq"]),
            settlement_period=comments["settlement_period"],
            period_from=_instant(period_from_text, "period"),
            period_to=_instant(period_to_text, "period"),
            time_zone=zone_name,
            issued_at=_instant(comments["issued_at"], "issued_at"),
            key_id=comments["key_id"],
        )
        stated = StatementTotals(
            int(comments["line_count"]), int(comments["visit_count"]), fen_of(comments["total_fee_yuan"])
        )
    except (KeyError, ValueError) as exc:
        raise StatementFileError(f"header or summary incomplete: {exc}") from None
    rows = list(csv.reader(body))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise StatementFileError("missing or unexpected column header")
    lines = [_line(row, number) for number, row in enumerate(rows[1:], start=1)]
    totals = StatementTotals.of(lines)
    if totals != stated:
        raise StatementFileError(f"summary {stated} does not match the lines {totals}")
    return StatementDocument(header, lines, totals)


def _line(row: list[str], number: int) -> StatementLine:
    if len(row) != len(COLUMNS):
        raise StatementFileError(f"row {number}: {len(row)} fields, expected {len(COLUMNS)}")
    f = dict(zip(COLUMNS, row, strict=True))
    if f["kind"] not in LINE_KINDS:
        raise StatementFileError(f"row {number}: unknown kind {f['kind']!r}")
    try:
        return StatementLine(
            line_no=int(f["line_no"]),
            kind=f["kind"],
            stay_id=f["stay_id"],
            card_id=f["card_id"],
            plate=f["plate"],
            color=f["color"],
            entry_at=_instant(f["entry_at"], f"row {number} entry_at"),
            exit_at=_instant(f["exit_at"], f"row {number} exit_at"),
            duration_seconds=int(f["duration_seconds"]),
            units=int(f["units"]),
            visits=int(f["visits"]),
            tariff_version=int(f["tariff_version"]),
            fee_fen=fen_of(f["fee_yuan"]),
            entry_passage_id=f["entry_passage_id"],
            exit_passage_id=f["exit_passage_id"],
            late=f["late"] == "true",
            adjusts=f["adjusts"],
        )
    except ValueError as exc:
        raise StatementFileError(f"row {number}: {exc}") from None


# ---------------------------------------------------------------------------------------- digest, signature


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_id(public_key: bytes) -> str:
    """A signing key's id: the first 16 hex digits of the SHA-256 of its raw public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def public_key_of(private_key: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return (
        Ed25519PrivateKey.from_private_bytes(private_key)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def new_private_key() -> bytes:
    """A fresh Ed25519 private key, raw 32 bytes."""
    from cryptography.hazmat.primitives import serialization

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def sign(private_key: bytes, data: bytes) -> bytes:
    """Ed25519 signature (64 bytes) of the file bytes."""
    return Ed25519PrivateKey.from_private_bytes(private_key).sign(data)


def verify(data: bytes, signature: bytes, public_key: bytes, sha256: str | None = None) -> None:
    """Check the file against its published digest (when given) and the platform's signature;
    raise ``StatementFileError`` saying which check failed."""
    if sha256 is not None and sha256_hex(data) != sha256.lower():
        raise StatementFileError("SHA-256 of the file does not match the published digest")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        raise StatementFileError("Ed25519 signature does not verify with the platform key") from None
