"""Stored files end to end: a real web process serves signed links, a real worker purges.

The test process stores files the way a task would (same root, same secret, through
``CONVEYOR_STORAGE__ROOT``, which every process here is given), then asks
``python -m app web`` for them over HTTP: a valid link answers the exact bytes, an
expired, altered, foreign or dead one answers 403, never 404. A
``python -m app worker`` on the ``background`` queue runs ``storage.purge_expired``;
Redis alone carries it, as nothing here depends on the broker.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db import engine
from app.jobs.service import JobService
from app.storage import LocalStorage, links
from app.storage import files as storage_files
from config.settings import get_settings
from tasks import storage as storage_tasks
from tests.acceptance.conftest import wait_for
from tests.acceptance.workers import Web, Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE stored_files"))
    yield tmp_path / "storage"
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE stored_files"))


@pytest.fixture
def files(root: Path) -> LocalStorage:
    """Storage as every process of this module sees it: this root, the deployment's secret."""
    settings = get_settings()
    storage = settings.storage.model_copy(update={"root": root})
    return LocalStorage.from_settings(settings.model_copy(update={"storage": storage}))


def get(url: str) -> tuple[int, Message, bytes]:
    """Status, headers and body of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers, refused.read()


def altered(token: str, index: int) -> str:
    """``token`` with the character at ``index`` changed to another of its alphabet."""
    char = token[index]
    other = "b" if char == "a" else "a"
    if char.isdigit():
        other = "7" if char == "3" else "3"
    return token[:index] + other + token[index + 1 :]


def test_the_web_process_serves_a_signed_link_and_refuses_any_other(
    files: LocalStorage, root: Path
) -> None:
    data = os.urandom(1024 * 1024 + 4321)  # more than one chunk of the response's stream
    stored = files.save(
        "reports/2026-12-02/inventory.csv", data, content_type="text/csv", job_id=uuid.uuid4()
    )
    expired = files.save("reports/2026-12-02/old.csv", b"old")
    gone = files.save("reports/2026-12-02/gone.csv", b"gone")
    past = datetime.now(UTC) - timedelta(hours=2)

    with Web(env={"CONVEYOR_STORAGE__ROOT": str(root)}) as web:
        link = files.link(stored)
        status, headers, body = get(f"{web.url}/{link}")
        assert status == 200, body[:200]
        assert hashlib.sha256(body).hexdigest() == stored.sha256 and body == data
        assert headers["Content-Type"] == "text/csv"
        assert headers["Content-Length"] == str(len(data))
        assert headers["Content-Disposition"] == 'attachment; filename="inventory.csv"'
        assert "no-store" in headers["Cache-Control"]

        token = link.removeprefix(storage_files.LINK_PREFIX)
        refusals = {
            # Signed an hour-long link two hours ago: expired an hour ago.
            "expired": (files.link(expired, lifetime_s=3600, now=past), links.EXPIRED),
            # One character changed, in the id, the expiry or the signature.
            "id altered": (f"files/{altered(token, 3)}", links.TAMPERED),
            "expiry altered": (f"files/{altered(token, 34)}", links.TAMPERED),
            "signature altered": (f"files/{altered(token, len(token) - 5)}", links.TAMPERED),
            "another secret": (
                "files/" + links.sign(stored.id, int(stored.expires_at.timestamp()), "x" * 60),
                links.TAMPERED,
            ),
            "no token at all": ("files/inventory.csv", links.MALFORMED),
            "a deleted file": (files.link(gone), storage_files.GONE),
        }
        files.delete("reports/2026-12-02/gone.csv")
        for case, (path, reason) in refusals.items():
            status, headers, body = get(f"{web.url}/{path}")
            assert (status, body.decode().strip()) == (403, reason), case
            assert headers["Content-Type"].startswith("text/plain"), case
        # The valid link still works after all that.
        assert get(f"{web.url}/{link}")[2] == data


def test_a_worker_purges_exactly_the_expired_files(
    files: LocalStorage, root: Path, broker: Broker
) -> None:
    now = datetime.now(UTC)
    for day in (1, 2, 3):
        files.save(f"exports/old-{day}.csv", b"x" * day, expires_at=now - timedelta(days=day))
    kept = files.save("exports/new.csv", b"fresh", expires_at=now + timedelta(days=1))
    link = files.link(kept)

    worker = Worker(broker.url, queues="background", env={"CONVEYOR_STORAGE__ROOT": str(root)})
    with worker:
        result = storage_tasks.purge_expired.delay()
        counts = result.get(timeout=30)

    assert counts == {"files": 3, "bytes": 6, "missing": 0, "partials": 0}
    assert result.worker == worker.hostname and result.queue == "background"
    assert [stored.name for stored in files.list_files()] == ["exports/new.csv"]
    assert sorted(p.name for p in (root / "exports").iterdir()) == ["new.csv"]
    with files.open("exports/new.csv") as handle:
        assert handle.read() == b"fresh"
    assert files.resolve(link.removeprefix(storage_files.LINK_PREFIX)) == kept
    service = JobService()
    wait_for(
        lambda: service.get(result.id)["status"] == "completed",
        15,
        "the purge job to be completed in the ledger",
    )
    assert service.get(result.id)["handler"] == "storage.purge_expired"
