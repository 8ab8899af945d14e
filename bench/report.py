"""Turning trial results into the printed report: medians, percentiles, ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q ≤ 100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    """One variant on one broker, over every run."""

    variant: str
    runs: int
    #: Tasks per second draining the backlog: median, min and max over runs.
    throughput: float
    throughput_min: float
    throughput_max: float
    #: Seconds from the first task start to the last (median over runs).
    drain_s: float
    #: Tasks per second published by the benchmark for the backlog (median).
    enqueue_rate: float
    #: Queue wait of backlog tasks, pooled over runs, seconds.
    backlog_p50_s: float
    backlog_p99_s: float
    #: Rate of the paced phase (median), tasks per second.
    paced_rate: float
    #: Enqueue→start latency of paced tasks, pooled over runs, seconds.
    paced_p50_s: float
    paced_p99_s: float


def summarize(variant: str, results: Sequence[dict[str, Any]]) -> Summary:
    """Medians of per-run figures; percentiles of latencies pooled across runs."""
    throughputs = [r["throughput"] for r in results]
    backlog = [x for r in results for x in r["backlog_wait_s"]]
    paced = [x for r in results for x in r["paced_latency_s"]]
    return Summary(
        variant=variant,
        runs=len(results),
        throughput=statistics.median(throughputs),
        throughput_min=min(throughputs),
        throughput_max=max(throughputs),
        drain_s=statistics.median(r["drain_s"] for r in results),
        enqueue_rate=statistics.median(r["n"] / r["enqueue_s"] for r in results),
        backlog_p50_s=percentile(backlog, 50),
        backlog_p99_s=percentile(backlog, 99),
        paced_rate=statistics.median(r["paced_rate"] for r in results),
        paced_p50_s=percentile(paced, 50),
        paced_p99_s=percentile(paced, 99),
    )


HEADER = (
    f"{'variant':<16} {'tasks/s':>8} {'(min-max)':>15} {'drain s':>8} {'enqueue/s':>9}"
    f" {'backlog wait p50/p99 s':>22} {'paced/s':>7} {'enqueue->start p50/p99 ms':>25}"
)


def table(summaries: Iterable[Summary]) -> list[str]:
    """The per-variant table, one line per variant under a header."""
    lines = [HEADER]
    for s in summaries:
        spread = f"({s.throughput_min:.0f}-{s.throughput_max:.0f})"
        backlog = f"{s.backlog_p50_s:.2f} / {s.backlog_p99_s:.2f}"
        paced = f"{s.paced_p50_s * 1000:.1f} / {s.paced_p99_s * 1000:.1f}"
        lines.append(
            f"{s.variant:<16} {s.throughput:>8.1f} {spread:>15} {s.drain_s:>8.2f}"
            f" {s.enqueue_rate:>9.0f} {backlog:>22} {s.paced_rate:>7.1f} {paced:>25}"
        )
    return lines


def ratio(numerator: Summary, denominator: Summary) -> float:
    """Median throughput of ``numerator`` over that of ``denominator``."""
    return numerator.throughput / denominator.throughput


def scrapes(variant: str, results: Sequence[dict[str, Any]]) -> str:
    """One line on a scraped variant's ``/metrics`` scrapes over every run: how many
    overlapped a drain, how long they took, and the parts of the collector that failed."""
    during = sum(r["drain_scrapes"] for r in results)
    total = sum(r["scrapes"] for r in results)
    took = [x for r in results for x in r["scrape_s"]]
    failed = ", ".join(sorted({p for r in results for p in r["scrape_failed_parts"]}))
    p50_ms, max_ms = percentile(took, 50) * 1000, max(took, default=math.nan) * 1000
    return (
        f"{variant}: {during} scrapes during the drains ({total} in all),"
        f" each p50 {p50_ms:.0f} ms, max {max_ms:.0f} ms; parts failed: {failed or 'none'}"
    )
