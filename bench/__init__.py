"""Throughput and latency of no-op tasks: bare Celery against Conveyor.

``make bench`` (``python -m bench``) drains a backlog of no-op tasks through a
real prefork worker for each variant in :data:`bench.variants.VARIANTS`, on
Redis and on RabbitMQ, and prints throughputs, their ratios and the
enqueue→start latency of tasks published at a steady rate.
"""

from __future__ import annotations
