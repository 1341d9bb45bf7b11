"""``crosspark lot serve``: the lot node (DESIGN section 15). Every flag can also be set in the
``[lot]`` table of a TOML config file (``--config FILE``)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import click

from crosspark.cli_support import config_option, emit_record, json_option, rpc_errors


def _key_bytes(text: str | None) -> bytes | None:
    """The card-hash key as registration prints it: hex (64 digits) or base64."""
    if not text:
        return None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise click.BadParameter("not hex or base64", param_hint="--card-hash-key") from None
    if len(key) != 32:
        raise click.BadParameter(f"{len(key)} bytes; the card-hash key has 32", param_hint="--card-hash-key")
    return key


@click.command("serve")
@config_option("lot")
@click.option("--lot-id", required=True, envvar="CROSSPARK_LOT_ID", help="This lot's id on the platform.")
@click.option("--platform", required=True, envvar="CROSSPARK_PLATFORM", help="Platform HOST:PORT.")
@click.option(
    "--token", required=True, envvar="CROSSPARK_LOT_TOKEN", help="The lot's bearer token (from registration)."
)
@click.option(
    "--listen",
    default="127.0.0.1:50061",
    envvar="CROSSPARK_LOT_LISTEN",
    show_default=True,
    help="HOST:PORT of the gate API.",
)
@click.option("--db", envvar="CROSSPARK_LOT_DB", help="Database URL (default: sqlite under --data-dir).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data/lot"),
    envvar="CROSSPARK_LOT_DATA_DIR",
    show_default=True,
    help="Folder for the SQLite file, TLS material, statements and reconciliation reports.",
)
@click.option(
    "--ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="CROSSPARK_CA",
    help="CA certificate that signed the platform's certificate.",
)
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="TLS files of the gate API (a local CA is generated there when missing; default DATA/tls).",
)
@click.option("--insecure", is_flag=True, help="Plaintext to the platform and on the gate API; loopback only.")
@click.option(
    "--gate-token",
    envvar="CROSSPARK_GATE_TOKEN",
    help="Bearer token gate controllers must send (none: the gate API needs no credential).",
)
@click.option(
    "--mode",
    type=click.Choice(["ONLINE", "CACHED", "ONLINE_FALLBACK"], case_sensitive=False),
    default="CACHED",
    show_default=True,
    help="Membership mode (DESIGN section 4).",
)
@click.option(
    "--deadline-ms",
    type=click.IntRange(1, 60_000),
    default=300,
    show_default=True,
    help="How long ONLINE modes wait for the platform's answer.",
)
@click.option(
    "--card-hash-key",
    envvar="CROSSPARK_CARD_HASH_KEY",
    help="The lot's card-hash key (hex or base64, from registration); needed by CACHED modes.",
)
@click.option("--time-zone", default="Asia/Shanghai", show_default=True, help="The lot's IANA time zone.")
@click.option(
    "--temp-tariff",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="TOML file of the lot's own temporary tariff (临时车收费).",
)
@click.option(
    "--exit-without-entry-fee",
    type=click.IntRange(0, 10_000_000),
    default=0,
    show_default=True,
    help="What a temporary vehicle leaving with no entry record pays, fen.",
)
@click.option(
    "--etc-framing",
    type=click.Choice(["auto", "lane", "its", "genvict"]),
    default="auto",
    show_default=True,
    help="Framing of the RSU's frames.",
)
@click.option(
    "--statements/--no-statements", default=True, show_default=True, help="Receive, verify and reconcile statements."
)
@click.option("--clock", "clock_spec", envvar="CROSSPARK_CLOCK", hidden=True, help="Clock spec (demo and tests).")
def serve(
    lot_id: str,
    platform: str,
    token: str,
    listen: str,
    db: str | None,
    data_dir: Path,
    ca: Path | None,
    tls_dir: Path | None,
    insecure: bool,
    gate_token: str | None,
    mode: str,
    deadline_ms: int,
    card_hash_key: str | None,
    time_zone: str,
    temp_tariff: Path | None,
    exit_without_entry_fee: int,
    etc_framing: str,
    statements: bool,
    clock_spec: str | None,
) -> None:
    """Serve the lot node (gate API, card list, outbox, statements) until SIGTERM or SIGINT."""
    from crosspark.clock import parse_clock
    from crosspark.server import ConfigError, run_until_signalled
    from lot_node.membership import Mode
    from lot_node.node import LotNode, LotSettings

    settings = LotSettings(
        lot_id=lot_id,
        platform=platform,
        token=token,
        listen=listen,
        db_url=db,
        data_dir=data_dir,
        ca=ca,
        tls_dir=tls_dir,
        insecure=insecure,
        gate_token=gate_token,
        mode=Mode(mode.upper()),
        deadline_ms=deadline_ms,
        card_hash_key=_key_bytes(card_hash_key),
        time_zone=time_zone,
        temp_tariff=temp_tariff,
        exit_without_entry_fee_fen=exit_without_entry_fee,
        etc_framing=etc_framing,
        statements=statements,
    )
    try:
        node = LotNode(settings, parse_clock(clock_spec)).start()
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    # The line a supervisor (or a test) waits for, printed once SIGTERM is handled.
    run_until_signalled(node.stop, on_ready=lambda: click.echo(f"lot {lot_id} listening on {node.address}", err=True))


def _decision_record(decision: object) -> dict[str, object]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(decision, preserving_proto_field_name=True)  # type: ignore[arg-type]


@click.group("gate")
def gate() -> None:
    """Act as a gate controller against a lot node (testing a lane, or the demo by hand)."""


def _gate_stub(lot: str, ca: Path | None, insecure: bool, gate_token: str | None):  # type: ignore[no-untyped-def]
    from crosspark.client import open_channel
    from crosspark.v1 import gate_pb2_grpc

    return gate_pb2_grpc.GateServiceStub(open_channel(lot, token=gate_token, ca_cert=ca, insecure=insecure))


_gate_options = [
    click.option(
        "--lot",
        "lot_addr",
        default="127.0.0.1:50061",
        envvar="CROSSPARK_LOT_ADDR",
        show_default=True,
        help="HOST:PORT of the lot node's gate API.",
    ),
    click.option(
        "--ca",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        envvar="CROSSPARK_CA",
        help="CA certificate of the lot node's gate API.",
    ),
    click.option("--insecure", is_flag=True, help="Plaintext; only to a loopback address."),
    click.option("--gate-token", envvar="CROSSPARK_GATE_TOKEN", help="The lot node's gate token, if it has one."),
]


def gate_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed(_gate_options):
        fn = option(fn)
    return fn


@gate.command("pass")
@gate_options
@click.option("--direction", type=click.Choice(["entry", "exit"]), required=True)
@click.option("--gate-id", default="gate-1", show_default=True)
@click.option("--image", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Gate photo (JPEG/PNG).")
@click.option("--etc-frame", help="One RSU frame, hex.")
@click.option("--etc-framing", type=click.Choice(["auto", "lane", "its", "genvict"]), default=None)
@click.option("--plate", help="An identity read by the device itself: the plate …")
@click.option("--color", default="blue", show_default=True, help="… and its colour (blue, yellow, green, …).")
@click.option("--at", "occurred_at", help="When the vehicle passed (ISO 8601 with offset); default: the lot's clock.")
@json_option
@rpc_errors
def gate_pass(
    lot_addr: str,
    ca: Path | None,
    insecure: bool,
    gate_token: str | None,
    direction: str,
    gate_id: str,
    image: Path | None,
    etc_frame: str | None,
    etc_framing: str | None,
    plate: str | None,
    color: str,
    occurred_at: str | None,
    as_json: bool,
) -> None:
    """Send one vehicle through a gate and print the decision."""
    from datetime import UTC, datetime

    from crosspark.identity import PlateColor
    from crosspark.v1 import common_pb2, gate_pb2, settlement_pb2
    from lot_node.convert import color_to_pb

    request = gate_pb2.PassRequest(
        gate_id=gate_id,
        direction=settlement_pb2.DIRECTION_ENTRY if direction == "entry" else settlement_pb2.DIRECTION_EXIT,
    )
    if image is not None:
        request.image = image.read_bytes()
    if etc_frame:
        try:
            request.etc_frame = bytes.fromhex(etc_frame)
        except ValueError:
            raise click.BadParameter("not hex", param_hint="--etc-frame") from None
    if etc_framing:
        request.etc_framing = etc_framing
    if plate:
        try:
            plate_color = PlateColor(color.lower())
        except ValueError:
            raise click.BadParameter(f"unknown colour {color!r}", param_hint="--color") from None
        request.identity.CopyFrom(
            common_pb2.VehicleIdentity(
                plate=plate, color=color_to_pb(plate_color), source=common_pb2.IDENTITY_SOURCE_MANUAL, confidence=1.0
            )
        )
    if not (image or etc_frame or plate):
        raise click.UsageError("give --image, --etc-frame or --plate")
    if occurred_at:
        try:
            instant = datetime.fromisoformat(occurred_at)
        except ValueError:
            instant = None
        if instant is None or instant.tzinfo is None:
            raise click.BadParameter("not an ISO 8601 instant with an offset", param_hint="--at")
        request.occurred_at.FromDatetime(instant.astimezone(UTC))
    decision = _gate_stub(lot_addr, ca, insecure, gate_token).Pass(request, timeout=30)
    emit_record(_decision_record(decision), as_json, title="decision")


@gate.command("pay")
@gate_options
@click.argument("passage_id")
@click.argument("amount_fen", type=click.IntRange(0, 10_000_000_00))
@click.option("--method", default="cash", show_default=True)
@click.option("--ref", "payment_ref", default="", help="Payment reference from the pay terminal.")
@json_option
@rpc_errors
def gate_pay(
    lot_addr: str,
    ca: Path | None,
    insecure: bool,
    gate_token: str | None,
    passage_id: str,
    amount_fen: int,
    method: str,
    payment_ref: str,
    as_json: bool,
) -> None:
    """Pay a temporary vehicle's fee (fen) for exit PASSAGE_ID; the barrier then opens."""
    from crosspark.v1 import gate_pb2

    receipt = _gate_stub(lot_addr, ca, insecure, gate_token).Pay(
        gate_pb2.PayRequest(passage_id=passage_id, amount_fen=amount_fen, method=method, payment_ref=payment_ref),
        timeout=30,
    )
    emit_record(_decision_record(receipt), as_json, title="payment")


@gate.command("status")
@gate_options
@json_option
@rpc_errors
def gate_status(lot_addr: str, ca: Path | None, insecure: bool, gate_token: str | None, as_json: bool) -> None:
    """The lot node's state: platform reachability, outbox, card version, last statement."""
    from crosspark.v1 import gate_pb2

    status = _gate_stub(lot_addr, ca, insecure, gate_token).Status(gate_pb2.GateStatusRequest(), timeout=30)
    emit_record(_decision_record(status), as_json, title="lot node")
