"""Alerts end to end: a real worker delivers each notification, by SMTP to a sink and by
HTTP to a hook server started here, as jobs in the ledger with retries, on Redis and on
RabbitMQ (every test of the module runs on each broker in turn).

This process raises alerts as a monitor would (the producer: it decides, in
PostgreSQL, whether to notify); the worker runs ``alerts.email`` and
``alerts.webhook``. Both read the channels from the same variables, as processes of
one deployment do; the cooldown is the producer's, shortened to a few seconds here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app.db import engine
from app.embedded import free_port
from app.jobs.service import JobService
from app.services import alerts
from config.settings import get_settings
from tests.acceptance.api_support import Api, token
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import ROOT, Web, Worker
from tests.servers import Broker, use_broker

pytestmark = pytest.mark.acceptance

#: The producer's cooldown: raises within it are counted, not notified.
COOLDOWN_S = 3.0
RECIPIENT = "oncall@example.com"


class Inbox(Message):  # type: ignore[misc]
    """An SMTP sink that keeps what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    def handle_message(self, message: Any) -> None:
        self.messages.append(message)

    def subjects(self) -> list[str]:
        return [str(message["Subject"]) for message in list(self.messages)]


def body(message: Any) -> str:
    """The plain-text part of a received mail (each also has an HTML alternative)."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            raw = part.get_payload(decode=True)
            assert isinstance(raw, bytes)
            return raw.decode(part.get_content_charset() or "utf-8")
    raise AssertionError(f"no text/plain part in {message['Subject']!r}")


@dataclass
class Hook:
    """What the hook server received, and the statuses it answers next (then 200)."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: dict[str, Any]) -> int:
        with self.lock:
            status = self.answers.pop(0) if self.answers else 200
            self.posts.append({"status": status, **body})
        return status

    def delivered(self) -> list[dict[str, Any]]:
        """The bodies it answered with a 200."""
        with self.lock:
            return [post for post in self.posts if post["status"] == 200]

    def reset(self, *answers: int) -> None:
        with self.lock:
            self.posts.clear()
            self.answers[:] = answers


def hook_server(hook: Hook) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            body["content_type"] = self.headers.get("Content-Type")
            status = hook.answer(body)
            answer = b"ok" if status == 200 else b"no_service"
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)


@dataclass
class Channels:
    """The sinks the worker delivers to."""

    inbox: Inbox
    hook: Hook
    worker: Worker


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def alerts_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """Each broker in turn, for every test of this module."""
    yield from use_broker(request.param)


@pytest.fixture(scope="module")
def system(alerts_broker: Broker) -> Iterator[Channels]:
    """An SMTP sink, a hook server and a worker of ``default`` on the broker, for the
    module; this process, and every process a test starts, configured as a producer
    with the same broker, the same channels and a short cooldown."""
    inbox, hook = Inbox(), Hook()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    server = hook_server(hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "CONVEYOR_BROKER__URL": alerts_broker.url,
        "CONVEYOR_SMTP__HOST": "127.0.0.1",
        "CONVEYOR_SMTP__PORT": str(smtp.port),
        "CONVEYOR_ALERTS__EMAIL_TO": json.dumps([RECIPIENT]),
        "CONVEYOR_ALERTS__WEBHOOK_URL": f"http://127.0.0.1:{server.server_port}/hook/T0/SECRET",
        "CONVEYOR_ALERTS__COOLDOWN_S": str(COOLDOWN_S),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        try:
            with Worker(alerts_broker.url, queues="default", concurrency=2, env=env) as worker:
                yield Channels(inbox, hook, worker)
        finally:
            server.shutdown()
            server.server_close()
            smtp.stop()
    get_settings.cache_clear()


@pytest.fixture
def channels(system: Channels) -> Channels:
    """No alert, no job, nothing received yet."""
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE alerts, jobs, job_events"))
    system.inbox.messages.clear()
    system.hook.reset()
    return system


def settled(job_id: uuid.UUID, status: str = "completed") -> dict[str, Any]:
    """The job once it reached ``status`` in the ledger."""
    service = JobService()
    try:
        return wait_for(
            lambda: (job := service.get(job_id))["status"] == status and job,
            60,
            f"job {job_id} {status}",
        )
    except pytest.fail.Exception:
        # Say where it stopped: the state, the attempts and the history.
        job = service.get(job_id)
        events = [(e["to_status"], str(e["at"]), e["detail"]) for e in service.history(job_id)]
        pytest.fail(
            f"job {job_id} never became {status}: {job['status']} after {job['attempts']} "
            f"attempt(s), release_at={job['release_at']}, last_error={job['last_error']!r}, "
            f"history={events}"
        )


def test_five_raises_within_the_cooldown_notify_once_and_once_more_after_it(
    channels: Channels,
) -> None:
    key = f"queue.default.backlog.{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    outcomes = [
        alerts.raise_alert(key, "warning", "Queue default backed up", f"{1000 + n} waiting")
        for n in range(5)
    ]
    assert time.monotonic() - started < COOLDOWN_S, "the five raises fit in the cooldown"
    assert [o.notified for o in outcomes] == [True, False, False, False, False]
    for job_id in outcomes[0].jobs:
        settled(job_id)
    time.sleep(1.0)  # anything sent twice would have arrived by now
    assert channels.inbox.subjects() == ["[WARNING] Queue default backed up"]
    (post,) = channels.hook.delivered()
    assert post["text"] == "[WARNING] Queue default backed up"
    assert post["content_type"] == "application/json"
    assert post["alert"]["key"] == key and post["alert"]["event"] == "firing"
    (alert,) = alerts.open_alerts()
    assert alert.count == 5 and alert.detail == "1004 waiting"
    mail = channels.inbox.messages[0]
    assert mail["To"] == RECIPIENT and "1004 waiting" in body(mail)

    time.sleep(max(0.0, COOLDOWN_S - (time.monotonic() - started)) + 0.2)
    again = alerts.raise_alert(key, "critical", "Queue default backed up", "2000 waiting")
    assert again.notified and again.alert.id == alert.id and again.alert.count == 6
    for job_id in again.jobs:
        settled(job_id)
    assert channels.inbox.subjects() == [
        "[WARNING] Queue default backed up",
        "[CRITICAL] Queue default backed up",
    ]
    assert [post["alert"]["count"] for post in channels.hook.delivered()] == [5, 6]


def test_a_resolved_alert_notifies_its_resolution_and_a_new_raise_opens_another(
    channels: Channels,
) -> None:
    key = f"beat.leader.{uuid.uuid4().hex[:6]}"
    first = alerts.raise_alert(key, "critical", "No beat leader", "the lease expired")
    resolved = alerts.resolve_alert(key, "beat@host2 took the lease")
    assert resolved is not None and resolved.notified
    assert resolved.alert.resolved_at is not None and alerts.open_alerts() == []
    for job_id in (*first.jobs, *resolved.jobs):
        settled(job_id)
    assert sorted(channels.inbox.subjects()) == [
        "[CRITICAL] No beat leader",
        "[RESOLVED] No beat leader",
    ]
    events = sorted(post["alert"]["event"] for post in channels.hook.delivered())
    assert events == ["firing", "resolved"]

    reopened = alerts.raise_alert(key, "critical", "No beat leader", "lost again")
    assert reopened.opened and reopened.notified and reopened.alert.id != first.alert.id
    assert reopened.alert.count == 1 and reopened.alert.resolved_at is None
    for job_id in reopened.jobs:
        settled(job_id)
    assert len(channels.inbox.messages) == 3 and len(channels.hook.delivered()) == 3
    assert [a.id for a in alerts.open_alerts()] == [reopened.alert.id]


def test_a_webhook_failing_twice_is_delivered_once_on_the_third_attempt(
    channels: Channels,
) -> None:
    channels.hook.reset(500, 500)
    outcome = alerts.raise_alert(f"flaky.{uuid.uuid4().hex[:6]}", "critical", "Flaky hook")
    email_job, webhook_job = outcome.jobs
    job = settled(webhook_job)
    assert job["handler"] == "alerts.webhook" and job["attempts"] == 3
    assert job["result"] == "HTTP 200"
    assert [post["status"] for post in channels.hook.posts] == [500, 500, 200]
    assert len(channels.hook.delivered()) == 1
    assert "HTTP 500" in (job["last_error"] or ""), "the last failure is kept"
    assert settled(email_job)["attempts"] == 1
    # Each attempt's pool process writes its own transitions in batches: the history is
    # whole once the last of them has flushed.
    wait_for(
        lambda: [e["to_status"] for e in JobService().history(webhook_job)].count("retrying") == 2,
        10,
        "both retries in the job's history",
    )


def test_a_webhook_answering_404_fails_at_once_naming_the_status(channels: Channels) -> None:
    channels.hook.reset(404, 404, 404)
    outcome = alerts.raise_alert(f"gone.{uuid.uuid4().hex[:6]}", "warning", "Hook gone")
    job = settled(outcome.jobs[1], "dead")
    assert job["attempts"] == 1
    assert job["last_error"].startswith("PermanentError: webhook http://127.0.0.1:")
    assert "answered HTTP 404 Not Found: 'no_service'" in job["last_error"]
    assert "SECRET" not in job["last_error"], "the URL's secret path is not in the ledger"
    time.sleep(1.0)
    assert [post["status"] for post in channels.hook.posts] == [404], "never retried"


RAISER = """
import sys, time
from app.db import engine
from app.jobs.service import JobService
from app.services.alerts import raise_alert

JobService().handlers()  # imports and a connection now, not at the instant
engine().connect().close()
at, keys = float(sys.argv[1]), sys.argv[2:]
for index, key in enumerate(keys):
    time.sleep(max(0.0, at + index * 0.3 - time.time()))
    outcome = raise_alert(key, "critical", "Raced", "from two processes")
    print(key, outcome.opened, outcome.notified, flush=True)
"""


def test_two_processes_raising_a_new_key_at_one_instant_notify_once(channels: Channels) -> None:
    keys = [f"race.{uuid.uuid4().hex[:6]}" for _ in range(3)]
    at = time.time() + 8  # both processes started and warmed up by then
    command = [sys.executable, "-c", RAISER, str(at), *keys]
    raisers = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    lines = [
        line.split()
        for raiser in raisers
        for line in raiser.communicate(timeout=60)[0].splitlines()
    ]
    assert all(raiser.returncode == 0 for raiser in raisers)
    for key in keys:
        said = sorted((opened, notified) for name, opened, notified in lines if name == key)
        assert said == [("False", "False"), ("True", "True")], (key, said)
    jobs = JobService().list(limit=100)[0]
    assert len(jobs) == 2 * len(keys), "one email and one webhook job per key"
    for job in jobs:
        settled(job["id"])
    assert sorted(channels.inbox.subjects()) == ["[CRITICAL] Raced"] * len(keys)
    assert sorted(post["alert"]["key"] for post in channels.hook.delivered()) == sorted(keys)
    assert sorted(a.count for a in alerts.open_alerts()) == [2, 2, 2]


def test_the_api_the_metrics_and_the_console_list_the_alerts(channels: Channels) -> None:
    disk = alerts.raise_alert("disk.var", "critical", "Disk /var 97% full", labels={"host": "w1"})
    alerts.raise_alert("memory.w2", "warning", "Worker memory high")
    alerts.raise_alert("cpu.w3", "warning", "CPU saturated")
    alerts.resolve_alert("cpu.w3", "load went down")
    secret = token("read", "alerts-reader")[1]
    with Web() as web, requests.Session() as session:
        api = Api(web.url, secret, session)
        listed = api.ok("GET", "/alerts")
        assert [item["key"] for item in listed["items"]] == ["memory.w2", "disk.var"]
        assert listed["next_cursor"] is None
        assert listed["items"][1]["labels"] == {"host": "w1"}
        assert listed["items"][1]["id"] == disk.alert.id
        every = api.ok("GET", "/alerts", params={"state": "all"})
        assert [item["key"] for item in every["items"]] == ["cpu.w3", "memory.w2", "disk.var"]
        (closed,) = api.ok("GET", "/alerts", params={"state": "resolved"})["items"]
        assert closed["key"] == "cpu.w3" and closed["resolution"] == "load went down"
        first = api.ok("GET", "/alerts", params={"state": "all", "limit": 2})
        rest = api.ok(
            "GET", "/alerts", params={"state": "all", "limit": 2, "cursor": first["next_cursor"]}
        )
        assert [i["key"] for i in first["items"] + rest["items"]] == [
            i["key"] for i in every["items"]
        ]
        assert rest["next_cursor"] is None
        refused = api.error("GET", "/alerts", 400, params={"cursor": "forged"})
        assert refused["field"] == "cursor" and refused["code"] == "invalid_cursor"
        assert api.error("GET", "/alerts", 422, params={"state": "firing"})["field"]

        scraped = requests.get(
            f"{web.url}/metrics", headers={"Authorization": f"Bearer {secret}"}, timeout=30
        )
        firing = {
            sample.labels["severity"]: sample.value
            for family in text_string_to_metric_families(scraped.text)
            for sample in family.samples
            if sample.name == "conveyor_alerts_firing"
        }
        assert firing == {"info": 0, "warning": 1, "critical": 1}

        page = console_page(web, "/console/web/alert/")
        assert "disk.var" in page and "memory.w2" in page and "cpu.w3" not in page
        page = console_page(web, "/console/web/alert/?state=all")
        assert "cpu.w3" in page
        detail = console_page(web, f"/console/web/alert/{disk.alert.id}/change/")
        assert "Disk /var 97% full" in detail and "alerts.webhook" in detail


def console_page(web: Web, path: str) -> str:
    """A console page as a superuser sees it."""
    from django.contrib.auth import get_user_model

    name, password = "alerts-operator", "alerts-operator-pw-1"
    users = get_user_model()
    if not users.objects.filter(username=name).exists():
        users.objects.create_superuser(name, password=password)
    with requests.Session() as session:
        login = session.get(f"{web.url}/console/login/", timeout=30)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
        assert csrf is not None, login.text[:500]
        session.post(
            f"{web.url}/console/login/?next={path}",
            data={"username": name, "password": password, "csrfmiddlewaretoken": csrf.group(1)},
            headers={"Referer": f"{web.url}/console/login/"},
            timeout=30,
        )
        reply = session.get(f"{web.url}{path}", timeout=30)
    assert reply.status_code == 200 and "/console/login/" not in reply.url, reply.text[:500]
    return reply.text


def test_a_failing_service_alerts_once_across_restarts_and_resolves_when_it_runs(
    channels: Channels, effects: Effects
) -> None:
    """A service that fails its process raises one alert, however often its supervisor
    restarts it within the cooldown; the first process in which it runs resolves it."""
    from tests.acceptance.test_services import Services, forget_services

    host = f"h-{uuid.uuid4().hex[:6]}"
    key = f"service.probe.doomed.{host}.failed"
    conf = {"error_backoff_s": 0.1, "max_consecutive_errors": 3}
    hour = {"CONVEYOR_ALERTS__COOLDOWN_S": "3600"}  # the services process is the raiser
    forget_services()
    try:
        for _restart in range(2):
            with Services(host, "probe.doomed", hour, **conf) as failing:
                assert failing.exit_code(60) == 1, failing.output()[-3000:]
        (alert,) = alerts.open_alerts()
        assert alert.key == key and alert.severity == "critical" and alert.count == 2
        assert "probe.doomed fails on purpose" in alert.detail
        wait_for(lambda: len(channels.hook.delivered()) >= 1, 60, "the webhook")
        wait_for(lambda: channels.inbox.subjects(), 60, "the email")
        time.sleep(1.0)  # a second notification would have arrived by now
        subject = f"[CRITICAL] service probe.doomed failed on {host}"
        assert channels.inbox.subjects() == [subject], "one email for two failures"
        assert [post["alert"]["key"] for post in channels.hook.delivered()] == [key]

        healthy = {**hour, "CONVEYOR_TEST_DOOMED_OK": "1"}
        with Services(host, "probe.doomed", healthy, **conf):
            wait_for(lambda: not alerts.open_alerts(), 30, "the alert to resolve")
        (resolved,) = alerts.recent_alerts(5)
        assert resolved.id == alert.id and resolved.resolved_at is not None
        wait_for(lambda: len(channels.hook.delivered()) == 2, 60, "the resolution notice")
        assert channels.hook.delivered()[-1]["alert"]["event"] == "resolved"
    finally:
        forget_services()
