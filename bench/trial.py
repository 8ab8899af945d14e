"""One measurement of one variant: ``python -m bench.trial`` prints one JSON line.

A trial runs in its own process because Conveyor's app reads the broker and
database from the environment once, at import. It:

1. empties the variant's queue, the probe list and (with a backend) the result tables;
2. publishes ``n`` no-op tasks, each carrying ``sent=time.time()``, as a backlog (for
   the batch task, ``n`` items: one job each);
3. for a scraped variant, starts a web process and scrapes its ``/metrics`` every
   ``scrape_interval`` seconds from then on (:mod:`bench.scraper`);
4. starts a prefork worker and times the drain, from the first task start to the last;
5. publishes ``paced`` more tasks at a steady ``rate`` to the now idle worker,
   whose enqueue→start latencies are the ones worth reading;
6. stops the worker (then the scraper and the web process) and deletes the queue,
   whatever happened.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import probe
from bench.scraper import Scraper, WebFailed, scraping
from bench.variants import BY_NAME, Variant
from bench.worker import log_tail, running_worker


class TrialFailed(RuntimeError):
    """The worker died or did not finish the tasks in time."""


def _bound_queue(celery_app: Any, conn: Any, name: str) -> Any:
    queue = next(q for q in celery_app.conf.task_queues if q.name == name)
    bound = queue(conn.default_channel)
    bound.declare()
    return bound


def purge_queue(celery_app: Any, name: str) -> None:
    """Drop every message waiting in ``name`` (and only there)."""
    with celery_app.connection_for_write() as conn:
        _bound_queue(celery_app, conn, name).purge()


def delete_queue(celery_app: Any, name: str) -> None:
    """Delete ``name`` from the broker, leaving nothing of the benchmark behind."""
    with celery_app.connection_for_write() as conn:
        _bound_queue(celery_app, conn, name).delete()


def reset_results(celery_app: Any) -> None:
    """Create the result tables before any worker races to, and empty them."""
    from sqlalchemy import text

    backend = celery_app.backend
    if not hasattr(backend, "ResultSession"):  # Conveyor: results live in the ledger
        from app.db import engine

        with engine().begin() as conn:
            conn.execute(text("TRUNCATE jobs, job_events, workers"))
        return
    session = backend.ResultSession()
    try:
        tables = ", ".join(cls.__table__.name for cls in (backend.task_cls, backend.taskset_cls))
        session.execute(text(f"TRUNCATE {tables}"))
        session.commit()
    finally:
        session.close()


def wait_for(
    reader: probe.ProbeReader, count: int, worker: Any, log: Path, timeout_s: float
) -> None:
    """Return once ``count`` tasks have started; raise if the worker dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while (seen := reader.count()) < count:
        if worker.poll() is not None:
            raise TrialFailed(f"worker exited with {worker.returncode}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise TrialFailed(
                f"{seen}/{count} tasks started after {timeout_s:g}s:\n{log_tail(log)}"
            )
        time.sleep(0.02)


def run(variant: Variant, args: argparse.Namespace) -> dict[str, Any]:
    """Measure ``variant`` once; return what the report needs."""
    celery_app = variant.load()
    task = celery_app.tasks[variant.task]
    key = f"conveyor-bench:{uuid.uuid4().hex}"
    reader = probe.ProbeReader(args.probe_url, key)
    env = {**os.environ, probe.URL_ENV: args.probe_url, probe.KEY_ENV: key}
    purge_queue(celery_app, variant.queue)
    if variant.result_backend:
        reset_results(celery_app)
    started = time.perf_counter()
    for _ in range(args.n):
        task.apply_async(kwargs={"sent": time.time()})
    enqueue_s = time.perf_counter() - started
    timeout_s = 120 + args.n / 20
    scraper: Scraper | None = None
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        log = Path(tmp) / "worker.log"
        try:
            # Closed in reverse: the worker stops first, then the scraper and the web.
            with ExitStack() as stack:
                if variant.scraped:
                    scraper = stack.enter_context(scraping(env, Path(tmp), args.scrape_interval))
                spawned = time.time()
                worker = stack.enter_context(running_worker(variant, args.concurrency, env, log))
                wait_for(reader, args.n, worker, log, timeout_s)
                backlog = reader.take()
                first = min(s.started for s in backlog)
                last = max(s.started for s in backlog)
                drain_s = last - first
                # Paced: well below capacity, so latency is the system's, not the queue's.
                rate = min(args.rate, 0.5 * args.n / drain_s) if drain_s > 0 else args.rate
                t0 = time.perf_counter()
                for i in range(args.paced):
                    pause = t0 + i / rate - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    task.apply_async(kwargs={"sent": time.time()})
                wait_for(reader, args.paced, worker, log, 60 + args.paced / rate)
                paced = reader.take()
        finally:
            reader.clear()
            purge_queue(celery_app, variant.queue)
            delete_queue(celery_app, variant.queue)
        if scraper is not None:
            refused = [s.error for s in scraper.scrapes if s.error is not None]
            if refused:
                raise TrialFailed(
                    f"{len(refused)}/{len(scraper.scrapes)} scrapes of /metrics failed, "
                    f"the first: {refused[0]}\n{log_tail(Path(tmp) / 'web.log')}"
                )
    result = {
        "variant": variant.name,
        "n": args.n,
        "enqueue_s": enqueue_s,
        "startup_s": first - spawned,
        "drain_s": drain_s,
        "throughput": args.n / drain_s if drain_s > 0 else float("inf"),
        "backlog_wait_s": sorted(s.latency_s for s in backlog),
        "paced_rate": rate,
        "paced_latency_s": sorted(s.latency_s for s in paced),
    }
    if scraper is not None:
        result.update(scrape_figures(scraper, first, last))
    return result


def scrape_figures(scraper: Scraper, first: float, last: float) -> dict[str, Any]:
    """What the report says of the scrapes: how many overlapped the drain (``first`` to
    ``last`` task start), how long each took, and the collector's parts that failed."""
    return {
        "scrapes": len(scraper.scrapes),
        "drain_scrapes": sum(1 for s in scraper.scrapes if s.started < last and s.ended > first),
        "scrape_s": sorted(s.ended - s.started for s in scraper.scrapes),
        "scrape_failed_parts": sorted({p for s in scraper.scrapes for p in s.failed_parts}),
    }


def parser() -> argparse.ArgumentParser:
    """The command-line grammar (normally driven by ``python -m bench``)."""
    top = argparse.ArgumentParser(prog="python -m bench.trial", description=__doc__)
    top.add_argument("--variant", choices=sorted(BY_NAME), required=True)
    top.add_argument("--n", type=int, default=10_000)
    top.add_argument("--concurrency", type=int, default=2)
    top.add_argument("--paced", type=int, default=500)
    top.add_argument("--rate", type=float, default=100.0, help="paced tasks per second (max)")
    top.add_argument(
        "--scrape-interval", type=float, default=5.0, help="seconds between /metrics scrapes"
    )
    top.add_argument("--probe-url", required=True)
    return top


def main() -> int:
    """Run one trial and print its result as one JSON line on stdout."""
    args = parser().parse_args()
    try:
        result = run(BY_NAME[args.variant], args)
    except (TrialFailed, WebFailed) as exc:
        print(f"{args.variant}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
