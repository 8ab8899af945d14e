"""Finding the argument JSON cannot carry, to name it in the error."""

from __future__ import annotations

import datetime
import uuid

import pytest

from app.errors import BrokerUnavailable, NotJsonSerializable, UnknownTask
from app.producer import first_non_json

SENTINEL = object()


@pytest.mark.parametrize(
    ("args", "kwargs", "path"),
    [
        ([SENTINEL], {}, "args[0]"),
        ([1, [2, {"x": SENTINEL}]], {}, "args[1][1]['x']"),
        ([], {"when": datetime.date(2026, 1, 1), "what": {SENTINEL}}, "kwargs['what']"),
        ([], {"nested": {"ok": uuid.uuid4(), "bad": SENTINEL}}, "kwargs['nested']['bad']"),
    ],
)
def test_first_non_json_argument_is_named_by_its_path(
    args: list[object], kwargs: dict[str, object], path: str
) -> None:
    assert first_non_json(args, kwargs)[0] == path


def test_errors_refine_the_builtin_and_name_the_input() -> None:
    unknown = UnknownTask("reports.nope", ["demo.ping", "reports.job_summary"])
    assert isinstance(unknown, KeyError)
    assert (
        str(unknown) == "unknown task 'reports.nope'; known tasks: demo.ping, reports.job_summary"
    )
    not_json = NotJsonSerializable("demo.ping", "args[0]", SENTINEL)
    assert isinstance(not_json, TypeError)
    assert "args[0] of type object" in str(not_json)
    down = BrokerUnavailable("redis://127.0.0.1:1/0", 3.0, "Connection refused")
    assert isinstance(down, ConnectionError)
    assert str(down).startswith("broker redis://127.0.0.1:1/0 is unavailable (gave up after 3s)")
