"""Exports of catalog rows as CSV or JSON Lines, streamed in bounded memory.

:func:`write` reads the rows through a server-side cursor (:func:`store.exports.export_rows`),
``CHUNK_ROWS`` at a time, and writes each encoded row to a binary file object, so a
million-row export holds one chunk in memory. How a value is written:

* CSV: a header of the kind's columns, then one line per row (RFC 4180 quoting,
  ``\\r\\n`` line ends); NULL is the empty field.
* JSON Lines: one JSON object per line, keys in column order; NULL is ``null``.
* In both, a decimal (a price, a total) is its exact text (``"12.50"``: a JSON string,
  so no float rounds it), and a time is ISO 8601 with its UTC offset.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, BinaryIO, Literal

from sqlalchemy import Connection

from app.catalog import store

Format = Literal["csv", "jsonl"]
#: Each format's file extension and content type.
FORMATS: dict[str, tuple[str, str]] = {
    "csv": ("csv", "text/csv"),
    "jsonl": ("jsonl", "application/x-ndjson"),
}
#: Columns of each kind, in the order of the statement in :mod:`app.catalog.store.exports`.
COLUMNS: dict[str, tuple[str, ...]] = {
    "products": (
        "id", "category_id", "category", "name", "description", "price",
        "popularity_score", "quantity", "created_at", "updated_at", "deleted_at",
    ),
    "orders": ("id", "customer_id", "customer_email", "status", "total", "lines", "created_at"),
}  # fmt: skip
#: Rows fetched from the server-side cursor at a time.
CHUNK_ROWS = 1000


def plain(value: Any) -> Any:
    """A value as the export writes it: decimals and times as text, others as they are."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def header(fmt: Format, columns: Sequence[str]) -> bytes:
    """What a file of ``fmt`` starts with (CSV's header line; nothing for JSON Lines)."""
    return _csv_line(list(columns)) if fmt == "csv" else b""


def encode(fmt: Format, columns: Sequence[str], row: Mapping[str, Any]) -> bytes:
    """One row as a line of ``fmt``."""
    if fmt == "csv":
        return _csv_line(["" if row[c] is None else plain(row[c]) for c in columns])
    line = json.dumps({c: plain(row[c]) for c in columns}, ensure_ascii=False)
    return line.encode() + b"\n"


def _csv_line(values: list[Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue().encode()


def write(
    conn: Connection,
    out: BinaryIO,
    kind: str,
    filters: Mapping[str, Any],
    fmt: Format,
    *,
    progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> int:
    """Write the rows of ``kind`` that ``filters`` select to ``out`` in ``fmt``; told
    ``progress(done, total)`` after each chunk. Returns the rows written."""
    columns = COLUMNS[kind]
    total = store.exports.export_count(conn, kind, filters)
    out.write(header(fmt, columns))
    done = 0
    for chunk in store.exports.export_rows(conn, kind, filters, chunk_rows):
        out.write(b"".join(encode(fmt, columns, row) for row in chunk))
        done += len(chunk)
        if progress is not None:
            progress(done, max(total, done))
    return done
