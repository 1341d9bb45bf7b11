"""Bulk card import (an operator migrating from another system): a CSV file checked row by row as
ApplyCard checks a request, then loaded with Core ``insert()`` executemany in batches, each batch
one transaction that takes consecutive global card versions.

Column meanings are documented in ``crosspark card import --help``.
"""

from __future__ import annotations

import csv
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from card_service import domain, store
from card_service.domain import CardState
from crosspark import plate as plates
from crosspark.db import Database
from crosspark.identity import PlateColor

REQUIRED_COLUMNS = ("plate", "color", "holder_name", "holder_phone", "start_date", "months")
OPTIONAL_COLUMNS = ("scope", "request_id")
_COLOR_NAMES = {c.value: c for c in PlateColor} | {
    str(code): PlateColor.from_etc_code(code) for code in (0, 1, 2, 3, 4, 5, 6, 9)
}
_ACTIVE = CardState.ACTIVE.value
#: What ``_Checker.check`` answers for a row whose request id was imported before.
ALREADY_IMPORTED = "already imported"


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    reason: str
    row: list[str]


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    skipped: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    first_version: int = 0
    last_version: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def summary(self, *, with_rejections: bool) -> dict[str, Any]:
        record: dict[str, Any] = {
            "rows": self.rows,
            "imported": self.imported,
            "skipped": self.skipped,
            "rejected": len(self.rejected),
            "first_version": self.first_version,
            "last_version": self.last_version,
            "seconds": round(self.seconds, 3),
            "cards_per_second": round(self.imported / self.seconds) if self.seconds > 0 else 0,
            "dry_run": self.dry_run,
        }
        if with_rejections:
            record["rejections"] = [{"line": r.line, "reason": r.reason} for r in self.rejected]
        return record

    def write_rejects(self, path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["line", "reason", "row"])
            for r in self.rejected:
                writer.writerow([r.line, r.reason, *r.row])


class _Overlaps:
    """Active validity intervals per vehicle, to refuse overlapping cards (existing and in-file).
    A vehicle usually has one interval, stored bare; more become a list."""

    def __init__(self) -> None:
        self._by_vehicle: dict[str, Any] = {}

    def add(self, vehicle: str, interval: tuple[datetime, datetime, str]) -> None:
        known = self._by_vehicle.get(vehicle)
        if known is None:
            self._by_vehicle[vehicle] = interval
        elif isinstance(known, list):
            known.append(interval)
        else:
            self._by_vehicle[vehicle] = [known, interval]

    def clash(self, vehicle: str, start: datetime, end: datetime) -> str | None:
        known = self._by_vehicle.get(vehicle)
        if known is None:
            return None
        for other_start, other_end, card_id in known if isinstance(known, list) else (known,):
            if other_start < end and start < other_end:
                return card_id
        return None

    def remove(self, vehicle: str, card_id: str) -> None:
        known = self._by_vehicle.get(vehicle)
        if known is None:
            return
        kept = [i for i in (known if isinstance(known, list) else [known]) if i[2] != card_id]
        if not kept:
            del self._by_vehicle[vehicle]
        else:
            self._by_vehicle[vehicle] = kept if len(kept) > 1 else kept[0]


@dataclass
class _Checker:
    """Checks one CSV row; pure apart from what it was given (lots, zone, now, intervals)."""

    lots: set[str]
    zone: ZoneInfo
    zone_name: str
    now: datetime
    overlaps: _Overlaps
    columns: dict[str, int]
    #: Request ids of cards already in the database (rows with these are skipped, not loaded again).
    imported: set[str] = field(default_factory=set)
    request_ids: set[str] = field(default_factory=set)
    _validity: dict[tuple[str, int], tuple[datetime, datetime, date]] = field(default_factory=dict)

    def check(self, row: list[str], card_id: str) -> dict[str, Any] | str:
        """The card row to insert, or the reason the row is rejected."""
        col = self.columns
        if len(row) < len(col):
            return f"has {len(row)} fields, the header has {len(col)}"
        try:
            plate = plates.parse(row[col["plate"]])
        except plates.PlateError as error:
            return f"plate: {error} (rule: {error.rule})"
        color = _COLOR_NAMES.get(row[col["color"]].strip().lower())
        if color is None:
            return f"color: {row[col['color']]!r} is not a plate colour ({', '.join(c.value for c in PlateColor)})"
        violations: list[tuple[str, str]] = []
        name, phone = domain.check_holder(row[col["holder_name"]], row[col["holder_phone"]], violations)
        if violations:
            return "; ".join(f"{f}: {d}" for f, d in violations)
        months_text = row[col["months"]].strip()
        if not months_text.isdigit() or not 1 <= int(months_text) <= domain.MAX_MONTHS:
            return f"months: must be 1-{domain.MAX_MONTHS}, not {months_text!r}"
        months = int(months_text)
        start_text = row[col["start_date"]].strip()
        validity = self._validity.get((start_text, months))
        if validity is None:
            try:
                start = date.fromisoformat(start_text) if len(start_text) == 10 else None
            except ValueError:
                start = None
            if start is None:
                return f"start_date: {start_text!r} is not a date YYYY-MM-DD"
            validity = (*domain.validity(start, months, self.zone), start)
            self._validity[(start_text, months)] = validity
        valid_from, valid_until, start = validity
        if valid_until <= self.now:
            return f"start_date: a card from {start_text} for {months} month(s) has already ended"
        scope = ""
        if "scope" in col and (scope_text := row[col["scope"]].strip()):
            lots = [s.strip() for s in scope_text.split(";") if s.strip()]
            unknown = [lot for lot in lots if lot not in self.lots]
            if unknown:
                return f"scope: lot(s) not registered: {', '.join(unknown)}"
            scope = ",".join(dict.fromkeys(lots))
        request_id = None
        if "request_id" in col and (request_id := row[col["request_id"]].strip() or None) is not None:
            if len(request_id) > domain.MAX_REQUEST_ID:
                return f"request_id: at most {domain.MAX_REQUEST_ID} characters"
            if request_id in self.imported:
                return ALREADY_IMPORTED
            if request_id in self.request_ids:
                return f"request_id: {request_id!r} appears twice in the file"
            self.request_ids.add(request_id)
        vehicle = f"{plate}|{color.value}"
        clash = self.overlaps.clash(vehicle, valid_from, valid_until)
        if clash is not None:
            return f"{plate} {color.value} already has active card {clash}, which overlaps this one"
        self.overlaps.add(vehicle, (valid_from, valid_until, card_id))
        return {
            "card_id": card_id,
            "request_id": request_id,
            "request_digest": "",
            "plate": plate,
            "color": color.value,
            "holder_name": name,
            "holder_phone": phone,
            "start_date": start,
            "months": months,
            "time_zone": self.zone_name,
            "valid_from": valid_from,
            "valid_until": valid_until,
            "scope": scope,
            "state": _ACTIVE,
            "cancel_reason": "",
            "version": 0,
            "created_at": self.now,
            "updated_at": self.now,
        }


def _card_ids(now: datetime) -> Iterator[str]:
    """Card ids of this instant, consecutive (appended to the primary-key index)."""
    for value in domain.monotonic_ulids(now):
        yield "card_" + value


def _rows(path: Path) -> tuple[dict[str, int], Iterator[tuple[int, list[str]]]]:
    handle = path.open(newline="", encoding="utf-8-sig")
    reader = csv.reader(handle)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        handle.close()
        raise ValueError(f"{path} is empty: a header row is required") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        handle.close()
        raise ValueError(
            f"{path}: header must name {', '.join(REQUIRED_COLUMNS)} [, {', '.join(OPTIONAL_COLUMNS)}]"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    columns = {name: index for index, name in enumerate(header)}

    def rows() -> Iterator[tuple[int, list[str]]]:
        with handle:
            for row in reader:
                if row and any(row):
                    yield reader.line_num, row

    return columns, rows()


def import_csv(
    db: Database,
    path: Path,
    zone_name: str,
    *,
    batch: int = 20_000,
    dry_run: bool = False,
    now: datetime | None = None,
    retained_changes: int = 200_000,
) -> ImportReport:
    """Check and load every row of ``path``; rejected rows are reported, the others imported.

    Rows are checked in this thread while a writer thread loads the previous batch (the SQLite and
    PostgreSQL drivers release the GIL while the database works), so the two costs overlap.
    """
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    zone = domain.time_zone(zone_name)
    columns, rows = _rows(path)
    overlaps = _Overlaps()
    with db.read_session() as session:
        lots = store.all_lot_ids(session)
        seen_version, _ = store.read_versions(session)
        for plate, color, valid_from, valid_until, card_id in store.active_intervals(session):
            overlaps.add(f"{plate}|{color}", (valid_from, valid_until, card_id))
        imported = store.all_request_ids(session) if "request_id" in columns else set()
    checker = _Checker(lots, zone, zone_name, now, overlaps, columns, imported)
    report = ImportReport(dry_run=dry_run)
    guard = threading.Lock()  # the checker's state: this thread checks, the writer re-checks
    batches: queue.Queue[list[tuple[int, list[str], dict[str, Any]]] | None] = queue.Queue(maxsize=2)
    failure: list[BaseException] = []

    def write() -> None:
        version = seen_version
        try:
            while (pending := batches.get()) is not None:
                version = _load(db, pending, report, checker, guard, version, now, retained_changes)
        except BaseException as error:
            failure.append(error)
            while batches.get() is not None:  # let the reader finish without blocking
                pass

    writer = threading.Thread(target=write, name="card-import-writer", daemon=True)
    if not dry_run:
        writer.start()
    pending: list[tuple[int, list[str], dict[str, Any]]] = []
    ids = _card_ids(now)
    try:
        for line, row in rows:
            report.rows += 1
            with guard:
                checked = checker.check(row, next(ids))
            if checked is ALREADY_IMPORTED:
                report.skipped += 1
                continue
            if isinstance(checked, str):
                report.rejected.append(Rejection(line, checked, row))
                continue
            pending.append((line, row, checked))
            if len(pending) >= batch:
                if not dry_run:
                    batches.put(pending)
                pending = []
            if failure:
                break
    finally:
        if not dry_run:
            batches.put(pending)
            batches.put(None)
            writer.join()
    if failure:
        raise failure[0]
    if dry_run:
        report.imported = report.rows - len(report.rejected)
    report.rejected.sort(key=lambda r: r.line)
    report.seconds = time.perf_counter() - started
    return report


def _load(
    db: Database,
    pending: list[tuple[int, list[str], dict[str, Any]]],
    report: ImportReport,
    checker: _Checker,
    guard: threading.Lock,
    seen_version: int,
    now: datetime,
    retained_changes: int,
) -> int:
    """Insert one batch in one transaction; returns the version it ends at."""
    if not pending:
        return seen_version
    with db.session() as session:
        if db.dialect == "sqlite":  # the indexes of a million cards fit in memory: no re-reads
            session.connection().exec_driver_sql("PRAGMA cache_size=-262144")
        version, floor = store.lock_versions(session)
        done: set[str] = set()
        if version > seen_version:  # someone else changed cards since they were checked
            with guard:
                _recheck(session, pending, report, checker.overlaps, seen_version)
            wanted = [cols["request_id"] for _, _, cols in pending if cols["request_id"]]
            done = store.existing_request_ids(session, wanted) if wanted else set()
        cards = []
        for _, _, cols in pending:
            if cols["request_id"] in done:  # imported meanwhile by a concurrent run
                continue
            version += 1
            cols["version"] = version
            cards.append(cols)
        with guard:
            report.skipped += len(pending) - len(cards)
        if not cards:
            return version
        store.insert_cards(session, cards)
        store.record_changes(
            session,
            [{"version": c["version"], "card_id": c["card_id"], "kind": "imported", "changed_at": now} for c in cards],
        )
        new_floor = None
        if version - floor > retained_changes:
            new_floor = version - retained_changes
            store.prune_changes(session, new_floor)
        store.set_version(session, version, new_floor)
    report.imported += len(cards)
    report.first_version = report.first_version or cards[0]["version"]
    report.last_version = version
    return version


def _recheck(
    session: Any,
    pending: list[tuple[int, list[str], dict[str, Any]]],
    report: ImportReport,
    overlaps: _Overlaps,
    since: int,
) -> None:
    """Cards changed by someone else since the check: refuse batch rows they now overlap."""
    changed = store.changed_since(session.connection(), since, 10**9)
    touched = set()
    for row in changed:
        vehicle = f"{row.plate}|{row.color}"
        overlaps.remove(vehicle, row.card_id)
        if row.state == _ACTIVE:
            overlaps.add(vehicle, (row.valid_from, row.valid_until, row.card_id))
        touched.add(vehicle)
    kept = []
    for line, raw, cols in pending:
        vehicle = f"{cols['plate']}|{cols['color']}"
        if vehicle in touched:
            clash = next(
                (
                    r.card_id
                    for r in changed
                    if f"{r.plate}|{r.color}" == vehicle
                    and r.state == _ACTIVE
                    and r.valid_from < cols["valid_until"]
                    and cols["valid_from"] < r.valid_until
                ),
                None,
            )
            if clash is not None:
                overlaps.remove(vehicle, cols["card_id"])
                report.rejected.append(
                    Rejection(
                        line,
                        f"{cols['plate']} {cols['color']} got active card {clash} during the import, which overlaps",
                        raw,
                    )
                )
                continue
        kept.append((line, raw, cols))
    pending[:] = kept
