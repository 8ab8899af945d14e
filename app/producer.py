"""Checks made on the producer side, before a message reaches the broker."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from kombu.exceptions import EncodeError, OperationalError
from kombu.utils import json as kombu_json

from app.errors import BrokerFull, BrokerUnavailable, NotJsonSerializable, UnknownTask
from config.settings import Settings, mask_url


def check_registered(celery_app: Any, name: str) -> None:
    """Raise :class:`UnknownTask` unless a task module registered ``name``."""
    if name in celery_app.tasks or name.startswith("celery."):
        return
    # A producer may not have imported the task modules yet: do it once, then decide.
    celery_app.loader.import_default_modules()
    if name not in celery_app.tasks:
        raise UnknownTask(name, (n for n in celery_app.tasks if not n.startswith("celery.")))


def first_non_json(args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> tuple[str, Any]:
    """The path and value of the first argument JSON cannot encode."""

    def walk(value: Any, path: str) -> tuple[str, Any] | None:
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str | int | float | bool) and key is not None:
                    return f"{path} key {key!r}", key
                found = walk(item, f"{path}[{key!r}]")
                if found:
                    return found
            return None
        if isinstance(value, list | tuple):
            for index, item in enumerate(value):
                found = walk(item, f"{path}[{index}]")
                if found:
                    return found
            return None
        try:
            kombu_json.dumps(value)  # the encoder Celery uses: dates and UUIDs are fine
        except (TypeError, ValueError):
            return path, value
        return None

    for index, value in enumerate(args or ()):
        found = walk(value, f"args[{index}]")
        if found:
            return found
    for key, value in (kwargs or {}).items():
        found = walk(value, f"kwargs[{key!r}]")
        if found:
            return found
    return "arguments", (args, kwargs)


def publish_timeout_s(settings: Settings) -> float:
    """The longest a publish may take before it gives up on a dead broker."""
    broker = settings.broker
    attempts = broker.publish_max_retries + 1
    return attempts * broker.connection_timeout_s + broker.publish_max_retries * 1.0


@contextmanager
def publishing(celery_app: Any, name: str, args: Any, kwargs: Any) -> Iterator[None]:
    """Turn kombu's publish errors into errors that name the task, argument or broker."""
    try:
        yield
    except EncodeError as exc:
        # Only on failure do we pay for finding which argument it was.
        path, value = first_non_json(args, kwargs)
        raise NotJsonSerializable(name, path, value) from exc
    except Exception as exc:
        full = out_of_memory(exc)
        if not full and not isinstance(
            exc, (OperationalError, ConnectionError, TimeoutError, OSError)
        ):
            raise
        settings: Settings = celery_app.conf.conveyor_settings
        error = BrokerFull if full else BrokerUnavailable
        raise error(mask_url(settings.broker_url), publish_timeout_s(settings), exc) from exc


def out_of_memory(exc: BaseException) -> bool:
    """True when ``exc``, or an error it was raised from, is Redis's out-of-memory reply
    (``OOM command not allowed when used memory > 'maxmemory'``)."""
    seen: BaseException | None = exc
    for _ in range(10):  # kombu and redis-py chain a few errors deep at most
        if seen is None:
            return False
        if type(seen).__name__ == "OutOfMemoryError" or str(seen).startswith("OOM "):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
