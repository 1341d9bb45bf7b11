"""Operator commands of settlement: ``crosspark tariff put|show``, ``crosspark statement
issue|list|fetch|verify`` and ``crosspark dispute list|resolve``. Human tables by default,
``--json`` for machines (one JSON object per line)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from crosspark.cli_support import Remote, emit_json, emit_record, emit_table, json_option, remote_options, rpc_errors


def _stub(remote: Remote) -> Any:
    from crosspark.v1 import settlement_pb2_grpc

    return settlement_pb2_grpc.SettlementServiceStub(remote.channel())


def _iso(stamp: Any) -> str | None:
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC).isoformat()


def _timestamp(text: str, option: str) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 instant", param_hint=option) from None
    if instant.tzinfo is None:
        raise click.BadParameter(f"{text!r} needs a UTC offset (e.g. +08:00 or Z)", param_hint=option)
    stamp = Timestamp()
    stamp.FromDatetime(instant)
    return stamp


def _yuan(fen: int) -> str:
    from settlement.statement_file import yuan

    return yuan(fen)


def tariff_record(tariff: Any) -> dict[str, Any]:
    from crosspark.v1 import settlement_pb2 as pb

    return {
        "lot_id": tariff.lot_id,
        "version": tariff.version,
        "effective_from": _iso(tariff.effective_from),
        "kind": pb.TariffKind.Name(tariff.kind).removeprefix("TARIFF_KIND_").lower(),
        "visit_fee_fen": tariff.visit_fee_fen,
        "unit_minutes": tariff.unit_minutes,
        "bands": [{"start": b.start, "unit_fee_fen": b.unit_fee_fen} for b in tariff.bands],
        "free_minutes": tariff.free_minutes,
        "cap_per_24h_fen": tariff.cap_per_24h_fen,
        "max_per_stay_fen": tariff.max_per_stay_fen,
        "created_at": _iso(tariff.created_at),
    }


def statement_record(statement: Any) -> dict[str, Any]:
    from crosspark.v1 import common_pb2
    from crosspark.v1 import settlement_pb2 as pb

    return {
        "statement_id": statement.statement_id,
        "lot_id": statement.lot_id,
        "seq": statement.seq,
        "period": common_pb2.SettlementPeriod.Name(statement.period).removeprefix("SETTLEMENT_PERIOD_").lower(),
        "period_from": _iso(statement.period_from),
        "period_to": _iso(statement.period_to),
        "time_zone": statement.time_zone,
        "issued_at": _iso(statement.issued_at),
        "line_count": statement.line_count,
        "visit_count": statement.visit_count,
        "total_fee_fen": statement.total_fee_fen,
        "file_size": statement.file_size,
        "sha256": statement.sha256,
        "signature": statement.signature.hex(),
        "key_id": statement.key_id,
        "status": pb.StatementStatus.Name(statement.status).removeprefix("STATEMENT_STATUS_").lower(),
        "fetched_at": _iso(statement.fetched_at),
    }


def dispute_record(dispute: Any) -> dict[str, Any]:
    from crosspark.v1 import settlement_pb2 as pb

    item = dispute.item
    return {
        "dispute_id": dispute.dispute_id,
        "lot_id": dispute.lot_id,
        "statement_id": dispute.statement_id,
        "stay_id": item.stay_id,
        "result": pb.LineResult.Name(item.result).removeprefix("LINE_RESULT_").lower(),
        "line_no": item.line_no,
        "platform_fee_fen": item.platform_fee_fen,
        "lot_fee_fen": item.lot_fee_fen,
        "note": item.note,
        "state": pb.DisputeState.Name(dispute.state).removeprefix("DISPUTE_STATE_").lower(),
        "resolution_note": dispute.resolution_note,
        "opened_at": _iso(dispute.opened_at),
        "resolved_at": _iso(dispute.resolved_at),
        "adjusted_in_statement_id": dispute.adjusted_in_statement_id,
    }


# --- crosspark tariff ----------------------------------------------------------------------------


@click.group("tariff")
def tariff() -> None:
    """Tariffs (资费标准) agreed with each lot: versioned by effective_from."""


def _band(text: str) -> tuple[str, int]:
    start, sep, fee = text.partition("=")
    if not sep or not fee.strip().lstrip("-").isdigit():
        raise click.BadParameter(f"{text!r} is not HH:MM=FEN (e.g. 08:00=1500)", param_hint="--band")
    return start.strip(), int(fee)


@tariff.command("put")
@remote_options()
@click.option("--lot-id", required=True)
@click.option("--effective-from", required=True, help="ISO 8601 instant with offset; stays entering from then on.")
@click.option("--kind", type=click.Choice(["per_visit", "per_time"]), required=True)
@click.option("--visit-fee-fen", type=int, default=0, show_default=True, help="PER_VISIT: fee per stay.")
@click.option("--unit-minutes", type=int, default=60, show_default=True, help="PER_TIME: billing unit, 1-1440.")
@click.option("--band", "bands", multiple=True, help="PER_TIME: HH:MM=FEN, a unit's fee from that local time (repeat).")
@click.option("--free-minutes", type=int, default=0, show_default=True)
@click.option("--cap-24h-fen", type=int, default=0, show_default=True, help="0 = no cap per 24 hours.")
@click.option("--max-per-stay-fen", type=int, default=0, show_default=True, help="0 = no cap per stay.")
@json_option
@rpc_errors
def tariff_put(
    remote: Remote,
    lot_id: str,
    effective_from: str,
    kind: str,
    visit_fee_fen: int,
    unit_minutes: int,
    bands: tuple[str, ...],
    free_minutes: int,
    cap_24h_fen: int,
    max_per_stay_fen: int,
    as_json: bool,
) -> None:
    """Add the next tariff version for a lot (admin)."""
    from crosspark.v1 import settlement_pb2 as pb

    message = pb.Tariff(
        lot_id=lot_id,
        effective_from=_timestamp(effective_from, "--effective-from"),
        kind=pb.TARIFF_KIND_PER_VISIT if kind == "per_visit" else pb.TARIFF_KIND_PER_TIME,
        visit_fee_fen=visit_fee_fen,
        unit_minutes=unit_minutes,
        bands=[pb.TariffBand(start=s, unit_fee_fen=f) for s, f in map(_band, bands)],
        free_minutes=free_minutes,
        cap_per_24h_fen=cap_24h_fen,
        max_per_stay_fen=max_per_stay_fen,
    )
    reply = _stub(remote).PutTariff(pb.PutTariffRequest(tariff=message))
    _emit_tariffs([reply], as_json)


@tariff.command("show")
@remote_options()
@click.option("--lot-id", required=True)
@click.option("--at", default=None, help="Only the version in force at this ISO 8601 instant.")
@json_option
@rpc_errors
def tariff_show(remote: Remote, lot_id: str, at: str | None, as_json: bool) -> None:
    """A lot's tariff versions."""
    from crosspark.v1 import settlement_pb2 as pb

    request = (
        pb.GetTariffRequest(lot_id=lot_id, at=_timestamp(at, "--at")) if at else pb.GetTariffRequest(lot_id=lot_id)
    )
    _emit_tariffs(list(_stub(remote).GetTariff(request).tariffs), as_json)


def _emit_tariffs(tariffs: list[Any], as_json: bool) -> None:
    records = [tariff_record(t) for t in tariffs]
    if as_json:
        for record in records:
            emit_json(record)
        return
    emit_table(
        "tariffs",
        ("lot", "version", "effective from", "kind", "fees", "free min", "cap/24h", "max/stay"),
        (
            (
                r["lot_id"],
                r["version"],
                r["effective_from"],
                r["kind"],
                f"{_yuan(r['visit_fee_fen'])} per visit"
                if r["kind"] == "per_visit"
                else f"{r['unit_minutes']} min: "
                + ", ".join(f"{b['start']} {_yuan(b['unit_fee_fen'])}" for b in r["bands"]),
                r["free_minutes"],
                _yuan(r["cap_per_24h_fen"]),
                _yuan(r["max_per_stay_fen"]),
            )
            for r in records
        ),
    )


# --- crosspark statement -------------------------------------------------------------------------


@click.group("statement")
def statement() -> None:
    """Statements (对账文件): issue, list, fetch and verify."""


def _emit_statements(statements: list[Any], as_json: bool, title: str) -> None:
    records = [statement_record(s) for s in statements]
    if as_json:
        for record in records:
            emit_json(record)
        return
    emit_table(
        title,
        ("statement", "lot", "seq", "period", "from", "to", "lines", "total (yuan)", "status"),
        (
            (
                r["statement_id"],
                r["lot_id"],
                r["seq"],
                r["period"],
                r["period_from"],
                r["period_to"],
                r["line_count"],
                _yuan(r["total_fee_fen"]),
                r["status"],
            )
            for r in records
        ),
    )


@statement.command("issue")
@remote_options()
@click.option("--lot-id", default="", help="Only this lot (default: every lot).")
@click.option("--as-of", default=None, help="Issue as if the clock read this ISO 8601 instant.")
@json_option
@rpc_errors
def statement_issue(remote: Remote, lot_id: str, as_of: str | None, as_json: bool) -> None:
    """Issue every statement that is due now (admin)."""
    from crosspark.v1 import settlement_pb2 as pb

    request = pb.IssueStatementsRequest(lot_id=lot_id)
    if as_of:
        request.as_of.CopyFrom(_timestamp(as_of, "--as-of"))
    _emit_statements(list(_stub(remote).IssueStatements(request).statements), as_json, "issued")


@statement.command("list")
@remote_options()
@click.option("--lot-id", default="", help="Only this lot (required with a lot's token).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@json_option
@rpc_errors
def statement_list(remote: Remote, lot_id: str, limit: int, as_json: bool) -> None:
    """Statements by lot and sequence number."""
    from crosspark.v1 import common_pb2
    from crosspark.v1 import settlement_pb2 as pb

    stub, token = _stub(remote), ""
    found: list[Any] = []
    while len(found) < limit:
        page = common_pb2.PageRequest(page_size=min(1000, limit - len(found)), page_token=token)
        reply = stub.ListStatements(pb.ListStatementsRequest(lot_id=lot_id, page=page))
        found.extend(reply.statements)
        token = reply.next_page_token
        if not token:
            break
    _emit_statements(found, as_json, "statements")


@statement.command("fetch")
@remote_options()
@click.argument("statement_id")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: STATEMENT_ID.csv); the signature goes to FILE.sig.json.",
)
@json_option
@rpc_errors
def statement_fetch(remote: Remote, statement_id: str, out: Path | None, as_json: bool) -> None:
    """Download a statement, check its digest and signature, and write it with its signature file."""
    from crosspark.v1 import settlement_pb2 as pb
    from settlement import statement_file

    stub = _stub(remote)
    meta, parts = None, []
    for chunk in stub.FetchStatement(pb.FetchStatementRequest(statement_id=statement_id)):
        if chunk.HasField("statement"):
            meta = chunk.statement
        else:
            parts.append(chunk.data)
    if meta is None:
        raise click.ClickException("the platform sent no statement metadata")
    data = b"".join(parts)
    public_key = _platform_key(stub, meta.key_id)
    try:
        statement_file.verify(data, meta.signature, public_key, meta.sha256)
    except statement_file.StatementFileError as exc:
        raise click.ClickException(f"{statement_id}: {exc}; nothing written") from None
    path = out or Path(f"{statement_id}.csv")
    path.write_bytes(data)
    signature_path = path.with_name(path.name + ".sig.json")
    signature_path.write_text(
        json.dumps(
            {
                "statement_id": meta.statement_id,
                "sha256": meta.sha256,
                "signature": meta.signature.hex(),
                "key_id": meta.key_id,
                "public_key": public_key.hex(),
            },
            indent=2,
        )
        + "\n"
    )
    record = {**statement_record(meta), "file": str(path), "signature_file": str(signature_path), "verified": True}
    emit_record(record, as_json, title=statement_id)


def _platform_key(stub: Any, key_id: str) -> bytes:
    from crosspark.v1 import settlement_pb2 as pb

    for key in stub.GetSigningKeys(pb.GetSigningKeysRequest()).keys:
        if key.key_id == key_id:
            return bytes(key.public_key)
    raise click.ClickException(f"the platform publishes no signing key {key_id!r}")


@statement.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--signature-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="JSON with sha256, signature (hex) and key_id (default: FILE.sig.json).",
)
@click.option("--public-key", default=None, help="The platform's Ed25519 public key, hex (default: fetch it).")
@click.option(
    "--platform",
    "platform_addr",
    default="127.0.0.1:50051",
    envvar="CROSSPARK_PLATFORM",
    show_default=True,
    help="HOST:PORT to fetch the public key from when --public-key is not given.",
)
@click.option("--token", envvar="CROSSPARK_ADMIN_TOKEN", help="Bearer token for fetching the key.")
@click.option("--ca", type=click.Path(dir_okay=False, exists=True, path_type=Path), envvar="CROSSPARK_CA")
@click.option("--insecure", is_flag=True, help="Plaintext; only to a loopback address.")
@json_option
@rpc_errors
def statement_verify(
    file: Path,
    signature_file: Path | None,
    public_key: str | None,
    platform_addr: str,
    token: str | None,
    ca: Path | None,
    insecure: bool,
    as_json: bool,
) -> None:
    """Check a statement file's SHA-256 and Ed25519 signature (offline with --public-key); exit 1
    if either fails."""
    from settlement import statement_file

    signature_path = signature_file or file.with_name(file.name + ".sig.json")
    if not signature_path.exists():
        raise click.ClickException(f"no signature file {signature_path}: give --signature-file")
    try:
        signed = json.loads(signature_path.read_text())
        signature, digest, key_id = bytes.fromhex(signed["signature"]), signed["sha256"], signed["key_id"]
    except (ValueError, KeyError) as exc:
        raise click.ClickException(f"{signature_path}: not a signature file ({exc})") from None
    if public_key:
        try:
            key = bytes.fromhex(public_key)
        except ValueError:
            raise click.BadParameter("not hex", param_hint="--public-key") from None
    else:
        key = _platform_key(_stub(Remote(platform_addr, token, ca, insecure)), key_id)
    data = file.read_bytes()
    record: dict[str, Any] = {"file": str(file), "key_id": key_id, "sha256": statement_file.sha256_hex(data)}
    try:
        statement_file.verify(data, signature, key, digest)
        document = statement_file.parse(data)
    except statement_file.StatementFileError as exc:
        record.update(ok=False, error=str(exc))
        if as_json:
            emit_json(record)
            raise SystemExit(1) from None
        raise click.ClickException(f"{file}: {exc}") from None
    record.update(
        ok=True,
        statement_id=document.header.statement_id,
        lot_id=document.header.lot_id,
        line_count=document.totals.line_count,
        total_fee_yuan=_yuan(document.totals.total_fee_fen),
    )
    emit_record(record, as_json, title="verified")


# --- crosspark dispute ---------------------------------------------------------------------------


@click.group("dispute")
def dispute() -> None:
    """Disputed statement lines (费用核对): list and resolve."""


@dispute.command("list")
@remote_options()
@click.option("--lot-id", default="", help="Only this lot.")
@click.option("--state", type=click.Choice(["open", "accepted", "rejected"]), default=None)
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@json_option
@rpc_errors
def dispute_list(remote: Remote, lot_id: str, state: str | None, limit: int, as_json: bool) -> None:
    """Disputes, oldest first (admin)."""
    from crosspark.v1 import common_pb2
    from crosspark.v1 import settlement_pb2 as pb

    stub, token = _stub(remote), ""
    found: list[Any] = []
    state_code: Any = pb.DisputeState.Value(f"DISPUTE_STATE_{state.upper()}") if state else 0
    while len(found) < limit:
        page = common_pb2.PageRequest(page_size=min(1000, limit - len(found)), page_token=token)
        reply = stub.ListDisputes(pb.ListDisputesRequest(lot_id=lot_id, state=state_code, page=page))
        found.extend(reply.disputes)
        token = reply.next_page_token
        if not token:
            break
    records = [dispute_record(d) for d in found]
    if as_json:
        for record in records:
            emit_json(record)
        return
    emit_table(
        "disputes",
        ("dispute", "lot", "statement", "line", "stay", "result", "platform", "lot fee", "state", "note"),
        (
            (
                r["dispute_id"],
                r["lot_id"],
                r["statement_id"],
                r["line_no"],
                r["stay_id"],
                r["result"],
                _yuan(r["platform_fee_fen"]),
                _yuan(r["lot_fee_fen"]),
                r["state"],
                r["note"],
            )
            for r in records
        ),
    )


@dispute.command("resolve")
@remote_options()
@click.argument("dispute_id")
@click.option(
    "--accept-lot", "decision", flag_value="accept", help="The lot's figure: adjustment in the next statement."
)
@click.option("--keep-platform", "decision", flag_value="keep", help="The platform's figure stands.")
@click.option("--note", default="", help="At most 512 characters.")
@json_option
@rpc_errors
def dispute_resolve(remote: Remote, dispute_id: str, decision: str | None, note: str, as_json: bool) -> None:
    """Decide a disputed line (admin)."""
    from crosspark.v1 import settlement_pb2 as pb

    if decision is None:
        raise click.UsageError("give --accept-lot or --keep-platform")
    reply = _stub(remote).ResolveDispute(
        pb.ResolveDisputeRequest(
            dispute_id=dispute_id,
            note=note,
            decision=pb.DISPUTE_DECISION_ACCEPT_LOT if decision == "accept" else pb.DISPUTE_DECISION_KEEP_PLATFORM,
        )
    )
    emit_record(dispute_record(reply), as_json, title=dispute_id)
