"""Conveyor's errors: one root, each subclass also the builtin it refines.

Every message names the input that was wrong, so an operator can act on it.
"""

from __future__ import annotations

from collections.abc import Iterable

from kombu.exceptions import OperationalError


class ConveyorError(Exception):
    """Root of every error Conveyor raises on purpose."""


class UnknownTask(ConveyorError, KeyError):
    """A task name that no module registered."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown task {self.name!r}; known tasks: {', '.join(self.known)}"


class NotJsonSerializable(ConveyorError, TypeError):
    """A task argument that JSON cannot carry (Conveyor never uses pickle)."""

    def __init__(self, task: str, path: str, value: object) -> None:
        self.task = task
        self.path = path
        super().__init__(
            f"task {task!r}: argument {path} of type {type(value).__name__} "
            "is not JSON serializable; pass ids, strings and numbers"
        )


class BrokerUnavailable(ConveyorError, OperationalError, ConnectionError):
    """The broker did not accept a message within the configured bound.

    Also kombu's ``OperationalError``, the error kombu itself raises for a lost
    broker: code that catches that still catches this, and kombu lets it through
    unchanged where it rewraps connection errors as its own.
    """

    def __init__(self, broker_url: str, timeout_s: float, reason: object) -> None:
        self.broker_url = broker_url
        super().__init__(f"broker {broker_url} {self._state(timeout_s)}: {reason}")

    @staticmethod
    def _state(timeout_s: float) -> str:
        return f"is unavailable (gave up after {timeout_s:g}s)"


class BrokerFull(BrokerUnavailable):
    """The broker refused a message because it is out of memory (Redis at ``maxmemory``
    under ``noeviction``); it takes messages again once memory frees."""

    @staticmethod
    def _state(timeout_s: float) -> str:
        return (
            "is out of memory and refuses new jobs until memory frees "
            "(consume or purge what it holds, or raise its maxmemory)"
        )


class EvictingRedis(ConveyorError, RuntimeError):
    """A Redis Conveyor uses may evict keys (its ``maxmemory-policy`` is not ``noeviction``)."""

    def __init__(self, process: str, found: list[str]) -> None:
        self.found = found
        super().__init__(
            f"{process} refuses to start: {'; '.join(found)}; or set "
            "CONVEYOR_BROKER__EVICTING_REDIS=warn to start anyway"
        )


class TransientError(ConveyorError):
    """Raised by a task for a failure worth retrying (a timeout, a busy service)."""


class PermanentError(ConveyorError):
    """Raised by a task for a failure no retry can fix; the job is dead-lettered."""


class EmbeddedServerError(ConveyorError, RuntimeError):
    """An embedded PostgreSQL or Redis did not start."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"embedded {server} did not start: {reason}")


class UnknownHandler(UnknownTask):
    """A job handler name that no task module registered."""

    def __str__(self) -> str:
        return f"unknown handler {self.name!r}; known handlers: {', '.join(self.known)}"


class InvalidPayload(ConveyorError, ValueError):
    """A payload that fails its handler's schema; names each field path and reason."""

    def __init__(self, handler: str, problems: list[tuple[str, str]]) -> None:
        self.handler = handler
        self.problems = problems
        detail = "; ".join(f"{path}: {reason}" for path, reason in problems)
        super().__init__(f"payload for {handler!r} is invalid: {detail}")


class PayloadTooLarge(ConveyorError, ValueError):
    """A payload whose JSON encoding is over the configured limit."""

    def __init__(self, handler: str, size: int, limit: int) -> None:
        self.size, self.limit = size, limit
        super().__init__(
            f"payload for {handler!r} is {size} bytes encoded, over the limit of {limit} bytes; "
            "pass ids, not data"
        )


class JobNotFound(ConveyorError, LookupError):
    """No job has this id."""

    def __init__(self, job_id: object) -> None:
        super().__init__(f"no job with id {job_id}")


class InvalidTransition(ConveyorError, ValueError):
    """The job's state does not allow the operation asked for."""

    def __init__(self, job_id: object, status: str, operation: str) -> None:
        super().__init__(f"job {job_id} is {status}: it cannot be {operation}")


class JobNameTaken(ConveyorError, ValueError):
    """Another unfinished job holds the name this job needs (names are unique among them),
    or, for a job waiting for a name (``waits_for``), already waits for it."""

    def __init__(
        self, job_id: object, name: str, operation: str = "requeued", waiting: bool = False
    ) -> None:
        self.name = name
        holds = "already waits for" if waiting else "is named"
        super().__init__(
            f"job {job_id} cannot be {operation}: another unfinished job {holds} {name!r}"
        )


class InvalidSchedule(ConveyorError, ValueError):
    """A schedule (a cron expression, a time zone, a delay) that cannot be honoured;
    names it and why."""

    def __init__(self, schedule: object, reason: str) -> None:
        self.schedule = schedule
        super().__init__(f"schedule {schedule!r} is invalid: {reason}")


class InvalidDuration(ConveyorError, ValueError):
    """A duration that is not a whole number and a unit s, m, h or d (``15m``); names it."""

    def __init__(self, duration: object, reason: str) -> None:
        self.duration = duration
        super().__init__(f"duration {duration!r} is invalid: {reason}")


class ScheduleNotFound(ConveyorError, LookupError):
    """No schedule has this name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no schedule named {name!r}")


class InvalidOption(ConveyorError, ValueError):
    """An enqueue option other than the payload and the schedule is wrong (``notify``);
    names it (``notify.1`` for the second address) and why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        super().__init__(f"{field}: {reason}")


class InvalidScheduleField(ConveyorError, ValueError):
    """A schedule field other than the cron expression is wrong; names it."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        super().__init__(f"{field}: {reason}")


class GateUnavailable(ConveyorError, ConnectionError):
    """The delivery gate's Redis did not answer, so a cancel or requeue cannot hold."""

    def __init__(self, action: str, job_id: object, url: str, reason: object) -> None:
        self.action = action
        self.job_id = job_id
        super().__init__(
            f"cannot {action} job {job_id}: the delivery gate (Redis {url}) "
            f"is unreachable: {reason}"
        )


class InvalidStorageName(ConveyorError, ValueError):
    """A stored file's name that is not a plain relative path inside the storage root;
    names it and why."""

    def __init__(self, name: object, reason: str) -> None:
        self.name = name
        super().__init__(f"storage name {name!r} is invalid: {reason}")


class FileTooLarge(ConveyorError, ValueError):
    """A file passed the largest size storage accepts (``storage.max_file_bytes``)."""

    def __init__(self, name: str, limit: int) -> None:
        self.name, self.limit = name, limit
        super().__init__(
            f"file {name!r} is over the limit of {limit} bytes (storage.max_file_bytes); "
            "nothing was stored"
        )


class StoredFileNotFound(ConveyorError, FileNotFoundError):
    """No stored file has this name (or id)."""

    def __init__(self, name: object) -> None:
        self.name = name
        super().__init__(f"no stored file {name!r}")


class StoredFileExists(ConveyorError, FileExistsError):
    """A stored file already has this name (save it with ``replace=True`` to replace it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"a stored file is already named {name!r}; pass replace=True to replace it"
        )


class InvalidLink(ConveyorError, ValueError):
    """A download token that is malformed, altered, signed with another secret or expired;
    ``reason`` is the short answer the download view gives."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"download link refused: {reason}")
