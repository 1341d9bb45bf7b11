"""The ``crosspark`` command. Each package contributes its own subcommands (``<package>/cli.py``);
this module builds the tree and holds the commands of the shared runtime."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import click

from crosspark import __version__
from crosspark.cli_support import config_option, emit_json, json_option


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="crosspark")
@click.option("--log-level", default="info", envvar="CROSSPARK_LOG_LEVEL", show_default=True)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    envvar="CROSSPARK_LOG_FORMAT",
    show_default=True,
    help="auto: readable on a terminal, JSON lines otherwise.",
)
def cli(log_level: str, log_format: str) -> None:
    """crosspark: one monthly parking card across many lots' systems."""
    from crosspark import logs

    logs.configure(log_level, log_format)


@cli.group()
def platform() -> None:
    """The monthly-card platform (card service, admin, settlement)."""


@platform.command("serve")
@config_option("platform")
@click.option("--listen", default="127.0.0.1:50051", envvar="CROSSPARK_LISTEN", show_default=True, help="HOST:PORT.")
@click.option("--db", "db_url", envvar="CROSSPARK_DB", help="Database URL (default: sqlite under --data-dir).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data/platform"),
    envvar="CROSSPARK_DATA_DIR",
    show_default=True,
    help="Folder for the SQLite file, TLS material and statements.",
)
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CROSSPARK_TLS_DIR",
    help="server.pem, server.key, ca.pem (a local CA is generated there when missing; default DATA/tls).",
)
@click.option(
    "--insecure", is_flag=True, envvar="CROSSPARK_INSECURE", help="Plaintext; refused unless HOST is loopback."
)
@click.option("--admin-token", envvar="CROSSPARK_ADMIN_TOKEN", help="The operator's admin credential.")
@click.option("--metrics-listen", envvar="CROSSPARK_METRICS_LISTEN", help="HOST:PORT for Prometheus /metrics.")
@click.option("--max-message-mb", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option(
    "--max-workers", type=click.IntRange(4, 4096), default=256, show_default=True, envvar="CROSSPARK_MAX_WORKERS",
    help="Threads serving RPCs; each connected lot keeps up to three streams open.",
)
@click.option(
    "--time-zone",
    default="Asia/Shanghai",
    envvar="CROSSPARK_TIME_ZONE",
    show_default=True,
    help="The platform's time zone (card start dates).",
)
@click.option("--clock", "clock_spec", envvar="CROSSPARK_CLOCK", hidden=True, help="Clock spec (demo and tests).")
def platform_serve(
    listen: str,
    db_url: str | None,
    data_dir: Path,
    tls_dir: Path | None,
    insecure: bool,
    admin_token: str | None,
    metrics_listen: str | None,
    max_message_mb: int,
    max_workers: int,
    time_zone: str,
    clock_spec: str | None,
) -> None:
    """Serve the platform until SIGTERM or SIGINT."""
    from crosspark.clock import parse_clock
    from crosspark.metrics import serve_metrics
    from crosspark.platform import Platform, PlatformSettings
    from crosspark.server import ConfigError, run_until_signalled

    settings = PlatformSettings(
        admin_token=admin_token or "",
        listen=listen,
        db_url=db_url,
        data_dir=data_dir,
        tls_dir=tls_dir,
        insecure=insecure,
        metrics_listen=metrics_listen,
        max_message_bytes=max_message_mb * 1024 * 1024,
        max_workers=max_workers,
        time_zone=time_zone,
    )
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        running = Platform(settings, parse_clock(clock_spec)).start()
    except (ConfigError, ValueError, ArgumentError) as exc:
        raise click.ClickException(str(exc)) from None
    except SQLAlchemyError as exc:
        raise click.ClickException(f"database: {exc.__class__.__name__}: {getattr(exc, 'orig', None) or exc}") from None
    if metrics_listen:
        serve_metrics(metrics_listen)
    # The line a supervisor (or a test) waits for, printed once SIGTERM is handled.
    run_until_signalled(running.stop, on_ready=lambda: click.echo(f"platform listening on {running.address}", err=True))


@cli.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--schema", type=click.Choice(["platform", "lot"]), default="platform", show_default=True)
@click.option("--db", "db_url", required=True, envvar="CROSSPARK_DB", help="Database URL.")
@click.option("--revision", default="head", show_default=True)
@json_option
def db_upgrade(schema: str, db_url: str, revision: str, as_json: bool) -> None:
    """Apply the schema's migrations (services also do this when they start)."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from crosspark.db import Database, current_revision, upgrade

    try:
        database = Database(db_url)
    except (ValueError, ArgumentError) as exc:
        raise click.BadParameter(str(exc), param_hint="--db") from None
    try:
        before = current_revision(database, schema)  # type: ignore[arg-type]
        upgrade(database, schema, revision)  # type: ignore[arg-type]
        after = current_revision(database, schema)  # type: ignore[arg-type]
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise click.ClickException(f"database {database.url.render_as_string()}: {reason}") from None
    finally:
        database.dispose()
    if as_json:
        emit_json({"schema": schema, "from": before, "to": after})
    else:
        click.echo(f"{schema} schema: {before or 'empty'} → {after}")


@cli.command("bench", context_settings={"ignore_unknown_options": True})
@click.argument("names", nargs=-1)
@click.option("--quick", is_flag=True, help="Small sizes: a smoke run in seconds.")
@json_option
@click.option("--list", "list_only", is_flag=True, help="List the benchmarks and exit.")
def bench(names: tuple[str, ...], quick: bool, as_json: bool, list_only: bool) -> None:
    """Run benchmarks from bench/ (all, or those NAMES: `bench_ingest` or just `ingest`); each
    prints percentiles and ratios against a baseline measured in the same run."""
    bench_dir = Path(__file__).resolve().parents[1] / "bench"
    if not bench_dir.is_dir():
        raise click.ClickException(f"no bench/ folder beside the package ({bench_dir}); run from a source checkout")
    available = sorted(p.stem for p in bench_dir.glob("*.py") if not p.stem.startswith("_"))
    if list_only:
        for name in available:
            click.echo(name)
        return
    names = tuple(n if n in available or f"bench_{n}" not in available else f"bench_{n}" for n in names)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise click.ClickException(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")
    from crosspark import logs

    logs.configure("warning", "console")  # servers started by benchmarks keep quiet
    sys.path.insert(0, str(bench_dir))
    failed = []
    for name in names or available:
        if not as_json:
            click.secho(f"== {name}", bold=True)
        module = importlib.import_module(name)
        argv = [*(["--quick"] if quick else []), *(["--json"] if as_json else [])]
        if module.main(argv) != 0:
            failed.append(name)
    if failed:
        raise click.ClickException(f"benchmark(s) failed: {', '.join(failed)}")


@cli.group()
def lot() -> None:
    """Lots: registration and credentials (admin) and the lot node itself (serve)."""


def _mount(group: click.Group, module: str, names: tuple[str, ...]) -> None:
    """Add ``names`` from ``module`` to ``group`` when that package is present."""
    if importlib.util.find_spec(module.rpartition(".")[0] or module) is None:
        return
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return
    if spec is None:
        return
    loaded = importlib.import_module(module)
    for name in names:
        command = getattr(loaded, name, None)
        if isinstance(command, click.Command):
            group.add_command(command)


# Subcommands contributed by the product packages (DESIGN section 15).
_mount(cli, "card_service.cli", ("card",))
_mount(lot, "card_service.cli", ("register", "list_lots", "status", "rotate"))
_mount(lot, "lot_node.cli", ("serve",))
_mount(cli, "lot_node.cli", ("gate",))
_mount(cli, "settlement.cli", ("tariff", "statement", "dispute"))
_mount(cli, "recognition_core.cli", ("recognize",))
_mount(cli, "recognition_core.etc.cli", ("etc",))
_mount(cli, "crosspark.demo", ("demo",))


def main() -> None:
    cli(prog_name="crosspark")
