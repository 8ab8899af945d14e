"""The bounded parallel consumer in real ``python -m app services`` processes, and the
services' figures in ``/metrics`` of a real web process.

``probe.consumer`` (:mod:`tests.acceptance.probe_consumer`) handles the items of a
table, 3 at once with 4 waiting at most, and each item writes a ``taken``, a ``start``
and an ``end`` row stamped by the database's clock. From them the tests see that every
item ran once, that no more than 3 ran at once and no more than 3 + 4 were taken and
unfinished, and that SIGTERM finishes what was taken, takes nothing more, and leaves
the row ``stopped`` with exit 0. A consumer whose every item fails backs off like any
failing service and fails its process. What the tests compare ``/metrics`` with is the
``services`` table, read as the API reads it.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.db import engine
from app.services import store
from app.services.states import ServiceState
from beat.service import ensure_django
from tests.acceptance import probe_consumer
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.test_services import Services, forget_services, row
from tests.acceptance.workers import Web

pytestmark = pytest.mark.acceptance

MODULES = '["tests.acceptance.probe_consumer"]'
PARALLELISM, CAPACITY = probe_consumer.Items.parallelism, probe_consumer.Items.capacity


def consumer(
    host: str, only: str = "probe.consumer", env: dict[str, str] | None = None, **conf: Any
) -> Services:
    """A services process running the probe consumers only, heartbeating every 0.5 s."""
    env = {"CONVEYOR_SERVICES__MODULES": MODULES, **(env or {})}
    return Services(host, only, env, heartbeat_interval_s=0.5, **conf)


@pytest.fixture
def clean(effects: Effects) -> Iterator[Effects]:
    """Empty effect and service tables, before and after (as test_services does)."""
    forget_services()
    yield effects
    forget_services()


def items(effects: Effects) -> dict[str, dict[str, list[datetime]]]:
    """Each item of ``probe.consumer``: the times of its rows, by phase."""
    found: dict[str, dict[str, list[datetime]]] = {}
    for key, phase, _, _, at in effects.rows("probe.consumer:"):
        found.setdefault(key, {"taken": [], "start": [], "end": []})[phase].append(at)
    return found


def most_at_once(opens: list[datetime], closes: list[datetime]) -> int:
    """The most intervals open at one time (a close at the same instant as an open
    counts first)."""
    events = sorted([(at, 1) for at in opens] + [(at, -1) for at in closes])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def test_a_consumer_handles_every_item_once_and_never_more_than_its_parallelism_at_once(
    clean: Effects,
) -> None:
    count = 30
    probe_consumer.fill(count)
    with consumer("h-items") as svc:
        wait_for(lambda: probe_consumer.done() == count, 30, f"{count} items done")
        wait_for(
            lambda: (row("probe.consumer", "h-items") or {}).get("items_processed") == count,
            10,
            "the row to count them",
        )
        assert svc.stop() == 0, svc.output()[-3000:]
    found = items(clean)
    assert len(found) == count
    for key, phases in found.items():
        assert [len(phases[p]) for p in ("taken", "start", "end")] == [1, 1, 1], (key, phases)
    starts = [at for phases in found.values() for at in phases["start"]]
    ends = [at for phases in found.values() for at in phases["end"]]
    taken = [at for phases in found.values() for at in phases["taken"]]
    assert most_at_once(starts, ends) == PARALLELISM, "3 at once, never more"
    # Taken from the source and not finished: running plus waiting, never more.
    assert most_at_once(taken, ends) == PARALLELISM + CAPACITY
    final = row("probe.consumer", "h-items")
    assert final is not None and final["state"] == "stopped", final
    assert final["items_processed"] == count and final["consecutive_errors"] == 0, final
    figures = final["detail"]["service"]
    assert figures["succeeded"] == count and figures["failed"] == 0, figures
    assert (figures["parallelism"], figures["capacity"]) == (PARALLELISM, CAPACITY)


def test_sigterm_finishes_the_items_taken_takes_no_more_and_exits_0(clean: Effects) -> None:
    count = 60
    probe_consumer.fill(count)
    with consumer("h-drain", grace_s=10) as svc:
        wait_for(lambda: probe_consumer.done() >= 6, 30, "six items done")
        sent_at = datetime.now(UTC)
        code = svc.stop()
    assert code == 0, svc.output()[-3000:]
    took = svc.stopped_after_s
    assert took is not None and took < 10, (
        f"exited {took:.1f}s after SIGTERM, past the 10 s grace period"
    )
    found = items(clean)
    unfinished = {key: p for key, p in found.items() if len(p["end"]) != 1 or len(p["start"]) != 1}
    assert not unfinished, f"taken and not finished once: {unfinished}"
    # The supervisor acts on the signal within 0.1 s; after that the fetcher takes nothing.
    late = [key for key, p in found.items() if p["taken"][0] > sent_at + timedelta(seconds=0.5)]
    assert not late, f"taken after the stop: {late}"
    # At SIGTERM the queue was full (but for an item just finished and not yet replaced):
    # those items waited, and were handled after it.
    waited = [key for key, p in found.items() if p["start"][0] > sent_at]
    assert len(waited) >= CAPACITY - 1, waited
    assert probe_consumer.done() == len(found) < count, "the rest stays in the source"
    final = row("probe.consumer", "h-drain")
    assert final is not None, "the row"
    assert final["state"] == "stopped" and final["detail"]["stop"] == "stopped", final
    assert final["items_processed"] == len(found), final


def test_a_consumer_whose_items_all_fail_backs_off_then_fails_its_process(clean: Effects) -> None:
    conf: dict[str, Any] = {
        "error_backoff_s": 0.4,
        "error_backoff_max_s": 30,
        "max_consecutive_errors": 4,
    }
    with consumer("h-broken", "probe.consumer_broken", **conf) as svc:
        code = svc.exit_code(30)
    assert code == 1, svc.output()[-3000:]
    starts: dict[int, list[datetime]] = {}
    for key, _, _, _, at in clean.rows("probe.consumer_broken:", "start"):
        starts.setdefault(int(key.split(":")[1]), []).append(at)
    assert [len(starts[fetch]) for fetch in sorted(starts)] == [2, 2, 2, 2], "both, each time"
    firsts = [min(starts[fetch]) for fetch in sorted(starts)]
    gaps = [(b - a).total_seconds() for a, b in pairwise(firsts)]
    # Waits of 0.4, 0.8 and 1.6 s, each cut by up to a quarter: each longer than the last.
    assert all(later > earlier for earlier, later in pairwise(gaps)), gaps
    assert 0.3 <= gaps[0] < 0.9 and gaps[-1] >= 1.2, gaps
    failed = row("probe.consumer_broken", "h-broken")
    assert failed is not None and failed["state"] == "failed", failed
    assert failed["consecutive_errors"] == 4 and failed["items_processed"] == 0, failed
    assert "all 2 item(s) failed" in failed["last_error"], failed["last_error"]
    assert "fails item" in failed["last_error"]
    assert "service probe.consumer_broken: item (1, 1) failed" in svc.output(), "logged"
    assert failed["detail"]["service"]["failed"] == 8, failed["detail"]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(web: Web, token: str) -> Samples:
    request = urllib.request.Request(
        web.url + "/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=15) as reply:
        body = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def assert_metrics_match_the_table(samples: Samples) -> dict[tuple[str, str], str]:
    """Every row's state, items and errors in a row, as ``/metrics`` has them; the states."""
    with engine().connect() as conn:
        rows = store.rows(conn, fresh_s=1.5)
    assert rows, "rows to compare"
    for found in rows:
        where = (("host", found["host"]), ("service", found["name"]))
        for state in ServiceState:
            labels = tuple(sorted((*where, ("state", state.value))))
            expected = 1.0 if found["state"] == state else 0.0
            assert samples[("conveyor_service_state", labels)] == expected, (found, state)
        assert samples[("conveyor_service_items", where)] == found["items_processed"], found
        errors = samples[("conveyor_service_consecutive_errors", where)]
        assert errors == found["consecutive_errors"], found
    services = {k for k in samples if k[0] == "conveyor_service_items"}
    assert len(services) == len(rows), "a series per row, and no more"
    assert samples[("conveyor_scrape_error", (("part", "services"),))] == 0
    return {(r["name"], r["host"]): r["state"] for r in rows}


def test_metrics_show_each_services_state_items_and_errors_as_the_table_has_them(
    clean: Effects,
) -> None:
    ensure_django()
    from app.web.tokens import create

    _, token = create("services metrics probe", "read", days=1)
    count = 10
    probe_consumer.fill(count)
    conf: dict[str, Any] = {"error_backoff_s": 0.2, "max_consecutive_errors": 3}
    with Web() as web, consumer("h-metrics", env={"CONVEYOR_TEST_ITEM_S": "0.05"}) as good:
        with consumer("h-metrics-bad", "probe.consumer_broken", **conf) as bad:
            assert bad.exit_code(30) == 1, bad.output()[-3000:]
        # The good consumer has done everything: its row is still while the test reads.
        wait_for(
            lambda: (row("probe.consumer", "h-metrics") or {}).get("items_processed") == count,
            30,
            f"{count} items counted",
        )
        states = assert_metrics_match_the_table(scrape(web, token))
        assert states == {
            ("probe.consumer", "h-metrics"): "running",
            ("probe.consumer_broken", "h-metrics-bad"): "failed",
        }
        bad_row = row("probe.consumer_broken", "h-metrics-bad")
        assert bad_row is not None and bad_row["consecutive_errors"] == 3, bad_row
        assert good.stop() == 0, good.output()[-3000:]
        states = assert_metrics_match_the_table(scrape(web, token))
        assert states[("probe.consumer", "h-metrics")] == "stopped"
