"""A real web process, and a thread that scrapes its ``/metrics`` as Prometheus would.

The ``conveyor-scraped`` variant runs ``python -m app web`` (gunicorn, as deployed,
in the ``production`` profile: Django's DEBUG off) on the same broker, database and
Redis as its worker. A thread of the trial then GETs ``/metrics`` with a read token
(``Authorization: Bearer``) every ``interval_s`` seconds, from before the worker
starts until it has stopped, on a fixed schedule however long a scrape takes. Each
scrape runs the whole :class:`app.web.metrics.ConveyorCollector` in the web process:
the per-task figures, derived from the ledger the worker is writing, and every other
part. The token is created for the trial and deleted afterwards.
"""

from __future__ import annotations

import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.embedded import free_port
from bench.worker import log_tail, spawn, stop

#: Seconds the web process may take to answer ``/health/live``.
START_TIMEOUT_S = 60.0
#: Seconds one scrape may take (Prometheus' default ``scrape_timeout`` is 10 s).
SCRAPE_TIMEOUT_S = 10.0
#: A part of the scrape the collector could not read: ``conveyor_scrape_error{part} 1``.
FAILED_PART = re.compile(r'^conveyor_scrape_error\{part="([^"]+)"\} 1(?:\.0)?$', re.MULTILINE)


class WebFailed(RuntimeError):
    """The web process did not start; the message has its log."""


@contextmanager
def read_token() -> Iterator[str]:
    """A new API token with the ``read`` scope, deleted on exit."""
    from beat.service import ensure_django

    ensure_django()
    from app.web.tokens import create

    token, secret = create("bench metrics scraper", "read", days=1)
    try:
        yield secret
    finally:
        token.delete()


@contextmanager
def running_web(env: Mapping[str, str], log: Path) -> Iterator[str]:
    """``python -m app web`` on a free port; yield its base URL once it answers."""
    port = free_port()
    web_env = {
        **env,
        "CONVEYOR_WEB__HOST": "127.0.0.1",
        "CONVEYOR_WEB__PORT": str(port),
        # As deployed: DEBUG off (it keeps every SQL statement of a request).
        "CONVEYOR_PROFILE": "production",
        "CONVEYOR_WEB__SECRET_KEY": secrets.token_urlsafe(48),
    }
    url = f"http://127.0.0.1:{port}"
    proc = spawn([sys.executable, "-m", "app", "web"], web_env, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(url + "/health/live"):
            if proc.poll() is not None:
                raise WebFailed(f"web exited with {proc.returncode}:\n{log_tail(log)}")
            if time.monotonic() > deadline:
                raise WebFailed(f"web not up after {START_TIMEOUT_S:g}s:\n{log_tail(log)}")
            time.sleep(0.1)
        yield url
    finally:
        stop(proc)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


@dataclass(frozen=True)
class Scrape:
    """One GET of ``/metrics``: when it started and ended (epoch s), and what failed."""

    started: float
    ended: float
    #: The collector's parts flagged in ``conveyor_scrape_error``.
    failed_parts: tuple[str, ...] = ()
    #: Why the request itself failed (None: 200 and a body).
    error: str | None = None


class Scraper(threading.Thread):
    """GETs ``url`` with ``token`` every ``interval_s`` until :meth:`stop`."""

    def __init__(self, url: str, token: str, interval_s: float) -> None:
        super().__init__(name="bench-scraper", daemon=True)
        self.url, self.token, self.interval_s = url, token, interval_s
        #: Every scrape so far, oldest first.
        self.scrapes: list[Scrape] = []
        self._done = threading.Event()

    def run(self) -> None:
        due = time.monotonic()
        while not self._done.is_set():
            self.scrapes.append(self.scrape())
            due += self.interval_s
            self._done.wait(max(0.0, due - time.monotonic()))

    def scrape(self) -> Scrape:
        """One GET, timed."""
        request = urllib.request.Request(
            self.url, headers={"Authorization": f"Bearer {self.token}"}
        )
        started = time.time()
        try:
            with urllib.request.urlopen(request, timeout=SCRAPE_TIMEOUT_S) as reply:
                body = reply.read().decode()
        except (OSError, urllib.error.HTTPError) as exc:
            return Scrape(started, time.time(), error=f"{type(exc).__name__}: {exc}")
        return Scrape(started, time.time(), tuple(FAILED_PART.findall(body)))

    def stop(self) -> None:
        """Stop after the scrape under way, if any."""
        self._done.set()
        self.join(SCRAPE_TIMEOUT_S + 5)


@contextmanager
def scraping(env: Mapping[str, str], directory: Path, interval_s: float) -> Iterator[Scraper]:
    """A web process over this trial's ledger and a :class:`Scraper` of its ``/metrics``,
    scraping until exit; the web log is ``directory/web.log``."""
    log = directory / "web.log"
    with read_token() as token, running_web(env, log) as url:
        scraper = Scraper(url + "/metrics", token, interval_s)
        scraper.start()
        try:
            yield scraper
        finally:
            scraper.stop()
