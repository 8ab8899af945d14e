"""The domain's audit log (``catalog_audit_log``): entries appended, and old ones purged."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

#: -- record_audit --: one entry of the domain's audit log.
RECORD_AUDIT = text("""
INSERT INTO catalog_audit_log (entity, entity_id, action, detail)
VALUES (:entity, :entity_id, :action, CAST(:detail AS jsonb))
""")
#: -- purge_audit_log --: up to ``:limit`` audit entries written before ``:cutoff``.
PURGE_AUDIT = text("""
DELETE FROM catalog_audit_log
WHERE id IN (SELECT id FROM catalog_audit_log WHERE at < :cutoff ORDER BY id LIMIT :limit)
""")


def record_audit(
    conn: Connection,
    entity: str,
    entity_id: str | int | None,
    action: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one entry to the domain's audit log, stamped with the transaction's time."""
    params = {
        "entity": entity,
        "entity_id": None if entity_id is None else str(entity_id),
        "action": action,
        "detail": None if detail is None else json.dumps(detail, default=str),
    }
    conn.execute(RECORD_AUDIT, params)


def purge_audit(conn: Connection, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` audit entries written before ``cutoff``."""
    return conn.execute(PURGE_AUDIT, {"cutoff": cutoff, "limit": limit}).rowcount
