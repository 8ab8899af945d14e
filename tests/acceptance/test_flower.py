"""Flower keeps past tasks across a restart, as ``python -m app flower`` claims.

It is started with ``--persistent=True --db=<data dir>/flower.db`` (app/__main__.py):
Flower saves its state to that file when it stops, and loads it when it starts.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance import probe_tasks
from tests.acceptance.conftest import Effects, wait_for
from tests.acceptance.workers import Flower, Worker
from tests.servers import Broker

pytestmark = pytest.mark.acceptance

AUTH = "flower:flower-pw-past"


def tasks_of(flower: Flower) -> dict[str, dict[str, Any]]:
    """Flower's ``/api/tasks``: the tasks it knows, by id."""
    request = urllib.request.Request(
        f"{flower.url}/api/tasks",
        headers={"Authorization": "Basic " + base64.b64encode(AUTH.encode()).decode()},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.load(response))


def test_flower_lists_past_tasks_after_a_restart(
    broker: Broker, effects: Effects, tmp_path: Path
) -> None:
    keys = [f"seen{index}" for index in range(3)]
    with Flower(broker.url, tmp_path, AUTH) as flower, Worker(broker.url, queues="default"):
        ids = [probe_tasks.record.delay(key).id for key in keys]
        wait_for(
            lambda: all(tasks_of(flower).get(i, {}).get("state") == "SUCCESS" for i in ids),
            30,
            "Flower to see every task succeed",
        )
        assert flower.terminate() == 0, flower.output()[-2000:]
    assert (tmp_path / "flower.db").exists() or list(tmp_path.glob("flower.db*"))
    with Flower(broker.url, tmp_path, AUTH) as restarted:  # no worker: only the saved past
        known = tasks_of(restarted)
    assert set(ids) <= set(known), f"Flower forgot {set(ids) - set(known)} across its restart"
    assert {known[i]["state"] for i in ids} == {"SUCCESS"}
    assert {known[i]["name"] for i in ids} == {"probe.record"}
    assert all(effects.count(key, "done") == 1 for key in keys)
