"""The unit tier needs no server: it passes in a network namespace where nothing listens."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import database_url
from tests.services import ROOT

#: Loaded into the unit run with ``-p``: a server the run started is still up when the
#: session finishes (the old provisioning stopped its servers only at unconfigure).
GUARD = """
import psutil


def pytest_sessionfinish(session):
    listening = sorted(
        f"{c.laddr.ip}:{c.laddr.port}"
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN
    )
    if listening:
        print(f"\\nLISTENING AT THE END OF THE UNIT RUN: {listening}")
"""


def test_unit_tier_passes_with_no_server_reachable_and_starts_none(tmp_path: Path) -> None:
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        pytest.fail(
            "this test needs `unshare` (util-linux) and `ip` (iproute2) to run the unit tier "
            "in a network namespace of its own; install them"
        )
    (tmp_path / "unit_guard.py").write_text(GUARD)
    # What a developer's shell has: none of the variables this run set for its servers.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CONVEYOR_") or name.startswith("CONVEYOR_TEST_")
    }
    # Only the venv on PATH: a regression that provisions finds none of the machine's
    # servers to start in here against their shared data (the embedded ones it may).
    env["PATH"] = str(Path(sys.executable).parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    command = [
        unshare,
        "--net",  # only loopback, brought up below: nothing listens on any port
        "--pid",  # and whatever the run leaves running ends with it
        "--mount-proc",
        "--kill-child",
        *([] if os.geteuid() == 0 else ["--map-root-user"]),
        "/bin/sh",
        "-c",
        '"$0" link set lo up && exec "$@"',
        ip,
        sys.executable,
        "-m",
        "pytest",
        "tests/unit",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "unit_guard",
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150, check=False
    )
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, output
    passed = re.search(r"(\d+) passed", output)
    assert passed is not None and int(passed.group(1)) > 0, output
    assert "LISTENING AT THE END" not in output, output


def test_this_tier_sees_the_runs_servers_however_early_conveyor_was_imported() -> None:
    # The acceptance conftest builds the Celery app before it provisions; plain
    # ``pytest`` imports it first, so this holds only if provisioning reconfigured it.
    from app.celery import app
    from config.settings import get_settings

    assert app.conf.broker_url == os.environ["CONVEYOR_BROKER__URL"]
    assert get_settings().database_url == database_url()
