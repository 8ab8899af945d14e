"""File storage: files on the local filesystem, metadata in PostgreSQL, expiring links.

* :mod:`~app.storage.files`: :class:`LocalStorage` (save, open, delete, exists, list by
  prefix, the retention purge, download links);
* :mod:`~app.storage.store`: every statement on ``stored_files``, and :class:`StoredFile`;
* :mod:`~app.storage.names`: what a stored name may be (no way out of the root);
* :mod:`~app.storage.links`: download tokens signed with HMAC-SHA256.

It knows nothing of Celery: a task passes its job's id to ``save``, and the web
process serves the links (``app/web/downloads.py``).
"""

from __future__ import annotations

from app.storage.files import GONE, LINK_PREFIX, LocalStorage, PurgedFiles
from app.storage.names import dated
from app.storage.store import StoredFile

__all__ = ["GONE", "LINK_PREFIX", "LocalStorage", "PurgedFiles", "StoredFile", "dated", "storage"]


def storage() -> LocalStorage:
    """The storage the settings describe (``storage.*``)."""
    return LocalStorage.from_settings()
