"""The job ledger: every job's state and history, durable in PostgreSQL."""

from __future__ import annotations
