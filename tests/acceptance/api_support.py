"""What the API tests share: an HTTP client, tokens, and the real processes behind the API."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from beat.service import ensure_django
from tests.acceptance import probe_tasks
from tests.acceptance.workers import Beat, Web, Worker

ensure_django()


def broker_url() -> str:
    """The run's Redis broker (its own database, from ``CONVEYOR_TEST_REDIS_DB``)."""
    return os.environ["CONVEYOR_BROKER__URL"]


def token(
    scope: str, name: str | None = None, *, expired: bool = False, revoked: bool = False
) -> tuple[Any, str]:
    """A token made in-process, as an operator would with ``tokens create``: (row, secret)."""
    from app.web import tokens
    from app.web.models import ApiToken

    row, secret = tokens.create(name or f"test-{scope}", scope, days=1)
    if expired:
        ApiToken.objects.filter(pk=row.pk).update(
            expires_at=datetime.now(UTC) - timedelta(minutes=1)
        )
    if revoked:
        tokens.revoke(row)
    return row, secret


def actor(row: Any) -> str:
    """How the audit trail names an action taken with token ``row``."""
    return f"token:{row.prefix} ({row.name})"


@dataclass
class Api:
    """A client of one web process, acting with one token unless told otherwise."""

    base: str
    secret: str | None = None
    session: requests.Session = field(default_factory=requests.Session)

    def call(
        self,
        method: str,
        path: str,
        *,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """``method`` on ``/api/v1`` + ``path``."""
        sent = dict(headers or {})
        if (secret or self.secret) and "Authorization" not in sent:
            sent["Authorization"] = f"Bearer {secret or self.secret}"
        return self.session.request(
            method, f"{self.base}/api/v1{path}", headers=sent, timeout=30, **kwargs
        )

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """The JSON of a call that must answer ``status``."""
        reply = self.call(method, path, **kwargs)
        assert reply.status_code == status, f"{method} {path}: {reply.status_code} {reply.text}"
        return reply.json() if reply.content else None

    def error(self, method: str, path: str, status: int, **kwargs: Any) -> dict[str, Any]:
        """The error body of a call that must fail with ``status``, in the one JSON shape."""
        reply = self.call(method, path, **kwargs)
        assert reply.status_code == status, f"{method} {path}: {reply.status_code} {reply.text}"
        assert reply.headers["Content-Type"].startswith("application/json"), reply.text
        body = reply.json()["error"]
        assert body["status"] == status and body["code"] and body["message"], body
        assert isinstance(body["details"], list) and "field" in body, body
        return body  # type: ignore[no-any-return]


@contextlib.contextmanager
def running(worker: bool = True, beat: bool = True, broker: str | None = None) -> Iterator[Web]:
    """A web process, and a worker and beat on ``broker`` (the run's Redis unless given),
    started side by side."""
    with probe_tasks.connect() as conn:
        conn.execute(probe_tasks.DDL)
    url = broker or broker_url()
    processes: list[Web | Worker | Beat] = [Web(env={"CONVEYOR_BROKER__URL": url})]
    if worker:
        processes.append(Worker(url, concurrency=2))
    if beat:
        processes.append(Beat(url))
    with contextlib.ExitStack() as stack:
        for process in processes:  # each stops only what it started
            stack.callback(process.__exit__, None, None, None)
        with ThreadPoolExecutor(len(processes)) as pool:
            list(pool.map(lambda p: p.start(), processes))
        web = processes[0]
        assert isinstance(web, Web)
        yield web
