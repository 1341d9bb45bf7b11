"""The demo's scenario, smaller, as a user runs it: separate processes, TLS, real databases,
recognition and ETC decoding; the numbers it reports are checked against the plan."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from crosspark.demo.scenario import make_plan

DAYS, VISITS, SEED = 14, 3, 11


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    results = tmp_path_factory.mktemp("demo")
    run = subprocess.run(
        [sys.executable, "-m", "crosspark", "demo", "--results", str(results), "--days", str(DAYS),
         "--visits", str(VISITS), "--seed", str(SEED), "--json"],
        capture_output=True, text=True, timeout=480,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_demo_reconciles_everything_but_the_injected_fee(demo: dict) -> None:  # type: ignore[type-arg]
    assert demo["ok"] is True
    lots = {lot["lot_id"]: lot for lot in demo["lots"]}
    assert all(lot["disputed"] == 0 for lot in lots.values())
    assert lots["lot-etc"]["resolved"] == 1
    assert lots["lot-camera"]["resolved"] == lots["lot-mixed"]["resolved"] == 0


def test_demo_disputes_exactly_the_corrupted_stay(demo: dict) -> None:  # type: ignore[type-arg]
    [dispute] = demo["disputes"]
    assert dispute["lot_id"] == "lot-etc"
    # The platform's record was stretched by 2 h at ¥3.00 an hour.
    assert dispute["platform_fee_fen"] - dispute["lot_fee_fen"] == 600
    assert dispute["adjusted_in"] and dispute["adjusted_in"] != dispute["statement_id"]


def test_demo_plays_every_planned_gate_event(demo: dict) -> None:  # type: ignore[type-arg]
    plan = make_plan(SEED, days=DAYS, visits_per_lot_day=VISITS)
    planned = Counter(visit.lot_id for visit in plan.visits)
    lots = {lot["lot_id"]: lot for lot in demo["lots"]}
    assert demo["events"] == 2 * len(plan.visits)
    for lot_id, visits in planned.items():
        assert lots[lot_id]["visits"] == 2 * visits
        assert lots[lot_id]["monthly_stays"] + lots[lot_id]["temporary_stays"] <= visits


def test_demo_statement_totals_follow_the_tariffs(demo: dict) -> None:  # type: ignore[type-arg]
    lots = {lot["lot_id"]: lot for lot in demo["lots"]}
    # Per-visit ¥5.00 at the camera lot, one statement per monthly exit.
    camera = lots["lot-camera"]
    assert camera["statements"] == camera["monthly_stays"]
    assert camera["statement_total_fen"] == 500 * camera["monthly_stays"]
    assert lots["lot-etc"]["statement_total_fen"] > 0 and lots["lot-mixed"]["statement_total_fen"] > 0


def test_demo_shows_the_outage_and_the_card_that_ended_in_a_stay(demo: dict) -> None:  # type: ignore[type-arg]
    assert demo["flags"].get("PASSAGE_FLAG_OFFLINE_DECISION", 0) > 0
    assert demo["flags"].get("PASSAGE_FLAG_CARD_ENDED_IN_STAY", 0) == 1


def test_demo_writes_its_report(demo: dict) -> None:  # type: ignore[type-arg]
    report = Path(demo["report"]).read_text(encoding="utf-8")
    assert "<svg" in report and "lot-etc" in report
    assert list(Path(demo["results"]).glob("statements/lot-etc/*.csv"))
