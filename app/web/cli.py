"""Operator commands of the web part: ``python -m app tokens …``, ``users …``, ``dead …``."""

from __future__ import annotations

from typing import Any

from app.web.cli_dead import add_dead_commands
from app.web.cli_tokens import add_token_commands
from app.web.cli_users import add_user_commands


def add_commands(sub: Any) -> None:
    """Register ``tokens``, ``users`` and ``dead`` on the top-level parser."""
    add_token_commands(sub)
    add_dead_commands(sub)
    add_user_commands(sub)
