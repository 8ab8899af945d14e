"""The dead-letter queue: failed jobs wait here, as JSON, for an operator.

A dead letter is a plain JSON message on ``dead_letter`` (no worker consumes it)
carrying everything needed to run the job again: task name, id, arguments, the
queue it came from, the error and the traceback.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from app.celery import dead_letter_queue
from app.errors import InvalidTransition, JobNotFound
from config.settings import DEAD_LETTER_QUEUE

logger = logging.getLogger(__name__)


def publish(celery_app: Any, letter: dict[str, Any]) -> None:
    """Put ``letter`` on the dead-letter queue, confirmed by the broker."""
    queue = dead_letter_queue()
    body = {**letter, "dead_lettered_at": datetime.now(UTC).isoformat()}
    with celery_app.producer_or_acquire() as producer:
        producer.publish(
            body,
            exchange=queue.exchange,
            routing_key=DEAD_LETTER_QUEUE,
            declare=[queue],
            serializer="json",
            delivery_mode=2,
            retry=True,
            retry_policy=celery_app.conf.task_publish_retry_policy,
        )


def depth(celery_app: Any) -> int:
    """How many letters wait in the dead-letter queue."""
    with celery_app.connection_for_write() as conn:
        bound = dead_letter_queue()(conn.default_channel)
        # Not passive: Redis drops an empty list, and a passive declare would then fail.
        declared: Any = bound.queue_declare()
        return int(declared.message_count)


def _drain(
    celery_app: Any, task_id: str | None, limit: int | None, requeue: bool
) -> list[dict[str, Any]]:
    matched: list[dict[str, Any]] = []
    with celery_app.connection_for_write() as conn:
        bound = dead_letter_queue()(conn.default_channel)
        bound.declare()
        kept = []
        while limit is None or len(matched) < limit:
            message = bound.get(no_ack=False, accept=["json"])
            if message is None:
                break
            letter = message.decode()
            if task_id is not None and letter.get("task_id") != task_id:
                kept.append(message)
                continue
            if requeue:
                _requeue(celery_app, letter)
                message.ack()
            else:
                kept.append(message)
            matched.append(letter)
        # Put back what we only looked at, after the scan, so it is not read twice.
        for message in kept:
            message.requeue()
    return matched


def _requeue(celery_app: Any, letter: dict[str, Any]) -> None:
    """Run the letter's job again: through the ledger, so its claim lets it run."""
    from app.jobs.service import JobService

    try:
        JobService(celery_app).requeue(letter["task_id"])
    except JobNotFound:  # older than the ledger's retention: publish it as it was
        celery_app.send_task(
            letter["task"],
            args=letter.get("args") or [],
            kwargs=letter.get("kwargs") or {},
            task_id=letter["task_id"],
            queue=letter.get("queue") or None,
        )
    except InvalidTransition as exc:  # requeued another way already: the letter is spent
        logger.info("dead letter %s dropped: %s", letter["task_id"], exc)


def peek(celery_app: Any, limit: int = 100) -> list[dict[str, Any]]:
    """The first ``limit`` letters, left in the queue."""
    return _drain(celery_app, None, limit, requeue=False)


def requeue(
    celery_app: Any, task_id: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Send letters back to their original queues (one ``task_id``, or all), with their ids.

    Returns the letters requeued. A letter is removed from the dead-letter queue
    only after its task was published again, so a crash in between duplicates
    rather than loses it.
    """
    return _drain(celery_app, task_id, limit, requeue=True)
