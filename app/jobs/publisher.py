"""The producer side of every publish: Celery's ``AMQP`` with Conveyor's checks.

``Celery(amqp="app.jobs.publisher:ConveyorAMQP")`` routes every message through
:meth:`ConveyorAMQP.send_task_message`, whatever published it: ``.delay()``,
``apply_async``, ``app.send_task`` by name, a retry, beat, a chord's callback.
Before a message leaves:

* an unknown task name raises :class:`~app.errors.UnknownTask` (when the message
  is built);
* a message due later than ``ledger.hold_after_s`` is held in PostgreSQL and
  published when due (:mod:`app.jobs.releaser`), never parked in the broker;
* it is stamped with when it was sent (the claim trusts the delivery gate only
  for messages the gate has known all their life, see :mod:`app.jobs.claim`);

and kombu's errors become :class:`~app.errors.NotJsonSerializable` or
:class:`~app.errors.BrokerUnavailable`, naming the argument or the broker. Once
the broker has it, the job is recorded ``queued`` in the ledger.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.app.amqp import AMQP

from app.jobs.gate import gate
from app.jobs.lifecycle import SENT_HEADER, record_published
from app.jobs.releaser import due_time, hold_message
from app.producer import check_registered, publishing
from config.settings import get_settings


class ConveyorAMQP(AMQP):
    """Celery's producer-side messaging, with Conveyor's checks around each publish."""

    def as_task_v2(self, task_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """Build the message of ``name``, refusing a name no module registered.

        Checked here, while the message is built: ``send_task`` sends it inside
        kombu's ``_reraise_as_library_errors``, which would turn any error that a
        transport counts as its own (on Redis, this one too) into kombu's.
        """
        check_registered(self.app, name)
        return super().as_task_v2(task_id, name, *args, **kwargs)

    def _create_task_sender(self) -> Callable[..., Any]:
        send = super()._create_task_sender()  # type: ignore[misc]
        celery_app = self.app
        horizon = timedelta(seconds=get_settings().ledger.hold_after_s)

        def send_task_message(producer: Any, name: str, message: Any, **options: Any) -> Any:
            headers, properties, body, _ = message
            args, kwargs = body[0], body[1]
            queue = options.get("queue")
            queue_name = getattr(queue, "name", queue)
            due = due_time(headers)
            if due is not None and due - datetime.now(UTC) > horizon:
                hold_message(
                    celery_app,
                    name,
                    headers,
                    args,
                    kwargs,
                    str(queue_name),
                    due,
                    priority=options.get("priority", properties.get("priority")),
                )
                return None
            sent = time.time()
            headers[SENT_HEADER] = sent
            gate.ensure_epoch()
            with publishing(celery_app, name, args, kwargs):
                result = send(producer, name, message, **options)
            record_published(
                {**headers, **(options.get("headers") or {})}, args, kwargs, queue_name, sent
            )
            return result

        return send_task_message
