"""Every statement on ``stored_files``, the metadata of stored files (SQLAlchemy Core).

One row per file: its name (unique), content type, size, SHA-256, when it was made, when
it expires, and the job that made it. Functions take the caller's connection, so a
caller's transaction spans them; :mod:`app.storage.files` holds one open while it moves
a file into place, so a row and its file appear together. The driver's unique violation
on the name becomes :class:`~app.errors.StoredFileExists` here. Migrations aside
(``0009_storage``), no other module writes SQL on this table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.exc import IntegrityError

from app.errors import StoredFileExists

#: The unique index on names (``text_pattern_ops``, so it also serves prefix listings).
NAME_INDEX = "ux_stored_files_name"

metadata = MetaData()

#: The table as 0009_storage creates it.
FILES = Table(
    "stored_files",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", String(1024), nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("job_id", UUID(as_uuid=True), nullable=True),
)


@dataclass(frozen=True)
class StoredFile:
    """One stored file's metadata, as its row holds it."""

    id: uuid.UUID
    #: Its path under the storage root, ``reports/2026-12-02/inventory.csv``.
    name: str
    content_type: str
    size_bytes: int
    #: Hex SHA-256 of the bytes, computed while they were written.
    sha256: str
    created_at: datetime
    #: When ``storage.purge_expired`` may delete it; no download link outlives it.
    expires_at: datetime
    #: The job that saved it, if a task did.
    job_id: uuid.UUID | None

    @property
    def filename(self) -> str:
        """The name's last part, as a download offers to save it."""
        return PurePosixPath(self.name).name

    def expired(self, now: datetime) -> bool:
        """True once ``now`` reached its expiry."""
        return self.expires_at <= now


def _file(row: Any) -> StoredFile:
    return StoredFile(**{column.name: row[column.name] for column in FILES.columns})


def add(conn: Connection, row: dict[str, Any]) -> StoredFile:
    """-- add_file -- insert one row (every column but ``created_at``, which is the
    database's ``now()``); :class:`StoredFileExists` if the name is taken. On that error
    the caller's transaction is aborted and must be rolled back."""
    try:
        created = conn.execute(
            insert(FILES).values(created_at=func.now(), **row).returning(*FILES.columns)
        ).one()
    except IntegrityError as exc:
        diag = getattr(exc.orig, "diag", None)
        if getattr(diag, "constraint_name", None) == NAME_INDEX:
            raise StoredFileExists(row["name"]) from None
        raise
    return _file(created._mapping)


def by_name(conn: Connection, name: str, lock: bool = False) -> StoredFile | None:
    """-- file_by_name -- the row of ``name``, locked until the transaction ends with
    ``lock``; None if there is none."""
    query = select(FILES).where(FILES.c.name == name)
    row = conn.execute(query.with_for_update() if lock else query).mappings().first()
    return None if row is None else _file(row)


def by_id(conn: Connection, file_id: uuid.UUID) -> StoredFile | None:
    """-- file_by_id -- the row of ``file_id``, or None."""
    row = conn.execute(select(FILES).where(FILES.c.id == file_id)).mappings().first()
    return None if row is None else _file(row)


def with_prefix(conn: Connection, prefix: str) -> list[StoredFile]:
    """-- files_with_prefix -- the rows whose name starts with ``prefix`` (``%`` and ``_``
    in it are literal), by name."""
    query = select(FILES).order_by(FILES.c.name)
    if prefix:
        query = query.where(FILES.c.name.startswith(prefix, autoescape=True))
    return [_file(row) for row in conn.execute(query).mappings()]


def remove(conn: Connection, file_id: uuid.UUID) -> StoredFile | None:
    """-- remove_file -- delete the row of ``file_id``; the row it was, or None."""
    row = (
        conn.execute(delete(FILES).where(FILES.c.id == file_id).returning(*FILES.columns))
        .mappings()
        .first()
    )
    return None if row is None else _file(row)


def take_expired(conn: Connection, limit: int) -> list[StoredFile]:
    """-- take_expired_files -- delete up to ``limit`` rows whose expiry is past (the
    database's ``now()``), oldest expiry first; the rows they were. Rows another
    transaction holds (a purge beside this one, a replace) are skipped."""
    doomed = (
        select(FILES.c.id)
        .where(FILES.c.expires_at <= func.now())
        .order_by(FILES.c.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    deleted = conn.execute(
        delete(FILES).where(FILES.c.id.in_(doomed)).returning(*FILES.columns)
    ).mappings()
    return [_file(row) for row in deleted]
