"""LocalStorage: files under a root directory, each with its metadata row in PostgreSQL.

A file lives at ``root / name`` (:mod:`app.storage.names` keeps that inside the root).
``save`` streams the bytes in chunks into a temporary file under ``root/.partial``,
counting and hashing them as they pass, and refuses the file the moment it passes
``storage.max_file_bytes``. Complete, the file is flushed to disk and, inside the
transaction that inserts its row, renamed into place: a reader finds the row only once
the whole file is there, and a failed save leaves neither. ``delete`` and the retention
purge remove the file while the row's delete is still uncommitted, so a save of the
same name (which waits for that row at the unique index) cannot have its new file taken
by them.

What a crash can leave: a process killed in a save leaves its temporary file under
``.partial`` (the purge sweeps those after a day), or, killed between the rename and
the commit, a file without a row, which no reader sees and the next save of the name
overwrites.
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy import Engine

from app.db import engine
from app.errors import (
    FileTooLarge,
    InvalidLink,
    InvalidStorageName,
    StoredFileExists,
    StoredFileNotFound,
)
from app.storage import links, names, store
from app.storage.store import StoredFile
from config.settings import Settings, get_settings

#: Bytes read and written at a time: what a save holds in memory, whatever the file's size.
CHUNK_BYTES = 1024 * 1024
#: Folder under the root for files still being written (names cannot begin with a dot).
PARTIAL = ".partial"
#: What a download link's path starts with; the web process routes it (app/web/urls.py).
LINK_PREFIX = "files/"
#: The reason a valid link's file cannot be served (deleted, purged, or its bytes lost).
GONE = "this file is no longer available"
#: Content type of a file whose saver named none and whose name suggests none.
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class Readable(Protocol):
    """A binary file-like object: what ``save`` reads a file from besides bytes."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end."""
        ...


#: What ``save`` stores: bytes, or a binary file-like object read to its end.
Data = bytes | bytearray | memoryview | Readable


@dataclass(frozen=True)
class PurgedFiles:
    """What one batch of the retention purge deleted."""

    #: Rows deleted (each an expired file).
    files: int
    #: Bytes those rows said their files held.
    bytes: int
    #: Rows whose file was already gone from the disk.
    missing: int


class LocalStorage:
    """Stored files on the local filesystem, metadata in PostgreSQL, signed download links."""

    def __init__(
        self,
        root: Path,
        *,
        secret: str,
        max_file_bytes: int,
        retention: timedelta,
        link_lifetime_s: int,
        db: Engine | None = None,
    ) -> None:
        self.root = root.resolve()
        self.secret = secret
        self.max_file_bytes = max_file_bytes
        self.retention = retention
        self.link_lifetime_s = link_lifetime_s
        self.db = db or engine()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> LocalStorage:
        """The storage ``storage.*`` describes, its links signed with ``web.secret_key``."""
        settings = settings or get_settings()
        section = settings.storage
        return cls(
            section.root,
            secret=settings.web.secret_key,
            max_file_bytes=section.max_file_bytes,
            retention=timedelta(days=section.retention_days),
            link_lifetime_s=section.link_lifetime_s,
        )

    # -- files --------------------------------------------------------------------------

    def save(
        self,
        name: str,
        data: Data,
        *,
        content_type: str | None = None,
        expires_at: datetime | None = None,
        job_id: uuid.UUID | str | None = None,
        replace: bool = False,
    ) -> StoredFile:
        """Store ``data`` (bytes, or a binary file-like object read to its end) as ``name``.

        ``content_type`` defaults to what the name's extension suggests; ``expires_at``
        (aware) to now plus ``storage.retention_days``; ``job_id`` is the job saving it
        (a task's ``self.request.id``). A name already stored is
        :class:`~app.errors.StoredFileExists` unless ``replace``, which swaps file and
        row in one step (links to the old file stop working; should the commit fail after
        the swap, the old row stays with the new bytes). Refused:
        :class:`~app.errors.InvalidStorageName`, :class:`~app.errors.FileTooLarge`; a
        refused or failed save leaves nothing behind.
        """
        path = self._path(name)
        if not replace and self.exists(name):
            raise StoredFileExists(name)  # before the bytes are read (the index decides)
        if expires_at is not None and expires_at.tzinfo is None:
            raise ValueError(f"expires_at {expires_at!r} has no time zone")
        if (
            isinstance(data, bytes | bytearray | memoryview)
            and memoryview(data).nbytes > self.max_file_bytes
        ):
            raise FileTooLarge(name, self.max_file_bytes)
        row = {
            "id": uuid.uuid4(),
            "name": name,
            "content_type": content_type or mimetypes.guess_type(name)[0] or DEFAULT_CONTENT_TYPE,
            "expires_at": expires_at or datetime.now(UTC) + self.retention,
            "job_id": _job_id(job_id),
        }
        partial = self.root / PARTIAL
        partial.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=partial, suffix=".part")
        placed: int | None = None  # the inode renamed into place, until the commit
        try:
            with os.fdopen(fd, "wb") as out:
                row["size_bytes"], row["sha256"] = self._write(name, data, out)
                out.flush()
                os.fsync(out.fileno())
            with self.db.begin() as conn:
                if replace and (old := store.by_name(conn, name, lock=True)) is not None:
                    store.remove(conn, old.id)
                stored = store.add(conn, row)
                placed = self._place(name, Path(temporary), path)
            placed = None
            return stored
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            if placed is not None and not replace:
                # The commit failed after the rename: take back the file, unless another
                # save of the name has put its own there since.
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_ino == placed:
                        path.unlink()

    def open(self, name: str) -> BinaryIO:
        """The bytes of ``name``, to read (and close); :class:`StoredFileNotFound` if none."""
        return self.open_file(self.info(name))

    def open_file(self, stored: StoredFile) -> BinaryIO:
        """The bytes of a file found by :meth:`info`, :meth:`find` or :meth:`list_files`."""
        try:
            return self._path(stored.name, check=False).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise StoredFileNotFound(stored.name) from None

    def info(self, name: str) -> StoredFile:
        """The metadata of ``name``; :class:`StoredFileNotFound` if nothing is stored so."""
        names.check(name)
        with self.db.connect() as conn:
            stored = store.by_name(conn, name)
        if stored is None:
            raise StoredFileNotFound(name)
        return stored

    def find(self, file_id: uuid.UUID) -> StoredFile | None:
        """The metadata of the file with this id, or None."""
        with self.db.connect() as conn:
            return store.by_id(conn, file_id)

    def exists(self, name: str) -> bool:
        """True when a file is stored as ``name`` (expired ones too, until purged)."""
        names.check(name)
        with self.db.connect() as conn:
            return store.by_name(conn, name) is not None

    def list_files(self, prefix: str = "") -> list[StoredFile]:
        """The files whose name starts with ``prefix`` (``"reports/"``), by name."""
        names.check_prefix(prefix)
        with self.db.connect() as conn:
            return store.with_prefix(conn, prefix)

    def delete(self, name: str) -> bool:
        """Delete ``name``'s file and row; False if nothing was stored so."""
        path = self._path(name)
        with self.db.begin() as conn:
            stored = store.by_name(conn, name, lock=True)
            if stored is None:
                return False
            store.remove(conn, stored.id)
            self._unlink(path)
        return True

    # -- retention ----------------------------------------------------------------------

    def purge_expired(self, limit: int) -> PurgedFiles:
        """Delete up to ``limit`` expired files and their rows, in one transaction."""
        removed = missing = size = 0
        with self.db.begin() as conn:
            for stored in store.take_expired(conn, limit):
                removed += 1
                size += stored.size_bytes
                try:
                    path = self._path(stored.name, check=False)
                except InvalidStorageName:
                    # A folder was turned into a link out of the root since the save: the
                    # row goes, and nothing outside the root is touched.
                    missing += 1
                    continue
                missing += not self._unlink(path)
        return PurgedFiles(files=removed, bytes=size, missing=missing)

    def sweep_partials(self, older_than_s: float) -> int:
        """Delete temporary files of saves that died more than ``older_than_s`` ago."""
        cutoff = time.time() - older_than_s
        swept = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root / PARTIAL) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        swept += 1
        return swept

    # -- links --------------------------------------------------------------------------

    def link(
        self, stored: StoredFile, lifetime_s: int | None = None, now: datetime | None = None
    ) -> str:
        """The path of a download link to ``stored`` (``files/<token>``, to put after the web
        process's address), valid ``lifetime_s`` (``storage.link_lifetime_s``) and never
        past the file's own expiry."""
        now = now or datetime.now(UTC)
        lifetime = timedelta(seconds=self.link_lifetime_s if lifetime_s is None else lifetime_s)
        expires = min(now + lifetime, stored.expires_at)
        return LINK_PREFIX + links.sign(stored.id, int(expires.timestamp()), self.secret)

    def resolve(self, token: str, now: datetime | None = None) -> StoredFile:
        """The file a download token stands for; :class:`~app.errors.InvalidLink` saying why
        if it is malformed, altered, expired, or its file is gone or expired."""
        now = now or datetime.now(UTC)
        stored = self.find(links.verify(token, self.secret, now.timestamp()))
        if stored is None:
            raise InvalidLink(GONE)
        if stored.expired(now):
            raise InvalidLink(links.EXPIRED)
        return stored

    # -- the disk -----------------------------------------------------------------------

    def _path(self, name: str, check: bool = True) -> Path:
        """``name``'s path; with ``check``, refused unless it is a place a file can go."""
        path = names.resolve(self.root, name)
        if not check:
            return path
        if path.is_dir():
            raise InvalidStorageName(name, "it is a folder of other stored files")
        for parent in path.relative_to(self.root).parents:
            if (self.root / parent).is_file():
                raise InvalidStorageName(name, f"{parent.as_posix()!r} is a stored file")
        return path

    def _write(self, name: str, data: Data, out: BinaryIO) -> tuple[int, str]:
        """Write ``data`` to ``out`` chunk by chunk; its size and hex SHA-256."""
        digest = hashlib.sha256()
        size = 0
        for chunk in _chunks(data):
            size += len(chunk)
            if size > self.max_file_bytes:
                raise FileTooLarge(name, self.max_file_bytes)
            digest.update(chunk)
            out.write(chunk)
        return size, digest.hexdigest()

    def _place(self, name: str, temporary: Path, path: Path) -> int:
        """Rename the finished file into place; the inode it is."""
        attempts = 0
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temporary, path)
                return path.stat().st_ino
            except FileNotFoundError:
                # A delete beside this save pruned the folder just made; make it again.
                attempts += 1
                if attempts == 3 or not temporary.exists():
                    raise
            except (IsADirectoryError, NotADirectoryError, FileExistsError):
                raise InvalidStorageName(
                    name, "it, or one of its folders, is taken by another stored file"
                ) from None

    def _unlink(self, path: Path) -> bool:
        """Remove a file and the folders it leaves empty, up to the root; False if it was
        already gone."""
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        finally:
            folder = path.parent
            while folder != self.root and folder.is_relative_to(self.root):
                try:
                    folder.rmdir()
                except OSError:
                    break
                folder = folder.parent
        return True


def _job_id(job_id: uuid.UUID | str | None) -> uuid.UUID | None:
    """A job's id as a UUID; ValueError naming it when it is not one."""
    if job_id is None or isinstance(job_id, uuid.UUID):
        return job_id
    try:
        return uuid.UUID(job_id)
    except ValueError:
        raise ValueError(f"job_id {job_id!r} is not a job's id (a UUID)") from None


def _chunks(data: Data) -> Iterator[bytes | bytearray | memoryview]:
    """``data`` in pieces of at most :data:`CHUNK_BYTES`."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data).cast("B")
        for start in range(0, len(view), CHUNK_BYTES):
            yield view[start : start + CHUNK_BYTES]
        return
    while chunk := data.read(CHUNK_BYTES):
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"save() reads bytes, got {type(chunk).__name__}: open it with 'rb'")
        yield chunk
