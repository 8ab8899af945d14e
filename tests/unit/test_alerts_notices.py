"""Alerts without a server: what a notification says, which answers a webhook retries,
which inputs and settings are refused, and where the delivery jobs are routed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from app.celery import ROUTES, create_app
from app.services import alerts
from app.services.alerts import Alert, Event, InvalidAlert
from config.settings import AlertSettings, Settings
from tasks import alerts as alert_tasks

SEEN = datetime(2026, 12, 2, 3, 4, 5, tzinfo=UTC)


def alert(**changes: object) -> Alert:
    fields: dict[str, object] = {
        "id": 7,
        "key": "queue.default.backlog",
        "severity": "critical",
        "subject": "Queue default is backed up",
        "detail": "1200 messages wait; the threshold is 1000",
        "first_seen_at": SEEN,
        "last_seen_at": SEEN,
        "count": 5,
        "last_notified_at": SEEN,
        "resolved_at": None,
        "resolution": None,
        "labels": {"queue": "default", "depth": 1200},
    }
    fields.update(changes)
    return Alert(**fields)  # type: ignore[arg-type]


def test_the_slack_body_has_text_an_attachment_and_the_alert_fields() -> None:
    body = alerts.slack_body(alert(), Event.FIRING)
    assert body["text"] == "[CRITICAL] Queue default is backed up"
    (attachment,) = body["attachments"]
    assert attachment["color"] == alerts.COLORS["critical"]
    assert attachment["title"] == "Queue default is backed up"
    assert attachment["text"] == "1200 messages wait; the threshold is 1000"
    assert attachment["ts"] == int(SEEN.timestamp())
    shown = {field["title"]: field["value"] for field in attachment["fields"]}
    assert shown["key"] == "queue.default.backlog"
    assert shown["seen"] == "5 times"
    assert shown["queue"] == "default" and shown["depth"] == "1200"
    assert body["alert"]["key"] == "queue.default.backlog"
    assert body["alert"]["count"] == 5
    assert body["alert"]["first_seen_at"] == SEEN.isoformat()
    assert body["alert"]["event"] == "firing"
    json.dumps(body)  # it travels as JSON


def test_a_resolution_says_resolved_in_green_with_what_the_resolver_said() -> None:
    closed = alert(resolved_at=SEEN, resolution="drained by an extra worker")
    body = alerts.slack_body(closed, Event.RESOLVED)
    assert body["text"] == "[RESOLVED] Queue default is backed up"
    assert body["attachments"][0]["color"] == alerts.COLORS["resolved"]
    shown = {field["title"]: field["value"] for field in body["attachments"][0]["fields"]}
    assert shown["resolution"] == "drained by an extra worker"
    assert body["alert"]["event"] == "resolved"


def test_the_email_gives_the_detail_then_the_facts_in_text_and_html() -> None:
    mail = alerts.email(alert(count=1, labels=None), Event.FIRING)
    assert mail.subject == "[CRITICAL] Queue default is backed up"
    lines = mail.text.splitlines()
    assert lines[0] == "[CRITICAL] Queue default is backed up"
    assert lines[2] == "1200 messages wait; the threshold is 1000"
    assert "key         queue.default.backlog" in lines
    assert "seen        1 time" in lines
    assert "<th" in mail.html and "queue.default.backlog" in mail.html
    assert alerts.COLORS["critical"] in mail.html


@pytest.mark.parametrize(
    ("status", "refused"),
    [
        (400, True),
        (401, True),
        (403, True),
        (404, True),
        (410, True),
        (408, False),
        (429, False),
        (301, False),
        (500, False),
        (502, False),
        (503, False),
    ],
)
def test_a_webhook_refusal_is_a_4xx_but_timeout_and_throttling(status: int, refused: bool) -> None:
    assert alert_tasks.refused(status) is refused


def test_an_error_names_the_webhook_by_its_origin_not_its_secret_path() -> None:
    url = "https://user:pw@hooks.slack.com/services/T000/B000/XXXXSECRET"
    assert alert_tasks.origin(url) == "https://hooks.slack.com"


def test_a_cursor_round_trips_and_a_forged_one_is_refused_naming_it() -> None:
    assert alerts.decode_cursor(alerts.encode_cursor(42)) == 42
    for forged in ("nonsense", alerts.encode_cursor(42)[:-3], "am9iOjQy"):
        with pytest.raises(InvalidAlert, match="cursor"):
            alerts.decode_cursor(forged)


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ({"severity": "fatal"}, "severity"),
        ({"key": ""}, "key"),
        ({"key": "k" * 301}, "key"),
        ({"subject": "  "}, "subject"),
        ({"detail": "bad\x00byte"}, "detail"),
        ({"labels": {"when": datetime.now(UTC)}}, "labels"),
        ({"cooldown_s": -1.0}, "cooldown_s"),
    ],
)
def test_an_alert_it_cannot_record_is_refused_naming_the_argument(
    arguments: dict[str, object], argument: str
) -> None:
    given: dict[str, object] = {
        "key": "k",
        "severity": "warning",
        "subject": "s",
        "detail": "",
        **arguments,
    }
    with pytest.raises(InvalidAlert, match=f"alert {argument} is invalid") as refused:
        alerts.raise_alert(**given)  # type: ignore[arg-type]
    assert refused.value.argument == argument


def test_channels_are_the_configured_ones() -> None:
    assert alerts.channels(AlertSettings()) == []
    both = AlertSettings(email_to=["ops@example.com"], webhook_url="https://hooks.example/x")
    assert alerts.channels(both) == ["alerts.email", "alerts.webhook"]
    assert alerts.channels(AlertSettings(webhook_url="")) == []


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("email_to", ["ops"], "'ops' is not an email address"),
        ("webhook_url", "ftp://hooks.example/x", "is not http(s)"),
        ("cooldown_s", -1, "greater than or equal to 0"),
    ],
)
def test_alert_settings_refuse_what_cannot_work(field: str, value: object, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        AlertSettings(**{field: value})  # type: ignore[arg-type]


def test_the_cooldown_defaults_to_an_hour_and_nothing_is_sent_unconfigured() -> None:
    settings = Settings(_env_file=None).alerts
    assert settings.cooldown_s == 3600
    assert settings.email_to == [] and settings.webhook_url is None
    assert settings.notify_resolved is True


def test_delivery_jobs_go_to_the_default_queue() -> None:
    assert ROUTES["alerts.*"] == "default"
    router = create_app(Settings(_env_file=None)).amqp.router
    for name in ("alerts.email", "alerts.webhook"):
        assert router.route({}, name)["queue"].name == "default"
