"""``crosspark demo``: the whole mission end to end (DESIGN section 1, issue 8).

A platform and three lot nodes start as separate processes over TLS with tokens, each on its own
SQLite file; the lots are registered with their tariffs and periods, monthly cards are applied, and
an accelerated month of traffic runs through the gates: gate photos recognised by the recognition
core, ETC frames through the decoder, a platform outage in the middle, a card that ends during a
stay, and one deliberately wrong platform fee. Statements are issued, fetched, verified and
reconciled by the lots; the wrong fee is disputed and resolved into an adjustment. At the end: a
summary per lot and an HTML report in a results folder.
"""

from __future__ import annotations

from pathlib import Path

import click

from crosspark.cli_support import json_option


@click.command("demo")
@click.option(
    "--results",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Folder under which this run's folder is made.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the month's traffic.")
@click.option(
    "--speed",
    type=click.FloatRange(60, 1_000_000),
    default=36_000.0,
    show_default=True,
    help="Simulated seconds per real second.",
)
@click.option(
    "--visits",
    "visits_per_lot_day",
    type=click.IntRange(1, 200),
    default=8,
    show_default=True,
    help="Visits per lot per day.",
)
@click.option(
    "--days", type=click.IntRange(14, 31), default=31, show_default=True, help="Days of traffic (from 1 October 2026)."
)
@json_option
def demo(results: Path, seed: int, speed: float, visits_per_lot_day: int, days: int, as_json: bool) -> None:
    """Run the whole mission end to end on SQLite and print a summary per lot."""
    from crosspark.demo.flow import run_demo

    ok = run_demo(
        results=results, seed=seed, speed=speed, visits_per_lot_day=visits_per_lot_day, days=days, as_json=as_json
    )
    if not ok:
        raise SystemExit(1)
