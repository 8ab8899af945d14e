"""The operator CLI against a real worker: enqueue, list, show, cancel, requeue."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from app.jobs.service import JobService
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.servers import Broker
from tests.services import ROOT

pytestmark = pytest.mark.acceptance


def cli(broker: Broker, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m app ARGS`` as an operator would type it."""
    env = {**os.environ, "CONVEYOR_BROKER__URL": broker.url}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, tests.acceptance.probe_tasks; from app.__main__ import main; "
            "sys.exit(main(sys.argv[1:]))",
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_operator_enqueues_inspects_cancels_and_requeues_from_the_command_line(
    redis_broker: Broker, effects: Effects
) -> None:
    service = JobService()
    later = cli(
        redis_broker, "enqueue", "probe.record", "--payload", '{"key": "cli-later"}', "--in", "1h"
    )
    assert later.returncode == 0, later.stderr
    later_id = later.stdout.strip()
    assert service.get(later_id)["status"] == "scheduled"
    cancelled = cli(redis_broker, "jobs", "cancel", later_id)
    assert cancelled.returncode == 0 and service.get(later_id)["status"] == "cancelled"

    with Worker(redis_broker.url, queues="default", concurrency=1):
        now = cli(redis_broker, "enqueue", "probe.record", "--payload", '{"key": "cli-now"}')
        assert now.returncode == 0, now.stderr
        job_id = now.stdout.strip()
        wait_for(lambda: service.get(job_id)["status"] == "completed", 30, "the CLI's job")
        requeued = cli(redis_broker, "jobs", "requeue", later_id)
        assert requeued.returncode == 0, requeued.stderr
        wait_for(lambda: effects.count("cli-later", "done") == 1, 30, "the requeued job")

    shown = cli(redis_broker, "jobs", "show", job_id)
    job = json.loads(shown.stdout)
    assert job["status"] == "completed"
    assert [event["to_status"] for event in job["history"]] == ["queued", "running", "completed"]
    listed = cli(redis_broker, "jobs", "list", "--handler", "probe.record", "--status", "completed")
    assert job_id in listed.stdout and later_id in listed.stdout

    bad = cli(redis_broker, "enqueue", "probe.recrod")
    assert bad.returncode == 2 and "unknown handler 'probe.recrod'" in bad.stderr
    missing = cli(redis_broker, "jobs", "show", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 2 and "no job with id" in missing.stderr
