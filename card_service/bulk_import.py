"""Bulk card import (an operator migrating from another system): a CSV file checked row by row as
ApplyCard checks a request, then loaded in batches (executemany of plain tuples on SQLite, COPY on
PostgreSQL), each batch one transaction that takes one block of consecutive global card versions.

Checking and loading overlap: a large file is checked in a second process (``_CheckingProcess``)
that sends the loading process chunks of rows ready to store, so one core checks the next chunk
while the other stores this one (1,000,000 cards on SQLite: 20.7 s in one process, 15.7 s in two,
on a 2-core machine). A thread would not do: the SQLite driver releases and retakes the GIL around
every row it steps, and each retake waits out the checker's switch interval (measured: loading ~10
times slower). Small files are checked in process, where starting a process would cost more than it
saves. On PostgreSQL the server stores a chunk while the next is checked either way.

Column meanings are documented in ``crosspark card import --help``.
"""

from __future__ import annotations

import csv
import gc
import itertools
import multiprocessing
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
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


#: Files at least this large are checked in a process of their own (~40,000 rows).
PARALLEL_MIN_BYTES = 4 << 20


def import_csv(
    db: Database,
    path: Path,
    zone_name: str,
    *,
    batch: int = 100_000,
    dry_run: bool = False,
    now: datetime | None = None,
    retained_changes: int = 200_000,
    parallel: bool | None = None,
) -> ImportReport:
    """Check and load every row of ``path``; rejected rows are reported, the others imported.

    Batches are large (each holds the version lock, so card writers beside it wait for one
    batch): on SQLite each commit rewrites every page of the (plate, colour) index its batch
    touched, and random plates touch most of them: a million cards took ~14 s to store in
    20,000-card transactions, ~10 s in 100,000-card ones. Memory does not grow with the batch: rows
    stream through it in chunks.

    With ``parallel`` (default: for files of ``PARALLEL_MIN_BYTES`` or more) the rows are checked
    in a second process while this one loads the rows checked before: checking is about a quarter
    of the work, and the SQLite driver's per-row release of the GIL rules out a thread for it (see
    the module's docstring)."""
    now = now or datetime.now(UTC)
    domain.time_zone(zone_name)  # an unknown zone is refused before anything starts
    with _csv_rows(path):  # so is a bad header
        pass
    if parallel is None:
        parallel = path.stat().st_size >= PARALLEL_MIN_BYTES
    with _no_gc():
        return _import_csv(db, path, zone_name, batch, dry_run, now, retained_changes, parallel)


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
    now: datetime,
    retained_changes: int,
    parallel: bool,
) -> ImportReport:
    started = time.perf_counter()
    report = ImportReport(dry_run=dry_run)
    checking: _Checking | _CheckingProcess = (
        _CheckingProcess(db, path, zone_name, now) if parallel else _Checking(db, path, zone_name, now)
    )
    try:
        version = checking.start()
        if dry_run:
            report.imported = sum(len(chunk) for chunk in checking.rows(None, 1))
        else:
            loader = _Loader(db, report, zone_name, now, retained_changes, batch)
            while loader.load(checking, version):
                version = report.last_version
        report.rows, report.skipped, report.rejected = checking.finish()
    finally:
        checking.close()
    report.rejected.sort(key=lambda r: r.line)
    report.seconds = time.perf_counter() - started
    return report


class _Checking:
    """The checking side of an import: reads the file, checks each row (``_Checker``) and forms
    the rows that pass into the rows the loader stores (``store.card_rows``), a batch at a time.
    It knows the lots, active cards and request ids of the database as they were when it started,
    and what other writers changed since when told to catch up."""

    #: Rows handed to the loader at a time: on PostgreSQL the server stores one chunk while the
    #: next is checked; across processes, one message.
    CHUNK = 2000

    def __init__(self, db: Database, path: Path, zone_name: str, now: datetime) -> None:
        self._db = db
        self._path = path
        self._zone_name = zone_name
        self._now = now
        self._report = ImportReport()
        self._files = ExitStack()
        self._form = store.card_rows(db.dialect, zone_name, now)

    def start(self) -> int:
        """Read what the checks need from the database; returns the card version it reflects."""
        columns, reader = self._files.enter_context(_csv_rows(self._path))
        overlaps = _Overlaps()
        with self._db.read_session() as session:
            lots = store.all_lot_ids(session)
            version, _ = store.read_versions(session)
            for plate, color, valid_from, valid_until, card_id in store.active_intervals(session):
                overlaps.add(f"{plate}|{color}", (valid_from, valid_until, card_id))
            imported = store.all_request_ids(session) if "request_id" in columns else set()
        self._checker = _Checker(lots, domain.time_zone(self._zone_name), self._now, overlaps, columns, imported)
        self._checked = _checked_rows(reader, self._checker, self._report)
        return version

    def catch_up(self, since: int) -> None:
        """Cards changed by someone else since version ``since``: their intervals (and request
        ids) replace what the checker knew of them. The loader holds the version row meanwhile,
        so no other change can commit until its batch is checked."""
        overlaps, imported = self._checker.overlaps, self._checker.imported
        with self._db.read_session() as session:
            for row in store.changed_since(session.connection(), since, 10**9):
                vehicle = f"{row.plate}|{row.color}"
                overlaps.remove(vehicle, row.card_id)
                if row.state == _ACTIVE:
                    overlaps.add(vehicle, (row.valid_from, row.valid_until, row.card_id))
                if row.request_id is not None:
                    imported.add(row.request_id)

    def rows(self, count: int | None, first_version: int) -> Iterator[list[Any]]:
        """The next ``count`` rows that pass (all with None), formed for the loader in chunks,
        numbered with consecutive card versions from ``first_version``."""
        checked = itertools.islice(self._checked, count)
        version = first_version
        while chunk := list(itertools.islice(checked, self.CHUNK)):
            yield self._form([(*row, v) for row, v in zip(chunk, itertools.count(version))])
            version += len(chunk)

    def finish(self) -> tuple[int, int, list[Rejection]]:
        """(rows read, rows skipped as already imported, rejections)."""
        return self._report.rows, self._report.skipped, self._report.rejected

    def close(self) -> None:
        self._files.close()


class _CheckingProcess:
    """``_Checking`` run in a process of its own (spawned, so it shares nothing with this one's
    threads or connections), driven over a pipe: while the loader stores one chunk, the next is
    checked."""

    def __init__(self, db: Database, path: Path, zone_name: str, now: datetime) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, theirs = context.Pipe()
        url = db.url.render_as_string(hide_password=False)
        self._process = context.Process(
            target=_serve_checking, args=(theirs, url, path, zone_name, now), name="card-import-check", daemon=True
        )
        self._process.start()
        theirs.close()

    def _ask(self, *command: Any) -> Any:
        self._pipe.send(command)
        return self._answer()

    def _answer(self) -> Any:
        try:
            kind, value = self._pipe.recv()
        except (EOFError, OSError):
            raise RuntimeError(
                f"the card import's checking process died (exit code {self._process.exitcode})"
            ) from None
        if kind == "error":
            raise RuntimeError(f"the card import's checking process failed: {value}")
        return value

    def start(self) -> int:
        return int(self._ask("start"))

    def catch_up(self, since: int) -> None:
        self._ask("catch_up", since)

    def rows(self, count: int | None, first_version: int) -> Iterator[list[Any]]:
        self._pipe.send(("rows", count, first_version))
        while (chunk := self._answer()) is not None:
            yield chunk

    def finish(self) -> tuple[int, int, list[Rejection]]:
        rows, skipped, rejected = self._ask("finish")
        return rows, skipped, rejected

    def close(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._pipe.close()


def _serve_checking(pipe: Any, url: str, path: Path, zone_name: str, now: datetime) -> None:
    """The checking process: answers ``_CheckingProcess``'s commands until ``finish``."""
    gc.disable()  # as in the loading process (``_no_gc``)
    db = Database(url)
    checking = _Checking(db, path, zone_name, now)
    try:
        while True:
            try:
                command, *args = pipe.recv()
            except (EOFError, OSError):  # the loading process is gone
                return
            if command == "rows":
                for chunk in checking.rows(*args):
                    pipe.send(("chunk", chunk))
                pipe.send(("chunk", None))
                continue
            pipe.send(("done", getattr(checking, command)(*args)))
            if command == "finish":
                return
    except Exception as error:
        with suppress(OSError):  # unless the loading process is gone too
            pipe.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        checking.close()
        db.dispose()


@dataclass
class _Loader:
    """Loads checked rows, one transaction per batch."""

    db: Database
    report: ImportReport
    zone_name: str
    now: datetime
    retained_changes: int
    batch: int

    def load(self, checking: _Checking | _CheckingProcess, seen_version: int) -> bool:
        """Load the next batch of checked rows in one transaction as the next block of versions;
        False when there were none left.

        The rows are checked while the transaction holds the version row (locked to commit, as by
        every card writer), after the checker has caught up with the cards changed by someone
        else since ``seen_version``: no overlap can slip in, and the block of versions is gap-free
        and in commit order."""
        with self.db.session() as session:
            if self.db.dialect == "sqlite":  # the indexes of a million cards fit in memory: no re-reads
                session.connection().exec_driver_sql("PRAGMA cache_size=-262144")
            version, floor = store.lock_versions(session)
            if version > seen_version:
                checking.catch_up(seen_version)
            first = version + 1
            loaded = 0
            with store.card_loader(session, self.zone_name, self.now) as write:
                for chunk in checking.rows(self.batch, first):
                    write(chunk)
                    loaded += len(chunk)
            if not loaded:
                return False
            version += loaded
            new_floor = version - self.retained_changes if version - floor > self.retained_changes else None
            store.set_version(session, version, new_floor)
        self.report.imported += loaded
        self.report.first_version = self.report.first_version or first
        self.report.last_version = version
        return True
