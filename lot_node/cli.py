"""``crosspark lot serve``: the lot node (DESIGN section 15). Every flag can also be set in the
``[lot]`` table of a TOML config file (``--config FILE``)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import click

from crosspark.cli_support import config_option


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
@click.option("--token", required=True, envvar="CROSSPARK_LOT_TOKEN",
              help="The lot's bearer token (from registration).")
@click.option("--listen", default="127.0.0.1:50061", envvar="CROSSPARK_LOT_LISTEN", show_default=True,
              help="HOST:PORT of the gate API.")
@click.option("--db", envvar="CROSSPARK_LOT_DB", help="Database URL (default: sqlite under --data-dir).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data/lot"),
              envvar="CROSSPARK_LOT_DATA_DIR", show_default=True,
              help="Folder for the SQLite file, TLS material, statements and reconciliation reports.")
@click.option("--ca", type=click.Path(dir_okay=False, exists=True, path_type=Path), envvar="CROSSPARK_CA",
              help="CA certificate that signed the platform's certificate.")
@click.option("--tls-dir", type=click.Path(file_okay=False, path_type=Path),
              help="TLS files of the gate API (a local CA is generated there when missing; default DATA/tls).")
@click.option("--insecure", is_flag=True, help="Plaintext to the platform and on the gate API; loopback only.")
@click.option("--gate-token", envvar="CROSSPARK_GATE_TOKEN",
              help="Bearer token gate controllers must send (none: the gate API needs no credential).")
@click.option("--mode", type=click.Choice(["ONLINE", "CACHED", "ONLINE_FALLBACK"], case_sensitive=False),
              default="CACHED", show_default=True, help="Membership mode (DESIGN section 4).")
@click.option("--deadline-ms", type=click.IntRange(1, 60_000), default=300, show_default=True,
              help="How long ONLINE modes wait for the platform's answer.")
@click.option("--card-hash-key", envvar="CROSSPARK_CARD_HASH_KEY",
              help="The lot's card-hash key (hex or base64, from registration); needed by CACHED modes.")
@click.option("--time-zone", default="Asia/Shanghai", show_default=True, help="The lot's IANA time zone.")
@click.option("--temp-tariff", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="TOML file of the lot's own temporary tariff (临时车收费).")
@click.option("--exit-without-entry-fee", type=click.IntRange(0, 10_000_000), default=0,
              show_default=True, help="What a temporary vehicle leaving with no entry record pays, fen.")
@click.option("--etc-framing", type=click.Choice(["auto", "lane", "its", "genvict"]), default="auto",
              show_default=True, help="Framing of the RSU's frames.")
@click.option("--statements/--no-statements", default=True, show_default=True,
              help="Receive, verify and reconcile statements.")
@click.option("--clock", "clock_spec", envvar="CROSSPARK_CLOCK", hidden=True, help="Clock spec (demo and tests).")
def serve(
    lot_id: str, platform: str, token: str, listen: str, db: str | None, data_dir: Path, ca: Path | None,
    tls_dir: Path | None, insecure: bool, gate_token: str | None, mode: str, deadline_ms: int,
    card_hash_key: str | None, time_zone: str, temp_tariff: Path | None, exit_without_entry_fee: int,
    etc_framing: str, statements: bool, clock_spec: str | None,
) -> None:
    """Serve the lot node (gate API, card list, outbox, statements) until SIGTERM or SIGINT."""
    from crosspark.clock import parse_clock
    from crosspark.server import ConfigError, run_until_signalled
    from lot_node.membership import Mode
    from lot_node.node import LotNode, LotSettings

    settings = LotSettings(
        lot_id=lot_id, platform=platform, token=token, listen=listen, db_url=db, data_dir=data_dir, ca=ca,
        tls_dir=tls_dir, insecure=insecure, gate_token=gate_token, mode=Mode(mode.upper()), deadline_ms=deadline_ms,
        card_hash_key=_key_bytes(card_hash_key), time_zone=time_zone, temp_tariff=temp_tariff,
        exit_without_entry_fee_fen=exit_without_entry_fee, etc_framing=etc_framing, statements=statements,
    )
    try:
        node = LotNode(settings, parse_clock(clock_spec)).start()
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    # The line a supervisor (or a test) waits for, printed once SIGTERM is handled.
    run_until_signalled(node.stop, on_ready=lambda: click.echo(f"lot {lot_id} listening on {node.address}", err=True))
