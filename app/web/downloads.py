"""``/files/<token>``: a stored file, served to whoever holds a valid signed link.

No login: the link is the credential (:mod:`app.storage.links`). A valid one gets the
file's exact bytes, streamed, with its stored content type and its name as the
download's filename. Anything else is 403 with one short reason: altered or foreign,
expired, or a file that is gone; never 404, so a refusal says nothing about which
files exist.
"""

from __future__ import annotations

import logging

from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseNotAllowed

from app.errors import InvalidLink, StoredFileNotFound
from app.storage import GONE, storage

logger = logging.getLogger(__name__)


def refused(reason: str) -> HttpResponse:
    """403 with ``reason`` as the plain-text body."""
    answer = HttpResponse(f"{reason}\n", status=403, content_type="text/plain; charset=utf-8")
    answer["Cache-Control"] = "no-store"
    return answer


def download(request: HttpRequest, token: str) -> HttpResponse:
    """The file ``token`` was signed for, or 403 saying why not."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    files = storage()
    try:
        stored = files.resolve(token)
    except InvalidLink as exc:
        return refused(exc.reason)
    try:
        handle = files.open_file(stored)
    except StoredFileNotFound:
        logger.warning("stored file %s (%s) has a row but no bytes", stored.name, stored.id)
        return refused(GONE)
    answer = FileResponse(
        handle, as_attachment=True, filename=stored.filename, content_type=stored.content_type
    )
    # The URL is the credential: keep the file out of shared caches and history.
    answer["Cache-Control"] = "private, no-store"
    return answer
