"""The demo's steps in order, with progress bars, the summary table and the report."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from crosspark.cli_support import emit_json, emit_table
from crosspark.demo.report import COLUMNS, LotSummary, summary_rows, write_html, yuan
from crosspark.demo.run import DemoRun, Evidence, corrupt_platform_fee
from crosspark.demo.scenario import TZ, make_plan
from crosspark.v1 import common_pb2, gate_pb2, settlement_pb2

#: Real seconds the demo waits for the lots to finish reconciling once the month is over.
SETTLE_TIMEOUT = 90.0


def run_demo(*, results: Path, seed: int, speed: float, visits_per_lot_day: int, days: int, as_json: bool) -> bool:
    started = time.monotonic()
    plan = make_plan(seed, days=days, visits_per_lot_day=visits_per_lot_day)
    root = (results / datetime.now(UTC).strftime("demo-%Y%m%d-%H%M%S")).resolve()
    root.mkdir(parents=True, exist_ok=False)
    run = DemoRun(plan, root, speed)
    console = Console(stderr=True, quiet=as_json)
    progress = Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    summaries = {
        lot.lot_id: LotSummary(lot.lot_id, lot.name, lot.mode, lot.period, lot.tariff_label) for lot in plan.lots
    }
    try:
        with progress:
            setup = progress.add_task("setting up (TLS, platform, lots)", total=5)
            run.start_platform()
            progress.advance(setup)
            run.register()
            progress.advance(setup)
            run.apply_cards()
            progress.advance(setup)
            evidence = Evidence(plan, seed)
            progress.advance(setup)
            run.start_lots()
            progress.advance(setup)
            run.notes.append(
                f"Platform and 3 lot nodes started over TLS (local CA in {root / 'tls'}); "
                f"{len(plan.cards)} monthly cards applied; {len(evidence.photos)} gate photos and "
                f"{len(evidence.frames)} ETC frames generated."
            )
            run.start_month()
            traffic = progress.add_task("month of traffic (gate events)", total=len(plan.events))
            _play_month(run, evidence, summaries, progress, traffic)
            settle = progress.add_task("statements and reconciliation", total=None)
            ok = _settle(run, summaries, progress, settle)
    finally:
        run.stop_all()
    elapsed = time.monotonic() - started
    lots = list(summaries.values())
    verdict = (
        "everything reconciled; the injected wrong fee was disputed and resolved into an adjustment"
        if ok
        else "NOT everything reconciled — see the notes"
    )
    report = write_html(
        root / "report.html",
        month=plan.month_start.strftime("%B %Y"),
        lots=lots,
        events=len(plan.events),
        seconds=elapsed,
        outage=f"{plan.outage[0]:%m-%d %H:%M} to {plan.outage[1]:%m-%d %H:%M}",
        ok=ok,
        verdict=verdict,
        notes=run.notes,
        files=sorted(str(p.relative_to(root)) for p in root.rglob("*.csv")),
    )
    summary = {
        "ok": ok,
        "results": str(root),
        "report": str(report),
        "seconds": round(elapsed, 1),
        "notes": run.notes,
        "events": len(plan.events),
        "flags": dict(run.flags),
        "disputes": run.disputes,
        "lots": [{k: v for k, v in vars(lot).items() if k not in ("daily_visits", "daily_fees_fen")} for lot in lots],
    }
    (root / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    if as_json:
        emit_json(summary)
    else:
        emit_table(f"crosspark demo — {plan.month_start:%B %Y}", COLUMNS, summary_rows(lots))
        for note in run.notes:
            console.print(f"• {note}")
        console.print(f"[{'green' if ok else 'red'}]{verdict}[/] in {elapsed:.0f} s")
        console.print(f"results: {root}\nreport:  {report}")
    return ok


def _play_month(
    run: DemoRun, evidence: Evidence, summaries: dict[str, LotSummary], progress: Progress, task: object
) -> None:
    plan, clock = run.plan, run.clock
    assert clock is not None and run.platform is not None
    platform_down = outage_over = False
    for at, kind, visit in plan.events:
        if not platform_down and not outage_over and at >= plan.outage[0]:
            run.platform.stop()
            platform_down = True
            corrupted = corrupt_platform_fee(run.root / "platform" / "platform.db", plan.wrong_fee_visit)
            run.notes.append(
                f"Platform stopped at {plan.outage[0]:%m-%d %H:%M}; while it was down, the platform's record of stay "
                f"{corrupted or '(not found!)'} ({plan.wrong_fee_visit.plate} at {plan.wrong_fee_visit.lot_id}) was "
                "stretched by 2 h: a deliberately wrong platform fee."
            )
        if platform_down and at >= plan.outage[1]:
            run.platform.start()
            platform_down, outage_over = False, True
            run.notes.append(f"Platform restarted at {plan.outage[1]:%m-%d %H:%M}; the lots' outboxes drained.")
        delay = (at - clock.now()).total_seconds() / clock.factor
        if delay > 0:
            time.sleep(delay)
        runtime = run.lots[visit.lot_id]
        assert runtime.gate is not None
        decision = runtime.gate.Pass(evidence.request(runtime.plan, visit, kind, at), timeout=30)
        summary = summaries[visit.lot_id]
        summary.visits += 1
        day = at.astimezone(TZ).date()
        summary.daily_visits[day] = summary.daily_visits.get(day, 0) + 1
        for flag in decision.flags:
            run.flags[settlement_pb2.PassageFlag.Name(flag)] += 1
            if flag == settlement_pb2.PASSAGE_FLAG_OFFLINE_DECISION:
                summary.offline_decisions += 1
        if kind == "exit":
            if decision.kind == gate_pb2.VEHICLE_KIND_MONTHLY:
                summary.monthly_stays += 1
            elif decision.stay_id:
                summary.temporary_stays += 1
            if decision.fee_due_fen > 0 and not decision.open:
                receipt = runtime.gate.Pay(
                    gate_pb2.PayRequest(
                        passage_id=decision.passage_id,
                        amount_fen=decision.fee_due_fen,
                        method="cash",
                        payment_ref=f"demo-{decision.passage_id[:8]}",
                    ),
                    timeout=30,
                )
                if receipt.open:
                    summary.temporary_revenue_fen += receipt.paid_fen
        progress.advance(task)  # type: ignore[arg-type]
    run.events_done = len(plan.events)
    flags = ", ".join(f"{name.removeprefix('PASSAGE_FLAG_')} {n}" for name, n in sorted(run.flags.items()))
    run.notes.append(f"{len(plan.events)} gate events played; flags raised: {flags or 'none'}.")


def _statements(run: DemoRun, lot_id: str) -> list[settlement_pb2.Statement]:
    found: list[settlement_pb2.Statement] = []
    token = ""
    while True:
        page = run.settlement.ListStatements(
            settlement_pb2.ListStatementsRequest(
                lot_id=lot_id, page=common_pb2.PageRequest(page_size=1000, page_token=token)
            ),
            timeout=30,
        )
        found.extend(page.statements)
        token = page.next_page_token
        if not token:
            return found


_DONE = {
    settlement_pb2.STATEMENT_STATUS_RECONCILED,
    settlement_pb2.STATEMENT_STATUS_DISPUTED,
    settlement_pb2.STATEMENT_STATUS_RESOLVED,
}


def _all_checked(run: DemoRun, until: datetime) -> bool:
    """Every lot's outbox is empty, and every statement of a period that began before ``until``
    is issued and checked by its lot (statements of later periods keep coming: the clock runs)."""
    for lot_id, runtime in run.lots.items():
        assert runtime.gate is not None
        status = runtime.gate.Status(gate_pb2.GateStatusRequest(), timeout=10)
        if status.outbox_depth:
            return False
        statements = [s for s in _statements(run, lot_id) if s.period_from.ToDatetime(UTC) < until]
        if any(s.status not in _DONE for s in statements):
            return False
        if runtime.plan.period != "PER_EXIT" and not any(s.period_to.ToDatetime(UTC) >= until for s in statements):
            return False
    return True


def _checked(run: DemoRun, lot_id: str, statement_id: str) -> bool:
    return any(s.statement_id == statement_id and s.status in _DONE for s in _statements(run, lot_id))


def _settle(run: DemoRun, summaries: dict[str, LotSummary], progress: Progress, task: object) -> bool:
    plan, clock = run.plan, run.clock
    assert clock is not None
    month_end = plan.month_end
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not _all_checked(run, month_end.astimezone(UTC)):
        if time.monotonic() > deadline:
            run.notes.append("Timed out waiting for the month's statements to be issued and reconciled.")
            _collect(run, summaries)
            return False
        time.sleep(0.5)
    progress.update(task, description="disputes")  # type: ignore[arg-type]
    disputes = run.settlement.ListDisputes(
        settlement_pb2.ListDisputesRequest(state=settlement_pb2.DISPUTE_STATE_OPEN), timeout=30
    ).disputes
    ok = True
    if len(disputes) != 1:
        ok = False
        run.notes.append(f"Expected exactly one disputed line (the injected fee), found {len(disputes)}.")
    for dispute in disputes:
        item = dispute.item
        run.notes.append(
            f"{dispute.lot_id} disputed stay {item.stay_id} in {dispute.statement_id}: "
            f"{settlement_pb2.LineResult.Name(item.result).removeprefix('LINE_RESULT_')}, platform "
            f"{yuan(item.platform_fee_fen)} vs lot {yuan(item.lot_fee_fen)}."
        )
        resolved = run.settlement.ResolveDispute(
            settlement_pb2.ResolveDisputeRequest(
                dispute_id=dispute.dispute_id,
                decision=settlement_pb2.DISPUTE_DECISION_ACCEPT_LOT,
                note="platform record was wrong (demo fault injection); the lot's figure stands",
            ),
            timeout=30,
        )
        run.notes.append(f"Operator accepted the lot's figure for dispute {resolved.dispute_id}.")
        run.disputes.append(
            {
                "lot_id": dispute.lot_id,
                "stay_id": item.stay_id,
                "statement_id": dispute.statement_id,
                "platform_fee_fen": item.platform_fee_fen,
                "lot_fee_fen": item.lot_fee_fen,
            }
        )
    # The adjustment goes into the lot's next statement, which the lot checks too.
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while disputes:
        listing = run.settlement.ListDisputes(settlement_pb2.ListDisputesRequest(), timeout=30).disputes
        adjusted = {d.dispute_id: d.adjusted_in_statement_id for d in listing}
        if all(adjusted.get(d.dispute_id) and _checked(run, d.lot_id, adjusted[d.dispute_id]) for d in disputes):
            for d, record in zip(disputes, run.disputes, strict=True):
                record["adjusted_in"] = adjusted[d.dispute_id]
                run.notes.append(f"Adjustment for dispute {d.dispute_id} carried in {adjusted[d.dispute_id]}.")
            break
        if time.monotonic() > deadline:
            run.notes.append("Timed out waiting for the adjustment statement.")
            _collect(run, summaries)
            return False
        time.sleep(0.5)
    _collect(run, summaries)
    for summary in summaries.values():
        if summary.disputed:
            ok = False
            run.notes.append(f"{summary.lot_id} still has {summary.disputed} disputed statement(s).")
    return ok


def _collect(run: DemoRun, summaries: dict[str, LotSummary]) -> None:
    """Statement totals, reconciliation results and daily fees (from the files) per lot."""
    from settlement.statement_file import parse

    for lot_id, summary in summaries.items():
        statements = _statements(run, lot_id)
        summary.statements = len(statements)
        summary.statement_total_fen = sum(s.total_fee_fen for s in statements)
        counts = Counter(s.status for s in statements)
        summary.reconciled = counts[settlement_pb2.STATEMENT_STATUS_RECONCILED]
        summary.disputed = counts[settlement_pb2.STATEMENT_STATUS_DISPUTED]
        summary.resolved = counts[settlement_pb2.STATEMENT_STATUS_RESOLVED]
        daily: dict[date, int] = defaultdict(int)
        folder = run.root / "statements" / lot_id
        folder.mkdir(parents=True, exist_ok=True)
        for statement in statements:
            data = b"".join(
                chunk.data
                for chunk in run.settlement.FetchStatement(
                    settlement_pb2.FetchStatementRequest(statement_id=statement.statement_id), timeout=60
                )
                if chunk.WhichOneof("body") == "data"
            )
            (folder / f"{statement.statement_id}.csv").write_bytes(data)
            for line in parse(data).lines:
                daily[line.exit_at.astimezone(TZ).date()] += line.fee_fen
        summary.daily_fees_fen = dict(daily)
