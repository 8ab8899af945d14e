"""Bulk email through a real worker and an SMTP sink started here: one message per
recipient, a refused address failing alone, every recipient's outcome recorded, and the
job's progress in the ledger while it runs."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from app.celery import app
from app.embedded import free_port
from app.errors import InvalidPayload
from app.jobs.service import JobService
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance


class Sink(Message):  # type: ignore[misc]
    """An SMTP server that refuses (550) recipients whose name starts with ``bad`` and
    keeps what it accepts; ``pause_s`` slows each message down."""

    def __init__(self, pause_s: float = 0.0, fail_at: int | None = None) -> None:
        super().__init__()
        self.messages: list[Any] = []
        self.pause_s = pause_s
        #: Answer the message after this many accepted ones with a 421, once.
        self.fail_at = fail_at

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail_at is not None and len(self.messages) == self.fail_at:
            self.fail_at = None
            return "421 4.3.0 closing, try again later"
        return str(await super().handle_DATA(server, session, envelope))

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("bad"):
            return f"550 5.1.1 {address}: no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def handle_message(self, message: Any) -> None:
        threading.Event().wait(self.pause_s)
        self.messages.append(message)


def smtp_worker(broker: Broker, sink: Sink) -> tuple[Controller, Worker]:
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    env = {"CONVEYOR_SMTP__HOST": "127.0.0.1", "CONVEYOR_SMTP__PORT": str(controller.port)}
    return controller, Worker(broker.url, queues="emails", concurrency=1, env=env)


def test_fifty_recipients_two_refused_forty_eight_delivered_and_the_job_says_so(
    broker: Broker, effects: Effects
) -> None:
    recipients = [f"user{index:02d}@example.com" for index in range(48)]
    recipients[10:10] = ["bad-one@example.com"]
    recipients[30:30] = ["bad-two@example.com"]
    sink = Sink(pause_s=0.05)
    controller, worker = smtp_worker(broker, sink)
    service = JobService(app)
    try:
        with worker:
            job_id = service.enqueue(
                "emails.bulk", {"to": recipients, "subject": "Hello", "body": "Hi there"}
            )
            running = wait_for(
                lambda: (
                    (job := service.get(job_id))["progress"] is not None
                    and job["status"] == "running"
                    and job
                ),
                30,
                "progress while the job runs",
            )
            assert 0 <= running["progress"] < 100
            assert "of 50 delivered" in running["progress_message"]
            wait_for(lambda: service.get(job_id)["status"] == "completed", 60, "the job done")
    finally:
        controller.stop()
    job = service.get(job_id)
    result = job["result"]
    assert (result["recipients"], result["delivered"], result["refused"]) == (50, 48, 2)
    assert result["summary"] == "48 of 50 delivered, 2 refused"
    assert job["progress"] == 100 and job["progress_message"] == result["summary"]
    refused = {r: o for r, o in result["outcomes"].items() if o["status"] == "refused"}
    assert set(refused) == {"bad-one@example.com", "bad-two@example.com"}
    assert all("550" in o["error"] for o in refused.values())
    delivered_to = sorted(str(m["To"]) for m in sink.messages)
    assert delivered_to == sorted(r for r in recipients if not r.startswith("bad")), "one each"
    ids = {o["message_id"] for o in result["outcomes"].values() if o["status"] == "delivered"}
    assert ids == {str(m["Message-ID"]) for m in sink.messages}


def test_a_retry_after_the_server_fails_sends_only_to_those_not_delivered(
    broker: Broker, effects: Effects
) -> None:
    recipients = [f"retry{index}@example.com" for index in range(10)]
    sink = Sink(fail_at=4)
    controller, worker = smtp_worker(broker, sink)
    service = JobService(app)
    try:
        with worker:
            job_id = service.enqueue("emails.bulk", {"to": recipients, "subject": "s", "body": "b"})
            wait_for(lambda: service.get(job_id)["status"] == "completed", 60, "the job done")
    finally:
        controller.stop()
    job = service.get(job_id)
    assert job["attempts"] == 2, "the 421 failed the first attempt"
    assert sorted(str(m["To"]) for m in sink.messages) == sorted(recipients), "each once"
    assert job["result"]["summary"] == "10 of 10 delivered, 0 refused"


def test_a_malformed_address_is_refused_at_enqueue_naming_it(effects: Effects) -> None:
    with pytest.raises(InvalidPayload, match=r"to\.1"):
        JobService(app).enqueue(
            "emails.bulk", {"to": ["a@example.com", "not an address"], "subject": "s", "body": ""}
        )
