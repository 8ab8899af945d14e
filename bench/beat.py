"""``python -m bench.beat``: how late beat publishes a per-second schedule, against bare Celery.

Each run starts two beats in turn, each for ``--seconds``, on Redis, with no
worker (what is measured is the publish, not the execution):

* **Conveyor**: ``python -m app beat`` on a scratch database (created, migrated
  and dropped by the run) with one schedule, ``* * * * * *`` firing ``demo.ping``
  with overlap ``allow``. Lateness is ``jobs.enqueued_at`` (stamped by the
  transaction that publishes the fire, just before the publish) minus the fire
  time in the job's metadata. Also shown: the fire record's ``fired_at`` minus the
  fire time, and the message's arrival in the Redis list (seen by a BRPOP in this
  process) minus the fire time. The fires of beat's first pass, for slots that
  fell due before beat ran (the misfire policy's business), are shown apart.
* **bare Celery**: ``celery beat`` with Celery's ``PersistentScheduler`` and
  ``schedule(run_every=1.0)``. An interval schedule has no fire times, so slot k
  is the first publish plus k seconds and lateness is drift: |publish_k minus
  (publish_0 + k s)|, the publish time taken by beat's own ``after_task_publish``
  (absolute: the first publish also opens the connection, so later ones can read
  as early). Also shown: the same drift of arrivals in Redis, and jitter,
  |gap - 1 s|.

Percentiles are nearest-rank within a run; with several ``--runs``, the summary
quotes medians of the per-run figures. The last line reads
``beat p99 lateness conveyor <X> ms (target ≤ 1000 ms)``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from bench.report import percentile
from bench.services import redis_problem
from bench.worker import PROJECT_ROOT, log_tail, stop

SCHEDULE = "bench-every-second"
#: Conveyor fires ``demo.ping``, routed to this queue; bare Celery publishes to its own.
CONVEYOR_QUEUE = "default"
BARE_QUEUE = "bench_bare"
BARE_TASK = "bench.tick"
#: Both beats log this when their loop starts.
READY = "beat: Starting..."
TARGET_MS = 1000.0
CREATE = (
    "from beat.service import ScheduleService; "
    f"ScheduleService().create({SCHEDULE!r}, 'demo.ping', '* * * * * *', overlap='allow')"
)
JOBS = """
SELECT id::text, extract(epoch FROM (metadata->>'fire_time')::timestamptz)::float8,
       extract(epoch FROM enqueued_at)::float8
FROM jobs WHERE metadata->>'schedule' = %s
"""
FIRES = """
SELECT extract(epoch FROM fire_time)::float8, extract(epoch FROM fired_at)::float8
FROM conveyor_schedule_fire WHERE schedule_name = %s
"""


class BenchFailed(RuntimeError):
    """A beat did not start or recorded nothing; the message has its log."""


@dataclass
class Measure:
    """One system in one run: how many fires, and how late they were."""

    system: str
    fires: int
    #: Slots from the first measured one to 1 s before SIGTERM: each had a second to go out.
    expected: int
    missing: int
    duplicates: int
    #: What was measured -> lateness samples in ms; the first is the headline figure.
    lateness_ms: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class BrokerWatch(threading.Thread):
    """Pops each message published to one Redis list and notes when it arrived."""

    def __init__(self, url: str, queue: str) -> None:
        super().__init__(name=f"watch-{queue}", daemon=True)
        self.client = redis.Redis.from_url(url)
        self.queue = queue
        #: (arrival, task id), oldest first.
        self.arrivals: list[tuple[float, str]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            item = self.client.brpop([self.queue], timeout=1)
            if item is not None:
                arrived = time.time()
                self.arrivals.append((arrived, json.loads(item[1])["headers"]["id"]))

    def stop(self) -> None:
        """Stop after the current wait; the messages already published are in."""
        self.done.set()
        self.join()
        self.client.close()


def bare_beat(publish_log: str, schedule_file: str) -> None:
    """Run bare Celery beat (blocks); append the time of each publish to ``publish_log``."""
    from celery import Celery
    from celery.schedules import schedule
    from celery.signals import after_task_publish

    from bench.bare import bare_config
    from config.settings import get_settings

    celery_app = Celery("bench_bare_beat", set_as_current=False)
    celery_app.conf.update(bare_config(get_settings(), result_backend=False))
    celery_app.conf.beat_schedule = {
        "tick": {"task": BARE_TASK, "schedule": schedule(run_every=1.0)}
    }
    out = open(publish_log, "a", buffering=1)  # noqa: SIM115 - open until the process exits

    def published(**_: object) -> None:
        out.write(f"{time.time():.6f}\n")

    after_task_publish.connect(published, weak=False)
    celery_app.start(["beat", f"--schedule={schedule_file}", "--loglevel=INFO"])


def start_beat(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a beat in its own process group and wait until its loop starts."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while READY not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise BenchFailed(f"beat did not start:\n{log_tail(log)}")
        time.sleep(0.05)
    return proc


def watch_beat(
    argv: list[str], env: dict[str, str], log: Path, redis_url: str, queue: str, seconds: float
) -> tuple[float, list[tuple[float, str]]]:
    """Run a beat for ``seconds`` while watching ``queue``; return SIGTERM's time, arrivals."""
    redis.Redis.from_url(redis_url).flushdb()
    watch = BrokerWatch(redis_url, queue)
    watch.start()
    proc = None
    try:
        proc = start_beat(argv, env, log)
        time.sleep(seconds)
        stopped = time.time()
    finally:
        if proc is not None:
            stop(proc)  # SIGTERM; what it published before exiting still counts
        watch.stop()
        redis.Redis.from_url(redis_url).flushdb()
    return stopped, watch.arrivals


def run_conveyor(args: argparse.Namespace, workdir: Path) -> Measure:
    """Conveyor's beat on a scratch database, measured from the ledger."""
    name = f"conveyor_bench_beat_{uuid.uuid4().hex[:8]}"
    url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
    env = {
        **os.environ,
        "CONVEYOR_DATABASE__URL": url.replace("postgresql://", "postgresql+psycopg://", 1),
        "CONVEYOR_BROKER__URL": args.redis_url,
        "CONVEYOR_LOG_LEVEL": "INFO",
    }
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        for argv in ([sys.executable, "-m", "app", "migrate"], [sys.executable, "-c", CREATE]):
            subprocess.run(argv, cwd=PROJECT_ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        stopped, arrivals = watch_beat(
            [sys.executable, "-m", "app", "beat"],
            env,
            workdir / "conveyor-beat.log",
            args.redis_url,
            CONVEYOR_QUEUE,
            args.seconds,
        )
        with psycopg.connect(url) as conn:
            jobs = conn.execute(JOBS, (SCHEDULE,)).fetchall()
            fires = conn.execute(FIRES, (SCHEDULE,)).fetchall()
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if not fires:
        log = log_tail(workdir / "conveyor-beat.log")
        raise BenchFailed(f"conveyor beat fired nothing:\n{log}")
    return conveyor_measure(jobs, fires, {i: t for t, i in arrivals}, stopped)


def conveyor_measure(
    jobs: Sequence[tuple[str, float, float | None]],
    fires: Sequence[tuple[float, float]],
    arrivals: dict[str, float],
    stopped: float,
) -> Measure:
    """Lateness of the fires after beat's first pass; that pass is shown apart."""
    first_pass = min(fired_at for _, fired_at in fires)
    startup = {round(f) for f, fired_at in fires if fired_at == first_pass}
    steady = [(i, f, e) for i, f, e in jobs if round(f) not in startup]
    fired = [round(f) for _, f, _ in steady]
    expected = range(max(startup) + 1, math.floor(stopped - 1) + 1)
    measure = Measure(
        "conveyor",
        fires=len(steady),
        expected=len(expected),
        missing=len(set(expected) - set(fired)),
        duplicates=len(fired) - len(set(fired)),
    )
    measure.lateness_ms = {
        "publish: jobs.enqueued_at - fire time": [
            (e - f) * 1000 for _, f, e in steady if e is not None
        ],
        "record: schedule_fire.fired_at - fire time": [
            (at - f) * 1000 for f, at in fires if round(f) not in startup
        ],
        "broker: arrival in Redis - fire time": [
            (arrivals[i] - f) * 1000 for i, f, _ in steady if i in arrivals
        ],
    }
    late = [(e - f) * 1000 for _, f, e in jobs if round(f) in startup and e is not None]
    measure.notes.append(
        f"first pass: {len(startup)} fire(s) for slots due before beat ran (misfire policy),"
        f" published {max(late, default=math.nan):.0f} ms after the slot; not counted"
    )
    unpublished = sum(e is None for _, _, e in steady)
    if unpublished:
        measure.notes.append(f"{unpublished} fire(s) recorded but never published")
    return measure


def run_bare(args: argparse.Namespace, workdir: Path) -> Measure:
    """Bare Celery beat, measured by its own ``after_task_publish``."""
    publishes = workdir / f"bare-publishes-{uuid.uuid4().hex[:8]}.txt"
    code = (
        f"from bench.beat import bare_beat; "
        f"bare_beat({str(publishes)!r}, {str(publishes.with_suffix('.schedule'))!r})"
    )
    env = {**os.environ, "CONVEYOR_BROKER__URL": args.bare_redis_url}
    log = workdir / "bare-beat.log"
    stopped, arrivals = watch_beat(
        [sys.executable, "-c", code], env, log, args.bare_redis_url, BARE_QUEUE, args.seconds
    )
    times = [float(line) for line in publishes.read_text().split()] if publishes.exists() else []
    if len(times) < 2:
        raise BenchFailed(f"bare beat published {len(times)} message(s):\n{log_tail(log)}")
    return bare_measure(times, [at for at, _ in arrivals], stopped)


def drift_ms(times: Sequence[float]) -> list[float]:
    """Signed distance in ms of each time after the first from the first plus k seconds."""
    return [(t - (times[0] + k)) * 1000 for k, t in enumerate(times) if k]


def bare_measure(times: list[float], arrivals: list[float], stopped: float) -> Measure:
    """Drift and jitter of an interval schedule that should publish once a second.

    Drift can be negative (a publish before its nominal slot), so the figures are
    of its absolute value; the signed range is noted.
    """
    gaps = [b - a for a, b in itertools.pairwise(times)]
    drift = drift_ms(times)
    expected = math.floor(stopped - 1 - times[0]) + 1
    return Measure(
        "bare",
        fires=len(times),
        expected=expected,
        missing=max(0, expected - len(times)),
        duplicates=sum(gap < 0.5 for gap in gaps),
        lateness_ms={
            "publish: |publish_k - (publish_0 + k s)|": [abs(d) for d in drift],
            "broker: |arrival_k - (arrival_0 + k s)|": [abs(d) for d in drift_ms(sorted(arrivals))],
            "jitter: |publish_k - publish_k-1 - 1 s|": [abs(g - 1) * 1000 for g in gaps],
        },
        notes=[
            f"signed publish drift {min(drift):.1f} to {max(drift):.1f} ms (negative: the"
            " first publish also opens the connection, so later ones read as early)"
        ],
    )


def figures(samples: Sequence[float]) -> tuple[float, float, float]:
    """p50, p99 and max of ``samples``."""
    return percentile(samples, 50), percentile(samples, 99), max(samples, default=math.nan)


def describe(measure: Measure) -> list[str]:
    """The lines of one system in one run."""
    lines = [
        f"  {measure.system:<9} fires {measure.fires}  expected {measure.expected}"
        f"  missing {measure.missing}  duplicate {measure.duplicates}"
    ]
    for label, samples in measure.lateness_ms.items():
        p50, p99, top = figures(samples)
        lines.append(
            f"    {label:<45} p50 {p50:7.1f}  p99 {p99:7.1f}  max {top:7.1f} ms  (n={len(samples)})"
        )
    return lines + [f"    {note}" for note in measure.notes]


def medians(measures: Sequence[Measure]) -> dict[str, tuple[float, float, float]]:
    """Per label, the medians over runs of p50, p99 and max."""
    out: dict[str, tuple[float, float, float]] = {}
    for label in measures[0].lateness_ms:
        per_run = [figures(m.lateness_ms[label]) for m in measures]
        out[label] = (
            statistics.median(r[0] for r in per_run),
            statistics.median(r[1] for r in per_run),
            statistics.median(r[2] for r in per_run),
        )
    return out


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; NaN when the denominator is zero."""
    return numerator / denominator if denominator else math.nan


def parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    top = argparse.ArgumentParser(prog="python -m bench.beat", description=__doc__)
    top.add_argument("--seconds", type=float, default=60, help="seconds each beat runs")
    top.add_argument("--runs", type=int, default=1, help="runs of both beats; medians reported")
    top.add_argument("--redis-url", default="redis://127.0.0.1:6379/8", help="Conveyor's broker")
    top.add_argument("--bare-redis-url", default="redis://127.0.0.1:6379/9")
    top.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run both beats ``--runs`` times; print each run, the medians and the ratios."""
    args = parser().parse_args(argv)
    began = time.monotonic()
    for url in (args.redis_url, args.bare_redis_url):
        problem = redis_problem(url)
        if problem is not None:
            print(f"redis {url} unreachable ({problem})", file=sys.stderr)
            return 1
    print(
        f"per-second schedule, {args.seconds:g} s per beat, {args.runs} run(s), no worker.\n"
        "conveyor: lateness of each fire after its slot (publish, fire record, Redis arrival);\n"
        "bare: an interval schedule's |drift| from first publish + k s, and its jitter.\n"
        "expected: slots at least 1 s before SIGTERM; missing: expected slots never fired.",
        flush=True,
    )
    runs: list[tuple[Measure, Measure]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-beat-") as tmp:
            for run in range(1, args.runs + 1):
                conveyor = run_conveyor(args, Path(tmp))
                bare = run_bare(args, Path(tmp))
                print(f"\nrun {run}/{args.runs}")
                print("\n".join(describe(conveyor) + describe(bare)), flush=True)
                runs.append((conveyor, bare))
    except (BenchFailed, subprocess.CalledProcessError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"\nmedians over {len(runs)} run(s), ms:")
    headline: dict[str, tuple[float, float]] = {}
    for measures in zip(*runs, strict=True):
        system = measures[0].system
        for label, (p50, p99, top) in medians(measures).items():
            headline.setdefault(system, (p50, p99))
            print(f"  {system:<9} {label:<45} p50 {p50:7.1f}  p99 {p99:7.1f}  max {top:7.1f}")
    conveyor_p50, conveyor_p99 = headline["conveyor"]
    bare_p50, bare_p99 = headline["bare"]
    print(f"elapsed {time.monotonic() - began:.0f} s")
    print(
        f"ratio conveyor publish lateness / bare publish |drift|: "
        f"p50 {ratio(conveyor_p50, bare_p50):.2f}  p99 {ratio(conveyor_p99, bare_p99):.2f}"
    )
    print(f"beat p99 lateness conveyor {conveyor_p99:.0f} ms (target ≤ {TARGET_MS:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
