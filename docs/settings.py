"""Write the settings reference, ``docs/settings.md``, from ``config.settings.Settings``.

    .venv/bin/python docs/settings.py            # print it
    .venv/bin/python docs/settings.py --write    # write docs/settings.md

Every field of ``Settings`` is one row: its environment variable (the model's
``env_prefix`` and ``env_nested_delimiter``), its type and bounds, its default and
its description. A field whose type is a ``BaseModel`` is a section with a table of
its own, introduced by the section's docstring. A description is the field's
``Field(description=…)``, else the ``#:`` comment lines right above it (or a ``#:``
comment on its own line), else a string right below it, as Sphinx reads them.
``tests/unit/test_settings_reference.py`` fails when docs/settings.md is not what
this prints, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import json
import re
import sys
import tokenize
from enum import Enum
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from config import settings as settings_module
from config.settings import PROJECT_ROOT, Settings

#: Where ``--write`` puts the reference.
TARGET = PROJECT_ROOT / "docs" / "settings.md"
#: The command that regenerates it, as the reference and the unit test print it.
COMMAND = ".venv/bin/python docs/settings.py --write"

#: Bound attributes of ``annotated_types`` (what ``Field(gt=…)`` stores) and their signs.
BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))

PREAMBLE = """\
Every setting comes from an environment variable: the prefix `{prefix}`, then the
section and the field joined by `{delimiter}`. A `.env` file in the working directory is
read too, and real environment variables take precedence over it. A wrong value stops
the process at start with a validation error that names the setting (for example
`worker.concurrency`, from `CONVEYOR_WORKER__CONCURRENCY`) and the value; passwords in
URLs are masked in it. A broker or database URL left unset means the embedded Redis or
PostgreSQL, on its port in `embedded`; only `python -m app run` starts them.

Besides types and bounds, start-up checks that `worker.soft_time_limit_s` is below
`worker.time_limit_s`; that `worker.time_limit_s`, `worker.retry_backoff_max_s` and
`ledger.hold_after_s` are below `broker.visibility_timeout_s` (on RabbitMQ too); that
`ledger.recovery_after_s` is at least three `ledger.heartbeat_interval_s`; that
`beat.lease_ttl_s` is at least twice `beat.renew_interval_s`; and that the `production`
profile has a `web.secret_key` of 50 or more characters.
`python -m app flower` refuses to listen off loopback without `flower.basic_auth`.
"""


class Comments:
    """The ``#:`` comments and attribute docstrings of one module's class fields."""

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines()
        #: Line number → text of a ``#:`` comment that is alone on its line.
        self.alone: dict[int, str] = {}
        #: Line number → text of a ``#:`` comment that ends a line of code.
        self.trailing: dict[int, str] = {}
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.COMMENT or not token.string.startswith("#:"):
                continue
            text = token.string[2:].strip()
            row, column = token.start
            if token.line[:column].strip():
                self.trailing[row] = text
            else:
                self.alone[row] = text
        #: (class name, field name) → description.
        self.fields: dict[tuple[str, str], str] = {}
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                self._read_class(node)

    def _read_class(self, node: ast.ClassDef) -> None:
        body = node.body
        for index, statement in enumerate(body):
            if not isinstance(statement, ast.AnnAssign):
                continue
            if not isinstance(statement.target, ast.Name):
                continue
            text = self._above(statement.lineno) or self.trailing.get(statement.lineno, "")
            following = body[index + 1] if index + 1 < len(body) else None
            if not text and isinstance(following, ast.Expr):
                value = following.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    text = inspect.cleandoc(value.value)
            self.fields[(node.name, statement.target.id)] = " ".join(text.split())

    def _above(self, lineno: int) -> str:
        """The ``#:`` lines that end right above line ``lineno``, joined."""
        texts: list[str] = []
        row = lineno - 1
        while row in self.alone:
            texts.insert(0, self.alone[row])
            row -= 1
        return " ".join(texts)


def markdown(text: str, *, cell: bool = False) -> str:
    """Docstring markup as Markdown: ``x`` and :role:`x` become `x`; ``cell`` escapes ``|``."""
    text = re.sub(r":[\w:]+:`~?([^`]+)`", r"`\1`", text)
    text = re.sub(r"``(.+?)``", r"`\1`", text)
    return text.replace("|", "\\|") if cell else text


def bounds(info: FieldInfo) -> str:
    """The field's numeric bounds, as ``≥ 0, ≤ 100``."""
    found = []
    for constraint in info.metadata:
        for name, sign in BOUNDS:
            value = getattr(constraint, name, None)
            if value is not None:
                found.append(f"{sign} {value}")
    return ", ".join(found)


def type_cell(annotation: str, info: FieldInfo) -> str:
    """The field's type as written in the settings file, its choices and its bounds."""
    cell = f"`{annotation}`".replace("|", "\\|")  # GFM splits cells even inside code
    kind = info.annotation
    if isinstance(kind, type) and issubclass(kind, Enum):
        cell += ": " + ", ".join(f"`{member.value}`" for member in kind)
    limits = bounds(info)
    return f"{cell} {limits}" if limits else cell


def default_cell(info: FieldInfo) -> str:
    """The default as it would be written in the environment."""
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        try:
            return f"`<project>/{value.relative_to(PROJECT_ROOT).as_posix()}`"
        except ValueError:
            return f"`{value.as_posix()}`"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def written_annotations(source: str) -> dict[tuple[str, str], str]:
    """(class name, field name) → the field's annotation as written."""
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    written = ast.get_source_segment(source, statement.annotation)
                    found[(node.name, statement.target.id)] = written or ""
    return found


def is_section(info: FieldInfo) -> bool:
    """True for a nested section (a ``BaseModel``), read through the nested delimiter."""
    kind = info.annotation
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def render() -> str:
    """The settings reference, as Markdown."""
    source = inspect.getsource(settings_module)
    comments = Comments(source)
    written = written_annotations(source)
    prefix = str(Settings.model_config.get("env_prefix", ""))
    delimiter = str(Settings.model_config.get("env_nested_delimiter", "__"))
    out = [
        "# Settings",
        "",
        f"<!-- Generated from config/settings.py by docs/settings.py: run `{COMMAND}` -->",
        "<!-- after a change there. tests/unit/test_settings_reference.py checks it. -->",
        "",
        PREAMBLE.format(prefix=prefix, delimiter=delimiter),
    ]

    def table(model: type[BaseModel], path: list[str]) -> list[str]:
        rows = [
            "| variable | type | default | meaning |",
            "| --- | --- | --- | --- |",
        ]
        for name, info in model.model_fields.items():
            if is_section(info):
                continue
            env = prefix + delimiter.join([*path, info.alias or name]).upper()
            key = (model.__name__, name)
            description = info.description or comments.fields.get(key, "")
            annotation = written.get(key) or str(info.annotation)
            rows.append(
                f"| `{env}` | {type_cell(annotation, info)} | {default_cell(info)} "
                f"| {markdown(description, cell=True)} |"
            )
        return rows

    def sections(model: type[BaseModel], path: list[str]) -> None:
        for name, info in model.model_fields.items():
            if not is_section(info):
                continue
            section = info.annotation
            assert isinstance(section, type) and issubclass(section, BaseModel)
            dotted = ".".join([*path, name])
            out.extend([f"## {dotted}", ""])
            if section.__doc__:  # a class's own docstring; never its base's
                out.extend([markdown(inspect.cleandoc(section.__doc__)), ""])
            out.extend([*table(section, [*path, name]), ""])
            sections(section, [*path, name])

    out.extend(["## General", "", *table(Settings, []), ""])
    sections(Settings, [])
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the reference, or write it to docs/settings.md with ``--write``."""
    parser = argparse.ArgumentParser(description="The settings reference, from Settings.")
    parser.add_argument("--write", action="store_true", help=f"write {TARGET}")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        TARGET.write_text(text, encoding="utf-8")
        print(f"wrote {TARGET}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
