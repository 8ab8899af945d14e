"""Stored names: plain relative paths under the storage root, checked before any disk access.

A name is what callers and the metadata table call a file, ``reports/2026-12-02/inventory.csv``:
``/``-separated parts, each a real file or folder name. It maps onto the disk as
``root / name``, so every rule here is about keeping that path inside the root: no
absolute path, no ``..``, no NUL, no part that begins with a dot (hidden files and the
root's ``.partial`` folder of unfinished writes are storage's own), and nothing that
resolves outside the root once symbolic links are followed.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path, PurePosixPath

from app.errors import InvalidStorageName

#: Longest name accepted, characters (the metadata column's width).
MAX_NAME_CHARS = 1024
#: Longest part of a name, bytes once encoded (most file systems' limit).
MAX_PART_BYTES = 255


def check(name: str) -> str:
    """``name`` if it is a plain relative path (the rules above), else
    :class:`InvalidStorageName` naming it and the rule it breaks."""
    if not isinstance(name, str) or not name:
        raise InvalidStorageName(name, "a name is a non-empty string")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidStorageName(name, f"longer than {MAX_NAME_CHARS} characters")
    if "\x00" in name:
        raise InvalidStorageName(name, "it contains a NUL character")
    if "\\" in name:
        raise InvalidStorageName(name, "parts are separated by '/', not '\\'")
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise InvalidStorageName(name, "it is an absolute path; give a path relative to the root")
    parts = name.split("/")
    for part in parts:
        if part == "":
            raise InvalidStorageName(name, "it has an empty part ('//' or a trailing '/')")
        if part == "..":
            raise InvalidStorageName(name, "'..' would leave the storage root")
        if part.startswith("."):
            raise InvalidStorageName(name, f"part {part!r} begins with a dot")
        if any(ord(char) < 32 for char in part):
            raise InvalidStorageName(name, f"part {part!r} contains a control character")
        if len(part.encode()) > MAX_PART_BYTES:
            raise InvalidStorageName(name, f"part {part[:20]!r}… is over {MAX_PART_BYTES} bytes")
    return name


def resolve(root: Path, name: str) -> Path:
    """Where ``name`` lives under ``root``; :class:`InvalidStorageName` when the name breaks a
    rule or the path resolves outside the root (a symbolic link that points out)."""
    check(name)
    base = root.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise InvalidStorageName(name, f"it resolves outside the storage root {str(base)!r}")
    return path


def check_prefix(prefix: str) -> str:
    """A prefix to list by: ``""`` (everything) or the start of a valid name."""
    if prefix == "":
        return prefix
    # "reports/" is a fine prefix; the name it starts must be fine without the slash.
    check(prefix.removesuffix("/"))
    return prefix


def dated(folder: str, filename: str, day: date) -> str:
    """``folder/YYYY-MM-DD/filename``: the date folder a day's files go into, checked."""
    return check(f"{folder.strip('/')}/{day.isoformat()}/{filename}")
