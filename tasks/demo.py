"""The smallest useful task: proves a worker on ``default`` answers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.celery import app


class PingPayload(BaseModel):
    """What ``demo.ping`` takes."""

    message: str = Field(default="ping", max_length=1000)


@app.task(name="demo.ping", payload_model=PingPayload)
def ping(message: str = "ping") -> str:
    """Echo ``message`` back from a worker."""
    return f"pong: {message}"
