"""The operator console in a real browser, against a live web, worker, beat and Flower.

Each test does what an operator does (log in, create a schedule, requeue a dead job,
open Flower) and checks what the pages show, what the system did and the audit
record each action left. Screenshots go to ``var/test-artifacts/browser/``.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from app import schedule
from app.jobs.service import JobService
from tests.acceptance.conftest import Effects, wait_for
from tests.browser.conftest import (
    FLOWER_AUTH,
    MALLORY,
    OPERATOR,
    Console,
    audit_records,
    log_in,
    shot,
)

pytestmark = pytest.mark.acceptance
ACTOR = f"user:{OPERATOR[0]}"


def test_fire_marks_show_the_dst_gap_the_repeated_hour_and_offset_changes() -> None:
    from app.web.admin.dst import fire_marks

    spring = schedule.next_fire_times(
        "30 2 * * *", "Europe/Berlin", 3, after=datetime(2026, 3, 27, 12, tzinfo=UTC)
    )
    assert [f"{t:%d %H:%M}" for t in spring] == ["28 02:30", "29 03:00", "30 02:30"]
    marks = fire_marks(spring, "30 2 * * *")
    assert marks[0] == "" and marks[2] == ""
    assert marks[1] == "DST gap → 03:00; UTC offset +01:00 → +02:00"
    # 03:00 is a real fire time of "0 3 * * *": no gap, only the new offset.
    assert fire_marks(
        schedule.next_fire_times(
            "0 3 * * *", "Europe/Berlin", 2, after=datetime(2026, 3, 27, 12, tzinfo=UTC)
        ),
        "0 3 * * *",
    ) == ["", "UTC offset +01:00 → +02:00"]
    autumn = schedule.next_fire_times(
        "*/30 2 * * *", "Europe/Berlin", 4, after=datetime(2026, 10, 24, 23, tzinfo=UTC)
    )
    assert fire_marks(autumn, "*/30 2 * * *") == [
        "repeated hour, 1st",
        "repeated hour, 1st",
        "repeated hour, 2nd; UTC offset +02:00 → +01:00",
        "repeated hour, 2nd",
    ]


def test_operator_logs_in_and_sees_counts_the_beat_leader_and_flower(
    console: Console, page: Page
) -> None:
    assert page.locator("#site-name").inner_text() == "Conveyor"
    heading = page.locator(".console-overview h2").first.inner_text()
    assert heading.lower() == "jobs by queue and state"
    for queue in ("critical", "default", "emails", "reports", "background"):
        assert page.locator("th[scope=row]", has_text=queue).count() == 1
    # Beat takes the lease a moment after it starts.
    wait_for(
        lambda: shows(page, "/console/", "#beat-leader", "Leader:"),
        15,
        "the beat leader on the front page",
    )
    assert page.locator("#flower-link").get_attribute("href") == console.flower.url
    assert page.locator(".console-nav a", has_text="Flower").get_attribute("href") == (
        console.flower.url
    )
    shot(page, "01-front-page")
    logins = audit_records("login", ACTOR)
    assert logins and logins[-1]["actor"] == ACTOR and str(logins[-1]["ip"]) == "127.0.0.1"


def test_failed_logins_are_locked_out_after_five_and_audited(
    console: Console, context: BrowserContext, browser: Browser
) -> None:
    name, password = MALLORY
    page = context.new_page()
    for attempt in range(1, 7):
        log_in(page, name, f"wrong-{attempt}")
        if attempt < 5:
            assert "Please enter the correct username and password" in page.content()
    assert page.locator("h1").inner_text() == "Too many failed logins"
    shot(page, "02-locked-out")
    # The right password no longer helps, from this address, for this name.
    reply = page.request.get("/console/login/")
    assert reply.status == 200
    log_in(page, name, password)
    assert page.locator("h1").inner_text() == "Too many failed logins"
    assert "/console/login/" in page.url
    # Others still log in from the same address.
    other = browser.new_context(base_url=console.web.url).new_page()
    log_in(other, *OPERATOR)
    other.wait_for_url("**/console/")
    other.context.close()
    failed = audit_records("login.fail", f"user:{name}")
    assert len(failed) == 7 and {record["actor"] for record in failed} == {"anonymous"}
    # Locked at the fifth failure; each later attempt restarts the lock.
    assert len(audit_records("login.lockout", f"user:{name}")) == 3
    assert not audit_records("login", f"user:{name}")


def test_schedule_made_in_the_console_previews_fires_and_its_jobs_complete(
    console: Console, page: Page
) -> None:
    name = f"console-{uuid.uuid4().hex[:6]}"
    page.goto("/console/django_celery_beat/periodictask/add/")
    page.fill("#id_name", name)
    page.select_option("#id_task", "probe.stamp")
    page.fill("#id_cron", "*/3 * * * * 61")
    page.fill("#id_timezone", "Europe/Berlin")
    page.select_option("#id_overlap", "allow")  # so "run now" runs beside a fire
    page.click("input[name=_continue]")
    # Refused, naming the field and why; nothing stored.
    assert "day-of-week 61 out of range 0-7" in page.locator(".field-cron .errorlist").inner_text()
    assert not audit_records("schedule.create", f"schedule:{name}")
    page.fill("#id_cron", "*/3 * * * * *")
    page.click("input[name=_continue]")
    page.wait_for_url(re.compile(r"/periodictask/\d+/change/"))
    times = fire_times(page)
    assert len(times) == 10
    assert all(b - a == timedelta(seconds=3) for a, b in pairwise(times))
    assert times[0].utcoffset() in (timedelta(hours=1), timedelta(hours=2))  # Berlin
    shot(page, "03-schedule-preview")
    change_url = page.url

    # Beat fires it within its next slot; the worker completes the job.
    jobs = f"/console/web/job/?schedule={name}&status=completed"
    wait_for(
        lambda: shows(page, jobs, "#result_list tbody", "completed"),
        20,
        "a completed job of the new schedule in the jobs list",
    )
    shot(page, "04-jobs-completed")

    # Edit: the preview moves to the new expression.
    page.goto(change_url)
    page.fill("#id_cron", "*/5 * * * * *")
    page.click("input[name=_continue]")
    page.wait_for_url(change_url)
    times = fire_times(page)
    assert all(b - a == timedelta(seconds=5) for a, b in pairwise(times))
    assert all(t.second % 5 == 0 for t in times)

    # Run now, from the button.
    page.click("#run-now")
    assert "ran now: triggered" in page.locator(".messagelist").inner_text()

    # Disable it, then delete it.
    page.uncheck("#id_enabled")
    page.click("input[name=_continue]")
    assert (
        "Disabled: beat fires none of these" in page.locator(".field-next_fire_times").inner_text()
    )
    page.goto(change_url.replace("/change/", "/delete/"))
    page.click("input[type=submit]")
    assert "was deleted successfully" in page.locator(".messagelist").inner_text()

    target = f"schedule:{name}"
    for action in ("create", "update", "trigger", "disable", "delete"):
        records = audit_records(f"schedule.{action}", target)
        assert len(records) == 1, action
        assert records[0]["actor"] == ACTOR
    edited = audit_records("schedule.update", target)[0]
    assert (edited["before"]["cron"], edited["after"]["cron"]) == ("*/3 * * * * *", "*/5 * * * * *")
    created = audit_records("schedule.create", target)[0]["after"]
    assert (created["timezone"], created["overlap"]) == ("Europe/Berlin", "allow")
    assert audit_records("schedule.trigger", target)[0]["after"]["outcome"] == "triggered"


def test_dead_job_timeline_and_requeue_single_and_in_bulk(console: Console, page: Page) -> None:
    effects = Effects()
    keys = [f"broken-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    for key in keys:
        effects.flag(key, True)
    service = JobService()
    ids = [str(service.enqueue("probe.broken", {"key": key})) for key in keys]
    wait_for(
        lambda: all(service.get(job_id)["status"] == "dead" for job_id in ids),
        30,
        "three broken jobs to die",
    )
    for key in keys:
        effects.flag(key, False)
    waiting = str(service.enqueue("probe.record", {"key": "later"}, schedule=timedelta(hours=1)))

    page.goto("/console/web/job/?status=dead")
    assert page.locator("h1").inner_text() == "Dead letters"
    assert page.locator("#result_list tbody tr").count() == 3
    shot(page, "05-dead-letters")

    # One, from its page: the timeline says how it died.
    page.click(f"#result_list a:text-is('{ids[0][:8]}')")
    timeline = page.locator("table.timeline").inner_text()
    assert "retrying" in timeline and "dead" in timeline
    assert f"TransientError: {keys[0]} is broken" in page.locator(".field-error").inner_text()
    assert "Traceback" in page.locator(".field-traceback_text").inner_text()
    shot(page, "06-dead-job-timeline")
    page.click("#requeue")
    assert "Requeued 1 job." in page.locator(".messagelist").inner_text()

    # The other two, selected together on the dead-letters page.
    page.goto("/console/web/job/?status=dead")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "requeue")
    page.click("button[name=index]")
    assert "Requeued 2 jobs." in page.locator(".messagelist").inner_text()
    wait_for(
        lambda: all(service.get(job_id)["status"] == "completed" for job_id in ids),
        20,
        "the requeued jobs to complete",
    )
    page.goto(f"/console/web/job/{ids[0]}/change/")
    assert "completed" in page.locator("table.timeline").inner_text()
    shot(page, "07-requeued-job-completed")
    assert all(effects.count(key, "done") == 1 for key in keys)

    # Cancel a job that waits for its time, from the list's row button.
    page.goto(f"/console/web/job/?q={waiting}")
    page.click("#result_list button.row-button:text-is('Cancel')")
    assert "Cancelled 1 job." in page.locator(".messagelist").inner_text()
    assert service.get(waiting)["status"] == "cancelled"

    requeued = [audit_records("job.requeue", f"job:{job_id}") for job_id in ids]
    assert all(len(records) == 1 and records[0]["actor"] == ACTOR for records in requeued)
    assert [records[0]["after"]["bulk"] for records in requeued] == [False, True, True]
    assert requeued[0][0]["before"] == {"status": "dead"}
    cancelled = audit_records("job.cancel", f"job:{waiting}")
    assert len(cancelled) == 1 and cancelled[0]["actor"] == ACTOR


def test_flower_asks_for_its_password_and_shows_the_tasks(
    console: Console, browser: Browser
) -> None:
    job_id = str(JobService().enqueue("probe.record", {"key": "for-flower"}))
    wait_for(lambda: JobService().get(job_id)["status"] == "completed", 15, "a task to run")
    anonymous = browser.new_context()
    assert anonymous.request.get(console.flower.url).status == 401
    anonymous.close()

    user, password = FLOWER_AUTH
    context = browser.new_context(
        base_url=console.web.url, http_credentials={"username": user, "password": password}
    )
    tab = context.new_page()
    log_in(tab, *OPERATOR)
    tab.wait_for_url("**/console/")
    # From the console's navigation to Flower's dashboard, then its task list.
    tab.click(".console-nav a:text-is('Flower')")
    tab.wait_for_url(console.flower.url + "/")

    def lists_the_worker() -> bool:  # Flower learns of workers after it started
        if console.worker.hostname in tab.content():
            return True
        tab.reload()
        return False

    wait_for(lists_the_worker, 15, "Flower's dashboard to list the worker")
    tab.goto(console.flower.url + "/tasks")
    tab.wait_for_selector(f"text={job_id}")
    assert tab.locator("text=probe.record").count() >= 1
    shot(tab, "08-flower-tasks")
    context.close()


def test_audit_trail_is_listed_and_filtered_in_the_console(console: Console, page: Page) -> None:
    page.goto("/console/web/auditrecord/?action__exact=login")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() >= 1
    assert all(row.inner_text().count("login") >= 1 for row in rows.all())
    page.goto(f"/console/web/auditrecord/?actor__exact={ACTOR}")
    assert page.locator("#result_list tbody tr").count() >= 1
    shot(page, "09-audit")


def shows(page: Page, url: str, selector: str, text: str) -> bool:
    """Load ``url`` afresh; True when ``selector`` is there and holds ``text``."""
    page.goto(url)
    found = page.locator(selector)
    return found.count() > 0 and text in found.first.inner_text()


def fire_times(page: Page) -> list[datetime]:
    """The next fire times a schedule's page shows."""
    return [
        datetime.fromisoformat(str(item.get_attribute("datetime")))
        for item in page.locator("ol.fire-times time").all()
    ]


def test_the_mail_page_lists_what_the_sink_caught_and_shows_it(
    console: Console, page: Page
) -> None:
    from app.notifications import sink
    from config.settings import get_settings

    mail_dir = get_settings().mail_dir
    for old in sink.mails(mail_dir, limit=10_000):
        (mail_dir / old.name).unlink()
    service = JobService()
    job_id = service.enqueue("probe.record", {"key": "mail-page"})
    job = wait_for(
        lambda: (j := service.get(job_id))["status"] == "completed" and j, 30, "the job done"
    )
    service.enqueue(
        "emails.job_notice",
        {"job_id": str(job_id), "to": ["ops@example.com"], "finished_at": job["finished_at"]},
    )
    [mail] = wait_for(lambda: sink.mails(mail_dir), 30, "the notice in the mail sink")

    page.click(".console-nav a:text-is('Mail')")
    page.wait_for_url("**/console/mail/")
    row = page.locator("#mail-list tbody tr")
    assert row.count() == 1
    assert "ops@example.com" in row.first.inner_text()
    page.click(f"#mail-list a:text-is('{mail.subject}')")
    assert f"probe.record {job_id}" in page.locator("#mail-headers").inner_text()
    assert f"/console/web/job/{job_id}/change/" in page.locator("#mail-text").inner_text()
    frame = page.frame_locator("#mail-html")
    assert frame.locator("h1").inner_text() == "probe.record: completed"
    assert page.locator("#mail-html").get_attribute("sandbox") == ""
    shot(page, "10-mail")

    raw = page.request.get(
        page.locator("a.button", has_text="Download .eml").get_attribute("href") or ""
    )
    assert raw.status == 200 and raw.headers["content-type"] == "message/rfc822"
    assert raw.body() == (mail_dir / mail.name).read_bytes()
    for wrong in ("..%2F..%2Fetc%2Fpasswd", "not-a-mail.txt", "missing.eml"):
        assert page.request.get(f"/console/mail/{wrong}/").status == 404


def test_the_front_page_shows_the_hourly_statistics_once_they_are_counted(
    console: Console, page: Page
) -> None:
    from app.jobs import statistics

    statistics.cache().delete(statistics.CACHE_KEY)
    page.goto("/console/")
    assert "No hourly statistics yet" in page.locator("#hourly-statistics").inner_text()
    service = JobService()
    done = [service.enqueue("probe.record", {"key": f"stats-{i}"}) for i in range(3)]
    wait_for(lambda: all(service.get(j)["status"] == "completed" for j in done), 30, "three jobs")
    # What the hourly schedule runs, on the console's worker.
    run = service.enqueue("statistics.job_stats", {"hours": 24})
    wait_for(lambda: service.get(run)["status"] == "completed", 30, "the statistics run")
    page.goto("/console/")
    panel = page.locator("#hourly-statistics")
    assert "over the last 24 h" in panel.inner_text()
    row = panel.locator("tr", has=page.locator("th", has_text="probe.record"))
    cells = row.locator("td").all_inner_texts()
    assert int(cells[0]) >= 3 and int(cells[1]) >= 3, cells
    assert cells[2].endswith(" s"), cells
    shot(page, "11-hourly-statistics")
