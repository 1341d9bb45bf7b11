"""Readable reports of each statement the lot received: a CSV (UTF-8 with BOM, opens in a
spreadsheet) and a self-contained HTML page. Pure: the caller writes the bytes."""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from lot_node.reconcile import Item, LineResult, Outcome

CSV_COLUMNS = (
    "stay_id", "result", "line_no", "plate", "entry_at", "exit_at", "platform_fee_yuan", "lot_fee_yuan", "note",
)


@dataclass(frozen=True)
class ReportHeader:
    lot_id: str
    statement_id: str
    period_from: datetime
    period_to: datetime
    time_zone: str
    issued_at: datetime
    checked_at: datetime
    sha256: str
    verdict: str  # RECONCILED, DISPUTED or REFUSED
    reason: str = ""


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def _local(instant: datetime | None, zone: ZoneInfo) -> str:
    return instant.astimezone(zone).isoformat(timespec="seconds") if instant is not None else ""


def render_csv(header: ReportHeader, outcome: Outcome | None) -> bytes:
    zone = ZoneInfo(header.time_zone)
    out = io.StringIO()
    out.write("\ufeff")
    out.write(f"# lot: {header.lot_id}\r\n# statement_id: {header.statement_id}\r\n")
    period = f"[{_local(header.period_from, zone)}, {_local(header.period_to, zone)})"
    out.write(f"# period: {period} {header.time_zone}\r\n")
    out.write(f"# issued_at: {_local(header.issued_at, zone)}\r\n# checked_at: {_local(header.checked_at, zone)}\r\n")
    out.write(f"# sha256: {header.sha256}\r\n# verdict: {header.verdict}\r\n")
    if header.reason:
        out.write(f"# reason: {header.reason}\r\n")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for item in outcome.items if outcome else ():
        writer.writerow(_row(item, zone))
    if outcome is not None:
        for line in outcome.adjustments:
            writer.writerow((line.stay_id, "ADJUSTMENT", line.line_no, line.plate, _local(line.entry_at, zone),
                             _local(line.exit_at, zone), _yuan(line.fee_fen), "", f"adjusts {line.adjusts}"))
        for name, count in _counts(outcome).items():
            out.write(f"# {name.lower()}: {count}\r\n")
    return out.getvalue().encode("utf-8")


def _row(item: Item, zone: ZoneInfo) -> tuple[object, ...]:
    return (
        item.stay_id, item.result.value, item.line_no or "", item.plate, _local(item.entered_at, zone),
        _local(item.exited_at, zone),
        _yuan(item.platform_fee_fen) if item.result is not LineResult.MISSING_IN_STATEMENT else "",
        _yuan(item.lot_fee_fen) if item.result is not LineResult.UNKNOWN_TO_LOT else "", item.note,
    )


def _counts(outcome: Outcome) -> dict[str, int]:
    counts = {r.value: 0 for r in LineResult}
    for item in outcome.items:
        counts[item.result.value] += 1
    counts["ADJUSTMENT"] = len(outcome.adjustments)
    return counts


_STYLE = """
body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}.MATCHED{color:#2a7a2a}.FEE_MISMATCH,.MISSING_IN_STATEMENT,.UNKNOWN_TO_LOT{color:#b00020}
.REFUSED{color:#fff;background:#b00020;padding:.1em .4em}.DISPUTED{color:#b00020}.RECONCILED{color:#2a7a2a}
td.money{text-align:right;font-variant-numeric:tabular-nums}
"""


def render_html(header: ReportHeader, outcome: Outcome | None) -> str:
    zone = ZoneInfo(header.time_zone)
    e = html.escape
    parts = [
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">",
        f"<title>对账报告 {e(header.statement_id)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>对账报告 Reconciliation report — {e(header.statement_id)}</h1>",
        "<table>",
        f"<tr><th>lot</th><td>{e(header.lot_id)}</td></tr>",
        f"<tr><th>period</th><td>[{e(_local(header.period_from, zone))}, {e(_local(header.period_to, zone))}) "
        f"{e(header.time_zone)}</td></tr>",
        f"<tr><th>issued at</th><td>{e(_local(header.issued_at, zone))}</td></tr>",
        f"<tr><th>checked at</th><td>{e(_local(header.checked_at, zone))}</td></tr>",
        f"<tr><th>SHA-256</th><td><code>{e(header.sha256)}</code></td></tr>",
        f"<tr><th>verdict</th><td><span class=\"{e(header.verdict)}\">{e(header.verdict)}</span></td></tr>",
    ]
    if header.reason:
        parts.append(f"<tr><th>reason</th><td>{e(header.reason)}</td></tr>")
    parts.append("</table>")
    if outcome is None:
        parts.append("<p>The statement was refused and nothing in it was reconciled.</p></body></html>")
        return "".join(parts)
    counts = _counts(outcome)
    parts.append("<h2>Summary</h2><table>")
    parts.extend(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in counts.items())
    lot_total = sum(i.lot_fee_fen for i in outcome.items)
    platform_total = sum(i.platform_fee_fen for i in outcome.items) + sum(a.fee_fen for a in outcome.adjustments)
    parts.append(f"<tr><th>platform total</th><td class=\"money\">{_yuan(platform_total)}</td></tr>")
    parts.append(f"<tr><th>lot total (compared stays)</th><td class=\"money\">{_yuan(lot_total)}</td></tr></table>")
    parts.append("<h2>Lines</h2><table><tr>" + "".join(f"<th>{c}</th>" for c in CSV_COLUMNS) + "</tr>")
    ordered = sorted(outcome.items, key=lambda i: (i.result is LineResult.MATCHED, i.line_no or 1 << 30, i.stay_id))
    for item in ordered:
        cells = _row(item, zone)
        parts.append(
            f"<tr class=\"{item.result.value}\">"
            + "".join(
                f"<td class=\"money\">{e(str(c))}</td>" if i in (6, 7) else f"<td>{e(str(c))}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    for line in outcome.adjustments:
        parts.append(
            f"<tr><td>{e(line.stay_id)}</td><td>ADJUSTMENT</td><td>{line.line_no}</td><td>{e(line.plate)}</td>"
            f"<td>{e(_local(line.entry_at, zone))}</td><td>{e(_local(line.exit_at, zone))}</td>"
            f"<td class=\"money\">{_yuan(line.fee_fen)}</td><td></td><td>adjusts {e(line.adjusts)}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "".join(parts)
