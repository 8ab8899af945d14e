"""Where a service's failure is reported: a critical alert, resolved when it runs again.

The runtime calls :func:`on_failed` once when a service becomes ``failed`` (its
consecutive errors reached ``services.max_consecutive_errors``, or its thread died),
after its row says so and before its process exits non-zero: it logs and raises the
alert ``service.<name>.<host>.failed`` (:mod:`app.services.alerts`: once per
cooldown, however often a restarted process fails again). :func:`on_recovered` is
called after the first successful iteration of a service in a process, and resolves
that alert if one is open. Like every lifecycle hook neither raises: a report that
fails is logged, and the service or the shutdown goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.services import alerts
from app.services.states import Status

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FailedService:
    """A service that just failed, as its row says."""

    name: str
    host: str
    mode: str
    status: Status


def alert_key(name: str, host: str) -> str:
    """The key of the alert a failure of service ``name`` on ``host`` raises."""
    return f"service.{name}.{host}.failed"


def on_failed(service_state: FailedService) -> None:
    """Report that a service failed on its host: a log line and a critical alert."""
    try:
        status = service_state.status
        logger.critical(
            "service %s failed on %s after %d errors in a row; last error: %s",
            service_state.name,
            service_state.host,
            status.consecutive_errors,
            status.last_error,
        )
        alerts.raise_alert(
            alert_key(service_state.name, service_state.host),
            alerts.Severity.CRITICAL,
            f"service {service_state.name} failed on {service_state.host}",
            f"{status.consecutive_errors} errors in a row ({service_state.mode}); "
            f"the last: {status.last_error}",
            {"service": service_state.name, "host": service_state.host},
        )
    except Exception:  # a report never stops the shutdown
        logger.exception("could not report the failure of service %s", service_state.name)


def on_recovered(name: str, host: str) -> None:
    """Resolve the failure alert of service ``name`` on ``host``, if one is open."""
    try:
        alerts.resolve_alert(alert_key(name, host), "it runs again")
    except Exception:  # a report never stops the service
        logger.exception("could not resolve the failure alert of service %s", name)
