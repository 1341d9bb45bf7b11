"""The demo's results: a summary table per lot and an HTML report with charts."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from jinja2 import Environment, select_autoescape


@dataclass
class LotSummary:
    lot_id: str
    name: str
    mode: str
    period: str
    tariff: str
    visits: int = 0  # gate passages decided
    monthly_stays: int = 0
    temporary_stays: int = 0
    temporary_revenue_fen: int = 0
    statements: int = 0
    statement_total_fen: int = 0
    reconciled: int = 0
    disputed: int = 0
    resolved: int = 0
    offline_decisions: int = 0
    daily_visits: dict[date, int] = field(default_factory=dict)
    daily_fees_fen: dict[date, int] = field(default_factory=dict)

    @property
    def reconciliation(self) -> str:
        parts = [f"{self.reconciled} reconciled"]
        if self.disputed:
            parts.append(f"{self.disputed} disputed")
        if self.resolved:
            parts.append(f"{self.resolved} resolved")
        return ", ".join(parts)


def yuan(fen: int) -> str:
    return f"¥{fen / 100:,.2f}"


COLUMNS = (
    "lot",
    "mode",
    "period",
    "visits",
    "monthly stays",
    "temporary revenue",
    "statements",
    "statement total",
    "reconciliation",
)


def summary_rows(lots: Sequence[LotSummary]) -> list[tuple[str, ...]]:
    return [
        (
            lot.lot_id,
            lot.mode,
            lot.period,
            str(lot.visits),
            str(lot.monthly_stays),
            yuan(lot.temporary_revenue_fen),
            str(lot.statements),
            yuan(lot.statement_total_fen),
            lot.reconciliation,
        )
        for lot in lots
    ]


def _chart_svg(title: str, series: Mapping[str, Mapping[date, float]], ylabel: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
    for label, points in series.items():
        days = sorted(points)
        ax.plot(days, [points[d] for d in days], marker="o", markersize=3, label=label)  # type: ignore[arg-type]
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>crosspark demo — {{ month }}</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
 table { border-collapse: collapse; margin: 1rem 0; }
 th, td { border: 1px solid #ccc; padding: .35rem .6rem; text-align: right; }
 th:first-child, td:first-child { text-align: left; }
 .ok { color: #17703a; } .bad { color: #b00020; }
 figure { margin: 1rem 0; }
</style></head><body>
<h1>crosspark demo — {{ month }}</h1>
<p>A platform and three lot nodes as separate processes over TLS, an accelerated month of traffic
({{ events }} gate events in {{ "%.0f"|format(seconds) }} s), a platform outage from {{ outage }}.
Result: <strong class="{{ 'ok' if ok else 'bad' }}">{{ verdict }}</strong></p>
<table><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% for chart in charts %}<figure>{{ chart|safe }}</figure>{% endfor %}
<h2>What happened</h2><ul>{% for line in notes %}<li>{{ line }}</li>{% endfor %}</ul>
<h2>Files</h2><ul>{% for f in files %}<li><a href="{{ f }}">{{ f }}</a></li>{% endfor %}</ul>
</body></html>
"""


def write_html(
    path: Path,
    *,
    month: str,
    lots: Sequence[LotSummary],
    events: int,
    seconds: float,
    outage: str,
    ok: bool,
    verdict: str,
    notes: Sequence[str],
    files: Sequence[str],
) -> Path:
    charts = [
        _chart_svg("Daily visits per lot", {lot.lot_id: lot.daily_visits for lot in lots}, "gate passages"),
        _chart_svg(
            "Daily platform fees per lot (by exit day)",
            {lot.lot_id: {d: v / 100 for d, v in lot.daily_fees_fen.items()} for lot in lots},
            "yuan",
        ),
    ]
    env = Environment(autoescape=select_autoescape(default=True))
    html = env.from_string(_TEMPLATE).render(
        month=month,
        columns=COLUMNS,
        rows=summary_rows(lots),
        charts=charts,
        events=events,
        seconds=seconds,
        outage=outage,
        ok=ok,
        verdict=verdict,
        notes=notes,
        files=files,
    )
    path.write_text(html, encoding="utf-8")
    return path
