"""Operator commands of the card side: ``crosspark card …`` and ``crosspark lot register|list|status|rotate``.

Each talks to the platform over gRPC with the admin credential, except ``card import``, which
writes straight into the platform database (see its help). Human tables by default, ``--json``
for machines.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import click

from crosspark.cli_support import Remote, emit_json, emit_record, emit_table, json_option, remote_options, rpc_errors

COLORS = ["blue", "yellow", "black", "white", "green", "yellow_green", "blue_white"]
MODES = ["ONLINE", "CACHED", "ONLINE_FALLBACK"]
PERIODS = ["PER_EXIT", "DAILY", "WEEKLY", "MONTHLY"]


def _stubs(remote: Remote) -> tuple[Any, Any]:
    from crosspark.v1 import admin_pb2_grpc, cards_pb2_grpc

    channel = remote.channel()
    return cards_pb2_grpc.CardServiceStub(channel), admin_pb2_grpc.AdminServiceStub(channel)


def _iso(stamp: Any) -> str | None:
    from datetime import UTC

    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC).isoformat()


def card_record(card: Any) -> dict[str, Any]:
    """A card as JSON: lower-case colour and state names, ISO 8601 instants."""
    from crosspark.v1 import cards_pb2, common_pb2

    return {
        "card_id": card.card_id,
        "plate": card.vehicle.plate,
        "color": common_pb2.PlateColor.Name(card.vehicle.color).removeprefix("PLATE_COLOR_").lower(),
        "holder_name": card.holder_name,
        "holder_phone": card.holder_phone,
        "start_date": card.start_date,
        "months": card.months,
        "valid_from": _iso(card.valid_from),
        "valid_until": _iso(card.valid_until),
        "time_zone": card.time_zone,
        "scope_lot_ids": list(card.scope_lot_ids),
        "state": cards_pb2.CardState.Name(card.state).removeprefix("CARD_STATE_").lower(),
        "version": card.version,
        "created_at": _iso(card.created_at),
        "updated_at": _iso(card.updated_at),
    }


def lot_record(lot: Any) -> dict[str, Any]:
    from crosspark.v1 import common_pb2

    return {
        "lot_id": lot.lot_id,
        "name": lot.name,
        "vendor": lot.vendor,
        "time_zone": lot.time_zone,
        "mode": common_pb2.MembershipMode.Name(lot.mode).removeprefix("MEMBERSHIP_MODE_"),
        "period": common_pb2.SettlementPeriod.Name(lot.period).removeprefix("SETTLEMENT_PERIOD_"),
        "close_delay_seconds": lot.close_delay_seconds,
        "membership_deadline_ms": lot.membership_deadline_ms,
        "enabled": lot.enabled,
        "registered_at": _iso(lot.registered_at),
        "updated_at": _iso(lot.updated_at),
    }


def _local(instant: str | None, zone: str) -> str:
    """An ISO instant as local "YYYY-MM-DD HH:MM" in the card's time zone (for tables)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    if not instant:
        return ""
    return datetime.fromisoformat(instant).astimezone(ZoneInfo(zone or "UTC")).strftime("%Y-%m-%d %H:%M")


def _human_card(record: dict[str, Any]) -> dict[str, Any]:
    from card_service.domain import mask_phone

    shown = dict(record)
    shown["holder_phone"] = mask_phone(record["holder_phone"])
    shown["scope_lot_ids"] = ", ".join(record["scope_lot_ids"]) or "(every lot)"
    return shown


def _emit_card(card: Any, as_json: bool) -> None:
    record = card_record(card)
    emit_record(record if as_json else _human_card(record), as_json, title=f"card {card.card_id}")


def _color_number(name: str) -> Any:
    from crosspark.v1 import common_pb2

    return common_pb2.PlateColor.Value(f"PLATE_COLOR_{name.upper()}")


def _enum(wrapper: Any, name: str) -> Any:
    return wrapper.Value(name)


# --- crosspark card ------------------------------------------------------------------------------


@click.group("card")
def card() -> None:
    """Monthly cards (月卡): apply, renew, cancel, show, list, import."""


@card.command("apply")
@remote_options()
@click.option("--plate", required=True, help="Plate number (normalised by the platform).")
@click.option("--color", type=click.Choice(COLORS, case_sensitive=False), required=True, help="Plate colour.")
@click.option("--holder-name", required=True)
@click.option("--holder-phone", required=True)
@click.option("--start-date", default="", help="YYYY-MM-DD in the platform's time zone (default: today).")
@click.option("--months", type=int, default=1, show_default=True, help="1-12.")
@click.option("--scope", "scope", multiple=True, help="Lot id where the card is valid (repeat; none = every lot).")
@click.option("--request-id", default=None, help="Idempotency key (default: a fresh UUID).")
@json_option
@rpc_errors
def card_apply(
    remote: Remote,
    plate: str,
    color: str,
    holder_name: str,
    holder_phone: str,
    start_date: str,
    months: int,
    scope: tuple[str, ...],
    request_id: str | None,
    as_json: bool,
) -> None:
    """Apply for a monthly card (办理月卡)."""
    from crosspark.v1 import cards_pb2, common_pb2

    cards, _ = _stubs(remote)
    reply = cards.ApplyCard(
        cards_pb2.ApplyCardRequest(
            request_id=request_id or uuid.uuid4().hex,
            vehicle=common_pb2.VehicleIdentity(plate=plate, color=_color_number(color)),
            holder_name=holder_name,
            holder_phone=holder_phone,
            start_date=start_date,
            months=months,
            scope_lot_ids=list(scope),
        )
    )
    _emit_card(reply, as_json)


@card.command("renew")
@remote_options()
@click.argument("card_id")
@click.option("--months", type=int, default=1, show_default=True, help="1-12 more months.")
@click.option("--request-id", default=None, help="Idempotency key (default: a fresh UUID).")
@json_option
@rpc_errors
def card_renew(remote: Remote, card_id: str, months: int, request_id: str | None, as_json: bool) -> None:
    """Extend a card by whole months."""
    from crosspark.v1 import cards_pb2

    cards, _ = _stubs(remote)
    reply = cards.RenewCard(
        cards_pb2.RenewCardRequest(card_id=card_id, months=months, request_id=request_id or uuid.uuid4().hex)
    )
    _emit_card(reply, as_json)


@card.command("cancel")
@remote_options()
@click.argument("card_id")
@click.option("--reason", default="", help="Kept with the card (at most 256 characters).")
@json_option
@rpc_errors
def card_cancel(remote: Remote, card_id: str, reason: str, as_json: bool) -> None:
    """End a card's validity now."""
    from crosspark.v1 import cards_pb2

    cards, _ = _stubs(remote)
    _emit_card(cards.CancelCard(cards_pb2.CancelCardRequest(card_id=card_id, reason=reason)), as_json)


@card.command("show")
@remote_options()
@click.argument("card_id")
@json_option
@rpc_errors
def card_show(remote: Remote, card_id: str, as_json: bool) -> None:
    """One card."""
    from crosspark.v1 import cards_pb2

    cards, _ = _stubs(remote)
    _emit_card(cards.GetCard(cards_pb2.GetCardRequest(card_id=card_id)), as_json)


@card.command("list")
@remote_options()
@click.option("--plate", default="", help="Only cards of this plate.")
@click.option("--limit", type=click.IntRange(1, None), default=100, show_default=True, help="Most cards to show.")
@click.option("--page-token", default="", help="Resume after a previous listing.")
@json_option
@rpc_errors
def card_list(remote: Remote, plate: str, limit: int, page_token: str, as_json: bool) -> None:
    """Cards in id (creation) order. JSON: {"cards": [...], "next_page_token": "..."} ("" when no more)."""
    from crosspark.v1 import cards_pb2, common_pb2

    cards, _ = _stubs(remote)
    found: list[dict[str, Any]] = []
    token = page_token
    while len(found) < limit:
        reply = cards.ListCards(
            cards_pb2.ListCardsRequest(
                page=common_pb2.PageRequest(page_size=min(limit - len(found), 1000), page_token=token), plate=plate
            )
        )
        found.extend(card_record(c) for c in reply.cards)
        token = reply.next_page_token
        if not token:
            break
    if as_json:
        emit_json({"cards": found, "next_page_token": token})
        return
    emit_table(
        f"{len(found)} card(s)",
        ("card id", "plate", "colour", "holder", "valid from", "valid until", "state", "scope", "version"),
        (
            (
                r["card_id"],
                r["plate"],
                r["color"],
                r["holder_name"],
                _local(r["valid_from"], r["time_zone"]),
                _local(r["valid_until"], r["time_zone"]),
                r["state"],
                ",".join(r["scope_lot_ids"]) or "*",
                r["version"],
            )
            for r in found
        ),
    )
    if token:
        click.echo(f"more: --page-token {token}")


@card.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--db", "db_url", required=True, envvar="CROSSPARK_DB", help="The platform's database URL.")
@click.option(
    "--time-zone",
    default="Asia/Shanghai",
    envvar="CROSSPARK_TIME_ZONE",
    show_default=True,
    help="The platform's time zone (start dates).",
)
@click.option(
    "--batch", type=click.IntRange(100, 100_000), default=100_000, show_default=True, help="Cards per transaction."
)
@click.option("--dry-run", is_flag=True, help="Validate only; write nothing.")
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the rejected rows to this CSV (line, reason, then the row).",
)
@json_option
def card_import(
    csv_file: Path, db_url: str, time_zone: str, batch: int, dry_run: bool, rejects: Path | None, as_json: bool
) -> None:
    """Load cards from CSV_FILE (UTF-8, optional BOM) straight into the platform database.

    \b
    Columns (header row required, any order):
      plate         plate number, normalised and checked against GA 36
      color         blue, yellow, black, white, green, yellow_green, blue_white (or the ETC code 0-6, 9)
      holder_name   1-64 characters
      holder_phone  3-20 digits, optional leading +
      start_date    YYYY-MM-DD in the platform's time zone
      months        1-12
      scope         optional: lot ids separated by ';' (empty: every lot); each must be registered
      request_id    optional: idempotency key; a row already imported is skipped, so a run that
                    stopped half-way can be repeated

    Every row is checked as ApplyCard checks it (also against existing cards and earlier rows: no
    overlapping active card per plate + colour); each rejected row is reported with its line
    number and reason, and the others are loaded. Cards get consecutive global card versions, in
    transactions of --batch cards, beside a running platform (which serialises with it on the version
    row); lots pick the cards up by WatchCards as usual (a big import sends them a fresh snapshot).

    The import goes to the database, not through the platform's API, because a migration of a
    million cards is an operator's one-off job run next to the database: one transaction per batch
    (executemany on SQLite, COPY on PostgreSQL) loads tens of thousands of cards a second, where
    ApplyCard RPCs, each its own committed transaction, manage about a hundred. A running platform's
    card writers wait for the batch in progress (it holds the version row).

    Exit status: 0 when every row was loaded (or skipped as already imported), 2 when some were
    rejected, 1 on an error that stopped the import.
    """
    from card_service.bulk_import import import_csv
    from crosspark.db import Database, upgrade

    database = Database(db_url)
    try:
        upgrade(database, "platform")
        report = import_csv(database, csv_file, time_zone, batch=batch, dry_run=dry_run)
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        database.dispose()
    if rejects is not None:
        report.write_rejects(rejects)
    if as_json:
        emit_json(report.summary(with_rejections=True))
    else:
        for rejection in report.rejected:
            click.echo(f"line {rejection.line}: {rejection.reason}", err=True)
        summary = report.summary(with_rejections=False)
        emit_record(summary, False, title=f"import of {csv_file.name}")
    if report.rejected:
        sys.exit(2)


# --- crosspark lot register|list|status|rotate ---------------------------------------------------


def _credentials_record(reply: Any) -> dict[str, Any]:
    return {
        "lot_id": reply.lot.lot_id,
        "token": reply.token,
        "card_hash_key": reply.card_hash_key.hex(),
        **{k: v for k, v in lot_record(reply.lot).items() if k != "lot_id"},
    }


def _emit_credentials(reply: Any, as_json: bool) -> None:
    record = _credentials_record(reply)
    if as_json:
        emit_json(record)
        return
    emit_record(record, False, title=f"lot {reply.lot.lot_id}")
    click.echo("The token and card-hash key are shown only this once: give them to the lot now.", err=True)


@click.command("register")
@remote_options()
@click.option("--lot-id", required=True, help="1-64 characters of A-Z a-z 0-9 _ . -")
@click.option("--name", required=True)
@click.option("--mode", type=click.Choice(MODES, case_sensitive=False), required=True, help="Membership mode.")
@click.option("--period", type=click.Choice(PERIODS, case_sensitive=False), required=True, help="Settlement period.")
@click.option("--vendor", default="", help="The lot system's vendor.")
@click.option("--time-zone", default="Asia/Shanghai", show_default=True, help="The lot's IANA time zone.")
@click.option("--close-delay", type=int, default=3600, show_default=True, help="Statement close delay, seconds.")
@click.option("--deadline-ms", type=int, default=300, show_default=True, help="Online membership deadline.")
@json_option
@rpc_errors
def register(
    remote: Remote,
    lot_id: str,
    name: str,
    mode: str,
    period: str,
    vendor: str,
    time_zone: str,
    close_delay: int,
    deadline_ms: int,
    as_json: bool,
) -> None:
    """Register a lot; prints its bearer token and card-hash key (hex), shown only once."""
    from crosspark.v1 import admin_pb2, common_pb2

    _, admin = _stubs(remote)
    reply = admin.RegisterLot(
        admin_pb2.RegisterLotRequest(
            lot=admin_pb2.Lot(
                lot_id=lot_id,
                name=name,
                vendor=vendor,
                time_zone=time_zone,
                mode=_enum(common_pb2.MembershipMode, f"MEMBERSHIP_MODE_{mode.upper()}"),
                period=_enum(common_pb2.SettlementPeriod, f"SETTLEMENT_PERIOD_{period.upper()}"),
                close_delay_seconds=close_delay,
                membership_deadline_ms=deadline_ms,
            )
        )
    )
    _emit_credentials(reply, as_json)


@click.command("list")
@remote_options()
@json_option
@rpc_errors
def list_lots(remote: Remote, as_json: bool) -> None:
    """Every registered lot. JSON: {"lots": [...]}."""
    from crosspark.v1 import admin_pb2, common_pb2

    _, admin = _stubs(remote)
    records: list[dict[str, Any]] = []
    token = ""
    while True:
        reply = admin.ListLots(admin_pb2.ListLotsRequest(page=common_pb2.PageRequest(page_size=1000, page_token=token)))
        records.extend(lot_record(lot) for lot in reply.lots)
        token = reply.next_page_token
        if not token:
            break
    if as_json:
        emit_json({"lots": records})
        return
    emit_table(
        f"{len(records)} lot(s)",
        ("lot id", "name", "vendor", "time zone", "mode", "period", "enabled"),
        ((r["lot_id"], r["name"], r["vendor"], r["time_zone"], r["mode"], r["period"], r["enabled"]) for r in records),
    )


@click.command("status")
@remote_options()
@click.argument("lot_id")
@json_option
@rpc_errors
def status(remote: Remote, lot_id: str, as_json: bool) -> None:
    """Connectivity, card version held and outbox lag of one lot."""
    from crosspark.v1 import admin_pb2

    _, admin = _stubs(remote)
    reply = admin.LotStatus(admin_pb2.LotStatusRequest(lot_id=lot_id))
    record = {
        **lot_record(reply.lot),
        "connected": reply.connected,
        "last_seen_at": _iso(reply.last_seen_at),
        "card_version_held": reply.card_version_held,
        "card_version_latest": reply.card_version_latest,
        "outbox_depth": reply.outbox_depth,
        "outbox_lag_seconds": reply.outbox_lag_seconds,
        "passages_received": reply.passages_received,
    }
    emit_record(record, as_json, title=f"lot {lot_id}")


@click.command("rotate")
@remote_options()
@click.argument("lot_id")
@json_option
@rpc_errors
def rotate(remote: Remote, lot_id: str, as_json: bool) -> None:
    """New token and card-hash key for a lot; the old token stops working at once."""
    from crosspark.v1 import admin_pb2

    _, admin = _stubs(remote)
    _emit_credentials(admin.RotateLotCredentials(admin_pb2.RotateLotCredentialsRequest(lot_id=lot_id)), as_json)
