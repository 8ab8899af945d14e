"""``python -m app dead list|requeue|purge``: the dead-letter queue from a shell, audited.

Dead jobs are the ledger's (status ``dead``); these commands go through
:class:`~app.jobs.service.JobService` like the API and the console do.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from app.errors import ConveyorError
from app.jobs.models import JobStatus
from app.jobs.service import JobService


def add_dead_commands(sub: Any) -> None:
    """Register ``dead`` on the top-level parser."""
    parser = sub.add_parser("dead", help="list, requeue and purge dead jobs")
    actions = parser.add_subparsers(dest="action", required=True)
    for name, summary in (
        ("list", "dead jobs, newest first"),
        ("requeue", "run dead jobs again, same ids"),
        ("purge", "delete dead jobs and their history, for good"),
    ):
        action = actions.add_parser(name, help=summary)
        action.add_argument("job_ids", nargs="*", help="these jobs (default: every match)")
        action.add_argument("--handler", help="only this task name")
        action.add_argument("--queue", help="only this queue")
        action.add_argument("--limit", type=int, default=1000, help="at most this many (1000)")
    parser.set_defaults(func=cmd_dead)


def _matching(service: JobService, args: argparse.Namespace) -> list[Any]:
    if args.job_ids:
        return list(args.job_ids)
    return service.matching(
        [JobStatus.DEAD], handler=args.handler, queue=args.queue, limit=args.limit
    )


def cmd_dead(args: argparse.Namespace) -> int:
    """``dead list|requeue|purge``; requeue and purge are written to the audit trail."""
    service = JobService()
    ids = _matching(service, args)
    if args.action == "list":
        for job_id in ids:
            job = service.get(job_id)
            print(f"{job['id']}  {job['handler']:<36}  {job['queue']:<10}  {job['last_error']}")
        return 0
    from beat.service import ensure_django

    ensure_django()
    from app.web import audit

    actor = f"cli:{getpass.getuser()}"
    done, failed = [], 0
    for job_id in ids:
        try:
            if args.action == "purge":
                service.purge(job_id)
            else:
                service.requeue(job_id)
        except (ConveyorError, ValueError) as exc:
            print(f"error: {job_id}: {exc}", file=sys.stderr)
            failed += 1
            continue
        done.append(str(job_id))
    wanted = {"handler": args.handler, "queue": args.queue, "job_ids": args.job_ids}
    audit.record(None, f"job.bulk_{args.action}", "cli", {"filter": wanted}, {"done": done}, actor)
    print(f"{args.action}d {len(done)} dead job{'s' if len(done) != 1 else ''}")
    return 1 if failed else 0
