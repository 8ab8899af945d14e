"""A worker recovers from each restart of its Redis broker: it answers ping and runs jobs.

The broker is a Redis server of this module's own. Before each restart it hangs for
longer than the worker's event heartbeat (2 s), then dies: the worker's event loop is
inside a publish when the server goes, and that publish retries until a new server
answers. The worker reads its dropped broker sockets only then, with the broker
already back, which is when a redis-py reconnect kombu never heard of froze the
worker for good (``retry_on_timeout``, see app/celery.py). The new server is started
0.5 s after the crash, sooner than the worker's first reconnect attempt (2 s), and
then 8 s after it, later than its first two attempts (2 s, then 4 s more).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from app.celery import app
from app.embedded import EmbeddedRedis, free_port
from config.settings import get_settings
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.servers import configure

pytestmark = pytest.mark.acceptance

#: Seconds the broker hangs before it dies: longer than the worker's event heartbeat.
HANG_S = 3.0
#: Seconds from the crash to the new server: before the first reconnect attempt, and
#: after the first two.
DOWN_S = (0.5, 8.0)
#: Longest a worker may take to answer ping, and then to run a new job, seconds.
RECOVERY_S = 30.0


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server nobody else uses, with this process's Celery app publishing to it."""
    server = EmbeddedRedis(tmp_path / "broker", free_port())
    server.start()
    settings = get_settings()
    broker = settings.broker.model_copy(update={"url": server.url})
    configure(app, settings.model_copy(update={"broker": broker}))
    try:
        yield server
    finally:
        configure(app, get_settings())
        server.stop()


def hang_crash_and_restart(server: EmbeddedRedis, down_s: float) -> None:
    """Freeze the server for ``HANG_S``, kill it, and start a new one ``down_s`` later."""
    process = server.process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    time.sleep(HANG_S)
    process.kill()  # a frozen server answers nothing more; the kernel drops its sockets
    process.wait(10)
    server.process = None
    time.sleep(down_s)
    server.start()


def answers_ping(hostname: str) -> bool:
    """True when the worker ``hostname`` answers a ping within a second."""
    try:
        with app.connection_for_write(connect_timeout=1) as conn:
            conn.ensure_connection(max_retries=0)
            replies = app.control.ping(destination=[hostname], timeout=1, connection=conn)
    except Exception:  # the broker is still coming up: ask again
        return False
    return any(hostname in reply for reply in replies or [])


def test_a_worker_answers_ping_and_runs_new_jobs_after_each_broker_restart(
    own_broker: EmbeddedRedis, effects: Effects
) -> None:
    keys: list[str] = []
    with Worker(own_broker.url, queues="critical,default,emails,reports,background") as worker:
        wait_for(lambda: answers_ping(worker.hostname), 30, "the first pong")
        for down_s in DOWN_S:
            hang_crash_and_restart(own_broker, down_s)
            back = time.monotonic()
            while not answers_ping(worker.hostname):
                if time.monotonic() - back > RECOVERY_S:
                    os.kill(worker.pid, signal.SIGUSR1)  # Celery logs every thread's stack
                    time.sleep(1)
                    pytest.fail(
                        f"no pong within {RECOVERY_S:g}s of a restart {down_s:g}s after the "
                        f"crash; worker log:\n{worker.output()[-6000:]}"
                    )
            print(f"broker down {down_s:g}s: pong {time.monotonic() - back:.1f}s after restart")
            keys.append(key := f"restart-{down_s:g}-{uuid.uuid4().hex[:6]}")
            probe_tasks.record.delay(key)
            wait_for(partial(effects.count, key, "done"), RECOVERY_S, f"{key} to run")
            assert worker.alive()
        time.sleep(1)  # room for a duplicate run to show itself
    runs = {key: (effects.count(key, "start"), effects.count(key, "done")) for key in keys}
    assert runs == dict.fromkeys(keys, (1, 1)), effects.rows("restart-")
