"""A Redis that may evict keys is named at startup and in readiness; a full one says so.

Each test uses a Redis server of this module's own: its memory policy and limit are
changed, and it is filled, without touching the machine's shared Redis.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.celery import app
from app.embedded import EmbeddedRedis, free_port
from app.errors import BrokerFull
from app.jobs.service import JobService
from app.producer import publish_timeout_s
from beat.service import ensure_django
from config.settings import get_settings
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import ROOT, Web, Worker
from tests.servers import configure

pytestmark = pytest.mark.acceptance

POLICY = "allkeys-lru"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server nobody else uses."""
    server = EmbeddedRedis(tmp_path / "redis", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def evicting(own_redis: EmbeddedRedis) -> EmbeddedRedis:
    """The own Redis, under a policy that evicts any key."""
    redis.Redis.from_url(own_redis.url).config_set("maxmemory-policy", POLICY)
    return own_redis


def run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m app <command>`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "app", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_processes_refuse_to_start_on_a_redis_that_may_evict(evicting: EmbeddedRedis) -> None:
    env = Worker(evicting.url).env
    for command in ("worker", "beat", "services", "web"):
        done = run(command, env)
        assert done.returncode == 2, (command, done.stderr[-2000:])
        assert f"{command} refuses to start" in done.stderr
        assert f"maxmemory-policy '{POLICY}'" in done.stderr, done.stderr
        assert f"Redis {evicting.url} (broker)" in done.stderr, done.stderr
        assert "CONVEYOR_BROKER__EVICTING_REDIS=warn" in done.stderr


def test_with_warn_a_worker_starts_says_why_and_runs_jobs(
    evicting: EmbeddedRedis, effects: Effects
) -> None:
    settings = get_settings()
    configure(
        app,
        settings.model_copy(
            update={"broker": settings.broker.model_copy(update={"url": evicting.url})}
        ),
    )
    try:
        with Worker(evicting.url, env={"CONVEYOR_BROKER__EVICTING_REDIS": "warn"}) as worker:
            assert "worker starts anyway (CONVEYOR_BROKER__EVICTING_REDIS=warn): Redis" in (
                worker.output()
            )
            probe_tasks.record.delay("evicting")
            wait_for(lambda: effects.count("evicting", "done") == 1, 30, "the job done")
    finally:
        configure(app, get_settings())


def test_ready_is_red_naming_the_policy(evicting: EmbeddedRedis) -> None:
    ensure_django()
    from app.web.tokens import create

    _, token = create("memory probe", "read", days=1)
    env = {"CONVEYOR_CACHE__URL": evicting.url, "CONVEYOR_BROKER__EVICTING_REDIS": "warn"}
    with Web(env=env) as web:
        request = urllib.request.Request(
            f"{web.url}/health/ready", headers={"Authorization": f"Bearer {token}"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=20)
        assert refused.value.code == 503
        body = json.loads(refused.value.read())
    assert "redis" in body["failing"]
    error = body["checks"]["redis"]["error"]
    assert f"maxmemory-policy '{POLICY}'" in error and "(delivery gate and caches)" in error


def fill(client: redis.Redis) -> None:
    """Fill ``client``'s server past its limit (a few megabytes above what it held).

    Redis refuses a command only while it holds more than ``maxmemory``; the last
    refused write leaves it just under, so the limit then goes a little below what
    it holds, as when a queue keeps growing."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 4 * 1024 * 1024)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for index in range(10_000):
            client.set(f"ballast:{index}", "x" * 64 * 1024)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 256 * 1024)


def test_publishing_to_a_full_broker_says_it_is_out_of_memory(own_redis: EmbeddedRedis) -> None:
    settings = get_settings()
    broker = settings.broker.model_copy(update={"url": own_redis.url})
    configure(app, settings.model_copy(update={"broker": broker}))
    try:
        probe_tasks.record.delay("before")  # queues and bindings exist
        client = redis.Redis.from_url(own_redis.url)
        fill(client)
        started = time.monotonic()
        with pytest.raises(BrokerFull) as full:
            probe_tasks.record.delay("refused")
        took = time.monotonic() - started
        assert took < publish_timeout_s(get_settings()), f"took {took:.1f}s"
        message = str(full.value)
        assert message.startswith(f"broker {own_redis.url} is out of memory"), message
        assert "command not allowed when used memory > 'maxmemory'" in message, "Redis's reply"
        with pytest.raises(BrokerFull):
            JobService().enqueue("probe.record", {"key": "refused too"})
        assert client.llen("default") == 1, "the job queued before is still there"
    finally:
        configure(app, get_settings())
