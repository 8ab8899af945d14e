"""``python -m app run``: the whole system in one terminal, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from app.embedded import EmbeddedServers
from config.settings import Settings, get_settings, mask_url

#: Processes started by ``run``, in start order; stopped in reverse.
PROCESSES = ("worker", "beat", "services", "flower", "web")
#: The sample catalog a first start seeds, so that a newcomer has data to work on.
CATALOG_SEED = ("catalog", "seed", "--if-empty", "--products", "500")
#: Services modules ``run`` adds to the settings' own: the sample catalog's services.
SAMPLE_SERVICES = ("app.services.catalog",)
#: Who gets alerts, reports and dead-job mail in a run that sends mail to the local sink
#: (no SMTP host) and names nobody itself: the newcomer reads them in the console.
SAMPLE_RECIPIENT = "ops@example.com"


def sample_recipients(settings: Settings) -> dict[str, str]:
    """Settings that name :data:`SAMPLE_RECIPIENT` for alerts, reports and dead jobs,
    those of them left unset, when mail goes to the sink; nothing otherwise."""
    if settings.smtp.host is not None:
        return {}
    wanted = {
        "CONVEYOR_ALERTS__EMAIL_TO": (settings.alerts.email_to, [SAMPLE_RECIPIENT]),
        "CONVEYOR_REPORTS__EMAIL_TO": (settings.reports.email_to, [SAMPLE_RECIPIENT]),
        "CONVEYOR_NOTIFICATIONS__DEAD_JOBS": (
            settings.notifications.dead_jobs,
            {"*": [SAMPLE_RECIPIENT]},
        ),
    }
    return {name: json.dumps(value) for name, (current, value) in wanted.items() if not current}


def run() -> int:
    """Start servers (embedded when unconfigured), migrate, then every process; wait for Ctrl-C."""
    settings = get_settings()
    servers = EmbeddedServers(
        settings.embedded.data_dir,
        settings.embedded.postgres_port,
        settings.embedded.redis_port,
        want_postgres=settings.embedded_database,
        want_redis=settings.embedded_broker or settings.embedded_cache,
        redis_is_broker=settings.embedded_broker,
    )
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    children: dict[str, subprocess.Popen[bytes]] = {}
    code = 0
    try:
        env = {**os.environ, **servers.start()}
        modules = [*settings.services.modules, *SAMPLE_SERVICES]
        env["CONVEYOR_SERVICES__MODULES"] = json.dumps(list(dict.fromkeys(modules)))
        env.update(sample_recipients(settings))
        broker = env.get("CONVEYOR_BROKER__URL", settings.broker_url)
        database = env.get("CONVEYOR_DATABASE__URL", settings.database_url)
        subprocess.run([sys.executable, "-m", "app", "migrate"], env=env, check=True)
        password_file = settings.embedded.data_dir / "console-password.txt"
        subprocess.run(
            [sys.executable, "-m", "app", "users", "first", str(password_file)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seeded = subprocess.run([sys.executable, "-m", "app", *CATALOG_SEED], env=env, check=False)
        if seeded.returncode != 0:
            # A sample is not worth stopping for: everything else runs without it.
            print(f"catalog seed exited with code {seeded.returncode}; no sample catalog")
        for name in PROCESSES:
            # Own session: Ctrl-C reaches only this supervisor, which then stops
            # each child with SIGTERM (a warm shutdown for the worker).
            children[name] = subprocess.Popen(
                [sys.executable, "-m", "app", name], env=env, start_new_session=True
            )
        web = f"http://{settings.web.host}:{settings.web.port}"
        print(
            "\nConveyor is running (Ctrl-C stops everything):\n"
            f"  broker     {mask_url(broker)}{embedded(settings.embedded_broker)}\n"
            f"  database   {mask_url(database)}{embedded(settings.embedded_database)}\n"
            f"  web        {web}/health/ready\n"
            f"  console    {web}/console/  {console_login(password_file)}\n"
            f"  flower     http://{settings.flower.host}:{settings.flower.port}\n"
            f"  worker     queues critical, default, emails, reports, background\n"
            f"  beat       schedules in the database\n"
            f"  services   long-running services (python -m app services)\n"
            f"{mail_line(settings, web)}",
            flush=True,
        )
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"{name} exited with code {child.returncode}; stopping", flush=True)
                    stopping, code = True, 1
                    break
            time.sleep(0.2)
    finally:
        grace_s = max(settings.worker.soft_shutdown_timeout_s, settings.services.grace_s)
        _stop(children, grace_s=grace_s + 15)
        servers.stop()
    return code


def mail_line(settings: Settings, web: str) -> str:
    """Where ``run`` says mail goes."""
    if settings.smtp.host is not None:
        return f"  mail       SMTP {settings.smtp.host}:{settings.smtp.port}\n"
    return f"  mail       {settings.mail_dir} (no SMTP host): {web}/console/mail/\n"


def console_login(password_file: Path) -> str:
    """How to log in to the console, printed by ``run``."""
    if password_file.exists():
        return f"(user admin, password in {password_file})"
    return "(python -m app users create NAME adds a user)"


def embedded(flag: bool) -> str:
    """The marker printed after an embedded server's address."""
    return "  (embedded)" if flag else ""


def _stop(children: dict[str, subprocess.Popen[bytes]], grace_s: float) -> None:
    for name in reversed(list(children)):
        child = children[name]
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children.values():
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
