"""The delivery gate: each delivery's claim and each attempt's outcome, in Redis.

A worker asks the gate before it runs a delivery (one Redis round trip) and
tells it when the attempt ended (sent without waiting, see below); PostgreSQL
only receives the attempt's transitions later, in batches
(:mod:`app.jobs.recorder`). Per job, under
``conveyor:gate:<id>``:

* a hash: ``d`` deliveries that got the lock, ``s`` the final status once the job
  ended (or was cancelled), ``o`` the outcome as JSON until PostgreSQL has it, ``w``
  who wrote that outcome (``node|host|pid``); it expires ``ledger.gate_ttl_s``
  after the last delivery;
* ``…:lock``: the holder of the delivery running now, with a lease of the task's
  hard time limit plus a minute.

``conveyor:gate:unflushed`` (a sorted set) lists the outcomes PostgreSQL does not
have yet. A live process writes its own; :func:`app.jobs.heartbeat.reconcile`
writes those of a process that died first, so an acknowledged job is never
taken for lost and run again.

An outcome is sent without waiting for Redis's reply: it is on its way to the
gate before the message is acknowledged, and the process reads the reply with
its next gate call (the next claim, or the recorder's next batch). One that
Redis did not run (a dropped connection, a lost script cache) is sent again
then; PostgreSQL's batch is only cleared from the gate after that.

``conveyor:gate:held`` (a hash) has, per worker, the jobs it said it held at its last
heartbeat (received, reserved or running) and when: what tells a dead worker's
unacknowledged messages from a live one's (:mod:`app.jobs.unacked`).

``conveyor:gate:since`` is when this Redis began remembering (set once, from the
server's clock). A delivery the gate sees first, of a message published before
that or more than the key lifetime ago, or marked redelivered, is checked in
PostgreSQL as well: the gate may have forgotten it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

from config.settings import get_settings

logger = logging.getLogger(__name__)

PREFIX = "conveyor:gate:"
SINCE = PREFIX + "since"
UNFLUSHED = PREFIX + "unflushed"
HELD = PREFIX + "held"
#: Seconds between a producer's attempts to reach an unreachable gate.
EPOCH_RETRY_S = 30.0
#: Outcomes sent without waiting, at most, before one call waits for their replies.
MAX_UNCONFIRMED = 64

#: KEYS: hash, lock, since. ARGV: holder, lease ms, key ttl s.
#: Returns {verdict, status or holder, deliveries or lease left ms, since}.
CLAIM = """
local since = redis.call('GET', KEYS[3])
if not since then
    since = redis.call('TIME')[1]
    redis.call('SET', KEYS[3], since)
end
local status = redis.call('HGET', KEYS[1], 's')
if status then
    return {'finished', status, tonumber(redis.call('HGET', KEYS[1], 'd') or '0'), since}
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {'busy', redis.call('GET', KEYS[2]) or '', redis.call('PTTL', KEYS[2]), since}
end
local d = redis.call('HINCRBY', KEYS[1], 'd', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'locked', '', d, since}
"""

#: KEYS: hash, lock. ARGV: stale holder, new holder, lease ms, key ttl s. Deliveries, or 0.
STEAL = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local d = redis.call('HINCRBY', KEYS[1], 'd', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return d
"""

#: KEYS: hash, lock, unflushed. ARGV: holder, status, outcome JSON, now, key ttl s, job id.
FINISH = """
redis.call('HSET', KEYS[1], 's', ARGV[2], 'o', ARGV[3], 'w', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

#: KEYS: lock. ARGV: holder.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


#: The gate's scripts by name, with their SHA-1 digests (EVALSHA).
SCRIPTS = {"claim": CLAIM, "steal": STEAL, "finish": FINISH, "release": RELEASE}
SHAS = {name: hashlib.sha1(source.encode()).hexdigest() for name, source in SCRIPTS.items()}


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def job_key(job_id: str) -> str:
    """The hash of ``job_id``."""
    return f"{PREFIX}{job_id}"


def lock_key(job_id: str) -> str:
    """The lock of ``job_id``'s running delivery."""
    return f"{PREFIX}{job_id}:lock"


@dataclass(frozen=True)
class Holder:
    """Who holds a lock or wrote an outcome: a worker node, its machine, its process."""

    node: str
    host: str
    pid: int

    def __str__(self) -> str:
        return f"{self.node}|{self.host}|{self.pid}"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder ``text`` names, or None when it names none."""
        node, _, rest = text.partition("|")
        host, _, pid = rest.partition("|")
        return cls(node, host, int(pid)) if pid.isdigit() else None

    @classmethod
    def me(cls, node: str | None) -> Holder:
        """This process, on worker ``node``."""
        return cls(node or socket.gethostname(), socket.gethostname(), os.getpid())

    def dead_here(self) -> bool:
        """True when this is a process of this machine that has exited.

        A zombie counts as exited: the pool processes of a killed worker may wait
        long for a parent to reap them.
        """
        if self.host != socket.gethostname() or self.pid == os.getpid():
            return False
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii", errors="replace") as stat:
                return stat.read().rpartition(")")[2].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True
        except (OSError, IndexError):  # no /proc: ask the kernel
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False


@dataclass(frozen=True)
class _Sent:
    """A script sent without waiting for its reply: enough to send it again."""

    job_id: str
    name: str
    keys: list[str]
    args: list[Any]


class ScriptConnection:
    """The gate's scripts on one Redis connection of their own, some sent without
    waiting for their reply.

    The scripts are the hot path (a claim and an outcome per delivery). They skip
    redis-py's command layer (pool checkout, retry wrapper, hooks), which costs
    about as much as the round trip itself. An outcome is :meth:`send` without
    waiting; its reply is read by the next :meth:`run` or :meth:`confirm`, and
    whatever Redis may not have run (an error reply, a dropped connection, an
    outcome sent on an earlier connection) is run again, waiting: an outcome's
    script may run twice, to the same effect. Thread-safe; ``connect`` makes a
    new ``redis.Connection`` (``send_command``, ``read_response``, ``disconnect``).
    """

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._lock = threading.Lock()
        #: Scripts sent without waiting whose replies were not read yet, in order;
        #: the last ``_owed`` of them were sent on ``_conn``.
        self._unconfirmed: list[_Sent] = []
        self._owed = 0

    @property
    def unconfirmed(self) -> int:
        """How many scripts were sent whose replies were not read yet."""
        return len(self._unconfirmed)

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run script ``name`` and return its reply, confirming earlier sends first;
        raise ``RedisError``."""
        with self._lock:
            conn = self._connection()
            self._confirm(conn)
            return self._call(conn, name, keys, args)

    def send(self, sent: _Sent) -> None:
        """Send ``sent`` without waiting for its reply; raise ``RedisError`` if it cannot go.

        Should the send fail, what was unconfirmed and then ``sent`` itself are run
        again, waiting; ``sent`` is only kept for a later confirmation once it left.
        """
        with self._lock:
            conn = self._connection()
            if len(self._unconfirmed) >= MAX_UNCONFIRMED:
                self._confirm(conn)
            try:
                conn.send_command(
                    "EVALSHA", SHAS[sent.name], len(sent.keys), *sent.keys, *sent.args
                )
            except redis.RedisError:
                self._drop(conn)
                self._confirm(conn)
                self._call(conn, sent.name, sent.keys, sent.args)
                return
            except BaseException:  # interrupted mid-send: never reuse the connection
                self._drop(conn)
                raise
            self._unconfirmed.append(sent)
            self._owed += 1

    def confirm(self) -> None:
        """Wait until Redis has run every script sent; raise ``RedisError``."""
        with self._lock:
            if self._unconfirmed:
                self._confirm(self._connection())

    def forget(self, job_ids: set[str]) -> None:
        """Stop confirming the sends for ``job_ids`` (their outcomes are written elsewhere)."""
        with self._lock:
            self._unconfirmed = [s for s in self._unconfirmed if s.job_id not in job_ids]

    def _call(self, conn: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run one script and wait for its reply.

        A script Redis does not have (restarted, flushed) is sent whole once. A
        connection found closed (an idle timeout, a restart) is reopened and the
        call made once more, as redis-py's own retry would; any other error drops
        the connection and is raised.
        """
        for attempt in (1, 2):
            try:
                return self._eval(conn, name, keys, args)
            except redis.ConnectionError:
                self._drop(conn)
                if attempt == 2:
                    raise
            except BaseException:
                self._drop(conn)
                raise
        raise AssertionError("unreachable")

    def _drop(self, conn: Any) -> None:
        """Close ``conn``: the replies it owed are gone with it."""
        conn.disconnect()
        self._owed = 0

    def _confirm(self, conn: Any) -> None:
        """Read the replies owed (lock held); run again what Redis may not have run."""
        if not self._unconfirmed:
            return
        try:
            while self._owed:
                conn.read_response()
                self._owed -= 1
                self._unconfirmed.pop(len(self._unconfirmed) - self._owed - 1)
        except redis.RedisError:
            self._drop(conn)
        except BaseException:  # interrupted mid-reply (a soft time limit): never reuse it
            self._drop(conn)
            raise
        while self._unconfirmed:
            sent = self._unconfirmed[0]
            self._call(conn, sent.name, sent.keys, sent.args)
            self._unconfirmed.pop(0)

    @staticmethod
    def _eval(conn: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        conn.send_command("EVALSHA", SHAS[name], len(keys), *keys, *args)
        try:
            return conn.read_response()
        except redis.exceptions.NoScriptError:
            conn.send_command("EVAL", SCRIPTS[name], len(keys), *keys, *args)
            return conn.read_response()


@dataclass(frozen=True)
class GateClaim:
    """What the gate said about one delivery."""

    #: ``locked`` (this delivery holds the job), ``finished`` or ``busy``.
    verdict: str
    status: str | None = None
    deliveries: int = 0
    holder: Holder | None = None
    lease_left_s: float = 0.0
    #: Since when (epoch seconds) the gate remembers.
    since: float = 0.0


class Gate:
    """The gate on one Redis, with a client per process."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._client: redis.Redis | None = None
        self._pid = os.getpid()
        self._scripts: ScriptConnection | None = None
        self._epoch_set = False
        self._epoch_tried = -EPOCH_RETRY_S
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The Redis it uses (``cache_url`` by default)."""
        return self._url or get_settings().cache_url

    def client(self) -> redis.Redis:
        """This process's client (a forked child makes its own)."""
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = redis.Redis.from_url(
                    self.url, socket_connect_timeout=2, socket_timeout=5
                )
                self._pid = os.getpid()
                # The scripts' connection follows the client; a parent's unconfirmed
                # outcomes are the parent's to confirm.
                self._scripts = ScriptConnection(self._client.connection_pool.make_connection)
            return self._client

    def scripts(self) -> ScriptConnection:
        """This process's script connection (a forked child makes its own)."""
        self.client()
        assert self._scripts is not None
        return self._scripts

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run script ``name`` on this process's script connection; raise ``RedisError``."""
        return self.scripts().run(name, keys, args)

    @staticmethod
    def ttl_s() -> int:
        """How long a job's hash outlives its last delivery."""
        return int(get_settings().ledger.gate_ttl_s)

    def ensure_epoch(self) -> None:
        """Start the gate's memory now if it has none; never raises.

        A producer calls this before it publishes (once per process, in effect), so
        that messages published before any worker claimed are trusted. Should it
        fail, those messages are only checked in PostgreSQL as well.
        """
        if self._epoch_set and self._pid == os.getpid():
            return
        if time.monotonic() - self._epoch_tried < EPOCH_RETRY_S and self._pid == os.getpid():
            return
        self._epoch_tried = time.monotonic()
        try:
            client = self.client()
            client.set(SINCE, int(client.time()[0]), nx=True)
        except redis.RedisError as exc:
            logger.warning("delivery gate unreachable (%s); workers check PostgreSQL", exc)
            return
        self._epoch_set = True

    def claim(self, job_id: str, holder: Holder, lease_s: float) -> GateClaim:
        """Take ``job_id`` for one delivery unless it ended or another delivery holds it."""
        verdict, text, number, since = self._run(
            "claim",
            [job_key(job_id), lock_key(job_id), SINCE],
            [str(holder), int(lease_s * 1000), self.ttl_s()],
        )
        verdict, text = verdict.decode(), text.decode()
        if verdict == "finished":
            return GateClaim("finished", status=text, deliveries=int(number), since=float(since))
        if verdict == "busy":
            return GateClaim(
                "busy",
                holder=Holder.parse(text),
                lease_left_s=max(0, int(number)) / 1000,
                since=float(since),
            )
        return GateClaim("locked", deliveries=int(number), since=float(since))

    def steal(self, job_id: str, stale: Holder, holder: Holder, lease_s: float) -> int:
        """Take the lock from ``stale`` (dead); the deliveries now, or 0 if it moved on."""
        return int(
            self._run(
                "steal",
                [job_key(job_id), lock_key(job_id)],
                [str(stale), str(holder), int(lease_s * 1000), self.ttl_s()],
            )
        )

    def set_deliveries(self, job_id: str, deliveries: int) -> None:
        """Correct the delivery count from PostgreSQL's (the gate had forgotten the job)."""
        self.client().hset(job_key(job_id), "d", deliveries)

    def finish(
        self, job_id: str, holder: Holder, status: str, outcome: dict[str, Any] | None
    ) -> None:
        """Record that ``job_id`` ended with ``status`` and let go of it.

        The outcome is sent without waiting for Redis's reply; the next gate call of
        this process confirms it (see :class:`ScriptConnection`). Raises ``RedisError`` when
        it could not be sent at all.
        """
        self.scripts().send(
            _Sent(
                job_id,
                "finish",
                [job_key(job_id), lock_key(job_id), UNFLUSHED],
                [
                    str(holder),
                    status,
                    json.dumps(outcome or {}, default=str),
                    time.time(),
                    self.ttl_s(),
                    job_id,
                ],
            )
        )

    def confirm(self) -> None:
        """Wait until Redis has run every outcome this process sent; raise ``RedisError``."""
        self.scripts().confirm()

    def release(self, job_id: str, holder: Holder) -> None:
        """Let go of ``job_id`` without ending it (a retry is coming)."""
        self._run("release", [lock_key(job_id)], [str(holder)])

    def flushed(self, job_ids: Iterable[str]) -> None:
        """PostgreSQL has these outcomes now: drop them from the gate (keep the status)."""
        ids = list(job_ids)
        if not ids:
            return
        try:  # an outcome Redis runs after this would stay listed
            self.confirm()
        except redis.RedisError:
            self.scripts().forget(set(ids))  # PostgreSQL has these: not sent again
            raise
        pipe = self.client().pipeline(transaction=False)
        pipe.zrem(UNFLUSHED, *ids)
        for job_id in ids:
            pipe.hdel(job_key(job_id), "o", "w")
        pipe.execute()

    def mark(self, job_id: str, status: str) -> None:
        """Say ``job_id`` ended (cancelled) before any delivery ran it."""
        pipe = self.client().pipeline(transaction=True)
        pipe.hset(job_key(job_id), "s", status)
        pipe.expire(job_key(job_id), self.ttl_s())
        pipe.execute()

    def forget(self, job_id: str) -> None:
        """Forget ``job_id`` entirely (requeued or deleted: it starts afresh)."""
        self.client().delete(job_key(job_id), lock_key(job_id))
        self.client().zrem(UNFLUSHED, job_id)

    def unflushed(self, older_than_s: float, limit: int = 500) -> list[tuple[str, Holder | None]]:
        """Outcomes waiting for PostgreSQL longer than ``older_than_s``, with their writers."""
        client = self.client()
        ids = [
            _text(raw)
            for raw in client.zrangebyscore(
                UNFLUSHED, "-inf", time.time() - older_than_s, start=0, num=limit
            )
        ]
        if not ids:
            return []
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(job_key(job_id), "w")
        writers = pipe.execute()
        return [
            (job_id, Holder.parse(raw.decode()) if raw else None)
            for job_id, raw in zip(ids, writers, strict=True)
        ]

    def adopt(self, job_id: str) -> dict[str, Any] | None:
        """Take ``job_id``'s outcome over from its dead writer; None if another did."""
        client = self.client()
        if not client.zrem(UNFLUSHED, job_id):
            return None
        raw, status = client.hmget(job_key(job_id), ["o", "s"])
        outcome: dict[str, Any] = json.loads(raw) if raw else {}
        if status and "status" not in outcome:
            outcome["status"] = _text(status)
        return outcome

    def report_held(self, node: str, job_ids: Iterable[str]) -> None:
        """Say which jobs worker ``node`` holds now: received, reserved or running."""
        report = {"at": time.time(), "jobs": sorted(job_ids)}
        self.client().hset(HELD, node, json.dumps(report))

    def forget_held(self, node: str) -> None:
        """Worker ``node`` stopped: it holds nothing."""
        self.client().hdel(HELD, node)

    def held(self, within_s: float) -> set[str]:
        """The jobs workers said they held in the last ``within_s`` seconds; older reports
        (workers gone) are dropped. Reports carry their writer's clock."""
        client = self.client()
        now, jobs, stale = time.time(), set[str](), []
        for node, raw in client.hgetall(HELD).items():
            report = json.loads(raw)
            if now - report["at"] > within_s:
                stale.append(node)
            else:
                jobs.update(report["jobs"])
        if stale:
            client.hdel(HELD, *stale)
        return jobs

    def give_back(self, job_id: str) -> None:
        """Put an adopted outcome back for a later try (PostgreSQL refused it)."""
        self.client().zadd(UNFLUSHED, {job_id: time.time()})


gate = Gate()
