"""Bulk card import on SQLite and PostgreSQL: what is stored, versions, writers beside it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from card_service import bulk_import, domain, service, store
from card_service.bulk_import import import_csv
from card_service.domain import CardApplication, CardState, MembershipMode, SettlementPeriod
from crosspark.db import Database, upgrade
from crosspark.identity import PlateColor

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
HEADER = "plate,color,holder_name,holder_phone,start_date,months,scope,request_id\n"
ZONE = "Asia/Shanghai"


@pytest.fixture(autouse=True, params=["checked in process", "checked in a process of its own"])
def checking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the rows checked both ways (``import_csv`` picks by file size)."""
    own_process = request.param != "checked in process"
    monkeypatch.setattr(bulk_import, "PARALLEL_MIN_BYTES", 0 if own_process else 1 << 62)
    return str(request.param)


@pytest.fixture
def env(db_url: str) -> Iterator[service.CardEnv]:
    db = Database(db_url)
    upgrade(db, "platform")
    yield service.CardEnv(db, lambda: NOW, ZONE)
    db.dispose()


def write(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "cards.csv"
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


def versions(env: service.CardEnv) -> list[int]:
    with env.db.read_session() as session:
        return list(session.scalars(sa.select(store.CardRow.version).order_by(store.CardRow.version)))


def test_imported_cards_read_back_as_written(env: service.CardEnv, tmp_path: Path) -> None:
    values = {"lot_id": "lot-a", "name": "a", "time_zone": ZONE, "mode": MembershipMode.ONLINE}
    service.register_lot(env, {**values, "period": SettlementPeriod.DAILY})
    path = write(
        tmp_path,
        "粤B11111,blue,张三,138 0000 0000,2027-01-31,1,lot-a,r1",
        "京AD12345,4,李四,+8613800000000,2027-02-01,12,,",
    )
    report = import_csv(env.db, path, ZONE, now=NOW)
    assert (report.imported, report.rejected, report.first_version, report.last_version) == (2, [], 1, 2)
    with env.db.read_session() as session:
        cards = {c.plate: c for c in store.page_cards(session, "", 10)}
        request_ids = store.all_request_ids(session)
        versions_and_floor = store.read_versions(session)
    first, second = cards["粤B11111"], cards["京AD12345"]
    assert (first.color, first.holder_phone, first.scope, first.state) == (
        PlateColor.BLUE,
        "13800000000",
        ("lot-a",),
        CardState.ACTIVE,
    )
    assert (first.start_date, first.months, first.time_zone) == (date(2027, 1, 31), 1, ZONE)
    assert (first.valid_from, first.valid_until) == domain.validity(date(2027, 1, 31), 1, domain.time_zone(ZONE))
    assert (first.created_at, first.updated_at, first.version) == (NOW, NOW, 1)
    assert (second.color, second.months, second.scope, second.version) == (PlateColor.GREEN, 12, (), 2)
    assert request_ids == {"r1"}
    assert versions_and_floor == (2, 0)  # far below the resume window: the floor stays


def test_batches_take_consecutive_versions_after_existing_cards(env: service.CardEnv, tmp_path: Path) -> None:
    service.apply_card(
        env, CardApplication("a1", "粤B00001", PlateColor.BLUE, "张三", "13800000000", date(2027, 1, 1), 1)
    )
    path = write(tmp_path, *(f"粤B{i:05d},blue,张三,13800000000,2027-01-01,1,," for i in range(2, 9)))
    report = import_csv(env.db, path, ZONE, batch=3, now=NOW, retained_changes=3)
    assert (report.imported, report.first_version, report.last_version) == (7, 2, 8)
    assert versions(env) == list(range(1, 9))
    with env.db.read_session() as session:
        # lots may resume from 3 versions back at most: one further behind gets a snapshot
        assert store.read_versions(session) == (8, 5)


def test_a_card_applied_during_the_import_is_checked_against_the_rows_after_it(
    env: service.CardEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "粤B00001,blue,张三,13800000000,2027-01-01,1,,",
        "粤B00002,blue,张三,13800000000,2027-01-01,1,,",
        "粤B00003,blue,张三,13800000000,2027-01-01,1,,",  # the card applied meanwhile overlaps this one
        "粤B00004,blue,张三,13800000000,2027-01-01,1,,",
    )
    applied: list[Any] = []
    load = bulk_import._Loader.load

    def load_after_a_concurrent_writer(self: bulk_import._Loader, rows: Any, seen: int) -> bool:
        if self.report.imported and not applied:
            application = CardApplication("x", "粤B00003", PlateColor.BLUE, "王五", "13900000000", date(2027, 1, 15), 1)
            applied.append(service.apply_card(env, application))
        return load(self, rows, seen)

    monkeypatch.setattr(bulk_import._Loader, "load", load_after_a_concurrent_writer)
    report = import_csv(env.db, path, ZONE, batch=2, now=NOW)
    assert (report.imported, report.first_version, report.last_version) == (3, 1, 4)
    assert [(r.line, r.row[0]) for r in report.rejected] == [(4, "粤B00003")]
    assert applied[0].card_id in report.rejected[0].reason
    assert versions(env) == [1, 2, 3, 4]


def test_rows_imported_meanwhile_by_another_run_are_skipped(
    env: service.CardEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "粤B00001,blue,张三,13800000000,2027-01-01,1,,r1",
        "粤B00002,blue,张三,13800000000,2027-01-01,1,,r2",
    )
    other = tmp_path / "other.csv"
    other.write_text(HEADER + "粤B00002,blue,张三,13800000000,2027-01-01,1,,r2\n", encoding="utf-8")
    ran: list[bulk_import.ImportReport] = []
    outer: list[bulk_import.ImportReport] = []
    load = bulk_import._Loader.load

    def load_after_another_run(self: bulk_import._Loader, rows: Any, seen: int) -> bool:
        outer[:] = outer or [self.report]
        if self.report is outer[0] and self.report.imported and not ran:
            ran.append(import_csv(env.db, other, ZONE, now=NOW))
        return load(self, rows, seen)

    monkeypatch.setattr(bulk_import._Loader, "load", load_after_another_run)
    report = import_csv(env.db, path, ZONE, batch=1, now=NOW)
    assert (ran[0].imported, report.imported, report.skipped, report.rejected) == (1, 1, 1, [])
    assert versions(env) == [1, 2]


def test_the_garbage_collector_is_back_on_after_an_import_even_a_failed_one(
    env: service.CardEnv, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("plate,colour\n", encoding="utf-8")
    with pytest.raises(ValueError):
        import_csv(env.db, bad, ZONE, now=NOW)
    assert gc.isenabled()
    import_csv(env.db, write(tmp_path, "粤B00001,blue,张三,13800000000,2027-01-01,1,,"), ZONE, now=NOW)
    assert gc.isenabled()


def test_a_failure_while_checking_stops_the_import_with_its_reason(
    env: service.CardEnv, tmp_path: Path, checking: str
) -> None:
    """A file gone after its header was checked: the reason reaches the caller, from the checking
    process too, and nothing is imported."""
    gone = tmp_path / "gone.csv"
    if checking == "checked in process":
        with pytest.raises(FileNotFoundError, match=r"gone\.csv"):
            bulk_import._Checking(env.db, gone, ZONE, NOW).start()
    else:
        process = bulk_import._CheckingProcess(env.db, gone, ZONE, NOW)
        try:
            with pytest.raises(RuntimeError, match=r"checking process failed: FileNotFoundError: .*gone\.csv"):
                process.start()
        finally:
            process.close()
    assert versions(env) == []
