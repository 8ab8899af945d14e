"""Operator commands of the web part: ``python -m app tokens …`` and ``users …``."""

from __future__ import annotations

from typing import Any

from app.web.cli_tokens import add_token_commands
from app.web.cli_users import add_user_commands


def add_commands(sub: Any) -> None:
    """Register ``tokens`` and ``users`` on the top-level parser."""
    add_token_commands(sub)
    add_user_commands(sub)
