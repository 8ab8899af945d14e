"""Notifications without a server: who hears of a finish, and the mails' templates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from app.errors import InvalidOption
from app.jobs.service import recipients as notify_list
from app.notifications import templates
from app.services.notifier import NOTICE_TASK, recipients
from config.settings import Settings
from tasks.notifications import compose

RULES = {"reports.*": ["reports@example.com"], "*": ["ops@example.com"]}
DONE = datetime(2026, 12, 2, 6, 0, 30, tzinfo=UTC)


def job(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": uuid.UUID("0b6f4c52-6b0e-4d8c-9a55-1d3f3f0c2a11"),
        "handler": "reports.daily",
        "job_name": None,
        "status": "dead",
        "queue": "reports",
        "attempts": 6,
        "created_at": DONE - timedelta(minutes=5),
        "started_at": DONE - timedelta(seconds=30),
        "finished_at": DONE,
        "worker": "worker-1@host",
        "last_error": "PermanentError: SMTP 550: b'no such user'",
        "traceback": "Traceback (most recent call last):\n  File x\nPermanentError: SMTP 550",
        "result": None,
    }
    return {**row, **changes}


def test_a_dead_job_is_mailed_to_every_pattern_its_task_matches_each_address_once() -> None:
    found = recipients("reports.daily", "dead", ["me@example.com", "ops@example.com"], RULES)
    assert found == ["me@example.com", "ops@example.com", "reports@example.com"]


def test_a_finish_that_is_not_dead_goes_only_to_those_the_caller_named() -> None:
    assert recipients("reports.daily", "completed", None, RULES) == []
    assert recipients("reports.daily", "cancelled", ["me@example.com"], RULES) == ["me@example.com"]


def test_patterns_match_the_whole_task_name_case_sensitively() -> None:
    rules = {"reports.*": ["r@example.com"]}
    assert recipients("reports", "dead", None, rules) == []
    assert recipients("Reports.daily", "dead", None, rules) == []
    assert recipients("myreports.daily", "dead", None, rules) == []


def test_a_dead_notice_job_is_never_mailed_about() -> None:
    assert recipients(NOTICE_TASK, "dead", None, {"*": ["ops@example.com"]}) == []


def test_notify_takes_a_list_of_addresses_and_names_the_wrong_one() -> None:
    assert notify_list(None) is None
    assert notify_list([]) is None
    assert notify_list(["a@example.com", "a@example.com"]) == ["a@example.com"]
    with pytest.raises(InvalidOption, match=r"notify\.1: 'nope' is not an email address"):
        notify_list(["a@example.com", "nope"])
    with pytest.raises(InvalidOption, match="a list of addresses, not one string"):
        notify_list("a@example.com")
    with pytest.raises(InvalidOption, match="names 21 addresses; at most 20"):
        notify_list([f"u{i}@example.com" for i in range(21)])


def test_a_dead_jobs_mail_names_the_job_its_error_and_the_console_page() -> None:
    mail = compose(job())
    assert mail.subject == "[DEAD] reports.daily 0b6f4c52-6b0e-4d8c-9a55-1d3f3f0c2a11"
    assert "failed 6 times" in mail.text
    assert "error     PermanentError: SMTP 550: b'no such user'" in mail.text
    assert "took      30.0 s" in mail.text
    url = "/console/web/job/0b6f4c52-6b0e-4d8c-9a55-1d3f3f0c2a11/change/"
    assert url in mail.text and f'href="http://127.0.0.1:8000{url}"' in mail.html
    assert "python -m app dead requeue 0b6f4c52" in mail.text
    assert "PermanentError: SMTP 550</pre>" in mail.html


def test_html_is_escaped_and_text_is_not() -> None:
    mail = compose(job(last_error="ValueError: <b>&</b>"))
    assert "ValueError: <b>&</b>" in mail.text
    assert "ValueError: &lt;b&gt;&amp;&lt;/b&gt;" in mail.html


def test_a_finished_jobs_mail_quotes_its_result() -> None:
    mail = compose(job(status="completed", result={"rows": 12}, last_error=None, traceback=None))
    assert mail.subject.startswith("[COMPLETED] reports.daily")
    assert '"rows": 12' in mail.text
    assert "you asked to hear about is completed" in mail.text


def test_the_message_carries_the_text_and_the_html_alternative() -> None:
    message = message_from_bytes(bytes(compose(job()).message(["ops@example.com"])))
    assert message["To"] == "ops@example.com"
    parts = {part.get_content_type() for part in message.walk()}
    assert {"text/plain", "text/html"} <= parts


def test_a_template_in_the_templates_dir_replaces_the_built_in_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "job_dead.txt").write_text(
        '{% extends "_layout.txt" %}{% block subject %}Dead: {{ job.handler }}{% endblock %}'
        "{% block body %}Ours: {{ job.id }}{% endblock %}"
    )
    settings = Settings(notifications={"templates_dir": tmp_path})
    monkeypatch.setattr(templates, "get_settings", lambda: settings)
    mail = compose(job())
    assert mail.subject == "Dead: reports.daily"
    assert mail.text.startswith("Ours: 0b6f4c52")
    assert "Dead job: reports.daily" in mail.html  # the built-in HTML stays


def test_a_template_without_a_subject_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "job_dead.txt").write_text("no subject here")
    settings = Settings(notifications={"templates_dir": tmp_path})
    monkeypatch.setattr(templates, "get_settings", lambda: settings)
    with pytest.raises(LookupError, match=r"job_dead\.txt defines no"):
        compose(job())


def test_dead_job_rules_must_name_recipients() -> None:
    with pytest.raises(ValueError, match="names no recipient"):
        Settings(notifications={"dead_jobs": {"reports.*": []}})
    with pytest.raises(ValueError, match="not an email address"):
        Settings(notifications={"dead_jobs": {"*": ["nope"]}})
