"""JSON log lines for workers: one object a line, and a task's lines name its job.

Celery sets the worker's logging up itself (``app.log.setup``): a handler on the
root logger and one on the task logger (``celery.task``, whose
:class:`~celery.app.log.TaskFormatter` adds ``%(task_id)s`` and ``%(task_name)s``
from the task running in the process). Its ``after_setup_logger`` and
``after_setup_task_logger`` signals hand over each logger once its handlers exist;
:func:`use_json_lines`, connected to both in :mod:`app.jobs.worker`, then gives
those handlers a :class:`JobLogFormatter` when ``log.format`` is ``json`` (the
``production`` profile's default). Pool processes are forked after this, so they
inherit it.

A line logged while a task runs, through the task logger, a module's own logger
or a ``print`` (Celery redirects it to a logger), carries ``job_id``, ``task``,
``attempt``, ``queue`` and ``worker``, read from the running task's request as
``TaskFormatter`` reads it. Celery's own ``extra={"data": …}`` (a task's arguments
and return value) is left out: JSON lines say no more than the text lines do.
"""

from __future__ import annotations

import logging
from typing import Any

from celery._state import get_current_task
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from config.settings import get_settings

#: Record attributes a line leaves out: logging's own, and Celery's context ``data``.
LEFT_OUT = (*RESERVED_ATTRS, "data")
#: What every line carries, renamed from the record's attributes.
FIELDS = {"levelname": "level", "name": "logger", "processName": "process"}


class JobLogFormatter(JsonFormatter):
    """One JSON object a line; inside a task, with its job id, task, attempt, queue and
    worker."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "processName", "message"],
            rename_fields=FIELDS,
            reserved_attrs=LEFT_OUT,
            timestamp="time",
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        """The record's fields, then those of the job its process is running, if any."""
        super().add_fields(log_data, record, message_dict)
        log_data.update(job_fields())


def job_fields() -> dict[str, Any]:
    """``job_id``, ``task``, ``attempt``, ``queue`` and ``worker`` of the task running in
    this process (this thread), or nothing outside a task."""
    task = get_current_task()
    request = getattr(task, "request", None)
    if task is None or request is None or not getattr(request, "id", None):
        return {}
    delivery = getattr(request, "delivery_info", None) or {}
    return {
        "job_id": str(request.id),
        "task": task.name,
        "attempt": int(getattr(request, "retries", 0) or 0) + 1,
        "queue": delivery.get("routing_key"),
        "worker": getattr(request, "hostname", None),
    }


def use_json_lines(logger: logging.Logger | None = None, **_: Any) -> None:
    """Receiver of Celery's ``after_setup_logger`` and ``after_setup_task_logger``: JSON
    lines on the handlers Celery gave ``logger``, when ``log.format`` says so."""
    if logger is None or not get_settings().json_logs:
        return
    for handler in logger.handlers:
        handler.setFormatter(JobLogFormatter())
