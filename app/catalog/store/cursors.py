"""Where each incremental job stopped (``catalog_cursors``): one position per job name."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, text

#: -- load_cursor --: where an incremental job stopped (NULL: from the start).
LOAD_CURSOR = text("SELECT position FROM catalog_cursors WHERE name = :name")
#: -- save_cursor --: move a job's cursor forward, never back (two runs may race).
SAVE_CURSOR = text("""
INSERT INTO catalog_cursors AS c (name, position) VALUES (:name, :position)
ON CONFLICT (name) DO UPDATE SET position = greatest(c.position, EXCLUDED.position),
                                 updated_at = now()
RETURNING c.position
""")


def load_cursor(conn: Connection, name: str) -> datetime | None:
    """Where the incremental job ``name`` stopped, or None before its first run."""
    value: datetime | None = conn.execute(LOAD_CURSOR, {"name": name}).scalar()
    return value


def save_cursor(conn: Connection, name: str, position: datetime | None) -> datetime | None:
    """Move ``name``'s cursor to ``position`` unless it is already further; where it is."""
    value: datetime | None = conn.execute(
        SAVE_CURSOR, {"name": name, "position": position}
    ).scalar_one()
    return value
