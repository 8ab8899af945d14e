"""The smallest useful task: proves a worker on ``default`` answers."""

from __future__ import annotations

from app.celery import app
from tasks.base import ConveyorTask


@app.task(base=ConveyorTask, name="demo.ping")
def ping(message: str = "ping") -> str:
    """Echo ``message`` back from a worker."""
    return f"pong: {message}"
