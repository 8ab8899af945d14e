"""``emails.job_notice``: the mail about one finished job, enqueued by the notifier.

``app.services.notifier`` enqueues it for a dead job whose task a
``notifications.dead_jobs`` pattern names, and for a job enqueued with ``notify=``.
It reads the job when it runs: a job requeued (or purged) since that finish is not
mailed about it any more. The mail comes from the templates ``job_dead`` or
``job_finished`` (text and HTML), with a link to the job's page in the console.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.celery import app
from app.errors import JobNotFound
from app.jobs.service import JobService
from app.notifications import email, templates
from config.settings import EmailAddress

#: Lines of a dead job's traceback the mail quotes (its last ones: where it failed).
TRACEBACK_LINES = 20
#: Characters of a result the mail quotes.
RESULT_CHARS = 2000


class JobNotice(BaseModel):
    """Which job's finish to mail about, and to whom."""

    model_config = ConfigDict(extra="forbid")

    job_id: uuid.UUID
    to: list[EmailAddress] = Field(min_length=1, max_length=200)
    #: The finish the notice is about (the job's ``finished_at`` then).
    finished_at: datetime


def facts(job: dict[str, Any]) -> list[tuple[str, str]]:
    """What the mail says of the job, as (name, value) lines."""
    lines = [("task", job["handler"]), ("job", str(job["id"]))]
    if job.get("job_name"):
        lines.append(("name", job["job_name"]))
    lines += [
        ("status", job["status"]),
        ("queue", job["queue"]),
        ("attempts", str(job["attempts"])),
    ]
    for label, key in (("created", "created_at"), ("started", "started_at")):
        if job.get(key):
            lines.append((label, job[key].isoformat(timespec="seconds")))
    if job.get("finished_at"):
        lines.append(("finished", job["finished_at"].isoformat(timespec="seconds")))
        if job.get("started_at"):
            took = (job["finished_at"] - job["started_at"]).total_seconds()
            lines.append(("took", f"{took:.1f} s"))
    if job.get("worker"):
        lines.append(("worker", job["worker"]))
    if job.get("last_error"):
        lines.append(("error", job["last_error"]))
    return lines


def compose(job: dict[str, Any]) -> templates.Rendered:
    """The mail about ``job``'s finish."""
    traceback = (job.get("traceback") or "").rstrip().splitlines()
    result = job.get("result")
    shown = None if result is None else json.dumps(result, indent=2, default=str)
    if shown is not None and len(shown) > RESULT_CHARS:
        shown = shown[:RESULT_CHARS] + "\n…"
    return templates.render(
        "job_dead" if job["status"] == "dead" else "job_finished",
        job=job,
        facts=facts(job),
        traceback_tail="\n".join(traceback[-TRACEBACK_LINES:]),
        result=shown,
        console_url=templates.console_job_url(job["id"]),
    )


@app.task(name="emails.job_notice", payload_model=JobNotice)
def job_notice(job_id: str, to: list[str], finished_at: str) -> str:
    """Mail ``to`` about the job's finish; its Message-ID, or why nothing was sent."""
    try:
        job = JobService().get(job_id)
    except JobNotFound:
        return f"skipped: job {job_id} is gone (purged)"
    if job["finished_at"] is None or job["finished_at"] != datetime.fromisoformat(finished_at):
        return f"skipped: job {job_id} was requeued since that finish ({job['status']} now)"
    return email.deliver(compose(job).message(list(to)))
