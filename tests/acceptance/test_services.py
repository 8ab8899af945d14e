"""The services runtime in real ``python -m app services`` processes, on the run's PostgreSQL.

Each probe service (:mod:`tests.acceptance.probe_services`) writes a start and an end
row per iteration, stamped by the database's clock, so the tests see when each
iteration ran: that SIGTERM lets the running one finish, that errors space the next
attempts further apart, and that a singleton's iterations on two hosts never overlap,
even across a SIGKILL of the holder. What an operator sees is read where an operator
reads it: the ``services`` rows, ``GET /api/v1/services`` and ``/health/ready``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import text

from app.db import engine
from app.services import store
from beat.service import ensure_django
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Process, Web

pytestmark = pytest.mark.acceptance

MODULES = '["tests.acceptance.probe_services"]'


class Services(Process):
    """``python -m app services --only …`` as host ``host``, with ``services.*`` settings."""

    kind = "services"

    def __init__(self, host: str, only: str, env: dict[str, str] | None = None, **conf: Any):
        settings = {f"CONVEYOR_SERVICES__{key.upper()}": str(value) for key, value in conf.items()}
        super().__init__(
            {
                "CONVEYOR_SERVICES__HOST": host,
                "CONVEYOR_SERVICES__MODULES": MODULES,
                "CONVEYOR_SERVICES__BUILTINS": "false",
                **settings,
                **(env or {}),
            },
            name=f"services-{host}",
        )
        self.host = host
        self.command = ("services", f"--only={only}")
        #: Seconds from the SIGTERM of :meth:`stop` to the process's exit.
        self.stopped_after_s: float | None = None

    def ready(self) -> bool:
        return "services: started" in self.output()

    def signal(self, signum: int) -> float:
        """Send ``signum`` to the process; the monotonic time it was sent."""
        assert self.process is not None
        self.process.send_signal(signum)
        return time.monotonic()

    def exit_code(self, timeout_s: float) -> int:
        """Wait for the process to end; fail with its log's tail if it does not."""
        assert self.process is not None
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} still ran after {timeout_s}s:\n{self.output()[-3000:]}")

    def stop(self, timeout_s: float = 15) -> int:
        """SIGTERM the process and wait for it to exit; its exit code. How long it took is
        :attr:`stopped_after_s`; one still running after ``timeout_s`` fails the test."""
        sent = self.signal(signal.SIGTERM)
        code = self.exit_code(timeout_s)
        self.stopped_after_s = time.monotonic() - sent
        return code


def forget_services() -> None:
    """No service rows and no singleton leases: nothing of another test acts in this one."""
    with engine().begin() as conn:
        conn.execute(text("DELETE FROM services"))
        conn.execute(text("DELETE FROM conveyor_beat_lease WHERE name LIKE 'service:%'"))


@pytest.fixture
def clean(effects: Effects) -> Iterator[Effects]:
    """Empty effect, service and lease tables, and empty again afterwards (the service
    rows would otherwise count in another module's readiness)."""
    forget_services()
    yield effects
    forget_services()


def service_rows() -> dict[tuple[str, str], dict[str, Any]]:
    """The service rows as the API reads them, by (name, host)."""
    with engine().connect() as conn:
        return {(row["name"], row["host"]): row for row in store.rows(conn, fresh_s=1.5)}


def row(name: str, host: str) -> dict[str, Any] | None:
    return service_rows().get((name, host))


def iterations(effects: Effects, prefix: str) -> list[dict[str, Any]]:
    """Each iteration of the probes keyed ``prefix…``: key, pid, start and end (or None)."""
    found: dict[str, dict[str, Any]] = {}
    for key, phase, pid, _, at in effects.rows(prefix):
        entry = found.setdefault(key, {"key": key, "pid": pid, "start": None, "end": None})
        entry[phase] = at
    return sorted(found.values(), key=lambda entry: entry["start"])


def test_sigterm_lets_the_running_iteration_finish_then_the_service_is_stopped(
    clean: Effects,
) -> None:
    with Services("h-term", "probe.slow", {"CONVEYOR_TEST_ITERATION_S": "2"}, grace_s=10) as svc:

        def running() -> str | None:
            open_ = [i["key"] for i in iterations(clean, "probe.slow") if i["end"] is None]
            return open_[0] if open_ else None

        key = wait_for(running, 15, "an iteration of probe.slow under way")
        sent_at = datetime.now(UTC)
        code = svc.stop()
    assert code == 0, svc.output()[-3000:]
    took = svc.stopped_after_s
    assert took is not None and took < 10, (
        f"exited {took:.1f}s after SIGTERM, past the 10 s grace period"
    )
    done = {i["key"]: i for i in iterations(clean, "probe.slow")}
    assert done[key]["end"] is not None, "the iteration running at SIGTERM completed"
    assert done[key]["end"] > sent_at
    assert not [i for i in done.values() if i["start"] > sent_at], "no iteration after SIGTERM"
    final = row("probe.slow", "h-term")
    assert final is not None
    assert final["state"] == "stopped" and final["detail"]["stop"] == "stopped", final
    assert final["items_processed"] == len([i for i in done.values() if i["end"]])


def test_an_iteration_still_running_after_the_grace_period_is_abandoned_with_exit_3(
    clean: Effects,
) -> None:
    with Services("h-late", "probe.slow", {"CONVEYOR_TEST_ITERATION_S": "20"}, grace_s=1) as svc:
        wait_for(lambda: iterations(clean, "probe.slow"), 15, "an iteration of probe.slow")
        code = svc.stop(10)
    assert code == 3, svc.output()[-3000:]
    took = svc.stopped_after_s
    assert took is not None and 1 <= took < 5, (
        f"exited {took:.1f}s after SIGTERM with a 1 s grace period"
    )
    assert all(i["end"] is None for i in iterations(clean, "probe.slow"))
    final = row("probe.slow", "h-late")
    assert final is not None and final["state"] == "stopped", final
    assert final["detail"]["stop"].startswith("abandoned"), final["detail"]


def test_a_service_that_always_fails_backs_off_longer_each_time_then_fails_the_process(
    clean: Effects,
) -> None:
    conf = {"error_backoff_s": 0.4, "error_backoff_max_s": 30, "max_consecutive_errors": 5}
    env = {"CONVEYOR_TEST_ITERATION_S": "0.3"}
    with Services("h-broken", "probe.broken,probe.slow", env, **conf) as svc:
        code = svc.exit_code(30)
    assert code == 1, svc.output()[-3000:]
    starts = [at for _, _, _, _, at in clean.rows("probe.broken", "start")]
    assert len(starts) == 5, starts
    gaps = [(b - a).total_seconds() for a, b in pairwise(starts)]
    # Waits of 0.4, 0.8, 1.6 and 3.2 s, each cut by up to a quarter: every one longer
    # than the one before it.
    assert all(later > earlier for earlier, later in pairwise(gaps)), gaps
    assert 0.3 <= gaps[0] < 0.9 and gaps[-1] >= 2.4, gaps
    failed = row("probe.broken", "h-broken")
    assert failed is not None, service_rows()
    assert failed["state"] == "failed" and failed["consecutive_errors"] == 5, failed
    assert "probe.broken fails on purpose" in failed["last_error"]
    assert "service probe.broken failed on h-broken after 5 errors" in svc.output()
    # The process's other service stopped as on SIGTERM: its running iteration finished.
    other = row("probe.slow", "h-broken")
    assert other is not None and other["state"] == "stopped", other
    assert all(i["end"] is not None for i in iterations(clean, "probe.slow"))


def assert_never_two_at_once(runs: list[dict[str, Any]], killed_at: datetime) -> None:
    """Intervals (an unfinished one ends at the kill) that never overlap."""
    previous_end = None
    for run in runs:
        if previous_end is not None:
            assert run["start"] >= previous_end, f"two iterations at once: {run} {runs}"
        previous_end = run["end"] or killed_at


def test_a_singleton_runs_on_one_host_and_another_takes_over_within_the_lease_ttl(
    clean: Effects,
) -> None:
    ttl_s, beat_s = 3.0, 0.5
    conf = {"lease_ttl_s": ttl_s, "heartbeat_interval_s": beat_s}
    env = {"CONVEYOR_TEST_ITERATION_S": "0.4"}
    hosts = {name: Services(name, "probe.singleton", env, **conf) for name in ("h-a", "h-b")}
    try:
        for svc in hosts.values():
            svc.start()
        wait_for(lambda: len(iterations(clean, "probe.singleton")) >= 5, 20, "five iterations")
        pids = {run["pid"] for run in iterations(clean, "probe.singleton")}
        assert len(pids) == 1, "only one host is active"
        holder = next(svc for svc in hosts.values() if svc.pid in pids)
        other = next(svc for svc in hosts.values() if svc is not holder)
        states = {host: r["state"] for (_, host), r in service_rows().items()}
        assert states == {holder.host: "running", other.host: "standby"}, states

        holder.kill()
        killed_at = datetime.now(UTC)

        def taken_over() -> Any:
            return [r for r in iterations(clean, "probe.singleton") if r["pid"] == other.pid]

        first = wait_for(taken_over, ttl_s + 10, "the standby host to take over")[0]
        took = (first["start"] - killed_at).total_seconds()
        # The holder's last renewal was at most a heartbeat before the kill; its lease
        # expired a TTL later, and the standby asks at every heartbeat.
        assert took <= ttl_s + 2 * beat_s + 1.0, f"took over {took:.1f}s after the kill"
        assert row("probe.singleton", other.host)["state"] == "running"  # type: ignore[index]

        # A holder that stops cleanly gives the lease up: a third host takes over at once.
        third = Services("h-c", "probe.singleton", env, **conf).start()
        hosts["h-c"] = third
        wait_for(lambda: row("probe.singleton", "h-c"), 10, "h-c's row")
        time.sleep(1)
        assert not [r for r in iterations(clean, "probe.singleton") if r["pid"] == third.pid]
        assert other.stop() == 0, other.output()[-3000:]
        stopped_at = datetime.now(UTC)
        first = wait_for(
            lambda: [r for r in iterations(clean, "probe.singleton") if r["pid"] == third.pid],
            10,
            "h-c to take over",
        )[0]
        assert (first["start"] - stopped_at).total_seconds() < 2 * beat_s + 1.0
        assert third.stop() == 0, third.output()[-3000:]
    finally:
        for svc in hosts.values():
            svc.__exit__(None, None, None)
    runs = iterations(clean, "probe.singleton")
    assert {run["pid"] for run in runs} == {holder.pid, other.pid, third.pid}
    assert all(run["start"] < killed_at for run in runs if run["pid"] == holder.pid)
    assert_never_two_at_once(runs, killed_at)


def get(url: str, token: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=15) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_the_api_and_readiness_report_a_failed_singleton_and_name_a_degraded_service(
    clean: Effects,
) -> None:
    ensure_django()
    from app.web.tokens import create

    _, token = create("services probe", "read", days=1)
    degraded = Services("h-slug", "probe.sluggish", error_backoff_s=60, error_backoff_max_s=60)
    # A backoff of 1 s: it fails after the harness has seen it start.
    doomed = Services("h-doom", "probe.doomed", error_backoff_s=1, max_consecutive_errors=2)
    rescue = Services("h-rescue", "probe.doomed", {"CONVEYOR_TEST_DOOMED_OK": "1"})
    with Web() as web, degraded:

        def services_check() -> dict[str, Any]:
            return get(f"{web.url}/health/ready", token)[1]["checks"].get("services") or {}

        def state(name: str, host: str) -> str | None:
            return (row(name, host) or {}).get("state")

        wait_for(lambda: state("probe.sluggish", "h-slug") == "degraded", 15, "degraded")
        check = services_check()
        assert check["ok"], check
        assert check["degraded"] == ["probe.sluggish@h-slug"], check

        with doomed:
            assert doomed.exit_code(20) == 1, doomed.output()[-3000:]
        status, body = get(f"{web.url}/health/ready", token)
        assert status == 503 and "services" in body["failing"], body
        check = body["checks"]["services"]
        assert list(check["down"]) == ["probe.doomed"], check
        assert "failed on h-doom" in check["down"]["probe.doomed"]
        assert check["degraded"] == ["probe.sluggish@h-slug"], check

        status, listed = get(f"{web.url}/api/v1/services", token)
        assert status == 200, listed
        by_name = {(s["name"], s["host"]): s for s in listed["services"]}
        failed = by_name["probe.doomed", "h-doom"]
        assert failed["mode"] == "singleton" and failed["state"] == "failed", failed
        assert failed["consecutive_errors"] == 2 and failed["holder"] is None, failed
        assert "probe.doomed fails on purpose" in failed["last_error"]
        assert not failed["active"] and failed["last_success_at"] is None
        slug = by_name["probe.sluggish", "h-slug"]
        assert slug["state"] == "degraded" and slug["alive"] and slug["active"], slug
        assert slug["consecutive_errors"] == 1 and slug["heartbeat_at"], slug
        assert {"beat_leader", "beats", "workers"} <= set(listed), "beat and workers still there"

        # Another host takes the singleton over: the failed row alone no longer turns it red.
        with rescue:
            wait_for(
                lambda: (row("probe.doomed", "h-rescue") or {}).get("active"),
                15,
                "h-rescue holding probe.doomed",
            )
            check = services_check()
            assert check["ok"], check
            status, listed = get(f"{web.url}/api/v1/services", token)
            rescued = {(s["name"], s["host"]): s for s in listed["services"]}
            holder = rescued["probe.doomed", "h-rescue"]
            assert holder["active"] and holder["state"] == "running", holder
            assert rescued["probe.doomed", "h-doom"]["holder"] == holder["holder"]
