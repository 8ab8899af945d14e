"""The process's recorder, and the ledger's record of a publish.

Every transition of a job is buffered in this process's
:class:`~app.jobs.recorder.Recorder` and written in batches. The producer side
(:mod:`app.jobs.publisher`) records ``queued``/``scheduled`` here; a delivery's
transitions are :mod:`app.jobs.delivery`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.jobs.gate import gate
from app.jobs.models import JobStatus
from app.jobs.recorder import Recorder, Transition
from config.settings import get_settings

_recorder: Recorder | None = None

#: Header of a message whose job the ledger already holds (JobService writes it first).
RECORDED_HEADER = "conveyor_recorded"
#: Header with the time (epoch seconds) a Conveyor producer published the message.
SENT_HEADER = "conveyor_sent"


def recorder() -> Recorder:
    """This process's recorder, created on first use."""
    global _recorder
    if _recorder is None:
        ledger = get_settings().ledger
        _recorder = Recorder(
            get_settings().database_url.replace("postgresql+psycopg://", "postgresql://", 1),
            flush_interval_s=ledger.flush_interval_s,
            batch_size=ledger.batch_size,
            max_buffer=ledger.max_buffer,
        )
        _recorder.on_written = gate.flushed
    return _recorder


def close_recorder() -> None:
    """Write what this process's recorder holds and stop it (a no-op if it never started)."""
    if _recorder is not None:
        _recorder.close()


def record_published(
    headers: dict[str, Any], args: Any, kwargs: Any, queue: str | None, sent: float
) -> None:
    """A job reached the broker: ``queued``, or ``scheduled`` with an ETA.

    A retry's republish (``retries`` > 0) is recorded by its delivery as
    ``retrying``, and a message whose job the ledger holds already
    (:data:`RECORDED_HEADER`) was recorded by whoever wrote it.
    """
    if not headers.get("id") or headers.get("retries") or headers.get(RECORDED_HEADER):
        return
    # Stamped before the message left: no worker can have started it earlier.
    now = datetime.fromtimestamp(sent, UTC)
    eta = headers.get("eta")
    recorder().record(
        Transition(
            job_id=headers["id"],
            to_status=JobStatus.SCHEDULED if eta else JobStatus.QUEUED,
            at=now,
            job={
                "handler": headers.get("task"),
                "queue": queue,
                "payload": {"args": list(args or []), "kwargs": dict(kwargs or {})},
                "enqueued_at": now,
                "due_at": datetime.fromisoformat(eta) if eta else None,
            },
        )
    )
