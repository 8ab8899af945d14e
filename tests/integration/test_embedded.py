"""The embedded servers `make run` uses are real, start fast and keep their data."""

from __future__ import annotations

from pathlib import Path

import psycopg
import redis

from app.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, port_open


def test_embedded_postgres_keeps_its_data_across_restarts(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", free_port())
    server.start()
    try:
        server.create_database("conveyor")
        url = f"postgresql://postgres@127.0.0.1:{server.port}/conveyor"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        server.stop()
        assert not port_open("127.0.0.1", server.port)
        server.start()
        server.create_database("conveyor")  # idempotent
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
    finally:
        server.stop()
    assert not port_open("127.0.0.1", server.port)


def test_embedded_redis_is_append_only_and_never_evicts(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", free_port())
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.rpush("jobs", "a", "b")
        client.close()
        server.stop()
        server.start()
        client = redis.Redis.from_url(server.url)
        assert client.lrange("jobs", 0, -1) == [b"a", b"b"], "the append-only file restored it"
        client.close()
    finally:
        server.stop()
    assert not port_open("127.0.0.1", server.port)
