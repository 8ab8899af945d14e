"""Command line: ``python -m app run|worker|beat|services|flower|web|migrate`` (also
``conveyor …``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from config.settings import QUEUES, get_settings


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.django_settings")
    import django

    django.setup()


def _redis_may_evict(process: str) -> bool:
    """True (said on stderr) when a Redis in use may evict keys and the settings refuse it."""
    from app.errors import EvictingRedis
    from app.redis_memory import check_at_startup

    try:
        check_at_startup(process)
    except EvictingRedis as exc:
        print(f"conveyor: {exc}", file=sys.stderr)
        return True
    return False


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker on the given queues (all five by default)."""
    if _redis_may_evict("worker"):
        return 2
    from app.celery import app

    settings = get_settings()
    argv = [
        "worker",
        f"--queues={args.queues}",
        f"--concurrency={args.concurrency or settings.worker.concurrency}",
        f"--hostname={args.hostname}",
        f"--loglevel={settings.log_level}",
        "--task-events",
        # Gossip (other workers' events, for Celery's elections and clock sync) is not
        # used, and it decodes what anyone publishes on the event exchange outside
        # Celery's error handling: a pickled event would stop the worker.
        "--without-gossip",
        *args.extra,
    ]
    app.worker_main(argv)
    return 0


def cmd_beat(args: argparse.Namespace) -> int:
    """Celery Beat reading its schedules from the database."""
    if _redis_may_evict("beat"):
        return 2
    _django()
    from app.celery import app

    app.start(["beat", f"--loglevel={get_settings().log_level}", *args.extra])
    return 0


def cmd_flower(args: argparse.Namespace) -> int:
    """Flower, with basic auth when configured, state kept under ``var/``."""
    from app.celery import app

    settings = get_settings()
    flower = settings.flower
    if not flower.on_loopback and not flower.basic_auth:
        print(
            f"flower: refusing to listen on {flower.host!r} without authentication; "
            "set CONVEYOR_FLOWER__BASIC_AUTH=user:password",
            file=sys.stderr,
        )
        return 2
    settings.embedded.data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        "flower",
        f"--address={flower.host}",
        f"--port={flower.port}",
        "--persistent=True",
        # Save the task history every minute, not only at a clean stop: a Flower
        # that is killed keeps all but the last minute.
        "--state_save_interval=60000",
        f"--db={settings.embedded.data_dir / 'flower.db'}",
        "--purge_offline_workers=300",
    ]
    if flower.basic_auth:
        argv.append(f"--basic-auth={flower.basic_auth}")
    app.start([*argv, *args.extra])
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """The web process under gunicorn."""
    if _redis_may_evict("web"):
        return 2
    settings = get_settings()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.django_settings")
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "app.web.wsgi:application",
        f"--bind={settings.web.host}:{settings.web.port}",
        "--workers=2",
        "--timeout=30",
        "--graceful-timeout=20",
        "--access-logfile=-",
    ]
    os.execv(sys.executable, argv)


def cmd_services(args: argparse.Namespace) -> int:
    """The long-running services, one thread each; the exit code says how they ended."""
    if _redis_may_evict("services"):
        return 2
    from app.services.supervisor import run

    only = [name.strip() for name in (args.only or "").split(",") if name.strip()]
    return run(only)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade every table: Django's (beat schedules) and the result store's."""
    from app.migrate import migrate

    migrate()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Everything at once, on embedded servers when no URL is configured."""
    from app.runner import run

    return run()


def parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    top = argparse.ArgumentParser(prog="conveyor", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole system (embedded servers by default)")
    run.set_defaults(func=cmd_run)
    worker = sub.add_parser("worker", help="a Celery worker")
    worker.add_argument("--queues", default=",".join(QUEUES))
    worker.add_argument("--concurrency", type=int, default=None)
    worker.add_argument("--hostname", default="conveyor@%h")
    worker.set_defaults(func=cmd_worker)
    services = sub.add_parser(
        "services",
        help="the long-running services (0: stopped, 1: a service failed, 3: abandoned)",
    )
    services.add_argument(
        "--only", default="", metavar="NAME[,NAME…]", help="run these services alone"
    )
    services.set_defaults(func=cmd_services)
    for name, func, text in (
        ("beat", cmd_beat, "Celery Beat on the schedule database"),
        ("flower", cmd_flower, "Flower"),
        ("web", cmd_web, "the web process (health, API, console)"),
        ("migrate", cmd_migrate, "create or upgrade the database"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=func)
    from app.catalog.cli import add_commands as add_catalog_commands
    from app.jobs.cli import add_commands
    from app.web.cli import add_commands as add_web_commands
    from beat.cli import add_commands as add_schedule_commands

    add_commands(sub)
    add_schedule_commands(sub)
    add_web_commands(sub)
    add_catalog_commands(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; unknown options go to Celery."""
    args, extra = parser().parse_known_args(argv)
    args.extra = extra
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
