"""Download tokens: a file id and an expiry, signed with HMAC-SHA256.

A token is ``<id>.<expires>.<signature>``: the file's id as 32 lowercase hex digits,
the expiry in whole Unix seconds, and the URL-safe base64 of
HMAC-SHA256(key, ``<id>.<expires>``). The key is derived from the deployment's secret
(``web.secret_key``) for this one use, so a signature made here means nothing to Django's
own signing and the reverse. The signature covers the token's text exactly as given,
and the format admits one spelling per value, so changing any character of a token
refuses it. The link is the credential: whoever holds it may download until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import uuid

from app.errors import InvalidLink

#: What a download token looks like; anything else is refused before any signature check.
TOKEN = re.compile(
    r"(?P<id>[0-9a-f]{32})\.(?P<expires>[1-9][0-9]{0,11})\.(?P<sig>[A-Za-z0-9_-]{43})"
)
#: Binds the derived key to download links: the same secret signs nothing else this way.
PURPOSE = b"conveyor.storage.download-link.v1"

#: The reasons a token is refused, as the download view says them.
MALFORMED = "this is not a download link"
TAMPERED = "this link was altered or was not issued here"
EXPIRED = "this link has expired"


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), PURPOSE, hashlib.sha256).digest()


def _signature(payload: str, secret: str) -> str:
    digest = hmac.new(_key(secret), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(file_id: uuid.UUID, expires_at_s: int, secret: str) -> str:
    """A token for ``file_id`` valid until the Unix time ``expires_at_s``."""
    if not secret:
        raise ValueError("download links need a secret (web.secret_key)")
    payload = f"{file_id.hex}.{int(expires_at_s)}"
    return f"{payload}.{_signature(payload, secret)}"


def verify(token: str, secret: str, now_s: float | None = None) -> uuid.UUID:
    """The file id ``token`` was signed for; :class:`InvalidLink` saying why when it is
    malformed, altered or signed with another secret, or expired (at ``now_s``, the Unix
    time, by default this host's clock)."""
    match = TOKEN.fullmatch(token)
    if match is None:
        raise InvalidLink(MALFORMED)
    payload = f"{match['id']}.{match['expires']}"
    # Compare the text, not decoded bytes: base64's last character has spare bits that a
    # lenient decoder ignores, and a token changed there must still be refused.
    if not hmac.compare_digest(_signature(payload, secret).encode(), match["sig"].encode()):
        raise InvalidLink(TAMPERED)
    if int(match["expires"]) <= (time.time() if now_s is None else now_s):
        raise InvalidLink(EXPIRED)
    return uuid.UUID(hex=match["id"])
