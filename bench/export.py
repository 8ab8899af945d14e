"""``python -m bench.export``: ``reports.export`` of 1,000,000 products through a real worker.

A fresh database (``conveyor_bench_export_<random>`` on the local PostgreSQL, or on an
embedded one when the local one does not answer) is migrated and seeded with the
project's own seeder (:func:`app.catalog.seed.seed`: products with their stock,
customers and orders) to a tenth of ``--rows`` first, then to ``--rows``. At each size,
each format of ``--formats`` is exported ``--runs`` times, each time by a new
``python -m app worker --queues=reports --concurrency=1`` whose storage, mail sink and
temporary files are under a temporary directory, and whose ``storage.max_file_bytes`` is
``--max-file-bytes`` (4 GiB): a million products are 238 MiB of CSV and 396 MiB of JSON
Lines, and the default limit (100 MiB) refuses the file, which ends the job ``dead``.
The job is enqueued through ``JobService`` and awaited in the ledger.

Measured per export:

* rows/s: the job's ``rows`` result over ``finished_at - started_at`` in the ledger (the
  whole job: count, stream, encode, store with fsync, mail the link);
* the pool process's resident memory: idle (before the job), the peak sampled every
  ``--sample-interval`` while the job runs, and the kernel's high-water mark
  (``VmHWM``, Linux), which no sample can miss.

The peak at ``--rows`` over the peak at a tenth of it says whether the export's memory
grows with the row count (about 1.0: it does not). With several runs the figures are
medians. The last line reads ``export <rows> rows: <format> <n> rows/s, peak RSS <m> MiB
(x<ratio> of <rows/10> rows)`` for each format. Everything started (worker, database,
temporary directory, embedded servers) is stopped or removed at the end, on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import redis

from bench.services import migrate, postgres_problem, redis_problem
from bench.worker import log_tail, spawn, stop
from config.settings import mask_url

MIB = 1024 * 1024
#: What a worker logs once it consumes.
READY = " ready."
#: Seconds a worker may take to log that it is ready.
WORKER_START_S = 90.0
#: Seconds between two reads of the job's row while it runs.
POLL_S = 0.2


class BenchFailed(RuntimeError):
    """An export did not complete; the message says why and has the worker's log."""


@dataclass(frozen=True)
class Measure:
    """One export of ``rows`` rows as ``fmt`` by one worker."""

    fmt: str
    rows: int
    seconds: float
    size_bytes: int
    #: Resident bytes of the pool process before the job, and the most sampled during it.
    idle_rss: int
    peak_rss: int
    #: The kernel's high-water mark of the pool process (VmHWM); None off Linux.
    hwm: int | None
    samples: int

    @property
    def rate(self) -> float:
        """Rows per second."""
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def high_water_mark(pid: int) -> int | None:
    """Peak resident bytes of ``pid`` since it started (``VmHWM``); None if unknown."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PoolMemory(threading.Thread):
    """Samples the resident memory of a worker's pool processes until stopped."""

    def __init__(self, worker_pid: int, interval_s: float) -> None:
        super().__init__(name="pool-memory", daemon=True)
        self.worker = psutil.Process(worker_pid)
        self.interval_s = interval_s
        self.done = threading.Event()
        #: The most any one pool process held in a sample, and its last VmHWM.
        self.peak = 0
        self.hwm: int | None = None
        self.samples = 0

    def sample(self) -> int:
        """The largest resident size among the pool processes now (and note the peaks)."""
        largest = 0
        for child in self.worker.children(recursive=True):
            try:
                rss = child.memory_info().rss
            except psutil.NoSuchProcess:  # recycled between listing and reading
                continue
            largest = max(largest, rss)
            hwm = high_water_mark(child.pid)
            if hwm is not None:
                self.hwm = max(self.hwm or 0, hwm)
        self.peak = max(self.peak, largest)
        self.samples += 1
        return largest

    def run(self) -> None:
        while not self.done.wait(self.interval_s):
            try:
                self.sample()
            except psutil.NoSuchProcess:  # the worker is gone; the caller finds out why
                return

    def stop(self) -> None:
        """One last sample, then stop."""
        self.done.set()
        self.join()
        with suppress(psutil.NoSuchProcess):
            self.sample()


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m app worker`` on ``reports`` with one pool process, once it is ready."""
    argv = [
        sys.executable,
        "-m",
        "app",
        "worker",
        "--queues=reports",
        "--concurrency=1",
        f"--hostname=bench-export-{os.getpid()}-{uuid.uuid4().hex[:6]}@%h",
        "--without-mingle",
        "--without-gossip",
    ]
    proc = spawn(argv, env, log)
    deadline = time.monotonic() + WORKER_START_S
    while READY not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise BenchFailed(f"worker did not start:\n{log_tail(log)}")
        time.sleep(0.1)
    return proc


def export_once(
    fmt: str, env: dict[str, str], work: Path, args: argparse.Namespace, label: str
) -> Measure:
    """Export every product as ``fmt`` through a new worker; what it took."""
    from app.jobs.models import FINISHED, JobStatus
    from app.jobs.service import JobService

    service = JobService()
    mail = Path(env["CONVEYOR_EMBEDDED__DATA_DIR"]) / "mail"
    mails_before = len(list(mail.glob("*.eml"))) if mail.exists() else 0
    log = work / f"worker-{label}.log"
    proc = start_worker(env, log)
    memory = PoolMemory(proc.pid, args.sample_interval)
    try:
        idle = memory.sample()
        memory.peak, memory.hwm, memory.samples = 0, None, 0
        memory.start()
        job_id = service.enqueue(
            "reports.export", {"kind": "products", "format": fmt, "email_to": ["bench@example.com"]}
        )
        deadline = time.monotonic() + args.timeout
        while JobStatus((job := service.get(job_id))["status"]) not in FINISHED:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchFailed(f"export {job_id} is still {job['status']}:\n{log_tail(log)}")
            time.sleep(POLL_S)
    finally:
        memory.stop()
        stop(proc)
    if job["status"] != JobStatus.COMPLETED:
        raise BenchFailed(
            f"export {job_id} ended {job['status']}: {job.get('last_error')}\n{log_tail(log)}"
        )
    result = job["result"]
    stored = Path(env["CONVEYOR_STORAGE__ROOT"]) / result["name"]
    if stored.stat().st_size != result["size_bytes"]:
        raise BenchFailed(f"{stored} holds {stored.stat().st_size} bytes, the job says otherwise")
    if len(list(mail.glob("*.eml"))) != mails_before + 1:
        raise BenchFailed(f"export {job_id} completed but mailed no link to {mail}")
    stored.unlink()  # hundreds of MB at a million rows; the next export writes its own
    return Measure(
        fmt=fmt,
        rows=int(result["rows"]),
        seconds=(job["finished_at"] - job["started_at"]).total_seconds(),
        size_bytes=int(result["size_bytes"]),
        idle_rss=idle,
        peak_rss=memory.peak,
        hwm=memory.hwm,
        samples=memory.samples,
    )


def median_of(measures: Sequence[Measure]) -> Measure:
    """The medians of repeated exports of the same rows and format."""
    hwms = [m.hwm for m in measures if m.hwm is not None]
    return Measure(
        fmt=measures[0].fmt,
        rows=measures[0].rows,
        seconds=statistics.median(m.seconds for m in measures),
        size_bytes=measures[0].size_bytes,
        idle_rss=int(statistics.median(m.idle_rss for m in measures)),
        peak_rss=int(statistics.median(m.peak_rss for m in measures)),
        hwm=int(statistics.median(hwms)) if hwms else None,
        samples=int(statistics.median(m.samples for m in measures)),
    )


def mib(value: int | None) -> str:
    """Bytes as MiB, or ``-``."""
    return "-" if value is None else f"{value / MIB:.1f}"


def table(measures: Sequence[Measure]) -> list[str]:
    """The report's rows."""
    lines = [
        f"  {'rows':>10} {'format':<6} {'rows/s':>9} {'job s':>7} {'file MiB':>9}"
        f" {'idle MiB':>9} {'peak MiB':>9} {'VmHWM MiB':>10} {'samples':>8}"
    ]
    for m in measures:
        lines.append(
            f"  {m.rows:>10,} {m.fmt:<6} {m.rate:>9,.0f} {m.seconds:>7.1f} {mib(m.size_bytes):>9}"
            f" {mib(m.idle_rss):>9} {mib(m.peak_rss):>9} {mib(m.hwm):>10} {m.samples:>8}"
        )
    return lines


def provision_database(stack: ExitStack, admin_url: str, work: Path) -> tuple[str, str]:
    """A new database, dropped (or its embedded server stopped) when ``stack`` closes; its
    SQLAlchemy URL and a note on where it is."""
    name = f"conveyor_bench_export_{uuid.uuid4().hex[:8]}"
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    problem = postgres_problem(url)  # creates it
    if problem is None:

        def drop() -> None:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        stack.callback(drop)
        return url, f"database {mask_url(url)} (dropped at the end)"
    from app.embedded import EmbeddedPostgres, free_port

    postgres = EmbeddedPostgres(work / "postgres", free_port())
    postgres.start()
    stack.callback(postgres.stop)
    postgres.create_database(name)
    url = postgres.url(name)
    return url, f"{mask_url(admin_url)} unusable ({problem}); embedded PostgreSQL {url}"


def provision_redis(stack: ExitStack, redis_url: str, work: Path) -> tuple[str, str]:
    """Redis for broker and cache, emptied now and at the end; its URL and a note."""
    problem = redis_problem(redis_url)
    if problem is not None:
        from app.embedded import EmbeddedRedis, free_port

        server = EmbeddedRedis(work / "redis", free_port())
        server.start()
        stack.callback(server.stop)
        note = f"{mask_url(redis_url)} unreachable ({problem}); embedded Redis {server.url}"
        return server.url, note

    def empty() -> None:
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        client.close()

    empty()
    stack.callback(empty)
    return redis_url, f"broker and cache {mask_url(redis_url)} (emptied before and after)"


def formats(text: str) -> tuple[str, ...]:
    """``--formats``: ``csv``, ``jsonl`` or both, comma-separated."""
    chosen = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    if not chosen or set(chosen) - {"csv", "jsonl"}:
        raise argparse.ArgumentTypeError(f"{text!r}: choose csv, jsonl or csv,jsonl")
    return chosen


def positive(text: str) -> int:
    """A count of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    top = argparse.ArgumentParser(
        prog="python -m bench.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--rows", type=positive, default=1_000_000, help="products at the full size")
    top.add_argument("--formats", type=formats, default=("csv", "jsonl"), metavar="csv,jsonl")
    top.add_argument(
        "--runs", type=positive, default=1, help="exports per size and format; medians"
    )
    top.add_argument("--redis-url", default="redis://127.0.0.1:6379/8", help="broker and cache")
    top.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    top.add_argument("--sample-interval", type=float, default=0.05, help="seconds between RSS")
    top.add_argument(
        "--max-file-bytes",
        type=positive,
        default=4 * 1024 * MIB,
        help="the worker's storage.max_file_bytes (its default, 100 MiB, holds about 400,000"
        " CSV rows)",
    )
    top.add_argument("--timeout", type=float, default=1800, help="seconds one export may take")
    top.add_argument("--seed", type=int, default=14, help="the seeder's RNG seed")
    return top


def run(args: argparse.Namespace, stack: ExitStack) -> list[tuple[Measure, Measure]]:
    """Provision, seed, export; the median measures of each format at a tenth and at full."""
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-export-")))
    database_url, db_note = provision_database(stack, args.admin_url, work)
    redis_url, redis_note = provision_redis(stack, args.redis_url, work)
    print(f"{db_note}\n{redis_note}\nscratch {work}", flush=True)
    (work / "tmp").mkdir()
    env = {
        **os.environ,
        "CONVEYOR_DATABASE__URL": database_url,
        "CONVEYOR_BROKER__URL": redis_url,
        "CONVEYOR_CACHE__URL": redis_url,
        "CONVEYOR_STORAGE__ROOT": str(work / "storage"),
        "CONVEYOR_STORAGE__MAX_FILE_BYTES": str(args.max_file_bytes),
        "CONVEYOR_EMBEDDED__DATA_DIR": str(work / "var"),
        # The export's working file (tempfile.TemporaryFile) goes under the scratch too.
        "TMPDIR": str(work / "tmp"),
    }
    env.pop("CONVEYOR_SMTP__HOST", None)  # mail goes to the sink under the scratch
    os.environ.update({k: v for k, v in env.items() if k.startswith("CONVEYOR_")})
    migrate(database_url)
    from app.catalog import seed

    sizes = (max(1, args.rows // 10), args.rows)
    measured: dict[tuple[int, str], Measure] = {}
    seeded = 0
    for size in sizes:
        started = time.perf_counter()
        report = seed.seed(size - seeded, rng_seed=args.seed + seeded)
        took = time.perf_counter() - started
        seeded = size
        print(
            f"seeded {report.products:,} products ({report.customers:,} customers,"
            f" {report.orders:,} orders, {report.order_lines:,} lines) with app.catalog.seed"
            f" in {took:.1f} s ({report.products / took:,.0f} products/s); catalog: {size:,}",
            flush=True,
        )
        for fmt in args.formats:
            runs = []
            for attempt in range(1, args.runs + 1):
                m = export_once(fmt, env, work, args, f"{fmt}-{size}-{attempt}")
                if m.rows != size:
                    raise BenchFailed(f"export of {size} products wrote {m.rows} rows")
                runs.append(m)
                print(
                    f"  run {attempt}/{args.runs} {size:>10,} {fmt:<5} {m.rate:>9,.0f} rows/s"
                    f"  {m.seconds:6.1f} s  peak {mib(m.peak_rss)} MiB"
                    f"  VmHWM {mib(m.hwm)} MiB",
                    flush=True,
                )
            measured[size, fmt] = median_of(runs)
    return [(measured[sizes[0], fmt], measured[sizes[1], fmt]) for fmt in args.formats]


def main(argv: Sequence[str] | None = None) -> int:
    """Measure; print the table and the growth of the peak from a tenth to the full size."""
    args = parser().parse_args(argv)
    if args.rows < 10:
        print("--rows must be at least 10 (a tenth is measured too)", file=sys.stderr)
        return 2
    # SIGTERM cleans up as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    began = time.monotonic()
    print(
        f"reports.export of products, {args.rows:,} and {args.rows // 10:,} rows, formats"
        f" {','.join(args.formats)}, {args.runs} run(s) each, a new worker (1 pool process)"
        f" per export.\nrows/s: rows / (finished_at - started_at) in the ledger."
        f" idle/peak: pool process RSS before / during the job (sampled every"
        f" {args.sample_interval * 1000:.0f} ms); VmHWM: its kernel high-water mark.",
        flush=True,
    )
    try:
        with ExitStack() as stack:
            pairs = run(args, stack)
    except (
        BenchFailed,
        OSError,
        psycopg.Error,
        redis.RedisError,
        subprocess.CalledProcessError,
    ) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; worker stopped, database and scratch removed", file=sys.stderr)
        return 130
    medians = " (medians)" if args.runs > 1 else ""
    print(f"\nexport of products through one worker{medians}:")
    print("\n".join(table([m for pair in pairs for m in pair])))
    print(f"elapsed {time.monotonic() - began:.0f} s")
    for tenth, full in pairs:
        hwm = f", VmHWM x{full.hwm / tenth.hwm:.2f}" if full.hwm and tenth.hwm else ""
        print(
            f"export {full.rows:,} rows: {full.fmt} {full.rate:,.0f} rows/s, peak RSS"
            f" {mib(full.peak_rss)} MiB (x{full.peak_rss / tenth.peak_rss:.2f} of"
            f" {tenth.rows:,} rows{hwm})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
