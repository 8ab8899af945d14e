"""Operator commands: ``python -m app jobs list|show|requeue|cancel`` and ``enqueue``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from typing import Any

from app.errors import ConveyorError
from app.schedule import parse_duration


def add_commands(sub: Any) -> None:
    """Register ``jobs`` and ``enqueue`` on the top-level parser."""
    jobs = sub.add_parser("jobs", help="inspect and act on jobs in the ledger")
    actions = jobs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="jobs, newest first")
    listing.add_argument("--status")
    listing.add_argument("--handler")
    listing.add_argument("--queue")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--cursor")
    for name, text in (
        ("show", "one job and its history"),
        ("requeue", "run it again"),
        ("cancel", "cancel it"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("job_id")
        if name == "cancel":
            action.add_argument(
                "--terminate", action="store_true", help="also stop it if it is running"
            )
    jobs.set_defaults(func=cmd_jobs)

    enqueue = sub.add_parser("enqueue", help="enqueue a job by handler name")
    enqueue.add_argument("handler")
    enqueue.add_argument("--payload", default="{}", help="JSON object of the handler's fields")
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument("--at", help="ISO 8601 time with a zone, e.g. 2026-12-01T06:00:00+01:00")
    when.add_argument("--in", dest="delay", help="a delay such as 90s, 15m, 2h or 1d")
    when.add_argument(
        "--cron", help="a recurring job (needs --name), e.g. '0 6 * * MON-FRI' or '@every 5m'"
    )
    enqueue.add_argument("--name", dest="job_name")
    enqueue.add_argument("--idempotency-key")
    enqueue.add_argument(
        "--notify",
        action="append",
        metavar="ADDRESS",
        help="mail this address when the job finishes (repeat for more)",
    )
    enqueue.set_defaults(func=cmd_enqueue)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, indent=2, sort_keys=True)


def cmd_jobs(args: argparse.Namespace) -> int:
    """``jobs list|show|requeue|cancel``."""
    from app.jobs.service import JobService

    service = JobService()
    try:
        if args.action == "list":
            rows, cursor = service.list(
                status=args.status,
                handler=args.handler,
                queue=args.queue,
                limit=args.limit,
                cursor=args.cursor,
            )
            for row in rows:
                print(
                    f"{row['id']}  {row['status']:<9}  {row['handler']:<36}  "
                    f"{row['queue']:<10}  {row['created_at']:%Y-%m-%d %H:%M:%S}"
                )
            if cursor:
                print(f"next page: --cursor {cursor}")
        elif args.action == "show":
            print(_json({**service.get(args.job_id), "history": service.history(args.job_id)}))
        elif args.action == "requeue":
            print(f"requeued {service.requeue(args.job_id)}")
        else:
            service.cancel(args.job_id, terminate=args.terminate)
            print(f"cancelled {args.job_id}")
    except (ConveyorError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    """``enqueue HANDLER --payload JSON [--at TIME | --in DELAY] [--notify ADDRESS]``;
    prints the job id."""
    from app.jobs.service import JobService

    try:
        payload = json.loads(args.payload)
        if not isinstance(payload, dict):
            raise ValueError(f"--payload must be a JSON object, not {type(payload).__name__}")
        schedule: datetime | timedelta | str | None = args.cron
        if args.at:
            schedule = datetime.fromisoformat(args.at)
        elif args.delay:
            schedule = parse_duration(args.delay)
        job_id = JobService().enqueue(
            args.handler,
            payload,
            schedule=schedule,
            job_name=args.job_name,
            idempotency_key=args.idempotency_key,
            notify=args.notify,
        )
    except json.JSONDecodeError as exc:
        print(f"error: --payload is not JSON: {exc}", file=sys.stderr)
        return 2
    except (ConveyorError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(job_id)
    return 0
