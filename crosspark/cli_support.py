"""Building blocks for every ``crosspark`` subcommand: the TOML config file, the options that
reach the platform, and human/JSON output."""

from __future__ import annotations

import functools
import json
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import grpc
from rich.console import Console
from rich.table import Table

# Piped output is not squeezed into 80 columns: tables keep their rows on one line.
console = Console() if sys.stdout.isatty() else Console(width=200)
err_console = Console(stderr=True)


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise click.BadParameter(f"config file {path} does not exist", param_hint="--config") from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"config file {path} is not valid TOML: {exc}", param_hint="--config") from None


def config_option(section: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--config FILE``: the ``[section]`` table of a TOML file gives this command's defaults
    (keys are option names with ``_`` or ``-``). Flags beat environment variables, which beat the
    file, which beats built-in defaults."""

    def load(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
        if value is None:
            return None
        table = _load_toml(value).get(section, {})
        if not isinstance(table, dict):
            raise click.BadParameter(f"[{section}] in {value} is not a table", param_hint="--config")
        # Settings are named like the flags (``tls-dir`` or ``tls_dir`` for ``--tls-dir``).
        known = {
            opt.lstrip("-").replace("-", "_"): param.name
            for param in ctx.command.params
            if isinstance(param, click.Option) and param.name and param.expose_value
            for opt in param.opts
            if opt.startswith("--")
        }
        defaults = {}
        for key, item in table.items():
            name = known.get(key.replace("-", "_"))
            if name is None:
                raise click.BadParameter(
                    f"[{section}] in {value}: unknown setting {key!r} (known: {', '.join(sorted(known))})",
                    param_hint="--config",
                )
            defaults[name] = item
        ctx.default_map = {**(ctx.default_map or {}), **defaults}
        return value

    return click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="CROSSPARK_CONFIG",
        is_eager=True,
        expose_value=False,
        callback=load,
        help=f"TOML config file; its [{section}] table sets defaults for these options.",
    )


@dataclass(frozen=True)
class Remote:
    """Where and how an operator command reaches a crosspark server."""

    target: str
    token: str | None
    ca: Path | None
    insecure: bool

    def channel(self) -> grpc.Channel:
        from crosspark.client import open_channel

        return open_channel(self.target, token=self.token, ca_cert=self.ca, insecure=self.insecure)


def remote_options(token_env: str = "CROSSPARK_ADMIN_TOKEN", default_port: int = 50051) -> Callable[..., Any]:
    """``--platform``, ``--token``, ``--ca``, ``--insecure``, gathered into a ``remote`` argument."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option(
                "--platform",
                "platform_addr",
                default=f"127.0.0.1:{default_port}",
                envvar="CROSSPARK_PLATFORM",
                show_default=True,
                help="HOST:PORT of the platform.",
            ),
            click.option("--token", envvar=token_env, help=f"Bearer token (default: ${token_env})."),
            click.option(
                "--ca",
                type=click.Path(dir_okay=False, exists=True, path_type=Path),
                envvar="CROSSPARK_CA",
                help="CA certificate that signed the server's certificate.",
            ),
            click.option("--insecure", is_flag=True, help="Plaintext; only to a loopback address."),
        ]

        @functools.wraps(fn)
        def wrapper(*args: Any, platform_addr: str, token: str | None, ca: Path | None, insecure: bool, **kwargs: Any):
            return fn(*args, remote=Remote(platform_addr, token, ca, insecure), **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def emit_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def emit_record(record: Mapping[str, Any], as_json: bool, title: str | None = None) -> None:
    """One object: a JSON line, or a two-column table for people."""
    if as_json:
        emit_json(dict(record))
    else:
        emit_table(title, ("field", "value"), record.items())


def rpc_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a failed RPC into a one-line error and exit status 1 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except grpc.RpcError as error:
            code = error.code().name if hasattr(error, "code") else "UNKNOWN"
            details = error.details() if hasattr(error, "details") else str(error)
            from crosspark.rpc import bad_request_violations

            extra = "".join(f"\n  {field}: {desc}" for field, desc in bad_request_violations(error))
            raise click.ClickException(f"{code}: {details}{extra}") from None

    return wrapper
