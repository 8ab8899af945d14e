"""File storage's retention on the ``background`` queue: expired files and their rows go.

:meth:`app.storage.LocalStorage.purge_expired` deletes one batch per transaction, so no
delete holds its locks for long; temporary files of saves that died are swept too.
"""

from __future__ import annotations

from app.celery import app
from app.storage import storage

#: Files deleted per transaction.
BATCH = 500
#: A temporary file this old belongs to a save that died (no save takes a day).
PARTIAL_AGE_S = 86400.0


@app.task(name="storage.purge_expired")
def purge_expired() -> dict[str, int]:
    """Delete expired files and their rows, in batches; how many files and bytes went,
    how many rows had lost their file already, and how many dead temporary files."""
    files = storage()
    counts = {"files": 0, "bytes": 0, "missing": 0}
    while True:
        batch = files.purge_expired(BATCH)
        counts["files"] += batch.files
        counts["bytes"] += batch.bytes
        counts["missing"] += batch.missing
        if batch.files < BATCH:
            break
    counts["partials"] = files.sweep_partials(PARTIAL_AGE_S)
    return counts
