"""Redis's memory policy: one that may evict keys loses jobs without a trace.

Celery's Redis guide asks for ``maxmemory-policy noeviction``. Under any other
policy a Redis that reaches ``maxmemory`` drops keys to make room: a queue's
list (every job waiting in it), an unacknowledged message, the delivery gate's
record that a job finished. Publishes go on "succeeding" meanwhile. Under
``noeviction`` a full Redis refuses writes instead, which producers see as
:class:`~app.errors.BrokerFull`.

The worker, beat, services and web processes check every Redis they use (the
broker when it is Redis, the cache Redis that holds the delivery gate) when they
start: ``broker.evicting_redis`` says whether such a Redis stops them
(``refuse``, the default) or is only logged (``warn``). ``/health/ready`` is red
while one is found, whatever that setting.
"""

from __future__ import annotations

import logging

import redis

from app.errors import EvictingRedis
from config.settings import Settings, get_settings, mask_url

logger = logging.getLogger(__name__)

#: The one policy under which Redis never drops a key.
SAFE_POLICY = "noeviction"
#: Seconds the check may wait for a Redis before it leaves it to the process's own checks.
TIMEOUT_S = 1.0


def redis_roles(settings: Settings) -> dict[str, list[str]]:
    """Each Redis URL the deployment uses, with what it holds there."""
    roles: dict[str, list[str]] = {}
    if settings.broker.is_redis:
        roles.setdefault(settings.broker_url, []).append("broker")
    roles.setdefault(settings.cache_url, []).append("delivery gate and caches")
    return roles


def policy(url: str, timeout_s: float = TIMEOUT_S) -> str:
    """The ``maxmemory-policy`` of the Redis at ``url`` (from ``INFO memory``, which
    managed services that disable ``CONFIG`` still answer); raises ``RedisError``."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return str(client.info("memory").get("maxmemory_policy", SAFE_POLICY))
    finally:
        client.close()


def evicting(settings: Settings | None = None, timeout_s: float = TIMEOUT_S) -> list[str]:
    """A sentence for each Redis whose policy may evict keys; a Redis that does not
    answer is left out (the process's connection checks report it)."""
    settings = settings or get_settings()
    found = []
    for url, roles in redis_roles(settings).items():
        try:
            current = policy(url, timeout_s)
        except redis.RedisError as exc:
            logger.debug("memory policy of %s unknown (%s)", mask_url(url), exc)
            continue
        if current != SAFE_POLICY:
            found.append(
                f"Redis {mask_url(url)} ({', '.join(roles)}) has maxmemory-policy "
                f"{current!r}: when full it evicts keys, queued jobs and the delivery "
                f"gate's records among them; set maxmemory-policy {SAFE_POLICY} "
                f"(CONFIG SET maxmemory-policy {SAFE_POLICY}, and in redis.conf)"
            )
    return found


def check_at_startup(process: str, settings: Settings | None = None) -> None:
    """Log or refuse (per ``broker.evicting_redis``) a Redis that may evict keys.

    Raises :class:`~app.errors.EvictingRedis` naming each one and the setting.
    """
    settings = settings or get_settings()
    found = evicting(settings)
    if not found:
        return
    if settings.broker.evicting_redis == "refuse":
        raise EvictingRedis(process, found)
    for sentence in found:
        logger.warning(
            "%s starts anyway (CONVEYOR_BROKER__EVICTING_REDIS=warn): %s", process, sentence
        )
