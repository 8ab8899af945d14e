"""The management API against a live web process, with a real worker and beat behind it.

Each test acts through HTTP with a token, watches the effect the way an operator
would (the job's timeline, the schedule's fires) and checks that the action left
its audit record naming the token.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.jobs import statistics
from tests.acceptance.api_support import Api, actor, running, token
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Web
from tests.servers import use_broker

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    with running() as process:
        yield process


@pytest.fixture(scope="module")
def writer() -> tuple[Any, str]:
    return token("write", "api-writer")


@pytest.fixture
def api(web: Web, writer: tuple[Any, str]) -> Api:
    return Api(web.url, writer[1])


@pytest.fixture(scope="module")
def auditor(web: Web) -> Api:
    return Api(web.url, token("admin", "api-auditor")[1])


def audited(auditor: Api, action: str, target: str, by: Any) -> list[dict[str, Any]]:
    """The audit records of ``action`` on ``target`` (a prefix) by token ``by``; at least one."""
    params = {"action": action, "target": target, "actor": actor(by)}
    records: list[dict[str, Any]] = auditor.ok("GET", "/audit", params=params)["items"]
    assert records, f"no audit record of {action} on {target} by {actor(by)}"
    assert all(r["actor"] == actor(by) and r["at"] for r in records)
    return records


def job_done(api: Api, job_id: str, status: str = "completed", timeout_s: float = 30) -> Any:
    return wait_for(
        lambda: (job := api.ok("GET", f"/jobs/{job_id}"))["status"] == status and job,
        timeout_s,
        f"job {job_id} to be {status}",
    )


def test_an_enqueued_job_completes_and_shows_its_timeline(
    api: Api, auditor: Api, writer: tuple[Any, str], effects: Effects
) -> None:
    key = f"api-{uuid.uuid4().hex[:8]}"
    created = api.ok(
        "POST",
        "/jobs",
        201,
        json={
            "handler": "probe.record",
            "payload": {"key": key},
            "metadata": {"origin": "test"},
            "notify": ["caller@example.com"],
        },
    )
    job = job_done(api, created["id"])
    assert job["payload"] == {"key": key}
    assert job["notify_to"] == ["caller@example.com"]
    assert job["metadata"] == {"origin": "test"} and job["result"] == key
    assert [e["to_status"] for e in job["events"]] == ["queued", "running", "completed"]
    assert job["events"][-1]["worker"] == job["worker"]
    assert effects.count(key, "done") == 1
    listed = api.ok("GET", "/jobs", params={"handler": "probe.record", "status": "completed"})
    assert created["id"] in [item["id"] for item in listed["items"]]
    audited(auditor, "job.enqueue", f"job:{created['id']}", writer[0])


def fires_of(api: Api, schedule_id: int) -> list[dict[str, Any]]:
    history = api.ok("GET", f"/schedules/{schedule_id}")["history"]
    return sorted(history, key=lambda fire: fire["fire_time"])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_schedule_fires_in_its_next_slot_and_an_edit_moves_preview_and_fires(
    api: Api, auditor: Api, writer: tuple[Any, str], effects: Effects
) -> None:
    name = f"api-every2-{uuid.uuid4().hex[:6]}"
    created = api.ok(
        "POST",
        "/schedules",
        201,
        json={"name": name, "task": "probe.stamp", "cron": "*/2 * * * * *", "overlap": "allow"},
    )
    sid, slots = created["id"], [at(t) for t in created["next_fires"]]
    assert len(slots) == 10 and all(t.second % 2 == 0 for t in slots)
    first = wait_for(lambda: fires_of(api, sid), 10, "the first fire")[0]
    # The first fire is the next slot after creation (or one an instant before the preview).
    assert at(first["fire_time"]) <= slots[0] and first["outcome"] == "enqueued"
    fired = job_done(api, first["job_id"])
    assert fired["metadata"]["schedule"] == name

    edited = api.ok("PATCH", f"/schedules/{sid}", json={"cron": "*/5 * * * * *"})
    edited_at = datetime.now(UTC)
    assert edited["cron"] == "*/5 * * * * *"
    assert all(at(t).second % 5 == 0 for t in edited["next_fires"])
    preview = api.ok("GET", f"/schedules/{sid}/preview", params={"n": 3})["fires"]
    assert len(preview) == 3 and all(at(t).second % 5 == 0 for t in preview)
    assert at(preview[0]) - edited_at <= timedelta(seconds=5)
    later = wait_for(
        lambda: [
            f for f in fires_of(api, sid) if at(f["fire_time"]) > edited_at + timedelta(seconds=2)
        ],
        12,
        "a fire after the edit",
    )
    assert all(at(f["fire_time"]).second % 5 == 0 for f in later), later

    api.ok("PATCH", f"/schedules/{sid}", json={"enabled": False})
    [update] = audited(auditor, "schedule.update", f"schedule:{name}", writer[0])
    assert (
        update["before"]["cron"] == "*/2 * * * * *" and update["after"]["cron"] == "*/5 * * * * *"
    )
    audited(auditor, "schedule.create", f"schedule:{name}", writer[0])
    [disable] = audited(auditor, "schedule.disable", f"schedule:{name}", writer[0])
    assert disable["before"]["enabled"] is True and disable["after"]["enabled"] is False


def test_run_now_named_triggers_reschedule_cancel_and_delete(
    api: Api, auditor: Api, writer: tuple[Any, str], effects: Effects
) -> None:
    name = f"api-yearly-{uuid.uuid4().hex[:6]}"
    sid = api.ok(
        "POST", "/schedules", 201, json={"name": name, "task": "probe.stamp", "cron": "0 0 1 1 *"}
    )["id"]
    now = api.ok("POST", f"/schedules/{sid}/trigger")
    assert now["outcome"] == "triggered" and now["schedule"] == name
    assert job_done(api, now["job_id"])["metadata"]["schedule"] == name

    later = api.ok("POST", f"/triggers/{name}", params={"delay_minutes": 5})
    assert later["outcome"] == "scheduled"
    due = at(later["due_at"]) - datetime.now(UTC)
    assert timedelta(minutes=4) < due <= timedelta(minutes=5)
    job = api.ok("GET", f"/jobs/{later['job_id']}")
    assert job["status"] == "scheduled" and job["metadata"]["triggered_by"] == actor(writer[0])

    moved = api.ok("PATCH", f"/jobs/{later['job_id']}", json={"schedule": "10m"})
    assert at(moved["due_at"]) - at(job["due_at"]) > timedelta(minutes=4)
    cancelled = api.ok("DELETE", f"/jobs/{later['job_id']}")
    assert cancelled["status"] == "cancelled"
    assert [e["to_status"] for e in cancelled["events"]][-2:] == ["scheduled", "cancelled"]
    refused = api.error("PATCH", f"/jobs/{later['job_id']}", 409, json={"schedule": "1m"})
    assert "cancelled" in refused["message"]

    assert api.call("DELETE", f"/schedules/{sid}").status_code == 204
    api.error("GET", f"/schedules/{sid}", 404)
    assert len(audited(auditor, "schedule.trigger", f"schedule:{name}", writer[0])) == 2
    audited(auditor, "job.reschedule", f"job:{later['job_id']}", writer[0])
    [cancel] = audited(auditor, "job.cancel", f"job:{later['job_id']}", writer[0])
    assert cancel["before"]["status"] == "scheduled" and cancel["after"]["status"] == "cancelled"
    [delete] = audited(auditor, "schedule.delete", f"schedule:{name}", writer[0])
    assert delete["before"]["name"] == name and delete["after"] is None


def dead_job(api: Api, effects: Effects) -> tuple[str, str]:
    key = f"broken-{uuid.uuid4().hex[:8]}"
    effects.flag(key, True)
    job_id = api.ok("POST", "/jobs", 201, json={"handler": "probe.broken", "payload": {"key": key}})
    return job_id["id"], key


def test_a_dead_job_is_requeued_and_completes(
    api: Api, auditor: Api, writer: tuple[Any, str], effects: Effects
) -> None:
    job_id, key = dead_job(api, effects)
    dead = job_done(api, job_id, "dead")
    assert "retrying" in [e["to_status"] for e in dead["events"]]
    assert dead["last_error"] and f"{key} is broken" in dead["last_error"]
    effects.flag(key, False)
    requeued = api.ok("POST", f"/jobs/{job_id}/requeue")
    assert requeued["status"] in ("queued", "running", "completed")
    done = job_done(api, job_id)
    assert effects.count(key, "done") == 1 and done["id"] == job_id
    assert api.error("POST", f"/jobs/{job_id}/requeue", 409)["code"] == "invalid_transition"
    [record] = audited(auditor, "job.requeue", f"job:{job_id}", writer[0])
    assert record["before"]["status"] == "dead"
    assert record["after"]["status"] in ("queued", "running", "completed")


def test_bulk_requeue_and_bulk_cancel_act_on_what_the_filter_matches(
    api: Api, auditor: Api, writer: tuple[Any, str], effects: Effects
) -> None:
    broken = [dead_job(api, effects) for _ in range(2)]
    for job_id, _ in broken:
        job_done(api, job_id, "dead")
    for _, key in broken:
        effects.flag(key, False)
    result = api.ok(
        "POST", "/jobs/bulk/requeue", json={"status": "dead", "handler": "probe.broken"}
    )
    assert result["matched"] == 2 and not result["skipped"]
    assert sorted(result["done"]) == sorted(job_id for job_id, _ in broken)
    for job_id, _ in broken:
        job_done(api, job_id)

    waiting = [
        api.ok(
            "POST",
            "/jobs",
            201,
            json={"handler": "probe.record", "schedule": "10m", "payload": {"key": f"later-{n}"}},
        )["id"]
        for n in range(2)
    ]
    assert api.ok("POST", "/jobs/bulk/cancel", json={"handler": "probe.broken"})["matched"] == 0
    cancelled = api.ok(
        "POST", "/jobs/bulk/cancel", json={"handler": "probe.record", "status": "scheduled"}
    )
    assert sorted(cancelled["done"]) == sorted(waiting)
    assert all(api.ok("GET", f"/jobs/{j}")["status"] == "cancelled" for j in waiting)
    refused = api.error("POST", "/jobs/bulk/requeue", 422, json={"status": "running"})
    assert refused["field"] == "status"

    [requeue] = audited(auditor, "job.bulk_requeue", "filter:", writer[0])
    assert sorted(requeue["after"]["done"]) == sorted(job_id for job_id, _ in broken)
    cancels = audited(auditor, "job.bulk_cancel", "filter:", writer[0])
    assert any(sorted(c["after"]["done"]) == sorted(waiting) for c in cancels)


def test_a_job_whose_name_an_active_job_holds_is_not_requeued(api: Api, effects: Effects) -> None:
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    job = {"handler": "probe.record", "payload": {"key": name}, "job_name": name, "schedule": "10m"}
    first = api.ok("POST", "/jobs", 201, json=job)["id"]
    api.ok("DELETE", f"/jobs/{first}")
    second = api.ok("POST", "/jobs", 201, json=job)["id"]
    assert second != first
    refused = api.error("POST", f"/jobs/{first}/requeue", 409)
    assert refused["field"] == "job_id" and name in refused["message"]
    bulk = api.ok(
        "POST", "/jobs/bulk/requeue", json={"status": "cancelled", "handler": "probe.record"}
    )
    assert bulk["done"] == [] and [s["id"] for s in bulk["skipped"]] == [first]
    assert name in bulk["skipped"][0]["reason"]
    assert api.ok("GET", f"/jobs/{second}")["status"] == "scheduled"
    api.ok("DELETE", f"/jobs/{second}")


def test_operations_show_workers_queues_services_and_stats(api: Api, effects: Effects) -> None:
    api.ok("POST", "/jobs", 201, json={"handler": "probe.record", "payload": {"key": "stats"}})

    def live() -> list[dict[str, Any]]:
        return [w for w in api.ok("GET", "/workers") if w["alive"] and w["processed"] >= 1]

    [worker] = wait_for(live, 10, "a live worker that processed a job")
    assert {"critical", "default", "emails", "reports", "background"} == set(worker["queues"])
    # The effects fixture emptied the heartbeat table: wait for the next heartbeat.
    queues = wait_for(
        lambda: (
            (q := {q["name"]: q for q in api.ok("GET", "/queues")})["default"]["consumers"] and q
        ),
        10,
        "the worker's heartbeat",
    )
    # Dead jobs are the ledger's (GET /jobs?status=dead): the broker holds no letters.
    assert list(queues) == ["critical", "default", "emails", "reports", "background"]
    assert all(isinstance(q["depth"], int) and q["depth"] >= 0 for q in queues.values())
    assert queues["default"]["consumers"] == [worker["hostname"]]
    services = api.ok("GET", "/services")
    assert services["beat_leader"] is not None
    assert any(b["leader"] and b["alive"] for b in services["beats"])
    assert any(w["hostname"] == worker["hostname"] and w["alive"] for w in services["workers"])
    stats = api.ok("GET", "/stats", params={"hours": 1})
    assert stats["by_handler"]["probe.record"] >= 1 and stats["total"] >= 1
    assert set(stats["unfinished"]) == {"scheduled", "queued", "running", "retrying"}


def test_stats_answer_from_the_hourly_statistics_while_fresh_else_count_live(
    api: Api, effects: Effects
) -> None:
    job = {"handler": "probe.record", "payload": {"key": "stats-cache"}}
    created = api.ok("POST", "/jobs", 201, json=job)
    job_done(api, created["id"])
    live = api.ok("GET", "/stats")
    # The beat behind the web process runs the default schedules: a slot that falls
    # inside the test (the hourly statistics, say) adds its own job to the count.
    assert live["hours"] == 24 and live["by_handler"]["probe.record"] == 1
    assert live["total"] == sum(live["by_handler"].values())
    # What the hourly run caches, made recognisable: a count the ledger cannot give.
    stats = statistics.compute(24)
    cache = statistics.cache()
    recognisable = {**stats, "created": {**stats["created"], "total": 4242}}
    recognisable["created"]["by_handler"] = {"cached.marker": 4242}
    cache.set(statistics.CACHE_KEY, json.dumps(recognisable), ex=60)

    served = api.ok("GET", "/stats")
    assert served["total"] == 4242 and served["by_handler"] == {"cached.marker": 4242}
    counted_at = datetime.fromisoformat(stats["generated_at"])
    # The API gives times to the millisecond.
    assert abs(datetime.fromisoformat(served["generated_at"]) - counted_at) < timedelta(
        milliseconds=1
    )
    other_window = api.ok("GET", "/stats", params={"hours": 1})
    assert other_window["by_handler"]["probe.record"] == 1, "the cache holds 24 hours only"
    assert "cached.marker" not in other_window["by_handler"], "1 hour is counted live"

    cache.pexpire(statistics.CACHE_KEY, 1)
    wait_for(
        lambda: (
            (counted := api.ok("GET", "/stats")["by_handler"]).get("probe.record") == 1
            and "cached.marker" not in counted
        ),
        10,
        "the live count once the cached statistics expired",
    )


def test_every_error_is_json_naming_the_field_and_the_reason(api: Api) -> None:
    unknown = api.error("POST", "/jobs", 422, json={"handler": "no.such"})
    assert unknown["code"] == "unknown_handler" and unknown["field"] == "handler"
    assert "probe.record" in unknown["known"] and "probe.record" in unknown["message"]

    invalid = api.error(
        "POST",
        "/jobs",
        422,
        json={
            "handler": "emails.send",
            "payload": {"to": ["nobody"], "subject": "hi", "body": "x"},
        },
    )
    # The error names the item that was wrong, not only the list.
    assert invalid["code"] == "invalid_payload" and invalid["field"] == "payload.to.0"
    assert invalid["details"][0]["field"] == "payload.to.0"
    assert "'nobody' is not an email address" in invalid["message"]

    big = {"handler": "probe.record", "payload": {"key": "x" * (1024 * 1024)}}
    too_large = api.error("POST", "/jobs", 413, json=big)
    assert too_large["field"] == "payload" and too_large["limit"] == 1024 * 1024
    huge = api.error("POST", "/jobs", 413, data=b"{" + b" " * (3 * 1024 * 1024) + b"}")
    assert huge["field"] == "body"

    cron = api.error(
        "POST", "/schedules", 422, json={"name": "bad", "task": "probe.stamp", "cron": "61 * * * *"}
    )
    assert cron["field"] == "cron" and "minute 61 out of range 0-59" in cron["message"]
    never = api.error("GET", "/cron/preview", 422, params={"expr": "0 0 30 2 *"})
    assert "never fire" in never["message"]
    zone = api.error("GET", "/cron/preview", 422, params={"expr": "@daily", "tz": "Mars/Base"})
    assert zone["field"] == "timezone"
    schedule = api.error("POST", "/jobs", 422, json={"handler": "probe.record", "schedule": "soon"})
    assert schedule["field"] == "schedule"
    naive = api.error(
        "POST", "/jobs", 422, json={"handler": "probe.record", "schedule": "2030-01-01T00:00:00"}
    )
    assert naive["field"] == "schedule" and "zone" in naive["message"]
    notify = api.error(
        "POST", "/jobs", 422, json={"handler": "probe.record", "notify": ["a@example.com", "x"]}
    )
    assert notify["field"] == "notify.1" and "'x' is not an email address" in notify["message"]
    recurring = {"handler": "probe.record", "job_name": "n", "schedule": "@daily"}
    refused = api.error("POST", "/jobs", 422, json={**recurring, "notify": ["a@example.com"]})
    assert refused["field"] == "notify" and "one-off" in refused["message"]

    assert api.error("GET", f"/jobs/{uuid.uuid4()}", 404)["field"] == "job_id"
    assert api.error("GET", "/schedules/999999", 404)["field"] == "schedule_id"
    assert api.error("POST", "/triggers/no-such-schedule", 404)["field"] == "schedule"
    assert api.error("GET", "/jobs", 400, params={"cursor": "not-a-cursor"})["field"] == "cursor"
    assert api.error("GET", "/jobs", 422, params={"status": "sleeping"})["field"] == "status"
    assert api.error("GET", "/jobs", 422, params={"limit": 0})["field"] == "limit"
    for empty in ("job_name", "idempotency_key"):
        blank = api.error("POST", "/jobs", 422, json={"handler": "probe.record", empty: ""})
        assert blank["field"] == empty
    nul = api.error(
        "POST", "/jobs", 422, json={"handler": "probe.record", "payload": {"k": "a\x00"}}
    )
    assert nul["field"] == "payload" and "NUL" in nul["message"]
    assert api.error("POST", "/jobs", 400, data=b"{not json")["code"] == "bad_request"
    assert api.error("GET", "/no/such/route", 404)["code"] == "not_found"
    assert api.error("PUT", "/jobs", 405)["code"] == "method_not_allowed"


def test_a_running_job_is_cancelled_only_when_asked_to_terminate(
    api: Api, effects: Effects
) -> None:
    key = f"long-{uuid.uuid4().hex[:8]}"
    job = {"handler": "probe.record", "payload": {"key": key, "sleep_s": 30}}
    job_id = api.ok("POST", "/jobs", 201, json=job)["id"]
    wait_for(lambda: effects.count(key) == 1, 15, "the job to start")
    job_done(api, job_id, "running", 10)
    assert "running" in api.error("DELETE", f"/jobs/{job_id}", 409)["message"]
    cancelled = api.ok("DELETE", f"/jobs/{job_id}", params={"terminate": "true"})
    assert cancelled["status"] == "cancelled"
    # The worker stops it: no done row, and the ledger keeps it cancelled.
    wait_for(lambda: api.ok("GET", "/workers")[0]["active"] == 0, 10, "the task to stop")
    assert effects.count(key, "done") == 0
    assert api.ok("GET", f"/jobs/{job_id}")["status"] == "cancelled"


def test_queue_depths_are_read_from_rabbitmq_too(writer: tuple[Any, str]) -> None:
    from app.jobs.service import JobService

    with contextlib.contextmanager(use_broker)("rabbitmq") as rabbit:
        for n in range(2):
            JobService().enqueue("probe.record", {"key": f"rabbit-{n}"}, queue="reports")
        env = {**os.environ, "CONVEYOR_BROKER__URL": rabbit.url}
        with Web(env=env) as web:
            queues = {q["name"]: q for q in Api(web.url, writer[1]).ok("GET", "/queues")}
    assert list(queues) == ["critical", "default", "emails", "reports", "background"]
    assert queues["reports"]["depth"] == 2 and queues["default"]["depth"] == 0
