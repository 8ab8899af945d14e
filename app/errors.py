"""Conveyor's errors: one root, each subclass also the builtin it refines.

Every message names the input that was wrong, so an operator can act on it.
"""

from __future__ import annotations

from collections.abc import Iterable


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


class BrokerUnavailable(ConveyorError, ConnectionError):
    """The broker did not accept a message within the configured bound."""

    def __init__(self, broker_url: str, timeout_s: float, reason: object) -> None:
        self.broker_url = broker_url
        super().__init__(
            f"broker {broker_url} is unavailable (gave up after {timeout_s:g}s): {reason}"
        )


class TransientError(ConveyorError):
    """Raised by a task for a failure worth retrying (a timeout, a busy service)."""


class PermanentError(ConveyorError):
    """Raised by a task for a failure no retry can fix; the job is dead-lettered."""


class EmbeddedServerError(ConveyorError, RuntimeError):
    """An embedded PostgreSQL or Redis did not start."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"embedded {server} did not start: {reason}")
