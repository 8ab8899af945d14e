"""Health probe on the ``critical`` queue: can a worker reach PostgreSQL right now?"""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

from sqlalchemy import text

from app.celery import app
from app.db import engine
from app.errors import TransientError


@app.task(name="health.probe", max_retries=2)
def probe() -> dict[str, object]:
    """Round-trip to the database from a worker and report how long it took."""
    started = time.perf_counter()
    try:
        with engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "try again shortly"
        raise TransientError(f"database unreachable from worker: {exc}") from exc
    return {
        "worker": socket.gethostname(),
        "database_ms": round((time.perf_counter() - started) * 1000, 2),
        "at": datetime.now(UTC).isoformat(),
    }
