"""``python -m bench`` (``make bench``): bare Celery against Conveyor, on Redis and RabbitMQ.

For each broker, each run measures every variant chosen with ``--variants`` (all of
:data:`bench.variants.VARIANTS` by default) once, in turn (runs interleave, so slow
drift of the machine hits all variants alike); each measurement is a
:mod:`bench.trial` subprocess with its own worker. The report gives median
throughputs and their ratios: Conveyor over bare Celery, Conveyor while its
``/metrics`` is scraped over bare Celery and over Conveyor unscraped, and a batch
task's items/s over one task per item. When ``conveyor`` and ``bare-no-backend``
both ran, the last line reads ``ratio <x.xx>``: Conveyor's median throughput over
bare Celery without a result backend, on the first broker measured (Redis when
both are).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench import report, services
from bench.variants import BARE, BY_NAME, CONVEYOR, RATIOS, VARIANTS, Variant
from bench.worker import PROJECT_ROOT, STOP_TIMEOUT_S
from config.settings import mask_url

#: Seconds an interrupted trial gets to stop its worker and empty its queue.
TRIAL_CLEANUP_S = STOP_TIMEOUT_S + 30


class BenchFailed(RuntimeError):
    """A trial failed; its own error went to stderr."""


def variant_list(text: str) -> tuple[Variant, ...]:
    """``--variants``: names separated by commas, measured in :data:`VARIANTS`' order."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(BY_NAME))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(BY_NAME)}"
        )
    return tuple(variant for variant in VARIANTS if variant.name in names)


def parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    top = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument(
        "--variants",
        type=variant_list,
        default=VARIANTS,
        metavar="NAME,...",
        help=f"variants to measure, comma-separated (default: all): {', '.join(BY_NAME)}",
    )
    top.add_argument("--broker", choices=("redis", "rabbitmq", "both"), default="both")
    top.add_argument(
        "--n", type=int, default=20_000, help="backlog tasks (batched: items) per trial"
    )
    top.add_argument("--runs", type=int, default=3, help="runs per variant; medians reported")
    top.add_argument("--concurrency", type=int, default=2, help="prefork processes per worker")
    top.add_argument("--paced", type=int, default=500, help="tasks in the latency phase")
    top.add_argument("--rate", type=float, default=50.0, help="latency phase tasks/s (max)")
    top.add_argument(
        "--scrape-interval",
        type=float,
        default=5.0,
        help="seconds between /metrics scrapes in conveyor-scraped",
    )
    top.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    top.add_argument("--rabbitmq-url", default="amqp://guest:guest@127.0.0.1:5672//")
    top.add_argument(
        "--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/conveyor_bench"
    )
    top.add_argument(
        "--probe-url", default="redis://127.0.0.1:6379/14", help="Redis the tasks report to"
    )
    return top


def trial(
    broker: services.Broker, variant: str, backing: services.Backing, args: argparse.Namespace
) -> dict[str, Any]:
    """Run one :mod:`bench.trial` subprocess against ``broker`` and return its result."""
    env = {
        **os.environ,
        "CONVEYOR_BROKER__URL": broker.url,
        "CONVEYOR_DATABASE__URL": backing.database_url,
        # Conveyor's delivery gate and caches (a Redis deployment may use its broker).
        "CONVEYOR_CACHE__URL": backing.probe_url,
    }
    argv = [
        sys.executable,
        "-m",
        "bench.trial",
        f"--variant={variant}",
        f"--n={args.n}",
        f"--concurrency={args.concurrency}",
        f"--paced={args.paced}",
        f"--rate={args.rate}",
        f"--scrape-interval={args.scrape_interval}",
        f"--probe-url={backing.probe_url}",
    ]
    # stderr passes through, so a failing trial explains itself.
    proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate()
    except KeyboardInterrupt:
        # The trial got the same Ctrl-C and is stopping its worker: let it finish
        # (subprocess.run would SIGKILL it, leaving the worker running).
        proc.wait(TRIAL_CLEANUP_S)
        raise
    if proc.returncode != 0:
        raise BenchFailed(f"{broker.name} {variant}: trial exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def bench_broker(
    broker: services.Broker, backing: services.Backing, args: argparse.Namespace
) -> dict[str, report.Summary]:
    """Every run of every variant on ``broker``; print and return the summaries."""
    print(
        f"\n== {broker.name} {mask_url(broker.url)}: n={args.n}, runs={args.runs}, "
        f"concurrency={args.concurrency}",
        flush=True,
    )
    results: dict[str, list[dict[str, Any]]] = {v.name: [] for v in args.variants}
    for run in range(1, args.runs + 1):
        for variant in args.variants:
            result = trial(broker, variant.name, backing, args)
            results[variant.name].append(result)
            scrapes = f"  scrapes in drain {result['drain_scrapes']}" if variant.scraped else ""
            print(
                f"   run {run}/{args.runs} {variant.name:<16} {result['throughput']:8.1f} tasks/s"
                f"  drain {result['drain_s']:.2f} s  worker start {result['startup_s']:.1f} s"
                f"{scrapes}",
                flush=True,
            )
    summaries = {name: report.summarize(name, rs) for name, rs in results.items()}
    print()
    for line in report.table(summaries.values()):
        print(line)
    for variant in args.variants:
        if variant.scraped:
            print(report.scrapes(variant.name, results[variant.name]))
    for numerator, denominator in RATIOS:
        if numerator.name in summaries and denominator.name in summaries:
            top, bottom = summaries[numerator.name], summaries[denominator.name]
            unit = "items/s" if numerator.task != denominator.task else "tasks/s"
            print(
                f"{numerator.name} / {denominator.name}: {report.ratio(top, bottom):.2f}"
                f"  ({top.throughput:.1f} / {bottom.throughput:.1f} {unit})"
            )
    print(flush=True)
    return summaries


def main(argv: Sequence[str] | None = None) -> int:
    """Benchmark every reachable broker asked for; print the report."""
    args = parser().parse_args(argv)
    began = time.monotonic()
    print("variants:")
    for variant in args.variants:
        print(f"  {variant.name:<16} {variant.summary}")
    print(
        "tasks/s: backlog drained by one prefork worker, first task start to last\n"
        "(conveyor-batched: items, each a job of its own).\n"
        "backlog wait: enqueue->start of backlog tasks (mostly time spent queued).\n"
        "enqueue->start: tasks published at 'paced/s' (at most half the drain rate)\n"
        "to an idle worker; latencies pooled over runs."
    )
    found = services.brokers(args.broker, args.redis_url, args.rabbitmq_url)
    usable = [b for b in found if b.problem is None]
    for broker in found:
        if broker.problem is not None:
            print(f"skipping {broker.name}: {mask_url(broker.url)} unreachable ({broker.problem})")
    if not usable:
        print("no broker reachable; nothing to measure", file=sys.stderr)
        return 1
    measured: list[tuple[str, dict[str, report.Summary]]] = []
    try:
        with services.backing(args.database_url, args.probe_url) as backing:
            for note in backing.notes:
                print(note)
            print(f"results: {mask_url(backing.database_url)}, probe: {backing.probe_url}")
            for broker in usable:
                measured.append((broker.name, bench_broker(broker, backing, args)))
    except BenchFailed as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # trials stop their own workers on the same Ctrl-C
        print("interrupted", file=sys.stderr)
        return 130
    print(f"elapsed {time.monotonic() - began:.0f} s")
    first, summaries = measured[0]
    if CONVEYOR.name not in summaries or BARE.name not in summaries:
        print(f"no final ratio: --variants leaves out {CONVEYOR.name} or {BARE.name}")
        return 0
    final = report.ratio(summaries[CONVEYOR.name], summaries[BARE.name])
    print(f"ratio below: {CONVEYOR.name} / {BARE.name} throughput on {first}")
    print(f"ratio {final:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
