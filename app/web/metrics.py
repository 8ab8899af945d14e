"""``/metrics`` for Prometheus, from the web process.

Everything is read at scrape time from the ledger, the broker, the beat tables and
the ``services`` table (a :class:`ConveyorCollector`), so the web process keeps no
counters of its own and every replica answers the same. A part that cannot be read
(the broker is down) is left out and flagged in ``conveyor_scrape_error{part}``; the
rest is still served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric

from app.db import engine
from app.jobs.models import JobStatus
from app.jobs.store import figures, workers
from app.services import alerts, store
from app.services.states import ServiceState
from app.web.health import beat_leader, broker_connection, queue_depths, refuse_without_read_token
from beat.lateness import schedule_lags
from config.settings import QUEUES, get_settings

logger = logging.getLogger(__name__)


def _jobs() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "conveyor_jobs", "Jobs in the ledger by state and queue.", labels=["state", "queue"]
    )
    counts = {(state.value, queue): 0 for state in JobStatus for queue in QUEUES}
    with engine().connect() as conn:
        for queue, states in figures.queue_states(conn).items():
            for state, count in states.items():
                counts[(state, queue)] = count
    for (state, queue), count in sorted(counts.items()):
        family.add_metric([state, queue], count)
    yield family
    # The ledger's dead jobs are the dead-letter queue: the count the console shows.
    yield GaugeMetricFamily(
        "conveyor_dead_letters",
        "Dead jobs waiting for an operator to requeue or purge them.",
        value=sum(n for (state, _), n in counts.items() if state == JobStatus.DEAD),
    )


def _workers() -> Iterator[Metric]:
    fresh_s = 3 * get_settings().ledger.heartbeat_interval_s
    with engine().connect() as conn:
        alive = len(workers.alive(conn, fresh_s))
    yield GaugeMetricFamily(
        "conveyor_workers_alive",
        f"Workers whose last heartbeat is under {fresh_s:g}s old.",
        value=alive,
    )


def _broker() -> Iterator[Metric]:
    with broker_connection() as conn:
        depths = queue_depths(conn)
    family = GaugeMetricFamily(
        "conveyor_queue_depth", "Messages waiting in each broker queue.", labels=["queue"]
    )
    for queue, depth in depths.items():
        family.add_metric([queue], depth)
    yield family


def _beat() -> Iterator[Metric]:
    leader = beat_leader()
    family = GaugeMetricFamily(
        "conveyor_beat_leader",
        "1 while a beat holds the leader lease (labelled by it), 0 when none does.",
        labels=["holder"],
    )
    family.add_metric([leader["leader"] if leader else ""], 1 if leader else 0)
    yield family


def _schedules() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "conveyor_schedule_lag_seconds",
        "How long the oldest due fire of each enabled schedule has waited for beat.",
        labels=["schedule"],
    )
    for name, lag in sorted(schedule_lags().items()):
        family.add_metric([name], lag)
    yield family


def _alerts() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "conveyor_alerts_firing", "Open alerts by severity.", labels=["severity"]
    )
    for severity, count in alerts.firing_counts().items():
        family.add_metric([severity], count)
    yield family


#: Upper bounds of ``conveyor_task_duration_seconds``' buckets, seconds (then +Inf): from
#: Prometheus' defaults up to the 360 s hard time limit.
DURATION_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
#: The ``outcome`` label of each state an attempt can end in.
OUTCOMES = {
    JobStatus.COMPLETED: "completed",
    JobStatus.RETRYING: "retried",
    JobStatus.FAILED: "failed",
    JobStatus.DEAD: "dead",
}
#: Longest the read of the attempts may take, milliseconds; past it the part is left out.
TASKS_TIMEOUT_MS = 2000


def _tasks() -> Iterator[Metric]:
    """Attempts that ended in the window, by task, queue and outcome, and their durations.

    Gauges over a sliding window, not counters: the ledger forgets jobs (retention), so
    a count of its events would fall, which Prometheus reads as a counter reset.
    """
    window_s = get_settings().web.metrics_window_s
    with engine().begin() as conn:
        ended = figures.attempts_ended(conn, window_s, DURATION_BUCKETS_S, TASKS_TIMEOUT_MS)
    runs = GaugeMetricFamily(
        "conveyor_task_runs",
        f"Attempts that ended in the last {window_s}s, by the outcome they led to.",
        labels=["task", "queue", "outcome"],
    )
    durations = GaugeHistogramMetricFamily(
        "conveyor_task_duration_seconds",
        f"Run time of the attempts that ended in the last {window_s}s, start to outcome.",
        labels=["task", "queue"],
        unit="seconds",
    )
    for (task, queue), attempts in sorted(ended.items()):
        for state, outcome in OUTCOMES.items():
            runs.add_metric([task, queue, outcome], attempts.outcomes.get(state, 0))
        cumulative, buckets = 0, []
        for bound, count in zip([*DURATION_BUCKETS_S, None], attempts.buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound is None else str(float(bound)), cumulative))
        durations.add_metric([task, queue], buckets, attempts.duration_s)
    yield runs
    yield durations


def _oldest() -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "conveyor_queue_oldest_seconds",
        "Age of the oldest job published to each queue and not started yet (0: none waits).",
        labels=["queue"],
    )
    with engine().connect() as conn:
        oldest = figures.oldest_queued(conn)
    now = datetime.now(UTC)
    for queue in sorted({*QUEUES, *oldest}):
        since = oldest.get(queue)
        family.add_metric([queue], max(0.0, (now - since).total_seconds()) if since else 0.0)
    yield family


#: Longest the read of the services' rows may take, milliseconds; past it the part is
#: left out.
SERVICES_TIMEOUT_MS = 1000


def _services() -> Iterator[Metric]:
    """Each service's row on each host: its state, items and errors in a row.

    Gauges, as the row has them: its counts start again when its process restarts.
    """
    with engine().begin() as conn:
        found = store.figures(conn, SERVICES_TIMEOUT_MS)
    labels = ["service", "host"]
    states = GaugeMetricFamily(
        "conveyor_service_state",
        "1 for the state of each service on each host, as its row says; 0 for the others.",
        labels=[*labels, "state"],
    )
    items = GaugeMetricFamily(
        "conveyor_service_items",
        "Items each service processed on each host since its process started it.",
        labels=labels,
    )
    errors = GaugeMetricFamily(
        "conveyor_service_consecutive_errors",
        "Errors in a row of each service on each host since its last success.",
        labels=labels,
    )
    for row in found:
        for state in ServiceState:
            states.add_metric([row.name, row.host, state.value], 1 if row.state == state else 0)
        items.add_metric([row.name, row.host], row.items_processed)
        errors.add_metric([row.name, row.host], row.consecutive_errors)
    yield states
    yield items
    yield errors


#: Each part of a scrape, read on its own so that one failing leaves the others.
PARTS: dict[str, Callable[[], Iterator[Metric]]] = {
    "jobs": _jobs,
    "workers": _workers,
    "broker": _broker,
    "beat": _beat,
    "schedules": _schedules,
    "alerts": _alerts,
    "tasks": _tasks,
    "oldest": _oldest,
    "services": _services,
}


class ConveyorCollector:
    """A Prometheus collector that reads every part of Conveyor at scrape time."""

    def collect(self) -> Iterable[Metric]:
        """Every metric family, and ``conveyor_scrape_error`` for the parts that failed."""
        errors = GaugeMetricFamily(
            "conveyor_scrape_error",
            "1 when a part could not be read in this scrape (its metrics are missing).",
            labels=["part"],
        )
        for part, read in PARTS.items():
            try:
                families = list(read())
            except Exception as exc:  # one part down must not fail the whole scrape
                logger.warning("metrics: %s unavailable: %s: %s", part, type(exc).__name__, exc)
                families = []
                errors.add_metric([part], 1)
            else:
                errors.add_metric([part], 0)
            yield from families
        yield errors


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition (text or OpenMetrics, as asked). Needs a read token."""
    refused = refuse_without_read_token(request)
    if refused is not None:
        return refused
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(ConveyorCollector()), content_type=content_type)
