"""Bulk card import (an operator migrating from another system): a CSV file checked row by row as
ApplyCard checks a request, then loaded in batches (executemany of plain tuples on SQLite, COPY on
PostgreSQL), each batch one transaction that takes one block of consecutive global card versions.

Checking and loading alternate in one thread, a chunk of rows at a time. A writer thread beside
the checker would overlap them in principle, but the SQLite driver releases and retakes the GIL
around every row it steps, and each retake waits out the checker's switch interval: measured, that
made loading ~10 times slower. On PostgreSQL the server stores a chunk while the next is checked.

Column meanings are documented in ``crosspark card import --help``.
"""

from __future__ import annotations

import csv
import gc
import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
#: Colour names and ETC colour codes → stored colour values.
_COLOR_VALUES = {c.value: c.value for c in PlateColor} | {
    str(code): PlateColor.from_etc_code(code).value for code in (0, 1, 2, 3, 4, 5, 6, 9)
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
        known = self._by_vehicle.setdefault(vehicle, interval)
        if known is interval:
            return
        if isinstance(known, list):
            known.append(interval)
        else:
            self._by_vehicle[vehicle] = [known, interval]

    def claim(self, vehicle: str, interval: tuple[datetime, datetime, str]) -> str | None:
        """Add ``interval`` unless it overlaps a known one; returns the card id of that one. A
        vehicle seen for the first time (nearly every row of a migration) costs one dict call."""
        known = self._by_vehicle.setdefault(vehicle, interval)
        if known is interval:
            return None
        clash = self.clash(vehicle, interval[0], interval[1])
        if clash is None:
            self.add(vehicle, interval)
        return clash

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


#: A checked row: ``store.LOAD_COLUMNS`` but the version (given when its batch is loaded).
Checked = tuple[str, str | None, str, str, str, str, date, int, datetime, datetime, str]
#: (valid_from, valid_until, start date, months) of a (start_date, months) text pair, or why not.
Validity = tuple[datetime, datetime, date, int] | str


@dataclass
class _Checker:
    """Checks one CSV row; pure apart from what it was given (lots, zone, now, intervals)."""

    lots: set[str]
    zone: ZoneInfo
    now: datetime
    overlaps: _Overlaps
    columns: dict[str, int]
    #: Request ids of cards already in the database (rows with these are skipped, not loaded again).
    imported: set[str] = field(default_factory=set)
    request_ids: set[str] = field(default_factory=set)
    #: Validity of each (start_date, months) text pair met so far: a file has few distinct ones.
    _validity: dict[tuple[str, str], Validity] = field(default_factory=dict)

    def __post_init__(self) -> None:
        col = self.columns
        self._fields = (col["plate"], col["color"], col["holder_name"], col["holder_phone"])
        self._term = (col["start_date"], col["months"])
        self._scope = col.get("scope")
        self._request_id = col.get("request_id")

    def check(self, row: list[str], card_id: str) -> Checked | str:
        """The card row to load, or the reason the row is rejected."""
        if len(row) < len(self.columns):
            return f"has {len(row)} fields, the header has {len(self.columns)}"
        i_plate, i_color, i_name, i_phone = self._fields
        try:
            plate = plates.parse(row[i_plate])
        except plates.PlateError as error:
            return f"plate: {error} (rule: {error.rule})"
        color = _COLOR_VALUES.get(row[i_color]) or _COLOR_VALUES.get(row[i_color].strip().lower())
        if color is None:
            return f"color: {row[i_color]!r} is not a plate colour ({', '.join(c.value for c in PlateColor)})"
        violations: list[tuple[str, str]] = []
        name, phone = domain.check_holder(row[i_name], row[i_phone], violations)
        if violations:
            return "; ".join(f"{f}: {d}" for f, d in violations)
        term = (row[self._term[0]], row[self._term[1]])
        validity = self._validity.get(term)
        if validity is None:
            validity = self._validity[term] = self._validity_of(*term)
        if isinstance(validity, str):
            return validity
        valid_from, valid_until, start, months = validity
        scope = ""
        if self._scope is not None and (scope_text := row[self._scope]):
            lots = self._lots_of(scope_text)
            if lots is None:
                return f"scope: lot(s) not registered: {', '.join(self._unknown_lots(scope_text))}"
            scope = lots
        request_id = row[self._request_id].strip() or None if self._request_id is not None else None
        if request_id is not None:
            if len(request_id) > domain.MAX_REQUEST_ID:
                return f"request_id: at most {domain.MAX_REQUEST_ID} characters"
            if request_id in self.imported:
                return ALREADY_IMPORTED
            if request_id in self.request_ids:
                return f"request_id: {request_id!r} appears twice in the file"
            self.request_ids.add(request_id)
        clash = self.overlaps.claim(f"{plate}|{color}", (valid_from, valid_until, card_id))
        if clash is not None:
            return f"{plate} {color} already has active card {clash}, which overlaps this one"
        return (card_id, request_id, plate, color, name, phone, start, months, valid_from, valid_until, scope)

    def _validity_of(self, start_text: str, months_text: str) -> Validity:
        months_text = months_text.strip()
        if not months_text.isdigit() or not 1 <= int(months_text) <= domain.MAX_MONTHS:
            return f"months: must be 1-{domain.MAX_MONTHS}, not {months_text!r}"
        months = int(months_text)
        start_text = start_text.strip()
        try:
            start = date.fromisoformat(start_text) if len(start_text) == 10 else None
        except ValueError:
            start = None
        if start is None:
            return f"start_date: {start_text!r} is not a date YYYY-MM-DD"
        valid_from, valid_until = domain.validity(start, months, self.zone)
        if valid_until <= self.now:
            return f"start_date: a card from {start_text} for {months} month(s) has already ended"
        return valid_from, valid_until, start, months

    @staticmethod
    def _split(text: str) -> list[str]:
        return [s.strip() for s in text.split(";") if s.strip()]

    def _lots_of(self, text: str) -> str | None:
        """The stored scope ("," between lot ids, "" for every lot), or None if a lot is unknown."""
        lots = self._split(text)
        if any(lot not in self.lots for lot in lots):
            return None
        return ",".join(dict.fromkeys(lots))

    def _unknown_lots(self, text: str) -> list[str]:
        return [lot for lot in self._split(text) if lot not in self.lots]


def _card_ids(now: datetime) -> Iterator[str]:
    """Card ids of this instant, consecutive (appended to the primary-key index)."""
    for value in domain.monotonic_ulids(now):
        yield "card_" + value


@contextmanager
def _csv_rows(path: Path) -> Iterator[tuple[dict[str, int], Any]]:
    """The header's column positions and a ``csv.reader`` over the remaining rows."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path} is empty: a header row is required") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if missing or unknown:
            raise ValueError(
                f"{path}: header must name {', '.join(REQUIRED_COLUMNS)} [, {', '.join(OPTIONAL_COLUMNS)}]"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        yield {name: index for index, name in enumerate(header)}, reader


def _checked_rows(reader: Any, checker: _Checker, report: ImportReport) -> Iterator[Checked]:
    """The rows of ``reader`` that pass the checks; the others are counted in ``report``."""
    ids = _card_ids(checker.now)
    check = checker.check
    for row in reader:
        if not row or (not row[0] and not any(row)):
            continue
        report.rows += 1
        checked = check(row, next(ids))
        if not isinstance(checked, str):
            yield checked
        elif checked is ALREADY_IMPORTED:
            report.skipped += 1
        else:
            report.rejected.append(Rejection(reader.line_num, checked, row))


def import_csv(
    db: Database,
    path: Path,
    zone_name: str,
    *,
    batch: int = 100_000,
    dry_run: bool = False,
    now: datetime | None = None,
    retained_changes: int = 200_000,
) -> ImportReport:
    """Check and load every row of ``path``; rejected rows are reported, the others imported.

    Batches are large (each holds the version lock, so card writers beside it wait for one
    batch): on SQLite each commit rewrites every page of the (plate, colour) index its batch
    touched, and random plates touch most of them: a million cards took ~14 s to store in
    20,000-card transactions, ~10 s in 100,000-card ones. Memory does not grow with the batch: rows stream through
    it in chunks."""
    with _no_gc():
        return _import_csv(db, path, zone_name, batch, dry_run, now, retained_changes)


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector off: it would traverse the million tuples an import keeps
    (the validity intervals of every vehicle) again and again, which measured a third of the import's CPU time;
    the import makes no reference cycles for it to find."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _import_csv(
    db: Database,
    path: Path,
    zone_name: str,
    batch: int,
    dry_run: bool,
    now: datetime | None,
    retained_changes: int,
) -> ImportReport:
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    zone = domain.time_zone(zone_name)
    report = ImportReport(dry_run=dry_run)
    with _csv_rows(path) as (columns, reader):
        overlaps = _Overlaps()
        with db.read_session() as session:
            lots = store.all_lot_ids(session)
            version, _ = store.read_versions(session)
            for plate, color, valid_from, valid_until, card_id in store.active_intervals(session):
                overlaps.add(f"{plate}|{color}", (valid_from, valid_until, card_id))
            imported = store.all_request_ids(session) if "request_id" in columns else set()
        checker = _Checker(lots, zone, now, overlaps, columns, imported)
        rows = _checked_rows(reader, checker, report)
        if dry_run:
            report.imported = sum(1 for _ in rows)
        else:
            loader = _Loader(db, checker, report, zone_name, now, retained_changes)
            while loader.load(itertools.islice(rows, batch), version):
                version = report.last_version
    report.rejected.sort(key=lambda r: r.line)
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class _Loader:
    """Loads checked rows, one transaction per batch."""

    db: Database
    checker: _Checker
    report: ImportReport
    zone_name: str
    now: datetime
    retained_changes: int
    #: Rows handed to the database at a time: on PostgreSQL the server stores one chunk while
    #: the next is checked.
    chunk: int = 2000

    def load(self, rows: Iterator[Checked], seen_version: int) -> bool:
        """Check and load ``rows`` in one transaction as the next block of versions; False when
        there were none left.

        The rows are checked inside the transaction, after the version row is locked (held to
        commit, as by every card writer): any card changed by someone else since
        ``seen_version`` is known to the checker first, so no overlap can slip in, and the block
        of versions is gap-free and in commit order."""
        with self.db.session() as session:
            if self.db.dialect == "sqlite":  # the indexes of a million cards fit in memory: no re-reads
                session.connection().exec_driver_sql("PRAGMA cache_size=-262144")
            version, floor = store.lock_versions(session)
            if version > seen_version:
                self._catch_up(session, seen_version)
            first = version + 1
            card_ids: list[str] = []
            with store.card_loader(session, self.zone_name, self.now) as write:
                while chunk := list(itertools.islice(rows, self.chunk)):
                    start = first + len(card_ids)
                    numbered = [(*checked, v) for checked, v in zip(chunk, itertools.count(start))]
                    write(numbered)
                    card_ids.extend(checked[0] for checked in chunk)
            if not card_ids:
                return False
            version += len(card_ids)
            store.load_changes(session, first, card_ids, "imported", self.now)
            new_floor = None
            if version - floor > self.retained_changes:
                new_floor = version - self.retained_changes
                store.prune_changes(session, new_floor)
            store.set_version(session, version, new_floor)
        self.report.imported += len(card_ids)
        self.report.first_version = self.report.first_version or first
        self.report.last_version = version
        return True

    def _catch_up(self, session: Any, since: int) -> None:
        """Cards changed by someone else since ``since``: their intervals (and request ids) replace
        what the checker knew of them."""
        overlaps, imported = self.checker.overlaps, self.checker.imported
        for row in store.changed_since(session.connection(), since, 10**9):
            vehicle = f"{row.plate}|{row.color}"
            overlaps.remove(vehicle, row.card_id)
            if row.state == _ACTIVE:
                overlaps.add(vehicle, (row.valid_from, row.valid_until, row.card_id))
            if row.request_id is not None:
                imported.add(row.request_id)
