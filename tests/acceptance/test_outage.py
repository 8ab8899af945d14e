"""PostgreSQL down for a minute under load: workers and beat keep running, and catch up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from app.db import engine
from app.embedded import EmbeddedPostgres, free_port
from app.jobs.service import JobService
from app.jobs.store import JobStore
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Beat, Worker
from tests.servers import Broker, database_url
from tests.services import ROOT

pytestmark = pytest.mark.acceptance
#: Minutes of waiting: taken up first by the parallel processes (tests/conftest.py).
STARTS_FIRST = True

PRODUCER = """
import sys, time
import tests.acceptance.probe_tasks as probe
deadline = time.monotonic() + float(sys.argv[1])
index = 0
while time.monotonic() < deadline:
    result = probe.record.delay(f"out{index:04d}")
    print(result.id, flush=True)
    index += 1
    time.sleep(0.25)
"""


def test_postgres_down_60s_under_load_no_worker_or_beat_exits_and_all_catch_up(
    redis_broker: Broker, effects: Effects
) -> None:
    # The database this test stops is its own, never the machine's.
    server = EmbeddedPostgres(ROOT / "var" / f"test-pg-{uuid.uuid4().hex[:8]}", free_port())
    server.start()
    server.create_database("conveyor")
    env = {
        **os.environ,
        "CONVEYOR_BROKER__URL": redis_broker.url,
        "CONVEYOR_DATABASE__URL": server.url("conveyor"),
        "CONVEYOR_TEST_EFFECTS_URL": database_url(),
        "CONVEYOR_LEDGER__HEARTBEAT_INTERVAL_S": "1",
        "CONVEYOR_LEDGER__RECOVERY_AFTER_S": "10",
    }
    worker = beat = None
    try:
        subprocess.run([sys.executable, "-m", "app", "migrate"], cwd=ROOT, env=env, check=True)
        add = "import sys, tests.acceptance.probe_tasks; from app.__main__ import main; "
        add += "sys.exit(main(sys.argv[1:]))"
        subprocess.run(
            [sys.executable, "-c", add, "schedules", "add", "tick", "--task=probe.stamp",
             "--cron=*/2 * * * * *", "--overlap=allow"],
            cwd=ROOT, env=env, check=True, capture_output=True,
        )  # fmt: skip
        worker = Worker(redis_broker.url, queues="default", concurrency=2, env=env).start()
        beat = Beat(redis_broker.url, env=env).start()
        producer = subprocess.Popen(
            [sys.executable, "-c", PRODUCER, "80"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(8)
        server.stop()
        down_from = datetime.now(UTC)
        time.sleep(60)
        assert worker.process is not None and worker.process.poll() is None, "a worker exited"
        assert beat.alive(), "beat exited"
        assert "beat: pass failed" in beat.output(), "beat did not report the outage"
        server.start()
        down_until = datetime.now(UTC)
        out, _ = producer.communicate(timeout=60)
        job_ids = out.split()
        assert producer.returncode == 0 and len(job_ids) > 250
        wait_for(lambda: len(effects.rows("out", "done")) == len(job_ids), 60, "every job to run")
        during = [row for row in effects.rows("out", "done") if down_from < row[4] < down_until]
        assert len(during) > 150, "jobs kept running while PostgreSQL was down"

        own_ledger = JobService(store=JobStore(engine(server.url("conveyor"))))
        expected = set(job_ids)

        def ledger_complete() -> bool:
            completed = own_ledger.matching(["completed"], limit=len(job_ids) + 1000)
            return expected <= {str(job_id) for job_id in completed}

        wait_for(ledger_complete, 60, "the ledger to catch up")
        lifecycle = {"queued", "running", "completed"}
        incomplete = [
            job_id
            for job_id in job_ids
            if not lifecycle <= {event["to_status"] for event in own_ledger.history(job_id)}
        ]
        assert incomplete == [], f"{len(incomplete)} jobs lack a transition"
        assert worker.process.poll() is None

        def fires_after_outage() -> int:
            # ScheduleService reads the run's database through Django, not this one.
            with psycopg.connect(server.url("conveyor").replace("+psycopg", "")) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM conveyor_schedule_fire WHERE schedule_name = 'tick' "
                    "AND fire_time > %s",
                    (down_until,),
                ).fetchone()
            return int(row[0]) if row else 0

        # Beat resumes by itself once the database is back.
        wait_for(lambda: fires_after_outage() >= 2, 30, "beat to fire again")
        assert beat.alive()
    finally:
        if beat is not None:
            beat.terminate()
        if worker is not None:
            worker.terminate()
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
        server.log.unlink(missing_ok=True)
