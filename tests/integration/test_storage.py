"""File storage against the real database and a temporary root: bytes on disk, one row each.

Every test uses a root of its own under pytest's ``tmp_path`` and an empty
``stored_files`` table; the size limit is small (a few chunks) so that over-size and
chunked streams are cheap to produce.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.celery import app
from app.db import engine
from app.errors import (
    FileTooLarge,
    InvalidLink,
    InvalidStorageName,
    StoredFileExists,
    StoredFileNotFound,
)
from app.storage import LocalStorage, StoredFile, links
from app.storage import files as storage_files
from beat.service import ScheduleService
from config.settings import get_settings
from tasks import storage as storage_tasks

CHUNK = storage_files.CHUNK_BYTES
#: Three and a half chunks: a file at the limit takes several reads and writes.
LIMIT = CHUNK * 3 + CHUNK // 2
SECRET = "integration-test-secret"


@pytest.fixture(autouse=True)
def empty_table() -> Iterator[None]:
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE stored_files"))
    yield
    with engine().begin() as conn:
        conn.execute(text("TRUNCATE stored_files"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def files(root: Path) -> LocalStorage:
    return LocalStorage(
        root,
        secret=SECRET,
        max_file_bytes=LIMIT,
        retention=timedelta(days=30),
        link_lifetime_s=3600,
    )


class Stream:
    """A binary file-like object of ``size`` pseudo-random bytes that records each read
    and may run ``during`` once, at its second read."""

    def __init__(self, size: int, during: Callable[[], None] | None = None) -> None:
        self.data = os.urandom(size)
        self.offset = 0
        self.reads: list[int] = []
        self.during = during

    def read(self, size: int = -1, /) -> bytes:
        self.reads.append(size)
        if len(self.reads) == 2 and self.during is not None:
            self.during()
        end = len(self.data) if size < 0 else self.offset + size
        chunk, self.offset = self.data[self.offset : end], min(end, len(self.data))
        return chunk


def rows() -> list[dict[str, Any]]:
    """Every row of ``stored_files``, by name."""
    with engine().connect() as conn:
        return [
            dict(row)
            for row in conn.execute(text("SELECT * FROM stored_files ORDER BY name")).mappings()
        ]


def on_disk(root: Path) -> set[str]:
    """Every file under ``root``, as a path relative to it (temporary ones included)."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_a_saved_file_reads_back_exactly_and_its_row_says_what_it_is(
    files: LocalStorage, root: Path
) -> None:
    data = b"sku,on_hand\n" + b"A-1,7\n" * 1000
    job = uuid.uuid4()
    before = datetime.now(UTC)

    stored = files.save("reports/2026-12-02/inventory.csv", data, job_id=str(job))

    [row] = rows()
    assert row["id"] == stored.id
    assert row["name"] == "reports/2026-12-02/inventory.csv"
    assert row["size_bytes"] == len(data)
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    assert row["content_type"] == "text/csv"
    assert row["job_id"] == job
    assert before - timedelta(seconds=5) <= row["created_at"] <= datetime.now(UTC)
    expected_expiry = before + timedelta(days=30)
    assert abs(row["expires_at"] - expected_expiry) < timedelta(seconds=5)
    assert stored == files.info("reports/2026-12-02/inventory.csv")
    assert stored.filename == "inventory.csv"
    assert (root / "reports" / "2026-12-02" / "inventory.csv").read_bytes() == data
    with files.open("reports/2026-12-02/inventory.csv") as handle:
        assert handle.read() == data
    assert files.exists("reports/2026-12-02/inventory.csv")
    assert not files.exists("reports/2026-12-02/other.csv")
    assert files.find(stored.id) == stored


def test_a_given_content_type_and_expiry_are_kept(files: LocalStorage) -> None:
    expires = datetime(2031, 1, 1, tzinfo=UTC)
    stored = files.save(
        "exports/blob", b"\x00\x01", content_type="application/x-custom", expires_at=expires
    )
    [row] = rows()
    assert (row["content_type"], row["expires_at"], row["job_id"]) == (
        "application/x-custom",
        expires,
        None,
    )
    assert stored.expires_at == expires
    assert files.save("exports/unknown.zzz", b"?").content_type == "application/octet-stream"


def test_a_stream_is_read_in_bounded_chunks_while_its_size_and_sha256_are_counted(
    files: LocalStorage,
) -> None:
    stream = Stream(CHUNK * 2 + 12345)

    stored = files.save("exports/big.bin", stream)

    assert stream.reads and all(0 < size <= CHUNK for size in stream.reads)
    assert len(stream.reads) == 4  # three reads with bytes, one that finds the end
    assert stored.size_bytes == len(stream.data)
    assert stored.sha256 == hashlib.sha256(stream.data).hexdigest()
    with files.open("exports/big.bin") as handle:
        assert handle.read() == stream.data


def test_a_file_of_exactly_the_limit_is_stored(files: LocalStorage) -> None:
    assert files.save("exports/limit.bin", Stream(LIMIT)).size_bytes == LIMIT
    assert files.save("exports/limit-bytes.bin", b"x" * LIMIT).size_bytes == LIMIT


@pytest.mark.parametrize("kind", ["bytes", "stream"])
def test_an_over_size_file_is_refused_naming_the_limit_and_leaves_nothing(
    files: LocalStorage, root: Path, kind: str
) -> None:
    stream = Stream(LIMIT * 3)
    data = stream.data[: LIMIT + 1] if kind == "bytes" else stream

    with pytest.raises(FileTooLarge) as refused:
        files.save("exports/huge.bin", data)

    assert f"over the limit of {LIMIT} bytes" in str(refused.value)
    assert "'exports/huge.bin'" in str(refused.value)
    assert rows() == []
    assert on_disk(root) == set()
    if kind == "stream":
        # Not read to its end: reading stopped within a chunk past the limit.
        assert sum(stream.reads) <= LIMIT + CHUNK < len(stream.data)


def test_a_reader_never_sees_a_half_written_file_or_its_row(
    files: LocalStorage, root: Path
) -> None:
    final = root / "exports" / "atomic.bin"
    seen: dict[str, object] = {}

    def look() -> None:
        seen["file"] = final.exists()
        seen["row"] = files.exists("exports/atomic.bin")
        seen["partials"] = [p.name for p in (root / ".partial").iterdir()]

    stream = Stream(CHUNK * 2, during=look)
    files.save("exports/atomic.bin", stream)

    assert seen["file"] is False and seen["row"] is False
    assert len(seen["partials"]) == 1  # type: ignore[arg-type]
    assert final.read_bytes() == stream.data
    assert on_disk(root) == {"exports/atomic.bin"}


def test_a_stream_that_fails_midway_leaves_nothing(files: LocalStorage, root: Path) -> None:
    def fail() -> None:
        raise OSError("the upstream connection dropped")

    with pytest.raises(OSError, match="upstream"):
        files.save("exports/broken.bin", Stream(CHUNK * 2, during=fail))
    assert rows() == []
    assert on_disk(root) == set()


def test_a_replace_keeps_the_old_bytes_whole_until_the_new_ones_take_their_place(
    files: LocalStorage, root: Path
) -> None:
    old = files.save("reports/daily.csv", b"old,bytes\n" * 100)
    token = files.link(old).removeprefix("files/")
    seen: list[bytes] = []
    stream = Stream(
        CHUNK * 2, during=lambda: seen.append((root / "reports/daily.csv").read_bytes())
    )

    with pytest.raises(StoredFileExists, match="replace=True"):
        files.save("reports/daily.csv", b"new")
    new = files.save("reports/daily.csv", stream, replace=True)

    assert seen == [b"old,bytes\n" * 100]
    assert new.id != old.id
    assert [row["id"] for row in rows()] == [new.id]
    with files.open("reports/daily.csv") as handle:
        assert handle.read() == stream.data
    with pytest.raises(InvalidLink) as refused:
        files.resolve(token)  # the old file's link
    assert refused.value.reason == storage_files.GONE
    assert on_disk(root) == {"reports/daily.csv"}


def test_two_saves_of_one_name_leave_one_file_and_one_row(files: LocalStorage, root: Path) -> None:
    # The second save starts while the first streams, past the early check of the name:
    # the unique index decides, and the loser's bytes go.
    def rival() -> None:
        files.save("exports/race.csv", b"rival")

    with pytest.raises(StoredFileExists):
        files.save("exports/race.csv", Stream(CHUNK * 2, during=rival))
    [row] = rows()
    assert row["size_bytes"] == len(b"rival")
    assert (root / "exports/race.csv").read_bytes() == b"rival"
    assert on_disk(root) == {"exports/race.csv"}


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "reports/\x00.csv", ".partial/x"])
def test_a_bad_name_is_refused_before_anything_is_written(
    files: LocalStorage, root: Path, name: str
) -> None:
    with pytest.raises(InvalidStorageName):
        files.save(name, b"x")
    assert rows() == []
    assert not root.exists() or on_disk(root) == set()


def test_a_name_through_a_link_out_of_the_root_is_refused(
    files: LocalStorage, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / "exports").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidStorageName, match="outside the storage root"):
        files.save("exports/x.csv", b"x")
    assert list(outside.iterdir()) == []
    assert rows() == []


def test_a_file_and_a_folder_cannot_share_a_name(files: LocalStorage) -> None:
    files.save("reports/a.csv", b"a")
    with pytest.raises(InvalidStorageName, match="folder"):
        files.save("reports", b"x")
    with pytest.raises(InvalidStorageName, match=r"'reports/a\.csv' is a stored file"):
        files.save("reports/a.csv/b.csv", b"x")
    assert [row["name"] for row in rows()] == ["reports/a.csv"]


def test_files_are_listed_by_prefix_with_wildcards_taken_literally(files: LocalStorage) -> None:
    for name in (
        "reports/2026-12-02/b.csv",
        "reports/2026-12-01/a.csv",
        "reports_old/c.csv",
        "exports/d.csv",
        "re%ports/e.csv",
        "re_ports/f.csv",
    ):
        files.save(name, name.encode())

    def listed(prefix: str) -> list[str]:
        return [stored.name for stored in files.list_files(prefix)]

    assert listed("reports/") == ["reports/2026-12-01/a.csv", "reports/2026-12-02/b.csv"]
    assert listed("reports/2026-12-02") == ["reports/2026-12-02/b.csv"]
    assert listed("reports") == [
        "reports/2026-12-01/a.csv",
        "reports/2026-12-02/b.csv",
        "reports_old/c.csv",
    ]
    assert listed("re%") == ["re%ports/e.csv"]
    assert listed("re_") == ["re_ports/f.csv"]
    assert listed("nothing/") == []
    assert len(listed("")) == 6
    assert all(isinstance(stored, StoredFile) for stored in files.list_files())


def test_a_deleted_file_goes_with_its_row_and_its_empty_folders(
    files: LocalStorage, root: Path
) -> None:
    files.save("reports/2026-12-02/a.csv", b"a")
    files.save("reports/2026-12-03/b.csv", b"b")

    assert files.delete("reports/2026-12-02/a.csv") is True

    assert [row["name"] for row in rows()] == ["reports/2026-12-03/b.csv"]
    assert on_disk(root) == {"reports/2026-12-03/b.csv"}
    assert not (root / "reports" / "2026-12-02").exists()
    assert not files.exists("reports/2026-12-02/a.csv")
    with pytest.raises(StoredFileNotFound, match=r"reports/2026-12-02/a\.csv"):
        files.open("reports/2026-12-02/a.csv")
    assert files.delete("reports/2026-12-02/a.csv") is False
    assert files.delete("reports/2026-12-03/b.csv") is True
    assert not (root / "reports").exists() and root.exists()


def test_a_link_resolves_to_its_file_until_it_or_the_file_expires(files: LocalStorage) -> None:
    now = datetime.now(UTC)
    short = files.save("exports/short.csv", b"s", expires_at=now + timedelta(minutes=10))
    link = files.link(short, lifetime_s=86400)
    token = link.removeprefix(storage_files.LINK_PREFIX)

    assert link.startswith("files/")
    assert files.resolve(token) == short
    # A link never outlives its file: this one was cut to the file's ten minutes.
    assert int(token.split(".")[1]) == int(short.expires_at.timestamp())
    with pytest.raises(InvalidLink) as refused:
        files.resolve(token, now=now + timedelta(minutes=11))
    assert refused.value.reason == links.EXPIRED
    files.delete("exports/short.csv")
    with pytest.raises(InvalidLink) as refused:
        files.resolve(token)
    assert refused.value.reason == storage_files.GONE


def test_the_retention_task_deletes_exactly_the_expired_files_in_batches(
    files: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    expired = {f"exports/2026-11-0{day}/old.csv": now - timedelta(days=day) for day in (1, 2, 3)}
    kept = {
        "exports/2026-12-02/new.csv": now + timedelta(days=1),
        "exports/2026-11-01/still.csv": now + timedelta(minutes=5),
    }
    for name, expires in {**expired, **kept}.items():
        files.save(name, name.encode(), expires_at=expires)
    (root / "exports/2026-11-03/old.csv").unlink()  # its bytes lost already
    partial = root / ".partial"
    dead, live = partial / "dead.part", partial / "live.part"
    dead.write_bytes(b"x")
    live.write_bytes(b"y")
    two_days_ago = time.time() - 2 * 86400
    os.utime(dead, (two_days_ago, two_days_ago))
    monkeypatch.setenv("CONVEYOR_STORAGE__ROOT", str(root))
    monkeypatch.setattr(storage_tasks, "BATCH", 2)
    calls: list[int] = []
    batch = LocalStorage.purge_expired

    def counted(self: LocalStorage, limit: int) -> storage_files.PurgedFiles:
        calls.append(limit)
        return batch(self, limit)

    monkeypatch.setattr(LocalStorage, "purge_expired", counted)
    get_settings.cache_clear()
    try:
        counts = storage_tasks.purge_expired.run()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()

    assert counts == {
        "files": 3,
        "bytes": sum(len(name) for name in expired),
        "missing": 1,
        "partials": 1,
    }
    assert calls == [2, 2]  # a full batch, then the rest
    assert sorted(row["name"] for row in rows()) == sorted(kept)
    assert on_disk(root) == {*kept, ".partial/live.part"}
    assert not (root / "exports/2026-11-02").exists()  # emptied, so pruned
    assert storage_tasks.purge_expired.name == "storage.purge_expired"


def test_the_purge_is_a_nightly_default_schedule_on_the_background_queue() -> None:
    schedules = (
        "TRUNCATE conveyor_schedule, conveyor_schedule_fire, django_celery_beat_periodictask, "
        "django_celery_beat_crontabschedule CASCADE"
    )
    with engine().begin() as conn:
        conn.execute(text(schedules))
    try:
        service = ScheduleService()
        assert service.sync_defaults()["purge expired files"] == "created"
        schedule = service.get("purge expired files")
        assert (schedule["task"], schedule["cron"], schedule["enabled"]) == (
            "storage.purge_expired",
            "45 2 * * *",
            True,
        )
        route = app.amqp.router.route({}, "storage.purge_expired")
        assert route["queue"].name == "background"
    finally:
        with engine().begin() as conn:
            conn.execute(text(schedules))
