"""The gate's pipelined script connection, against a connection that behaves as Redis's
would (replies in order, lost with the connection), so every path runs without a server:
what was sent without waiting is confirmed before the next reply is read, and whatever
Redis may not have run is run again.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
import redis

from app.jobs.gate import SCRIPTS, SHAS, ScriptConnection, _Sent

NAMES = {sha: name for name, sha in SHAS.items()}


class Interrupted(BaseException):
    """What a soft time limit raises inside a blocking call."""


class FakeConnection:
    """Runs each script it is sent at once and queues its reply, as Redis does; like
    ``redis.Connection``, it connects again on the next send after a disconnect."""

    def __init__(self, server: FakeRedis) -> None:
        self.server = server
        self.replies: deque[Any] = deque()
        self.closed = False

    def send_command(self, command: str, script: str, nkeys: int, *rest: Any) -> None:
        if self.closed:
            self.closed = False
            self.server.reconnects += 1
        if self.server.fail_sends:
            self.server.fail_sends -= 1
            self.disconnect()
            raise redis.ConnectionError("connection reset while sending")
        if command == "EVALSHA" and script not in self.server.known:
            self.replies.append(redis.exceptions.NoScriptError("NOSCRIPT"))
            return
        name = (
            NAMES[script]
            if command == "EVALSHA"
            else next(n for n, source in SCRIPTS.items() if source == script)
        )
        self.server.known.add(SHAS[name])
        keys = list(rest[:nkeys])
        self.server.ran.append((name, keys[0]))
        self.replies.append(f"{name}:{keys[0]}")

    def read_response(self) -> Any:
        if self.server.interrupt_reads:
            self.server.interrupt_reads -= 1
            raise Interrupted()
        if self.server.drop_reads:
            self.server.drop_reads -= 1
            self.disconnect()
            raise redis.ConnectionError("connection lost")
        reply = self.replies.popleft()
        if isinstance(reply, Exception):
            raise reply
        return reply

    def disconnect(self) -> None:
        self.closed = True
        self.replies.clear()


class FakeRedis:
    """The server: what ran, in order, and faults to inject."""

    def __init__(self) -> None:
        self.known = set(SHAS.values())
        self.ran: list[tuple[str, str]] = []
        self.connections: list[FakeConnection] = []
        self.fail_sends = 0
        self.drop_reads = 0
        self.interrupt_reads = 0
        self.reconnects = 0

    def connect(self) -> FakeConnection:
        connection = FakeConnection(self)
        self.connections.append(connection)
        return connection


@pytest.fixture
def server() -> FakeRedis:
    return FakeRedis()


def outcome(job: str) -> _Sent:
    return _Sent(job, "finish", [f"job:{job}", f"lock:{job}", "unflushed"], ["holder", "completed"])


def test_a_reply_is_never_taken_for_an_earlier_sends(server: FakeRedis) -> None:
    scripts = ScriptConnection(server.connect)
    scripts.send(outcome("a"))
    scripts.send(outcome("b"))
    assert scripts.unconfirmed == 2
    assert scripts.run("claim", ["job:c"], []) == "claim:job:c"
    assert scripts.unconfirmed == 0
    assert server.ran == [("finish", "job:a"), ("finish", "job:b"), ("claim", "job:c")]


def test_a_script_redis_has_lost_is_sent_whole(server: FakeRedis) -> None:
    server.known.clear()  # SCRIPT FLUSH, or a restarted Redis
    scripts = ScriptConnection(server.connect)
    assert scripts.run("claim", ["job:a"], []) == "claim:job:a"
    assert server.ran == [("claim", "job:a")]


def test_an_outcome_refused_with_noscript_is_run_again_when_confirmed(server: FakeRedis) -> None:
    scripts = ScriptConnection(server.connect)
    server.known.clear()
    scripts.send(outcome("a"))  # refused: Redis did not run it
    assert server.ran == []
    scripts.confirm()
    assert server.ran == [("finish", "job:a")]
    assert scripts.unconfirmed == 0


def test_outcomes_whose_replies_were_lost_with_the_connection_are_run_again(
    server: FakeRedis,
) -> None:
    scripts = ScriptConnection(server.connect)
    scripts.send(outcome("a"))
    scripts.send(outcome("b"))
    server.drop_reads = 1  # the connection drops before the first reply is read
    assert scripts.run("claim", ["job:c"], []) == "claim:job:c"
    # Both may have run already; running an outcome twice has the same effect.
    assert server.ran == [
        ("finish", "job:a"),
        ("finish", "job:b"),
        ("finish", "job:a"),
        ("finish", "job:b"),
        ("claim", "job:c"),
    ]
    assert scripts.unconfirmed == 0


def test_a_send_that_fails_runs_it_again_waiting(server: FakeRedis) -> None:
    scripts = ScriptConnection(server.connect)
    scripts.send(outcome("a"))
    server.fail_sends = 1
    scripts.send(outcome("b"))
    assert ("finish", "job:b") in server.ran
    assert server.ran.count(("finish", "job:a")) >= 1
    assert scripts.unconfirmed == 0, "what failed to go was run, waiting"


def test_an_interrupted_read_drops_the_connection_and_keeps_the_outcomes(
    server: FakeRedis,
) -> None:
    scripts = ScriptConnection(server.connect)
    scripts.send(outcome("a"))
    server.interrupt_reads = 1
    with pytest.raises(Interrupted):
        scripts.confirm()
    assert server.connections[0].closed, "a half-read connection is never reused"
    assert not server.connections[0].replies
    assert scripts.unconfirmed == 1
    assert scripts.run("claim", ["job:c"], []) == "claim:job:c", "no stale reply"
    assert scripts.unconfirmed == 0


def test_sends_of_outcomes_written_elsewhere_are_not_confirmed(server: FakeRedis) -> None:
    server.known.clear()
    scripts = ScriptConnection(server.connect)
    scripts.send(outcome("a"))  # refused: would be run again at the next confirmation
    scripts.forget({"a"})
    scripts.confirm()
    assert server.ran == []
