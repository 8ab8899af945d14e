"""Ledger queries at scale: ``list(status="failed")`` and ``history(id)`` on N jobs.

``python -m bench.ledger [--rows 1000000]`` fills a dedicated database once (jobs
with a realistic status mix and three events each, generated inside PostgreSQL),
then times each query through ``JobService`` and prints medians and p95.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import psycopg

FILL = """
INSERT INTO jobs (id, handler, queue, payload, status, status_at, attempts, created_at,
                  enqueued_at, started_at, finished_at, worker, last_error)
SELECT md5(n::text)::uuid,
       (ARRAY['emails.send','reports.job_summary','demo.ping','health.probe'])[1 + n %% 4],
       (ARRAY['emails','reports','default','critical'])[1 + n %% 4],
       jsonb_build_object('args', '[]'::jsonb, 'kwargs', jsonb_build_object('n', n)),
       CASE WHEN n %% 50 = 0 THEN 'failed' WHEN n %% 97 = 0 THEN 'dead' ELSE 'completed' END,
       t + interval '2 seconds', 1, t, t, t + interval '1 second', t + interval '2 seconds',
       'bench@host', CASE WHEN n %% 50 = 0 THEN 'TransientError: synthetic' END
FROM (SELECT n, now() - make_interval(secs => n) AS t
      FROM generate_series(1, %(rows)s) AS n) AS g
"""

EVENTS = """
INSERT INTO job_events (job_id, from_status, to_status, at, attempt, worker)
SELECT j.id, e.from_status, e.to_status, j.created_at + e.offset_s * interval '1 second',
       e.attempt, 'bench@host'
FROM jobs j CROSS JOIN (VALUES (NULL, 'queued', 0, 0), ('queued', 'running', 1, 1),
                               ('running', 'completed', 2, 1)) AS e(from_status, to_status,
                                                                 offset_s, attempt)
"""


def timed(call: object, repeat: int) -> list[float]:
    """Milliseconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> int:
    """Fill (once) and measure."""
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"conveyor_bench_ledger_{args.rows}"
    url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    env = {
        **os.environ,
        "CONVEYOR_DATABASE__URL": url.replace("postgresql://", "postgresql+psycopg://", 1),
    }
    subprocess.run([sys.executable, "-m", "app", "migrate"], env=env, check=True)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM jobs").fetchone()
        if not row or row[0] != args.rows:
            print(f"filling {args.rows:,} jobs and {3 * args.rows:,} events ...", flush=True)
            started = time.perf_counter()
            conn.execute("TRUNCATE jobs, job_events")
            conn.execute(FILL, {"rows": args.rows})
            conn.execute(EVENTS)
            conn.execute("ANALYZE jobs")
            conn.execute("ANALYZE job_events")
            print(f"filled in {time.perf_counter() - started:.0f}s", flush=True)
    os.environ.update(env)
    from app.jobs.service import JobService

    service = JobService()
    some_id = service.list(status="completed", limit=1)[0][0]["id"]
    results = {
        'list(status="failed", limit=50)': timed(
            lambda: service.list(status="failed"), args.repeat
        ),
        "history(id)": timed(lambda: service.history(some_id), args.repeat),
        "get(id)": timed(lambda: service.get(some_id), args.repeat),
    }
    print(f"\nledger of {args.rows:,} jobs ({args.repeat} calls each, through JobService):")
    for label, samples in results.items():
        p95 = statistics.quantiles(samples, n=20)[-1]
        print(f"  {label:<34} median {statistics.median(samples):6.2f} ms   p95 {p95:6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
