"""`make run` on a machine with nothing configured: everything up, then Ctrl-C stops it all."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from app.embedded import free_port, port_open
from app.notifications import sink
from app.runner import SAMPLE_RECIPIENT
from config.settings import QUEUES
from tests.services import ROOT

pytestmark = pytest.mark.acceptance

T = TypeVar("T")


def get(url: str, auth: str | None = None) -> tuple[int, bytes]:
    """Status and body of a GET, errors included; ``auth`` is an API token."""
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {auth}"} if auth else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def wait_until(condition: Callable[[], T], timeout_s: float) -> T:
    """``condition``'s first truthy value within ``timeout_s``, else its last value."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return value


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh var/ for the run, inside the project like the real one."""
    path = ROOT / "var" / f"test-run-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_run_starts_everything_on_embedded_servers_and_ctrl_c_stops_it(data_dir: Path) -> None:
    ports = {name: free_port() for name in ("postgres", "redis", "web", "flower")}
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONVEYOR_")}
    env.update(
        CONVEYOR_EMBEDDED__DATA_DIR=str(data_dir),
        CONVEYOR_EMBEDDED__POSTGRES_PORT=str(ports["postgres"]),
        CONVEYOR_EMBEDDED__REDIS_PORT=str(ports["redis"]),
        CONVEYOR_WEB__PORT=str(ports["web"]),
        CONVEYOR_FLOWER__PORT=str(ports["flower"]),
    )
    data_dir.mkdir(parents=True)
    log = data_dir / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "app", "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # From a second terminal, as the README says.
        client_env = {
            **env,
            "CONVEYOR_BROKER__URL": f"redis://127.0.0.1:{ports['redis']}/0",
            "CONVEYOR_DATABASE__URL": (
                f"postgresql+psycopg://postgres@127.0.0.1:{ports['postgres']}/conveyor"
            ),
        }
        ready_url = f"http://127.0.0.1:{ports['web']}/health/ready"
        deadline = time.monotonic() + 120
        status, body, token = 0, b"", None
        while time.monotonic() < deadline and status != 200:
            assert run.poll() is None, log.read_text()[-3000:]
            if token is None and get(f"http://127.0.0.1:{ports['web']}/health/live")[0] == 200:
                token = subprocess.run(  # the web is up, so the tables are migrated
                    [sys.executable, "-m", "app", "tokens", "create", "probe", "--scope", "read"],
                    cwd=ROOT,
                    env=client_env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=True,
                ).stdout.split()[0]
            status, body = get(ready_url, token)
            time.sleep(0.5)
        assert status == 200, (status, body, log.read_text()[-3000:])
        checks = json.loads(body)["checks"]
        assert checks["broker"]["ok"] and checks["database"]["ok"] and checks["workers"]["ok"]
        assert checks["beat"]["ok"] and checks["beat"]["leader"], checks["beat"]
        assert all(checks["workers"]["queues"][queue] for queue in QUEUES), checks["workers"]
        printed = log.read_text()
        assert f"http://127.0.0.1:{ports['web']}/health/ready" in printed
        assert f"127.0.0.1:{ports['redis']}" in printed and "(embedded)" in printed

        pong = subprocess.run(
            [
                sys.executable,
                "-c",
                "from tasks.demo import ping; print(ping.delay('hi').get(timeout=10))",
            ],
            cwd=ROOT,
            env=client_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert pong.stdout.strip() == "pong: hi", pong.stderr
        listed = subprocess.run(
            [sys.executable, "-m", "app", "schedules", "list"],
            cwd=ROOT,
            env=client_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        from beat.defaults import DEFAULT_SCHEDULES

        for declared in DEFAULT_SCHEDULES:
            assert declared.name in listed.stdout, listed.stdout + listed.stderr
        assert get(f"http://127.0.0.1:{ports['flower']}/")[0] == 200
        assert get(f"http://127.0.0.1:{ports['web']}/health/live")[0] == 200

        # Real work from the first minute: the seeded catalog has products short of stock,
        # the inventory monitor alerts, and the alert mail lands in the local sink.
        assert f"{data_dir / 'mail'} (no SMTP host)" in printed
        sent = wait_until(lambda: sink.mails(data_dir / "mail"), 90)
        assert sent, f"no mail in {data_dir / 'mail'}:\n{log.read_text()[-3000:]}"
        assert any(m.to == SAMPLE_RECIPIENT and "stock" in m.subject for m in sent), [
            (m.to, m.subject) for m in sent
        ]
    finally:
        run.send_signal(signal.SIGINT)  # Ctrl-C
        code = run.wait(120)
    assert code == 0, log.read_text()[-3000:]
    still_open = [name for name, port in ports.items() if port_open("127.0.0.1", port)]
    assert not still_open, f"still running after Ctrl-C: {still_open}"
    assert "Warm shutdown" in log.read_text()
