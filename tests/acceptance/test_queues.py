"""Each first task runs on a worker of its own queue, and on no other."""

from __future__ import annotations

import threading

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from app.embedded import free_port
from tasks import demo, emails, health, maintenance, reports
from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance


class Inbox(Message):  # type: ignore[misc]
    """An SMTP sink that keeps what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[object] = []
        self.received = threading.Event()

    def handle_message(self, message: object) -> None:
        self.messages.append(message)
        self.received.set()


def test_each_first_task_runs_only_on_its_queue_worker(broker: Broker) -> None:
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    smtp_env = {"CONVEYOR_SMTP__HOST": "127.0.0.1", "CONVEYOR_SMTP__PORT": str(smtp.port)}
    queues = ("critical", "default", "emails", "reports", "background")
    workers = {
        q: Worker(broker.url, queues=q, name=f"{q}-{broker.name}", env=smtp_env) for q in queues
    }
    try:
        for worker in workers.values():
            worker.start()
        results = {
            "critical": health.probe.delay(),
            "default": demo.ping.delay("hi"),
            "emails": emails.send.delay(["ops@example.com"], "Nightly", "All green."),
            "reports": reports.job_summary.delay(24),
            "background": maintenance.purge_finished_jobs.delay(),
        }
        for queue, result in results.items():
            value = result.get(timeout=30)
            assert result.worker == workers[queue].hostname, (
                f"{result.name} ran on {result.worker}, not on the {queue} worker"
            )
            assert result.queue == queue
            assert value is not None
        assert results["default"].result == "pong: hi"
        assert results["background"].result == {"completed_or_cancelled": 0, "failed_or_dead": 0}
        assert inbox.received.wait(5)
        assert inbox.messages[0]["Subject"] == "Nightly"  # type: ignore[index]
        for queue, worker in workers.items():
            others = [r.task_id for q, r in results.items() if q != queue]
            log = worker.output()
            assert not any(task_id in log for task_id in others), (
                f"{queue} worker saw another queue's task"
            )
    finally:
        for worker in workers.values():
            if worker.process is not None:
                worker.terminate()
        smtp.stop()


def test_critical_is_served_before_a_backlog_on_redis(
    redis_broker: Broker, effects: Effects
) -> None:
    # RabbitMQ has no ordering across queues; there `critical` gets its own worker
    # (docs/guide.md#queues-and-routing).
    # Round-robin consumption would alternate the two queues; Conveyor drains `critical` first.
    for index in range(4):
        probe_tasks.record.delay(f"backlog-{index}", sleep_s=0.1)
    for index in range(4):
        probe_tasks.record.apply_async(args=[f"urgent-{index}"], queue="critical")
    with Worker(redis_broker.url, concurrency=1):
        wait_for(lambda: len(effects.rows(phase="done")) == 8, 30, "all eight tasks")
    order = [row[0] for row in effects.rows(phase="start")]
    assert [key.split("-")[0] for key in order] == ["urgent"] * 4 + ["backlog"] * 4, order
