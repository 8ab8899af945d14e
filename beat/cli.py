"""Operator commands: ``python -m app schedules list|show|preview|add|edit|…``."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from app import schedule
from app.errors import ConveyorError
from config.settings import get_settings

ACTIONS = ("show", "enable", "disable", "delete", "trigger", "history")


def add_commands(sub: Any) -> None:
    """Register ``schedules`` on the top-level parser."""
    schedules = sub.add_parser("schedules", help="recurring schedules in the beat database")
    actions = schedules.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every schedule")
    actions.add_parser("leader", help="the beat that fires now")
    actions.add_parser("sync", help="install the declared defaults (beat does this at start)")
    preview = actions.add_parser("preview", help="next fire times of a schedule or an expression")
    preview.add_argument("name_or_expression")
    preview.add_argument("--tz", default=None, help="time zone of an expression (IANA name)")
    preview.add_argument("-n", type=int, default=10)
    for name in ACTIONS:
        action = actions.add_parser(name, help=f"{name} a schedule")
        action.add_argument("name")
    for name in ("add", "edit"):
        action = actions.add_parser(name, help=f"{name} a schedule")
        action.add_argument("name")
        action.add_argument("--task", required=name == "add", help="registered task name")
        action.add_argument("--cron", required=name == "add", help="e.g. '0 6 * * MON-FRI'")
        action.add_argument("--tz", dest="timezone", help="IANA time zone (default: settings)")
        action.add_argument("--kwargs", help="JSON object of the task's fields")
        action.add_argument("--queue")
        action.add_argument("--misfire", choices=("fire_once", "skip", "catch_up"))
        action.add_argument("--overlap", choices=("skip", "queue_one", "allow"))
        action.add_argument("--catch-up-limit", type=int)
        action.add_argument("--description")
        action.add_argument(
            "--run-on-startup",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="also fire once when the cluster's beats start",
        )
    schedules.set_defaults(func=cmd_schedules)


def _json(value: Any) -> str:
    return json.dumps(value, default=str, indent=2, sort_keys=True)


def cmd_schedules(args: argparse.Namespace) -> int:
    """Run one ``schedules`` action; errors name the field and exit 2."""
    from beat.service import ScheduleService

    actor = f"cli:{getpass.getuser()}"
    try:
        service = ScheduleService()
        if args.action == "list":
            for item in service.list():
                state = "enabled " if item["enabled"] else "disabled"
                print(
                    f"{item['name']:<28} {state} {item['cron']:<18} {item['timezone']:<16} "
                    f"{item['task']:<34} misfire={item['misfire']} overlap={item['overlap']}"
                    + (f"  error: {item['error']}" if item["error"] else "")
                )
        elif args.action == "leader":
            leader = service.leader()
            print(_json(leader) if leader else "no beat holds the lease")
            return 0 if leader else 1
        elif args.action == "sync":
            print(_json(service.sync_defaults()))
        elif args.action == "preview":
            target = args.name_or_expression
            names = {item["name"] for item in service.list()}
            if target in names and args.tz is None:
                times = service.preview(target, args.n)
            else:
                times = schedule.next_fire_times(target, args.tz or get_settings().timezone, args.n)
            for when in times:
                print(when.isoformat())
        elif args.action == "show":
            print(_json(service.get(args.name)))
        elif args.action == "history":
            print(_json(service.history(args.name)))
        elif args.action in ("enable", "disable"):
            getattr(service, args.action)(args.name, actor=actor)
            print(f"{args.action}d {args.name}")
        elif args.action == "delete":
            service.delete(args.name, actor=actor)
            print(f"deleted {args.name}")
        elif args.action == "trigger":
            print(_json(service.trigger(args.name, actor=actor)))
        else:
            fields = {
                "task": args.task,
                "cron": args.cron,
                "timezone": args.timezone,
                "queue": args.queue,
                "misfire": args.misfire,
                "overlap": args.overlap,
                "catch_up_limit": args.catch_up_limit,
                "description": args.description,
                "run_on_startup": args.run_on_startup,
            }
            if args.kwargs is not None:
                kwargs = json.loads(args.kwargs)
                if not isinstance(kwargs, dict):
                    raise ValueError(f"--kwargs must be a JSON object, not {type(kwargs).__name__}")
                fields["kwargs"] = kwargs
            given = {k: v for k, v in fields.items() if v is not None}
            if args.action == "add":
                task, expression = given.pop("task"), given.pop("cron")
                result = service.create(args.name, task, expression, actor=actor, **given)
            else:
                result = service.update(args.name, actor=actor, **given)
            print(_json(result))
    except json.JSONDecodeError as exc:
        print(f"error: --kwargs is not JSON: {exc}", file=sys.stderr)
        return 2
    except (ConveyorError, ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
