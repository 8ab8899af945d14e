"""A service the monitor tests watch in a real ``python -m app services`` process.

``probe.wobbly`` runs on every host and fails each iteration while the flag row
``probe.wobbly`` exists (:meth:`tests.acceptance.conftest.Effects.flag`), and
succeeds once it is gone: a test makes it ``degraded``, then lets it recover, in one
process.
"""

from __future__ import annotations

from app.services import Service
from tests.acceptance.probe_tasks import connect

#: The flag row that makes ``probe.wobbly`` fail.
WOBBLY = "probe.wobbly"


class Wobbly(Service):
    """Every host: fails while its flag is set, succeeds otherwise."""

    name = WOBBLY
    every = 0.1

    def iterate(self) -> int:
        with connect() as conn:
            if conn.execute("SELECT 1 FROM probe_flags WHERE key = %s", (WOBBLY,)).fetchone():
                raise RuntimeError("probe.wobbly fails while its flag is set")
        return 1
