"""Mail about jobs, end to end: a real worker, a real services process (the notifier) and
the local mail sink, on both brokers.

A dead job is mailed to the addresses its task's pattern names, a job enqueued with
``notify=`` to its caller's addresses when it finishes; a requeued job that dies again
is mailed about again; nothing is mailed twice. The mails are counted in the sink, the
effect of the ``emails.job_notice`` jobs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from app.jobs.service import JobService
from app.notifications import sink
from app.notifications.sink import Mail
from app.services.notifier import NOTICE_TASK, Notifier
from config.settings import get_settings
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.test_services import Services, forget_services
from tests.acceptance.workers import Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance

OPS = "ops@example.com"
CALLER = "caller@example.com"


@pytest.fixture
def mail_sink(effects: Effects) -> Iterator[Effects]:
    """An empty mail sink, no services rows of earlier tests."""
    for path in sink.mails(get_settings().mail_dir, limit=10_000):
        (get_settings().mail_dir / path.name).unlink()
    forget_services()
    yield effects


def mails() -> list[Mail]:
    return sink.mails(get_settings().mail_dir, limit=10_000)


def to(address: str) -> list[Mail]:
    return [m for m in mails() if m.to == address]


def test_dead_and_notify_jobs_are_mailed_once_each_and_a_second_death_again(
    broker: Broker, mail_sink: Effects
) -> None:
    env = {"CONVEYOR_NOTIFICATIONS__DEAD_JOBS": json.dumps({"probe.rej*": [OPS]})}
    notifier = Services(
        "notify-host",
        Notifier.name,
        env={**env, "CONVEYOR_SERVICES__BUILTINS": "true", "CONVEYOR_MONITORS__ENABLED": "false"},
    )
    service = JobService()
    with Worker(broker.url, queues="default,emails", concurrency=2, env=env), notifier:
        dead = service.enqueue("probe.rejects", {"key": "n-dead"})
        quiet = service.enqueue("probe.record", {"key": "n-quiet"})
        asked = service.enqueue("probe.record", {"key": "n-asked"}, notify=[CALLER])
        # A dead job no pattern names: mailed to nobody.
        mail_sink.flag("n-unnamed", True)
        unnamed = service.enqueue("probe.broken", {"key": "n-unnamed"})

        wait_for(lambda: len(to(OPS)) == 1 and len(to(CALLER)) == 1, 60, "two mails")
        [death] = to(OPS)
        assert death.subject == f"[DEAD] probe.rejects {dead}"
        assert "n-dead can never succeed" in death.text()
        assert f"/console/web/job/{dead}/change/" in death.text()
        assert (html := death.html()) is not None and "Dead job: probe.rejects" in html
        [done] = to(CALLER)
        assert done.subject == f"[COMPLETED] probe.record {asked}"
        assert '"n-asked"' in done.text()  # the result: the key it returned

        assert service.get(quiet)["status"] == "completed"
        wait_for(lambda: service.get(unnamed)["status"] == "dead", 30, "the unnamed job dead")
        # The notifier runs every 2 s: several more looks, and nothing more is sent.
        time.sleep(3 * Notifier.interval_s())
        assert len(mails()) == 2, [m.subject for m in mails()]
        notices = service.list(handler=NOTICE_TASK)[0]
        assert sorted(n["status"] for n in notices) == ["completed", "completed"]
        assert {n["metadata"]["about_job"] for n in notices} == {str(dead), str(asked)}

        service.requeue(dead)  # it fails for good again: a new finish, mailed again
        wait_for(lambda: len(to(OPS)) == 2, 60, "a second mail for the second death")
        assert mail_sink.count("n-dead") == 2
        time.sleep(2 * Notifier.interval_s())
        assert len(mails()) == 3
