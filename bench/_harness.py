"""What every benchmark shares: timing, percentiles, and human/JSON reporting.

A benchmark is a module ``bench/<name>.py`` with ``main(argv) -> int``; ``crosspark bench`` runs
them all. Each measures its subject against a baseline measured in the same run and prints the
ratio, so figures from different machines can be compared by their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run in seconds")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) process ``pid`` (default this one) has used so far (Linux)."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every process of the machine has used so far, all cores together (Linux)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How many cores the rest of the machine kept busy over a measurement window, besides the
    processes measured (this one and ``pids``): a tail latency is only as good as the quiet around
    it, and this tells a noisy run from a slow subject."""

    def __init__(self, *pids: int) -> None:
        self._pids = pids

    def _ours(self) -> float:
        return cpu_seconds() + sum(cpu_seconds(pid) for pid in self._pids)

    def __enter__(self) -> OtherLoad:
        self._started = time.perf_counter()
        self._machine, self._mine = machine_busy_seconds(), self._ours()
        return self

    def __exit__(self, *_exc: object) -> None:
        wall = time.perf_counter() - self._started
        others = (machine_busy_seconds() - self._machine) - (self._ours() - self._mine)
        self.cores = max(0.0, others / wall)


def rss_mb(pid: int | None = None) -> float:
    """Resident memory now (Linux), MB, of process ``pid`` (default this one). Without
    ``/proc``, this process's peak as getrusage reports it."""
    status = Path(f"/proc/{pid or 'self'}/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    raise RuntimeError(f"no resident memory figure for process {pid}")


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of latencies given in seconds, reported in milliseconds."""
    a = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {
        "n": int(a.size),
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def time_each(fn: Callable[[], Any], n: int, warmup: int = 10) -> list[float]:
    """Latency of ``n`` calls of ``fn``, seconds each."""
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter
    for _ in range(n):
        start = clock()
        fn()
        samples.append(clock() - start)
    return samples


def rate(fn: Callable[[], int], min_seconds: float = 0.5) -> float:
    """Items per second of ``fn`` (which returns the items it did), repeated for ``min_seconds``."""
    done, start = 0, time.perf_counter()
    while True:
        done += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


@dataclass
class Report:
    """Rows of figures plus target checks, printed as a table or as JSON."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def target(self, what: str, value: float, limit: float, *, higher_is_better: bool, unit: str = "") -> None:
        met = value >= limit if higher_is_better else value <= limit
        self.targets.append({"target": what, "value": round(value, 4), "limit": limit, "unit": unit, "met": bool(met)})

    def emit(self, as_json: bool) -> int:
        if as_json:
            json.dump({"benchmark": self.name, "rows": self.rows, "targets": self.targets}, sys.stdout, default=str)
            sys.stdout.write("\n")
            return 0
        from rich.console import Console
        from rich.table import Table

        console = Console()
        if self.rows:
            columns = list(dict.fromkeys(k for row in self.rows for k in row))
            table = Table(title=self.name)
            for column in columns:
                table.add_column(column)
            for row in self.rows:
                table.add_row(*(_fmt(row.get(c)) for c in columns))
            console.print(table)
        for t in self.targets:
            mark = "[green]met[/green]" if t["met"] else "[red]NOT met[/red]"
            op = "≥" if t["limit"] <= t["value"] and t["met"] else ("≤" if t["met"] else "vs")
            console.print(f"  {t['target']}: {_fmt(t['value'])}{t['unit']} {op} {t['limit']}{t['unit']} — {mark}")
        return 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return "" if value is None else str(value)
