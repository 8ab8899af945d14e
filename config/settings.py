"""The one settings object, read from ``CONVEYOR_*`` variables and ``.env``.

Nested sections are read through ``__``: ``CONVEYOR_BROKER__URL=amqp://…``.
A broker or database URL left empty means *embedded mode*: Conveyor starts
and stops its own Redis and PostgreSQL under ``var/``.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Queues consumed by workers, most urgent first (Redis serves them in this order).
QUEUES: tuple[str, ...] = ("critical", "default", "emails", "reports", "background")

BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")
DATABASE_SCHEMES = ("postgresql", "postgresql+psycopg")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _email_address(address: str) -> str:
    """``address`` if it has a local part and a domain, else a ValueError naming it."""
    local, _, domain = address.partition("@")
    if not local or not domain:
        raise ValueError(f"{address!r} is not an email address")
    return address


#: An email address (``local@domain``), checked wherever one is given: settings, payloads.
EmailAddress = Annotated[str, AfterValidator(_email_address)]


class Profile(StrEnum):
    """Which defaults apply: a laptop, a production deployment or the test suite."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"
    TEST = "test"


class BrokerSettings(BaseModel):
    """Where tasks travel and how long a producer may wait for the broker."""

    #: ``redis://…`` or ``amqp://…``; None starts the embedded Redis.
    url: str | None = None
    #: Seconds a producer waits to connect before ``.delay()`` raises.
    connection_timeout_s: float = Field(default=4.0, gt=0)
    #: Publish attempts after the first one before ``.delay()`` raises.
    publish_max_retries: int = Field(default=3, ge=0, le=100)
    #: Redis: seconds before an unacknowledged message is handed to another worker.
    visibility_timeout_s: int = Field(default=3600, gt=0)
    #: What a process does on starting against a Redis (broker, or cache and delivery
    #: gate) whose ``maxmemory-policy`` may evict keys: ``refuse`` to start, or ``warn``.
    evicting_redis: Literal["refuse", "warn"] = "refuse"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        scheme = urlsplit(value).scheme
        if scheme not in BROKER_SCHEMES:
            raise ValueError(
                f"broker URL {_mask(value)!r} has unknown scheme {scheme!r}; "
                f"use one of {', '.join(BROKER_SCHEMES)}"
            )
        return value

    @property
    def is_redis(self) -> bool:
        """True when the broker is Redis (embedded or external)."""
        return self.url is None or urlsplit(self.url).scheme.startswith("redis")


class DatabaseSettings(BaseModel):
    """PostgreSQL: results, and the job store."""

    #: ``postgresql+psycopg://…``; None starts the embedded PostgreSQL.
    url: str | None = None
    #: SQLAlchemy pool size per process, for tasks and health checks.
    pool_size: int = Field(default=5, ge=1)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        scheme = urlsplit(value).scheme
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(
                f"database URL {_mask(value)!r} has unknown scheme {scheme!r}; "
                f"use postgresql+psycopg://"
            )
        return value.replace("postgresql://", "postgresql+psycopg://", 1)


class WorkerSettings(BaseModel):
    """How workers run tasks: limits, retries and recycling."""

    #: Prefork processes per worker (``--concurrency`` overrides it).
    concurrency: int = Field(default=2, ge=1)
    #: Seconds after which a task gets ``SoftTimeLimitExceeded`` to clean up.
    soft_time_limit_s: int = Field(default=300, gt=0)
    #: Seconds after which the pool child running a task is killed, and the job ends
    #: ``dead``.
    time_limit_s: int = Field(default=360, gt=0)
    #: Retries after the first attempt for a ``TransientError``.
    max_retries: int = Field(default=5, ge=0)
    #: Base of the exponential backoff, seconds (attempt n waits up to base × 2ⁿ).
    retry_backoff_s: int = Field(default=2, ge=1)
    #: Ceiling of one backoff delay, seconds.
    retry_backoff_max_s: int = Field(default=600, ge=1)
    #: A pool child is replaced after this many tasks (leaks stay bounded).
    max_tasks_per_child: int = Field(default=1000, ge=1)
    #: ... or when its resident memory passes this many KiB.
    max_memory_per_child_kib: int = Field(default=512_000, ge=1024)
    #: Seconds a cold shutdown (SIGQUIT) still gives running tasks before ending them.
    soft_shutdown_timeout_s: float = Field(default=60.0, ge=0)
    #: Longest a task event (for Flower and monitors) waits to go out with others, seconds;
    #: 0: each turn of the worker's event loop sends what it has, as plain Celery does.
    events_flush_s: float = Field(default=0.1, ge=0, le=5)

    @model_validator(mode="after")
    def _soft_below_hard(self) -> Self:
        if self.soft_time_limit_s >= self.time_limit_s:
            raise ValueError(
                f"worker.soft_time_limit_s={self.soft_time_limit_s} must be below "
                f"worker.time_limit_s={self.time_limit_s}"
            )
        return self


class SmtpSettings(BaseModel):
    """Outgoing mail. With no host, mails are written as files under ``var/mail`` (the local
    mail sink, listed on the console's Mail page outside the production profile)."""

    #: SMTP server; None: each mail is written as a ``.eml`` file under
    #: ``<embedded.data_dir>/mail``.
    host: str | None = None
    #: SMTP port.
    port: int = Field(default=25, gt=0, lt=65536)
    #: Login, if the server needs one.
    username: str | None = None
    #: Password for that login.
    password: str | None = None
    #: Use STARTTLS.
    use_tls: bool = False
    #: The From address.
    sender: str = "conveyor@localhost"
    #: SMTP connection timeout, seconds.
    timeout_s: float = Field(default=10.0, gt=0)


class WebSettings(BaseModel):
    """The web process: API, console, health and metrics."""

    #: Address the web process binds to.
    host: str = "127.0.0.1"
    #: Its port.
    port: int = Field(default=8000, gt=0, lt=65536)
    #: Django's ``SECRET_KEY``; the production profile requires a random value of 50+
    #: characters.
    secret_key: str = "development-only-insecure-key"
    #: Host names served in the production profile (Django's ALLOWED_HOSTS).
    allowed_hosts: list[str] = ["localhost", "127.0.0.1"]
    #: Days an audit record is kept (a year, as audits usually ask); older ones are
    #: deleted nightly by ``maintenance.purge_audit_records``.
    audit_retention_days: int = Field(default=365, ge=1)
    #: Seconds of recent work ``/metrics`` reports per task: ``conveyor_task_runs`` and
    #: ``conveyor_task_duration_seconds`` cover the attempts that ended this long ago or less.
    metrics_window_s: int = Field(default=300, ge=60, le=3600)
    #: The address users reach the web process at (e.g. ``https://jobs.example.com``),
    #: put before the download links that emails carry; None: ``http://<host>:<port>``.
    public_url: str | None = None

    @field_validator("public_url")
    @classmethod
    def _http_base(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"public URL {value!r} is not an http(s) address")
        return value.rstrip("/")

    @property
    def base_url(self) -> str:
        """Where a link to the web process starts: ``public_url``, else host and port."""
        return self.public_url or f"http://{self.host}:{self.port}"


class LogFormat(StrEnum):
    """How a worker writes its log lines."""

    TEXT = "text"  #: Celery's own text lines
    JSON = "json"  #: one JSON object a line; a task's lines name its job


class LogSettings(BaseModel):
    """The workers' log lines."""

    #: ``json``: one JSON object a line, and every line a task logs carries its ``job_id``,
    #: ``task``, ``attempt``, ``queue`` and ``worker``; ``text``: Celery's format. Unset:
    #: ``json`` in the ``production`` profile, ``text`` in the others.
    format: LogFormat | None = None


class FlowerSettings(BaseModel):
    """Flower, the live Celery monitor, started beside the web process."""

    #: Address Flower binds to; off loopback it requires ``basic_auth``.
    host: str = "127.0.0.1"
    #: Flower's port.
    port: int = Field(default=5555, gt=0, lt=65536)
    #: ``user:password``; required when Flower listens off loopback.
    basic_auth: str | None = None

    @property
    def on_loopback(self) -> bool:
        """True when only this machine can reach Flower."""
        return self.host in ("127.0.0.1", "localhost", "::1")


class LedgerSettings(BaseModel):
    """The job ledger: how lifecycle writes are batched, and when a job is given up."""

    #: Longest a transition waits in memory before it is written, seconds.
    flush_interval_s: float = Field(default=0.2, gt=0, le=10)
    #: Transitions that trigger a write before the interval is up.
    batch_size: int = Field(default=500, ge=1)
    #: Transitions a process keeps while PostgreSQL is unreachable.
    max_buffer: int = Field(default=500_000, ge=1000)
    #: Deliveries of one attempt beyond the first before the job is declared dead
    #: (a task that kills its worker is redelivered for ever otherwise).
    max_redeliveries: int = Field(default=3, ge=0)
    #: A message due later than this many seconds waits in PostgreSQL, not in the broker.
    hold_after_s: float = Field(default=30.0, ge=0)
    #: Seconds between a worker's heartbeats.
    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    #: A job ``running`` on a worker silent this long is requeued (must exceed the
    #: heartbeat interval several times over).
    recovery_after_s: float = Field(default=60.0, gt=0)
    #: Days a completed or cancelled job (with its events and result) is kept.
    retention_days: int = Field(default=30, ge=1)
    #: Days a failed or dead job is kept, for the post-mortem.
    failed_retention_days: int = Field(default=90, ge=1)
    #: Seconds the delivery gate (Redis) remembers a job after its last delivery; a
    #: duplicate published later is only refused if PostgreSQL is asked (redelivered).
    gate_ttl_s: float = Field(default=86400, ge=3600)
    #: Largest encoded payload ``JobService.enqueue`` accepts, bytes.
    max_payload_bytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)


class BeatSettings(BaseModel):
    """The scheduler: its leader lease, how fast edits apply, how far it catches up, how
    long it keeps its fire records."""

    #: Seconds a beat's leadership lasts unless renewed; a dead leader is replaced
    #: within this plus one renewal interval.
    lease_ttl_s: float = Field(default=6.0, ge=2, le=300)
    #: Seconds between lease renewals (and a follower's attempts to take over).
    renew_interval_s: float = Field(default=1.0, gt=0, le=60)
    #: Seconds between reloads of the schedule tables (edits apply within this).
    reload_interval_s: float = Field(default=1.0, gt=0, le=5)
    #: A fire this many seconds late is a misfire, handled by the schedule's policy.
    misfire_grace_s: float = Field(default=5.0, ge=0.5)
    #: Shifts the scheduler's clock by this many seconds (drills and tests only).
    clock_offset_s: float = 0.0
    #: Days a fire record (a schedule's history) is kept, counted from when it was written;
    #: older ones are deleted nightly by ``maintenance.purge_schedule_fires``. The default
    #: matches ``ledger.retention_days``; a failed job kept longer still names its schedule
    #: and fire time in its metadata.
    fire_retention_days: int = Field(default=30, ge=1)


class ServicesSettings(BaseModel):
    """The services runtime (``python -m app services``): long-running loops, one thread
    each, with heartbeats, error backoff and, for singletons, a lease. ``lease_ttl_s``
    must be at least twice ``heartbeat_interval_s``, and ``error_backoff_s`` at most
    ``error_backoff_max_s``."""

    #: Your own service modules, imported by ``python -m app services`` beside Conveyor's
    #: built-in ones (a JSON list, e.g. ``["myapp.services"]``).
    modules: list[str] = []
    #: Run Conveyor's built-in services too: the ledger census, which logs the jobs per
    #: state every 30 s, the notifier, which mails about finished jobs, and the monitors
    #: (``monitors.enabled``).
    builtins: bool = True
    #: This host's name in the ``services`` table and in singleton leases; None: the
    #: machine's host name. Two services processes on one machine each need their own.
    host: str | None = Field(default=None, min_length=1, max_length=150)
    #: Seconds a stopping process (SIGTERM, SIGINT) gives running iterations to finish;
    #: an iteration still running then is abandoned and the process exits 3.
    grace_s: float = Field(default=30.0, ge=0, le=3600)
    #: Seconds between heartbeats: each service's row, and its singleton lease renewed.
    heartbeat_interval_s: float = Field(default=5.0, gt=0, le=60)
    #: Seconds a singleton's lease lasts unless renewed; another host takes over a dead
    #: holder's service within this plus one heartbeat interval.
    lease_ttl_s: float = Field(default=15.0, ge=1, le=600)
    #: Seconds a poll loop waits after a poll that found work.
    poll_fast_s: float = Field(default=0.05, gt=0, le=60)
    #: Longest wait of a poll loop whose polls find nothing, seconds: each empty poll
    #: doubles the wait, from ``poll_fast_s`` up to this.
    poll_idle_s: float = Field(default=5.0, gt=0, le=3600)
    #: Seconds a service waits after its first error in a row; each further error in a row
    #: doubles it (a random quarter at most is taken off, to spread hosts apart).
    error_backoff_s: float = Field(default=1.0, gt=0, le=3600)
    #: Ceiling of that wait, seconds.
    error_backoff_max_s: float = Field(default=300.0, gt=0, le=86_400)
    #: Errors in a row after which a service is ``failed`` and the process exits 1, for
    #: its supervisor (systemd, Compose, Kubernetes) to restart it.
    max_consecutive_errors: int = Field(default=10, ge=1, le=100_000)
    #: Days a row of the ``services`` table not heard from is kept; each services process
    #: deletes older ones when it starts.
    forget_after_days: int = Field(default=7, ge=1)

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> Self:
        if self.heartbeat_interval_s * 2 > self.lease_ttl_s:
            raise ValueError(
                f"services.lease_ttl_s={self.lease_ttl_s} must be at least twice "
                f"services.heartbeat_interval_s={self.heartbeat_interval_s}, "
                "or a live singleton loses its lease"
            )
        if self.error_backoff_s > self.error_backoff_max_s:
            raise ValueError(
                f"services.error_backoff_s={self.error_backoff_s} must not exceed "
                f"services.error_backoff_max_s={self.error_backoff_max_s}"
            )
        return self


class CacheSettings(BaseModel):
    """Redis for caches (job statistics) and the delivery gate."""

    #: ``redis://…``; None: the broker when it is Redis, else the embedded Redis.
    url: str | None = None
    #: Seconds the hourly job statistics stay cached and answer ``/api/v1/stats`` instead
    #: of live counts (its ``generated_at`` says when they were counted); 0 caches
    #: nothing (always live). The console's front page shows them (its jobs per queue and
    #: state always count live).
    stats_ttl_s: int = Field(default=7200, ge=0)


class MonitorSettings(BaseModel):
    """Conveyor's monitors: built-in singleton services (``python -m app services``) that
    raise an alert while a condition holds and resolve it once it clears."""

    #: Run the monitors (with ``services.builtins``).
    enabled: bool = True
    #: Seconds between two looks of each monitor.
    interval_s: float = Field(default=60.0, ge=0.05, le=3600)
    #: Jobs of a queue that failed for good or died in the last ``window_s`` seconds from
    #: which its ``queue.<name>.failures`` alert fires.
    failures_threshold: int = Field(default=10, ge=1)
    #: The window of ``failures_threshold``, seconds.
    window_s: float = Field(default=3600.0, gt=0, le=30 * 86400)
    #: Seconds a queue's oldest published job may wait before ``queue.<name>.backlog``
    #: fires.
    backlog_age_s: float = Field(default=600.0, gt=0)
    #: Megabytes a worker's largest process (main or pool child) may hold, as its last
    #: heartbeat says, before ``worker.<name>.memory`` fires. A pool child over
    #: ``worker.max_memory_per_child_kib`` is only replaced once its task ends.
    worker_rss_mb: float = Field(default=1024.0, gt=0)
    #: Seconds without a beat leader before ``beat.leader`` fires (a handover takes up to
    #: the lease's TTL plus one renewal).
    beat_leader_grace_s: float = Field(default=60.0, ge=0)


class AlertSettings(BaseModel):
    """Alerts raised by monitors: how often an open one notifies again, and where
    notifications go (each one a job: ``alerts.email``, ``alerts.webhook``)."""

    #: Seconds an open alert stays quiet after it notified; raised again after that, it
    #: notifies again (a new alert for its key always notifies at once).
    cooldown_s: float = Field(default=3600.0, ge=0, le=30 * 86400)
    #: Addresses mailed for each notification, through ``smtp`` (a JSON list, e.g.
    #: ``["ops@example.com"]``); empty: no email.
    email_to: list[EmailAddress] = Field(default=[], max_length=100)
    #: URL that gets a JSON POST for each notification, Slack-compatible (a Slack or
    #: Mattermost incoming webhook); None: no webhook.
    webhook_url: str | None = None
    #: Seconds one webhook POST may take before it counts as failed (and is retried).
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: Notify once more when an alert that notified is resolved.
    notify_resolved: bool = True

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"webhook URL {parts.scheme}://{parts.netloc}… is not http(s)")
        return value


class CatalogSettings(BaseModel):
    """The sample catalog's recurring jobs (``tasks.catalog``) and services
    (``app.services.catalog``): stock thresholds and how long its data is kept."""

    #: A live product with at most this many in stock (and more than 0) raises a
    #: ``critical`` stock alert; 0 in stock is always critical (out of stock).
    critical_stock: int = Field(default=5, ge=0)
    #: A live product with at most this many in stock (and more than ``critical_stock``)
    #: raises a ``warning`` stock alert.
    low_stock: int = Field(default=10, ge=0)
    #: Days after which the monthly cleanup deletes cancelled orders (with their lines).
    retention_days: int = Field(default=90, ge=1)
    #: Products cached as the popular ones by the cache warmer.
    popular_limit: int = Field(default=50, ge=1, le=10_000)

    @model_validator(mode="after")
    def _low_above_critical(self) -> Self:
        if self.low_stock < self.critical_stock:
            raise ValueError(
                f"catalog.low_stock={self.low_stock} must not be below "
                f"catalog.critical_stock={self.critical_stock}"
            )
        return self


class ReportSettings(BaseModel):
    """The catalog's sales reports (``reports.catalog_daily``, ``reports.catalog_monthly``)
    and data exports (``reports.export``)."""

    #: Addresses the daily and monthly sales reports are mailed to, through ``smtp`` (a
    #: JSON list); empty: the reports are built and returned, and mailed to nobody.
    email_to: list[EmailAddress] = Field(default=[], max_length=100)
    #: Seconds the download link in an export's email stays valid.
    export_link_lifetime_s: int = Field(default=7 * 86400, ge=60)


class NotificationSettings(BaseModel):
    """Mail about jobs, sent by the services process's notifier (``conveyor.notifier``): a
    job gone dead to the recipients of its task's pattern, and a finished job to those its
    caller named (``notify=`` on enqueue). Each mail is a job of its own (``emails.job_notice``)."""

    #: Who hears of a dead job: task-name patterns (``fnmatch``: ``reports.*``, ``*``) to
    #: addresses, as JSON (``{"reports.*": ["reports@example.com"], "*": ["ops@example.com"]}``);
    #: the recipients of every pattern the task's name matches get one mail between them.
    dead_jobs: dict[str, list[EmailAddress]] = Field(default={}, max_length=100)
    #: A directory of templates that replace the built-in ones of the same name
    #: (``job_dead.html``, ``job_dead.txt``, ``job_finished.html``…; Jinja); None: the
    #: built-in ones.
    templates_dir: Path | None = None

    @field_validator("dead_jobs")
    @classmethod
    def _patterns(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for pattern, recipients in value.items():
            if not pattern.strip():
                raise ValueError("a dead-job pattern must not be empty")
            if not recipients:
                raise ValueError(f"dead-job pattern {pattern!r} names no recipient")
        return value

    @field_validator("templates_dir")
    @classmethod
    def _templates_from_project(cls, value: Path | None) -> Path | None:
        return value if value is None or value.is_absolute() else PROJECT_ROOT / value


class EmbeddedSettings(BaseModel):
    """The servers Conveyor runs itself when no URL is given."""

    #: Data of the embedded servers, Flower's state (``flower.db``), the mail sink
    #: (``mail/``) and static files.
    data_dir: Path = PROJECT_ROOT / "var"
    #: Port of the embedded PostgreSQL.
    postgres_port: int = Field(default=54329, gt=0, lt=65536)
    #: Port of the embedded Redis.
    redis_port: int = Field(default=63799, gt=0, lt=65536)


class StorageSettings(BaseModel):
    """File storage (``app.storage``): files on the local filesystem, their metadata in
    PostgreSQL, download links signed with ``web.secret_key`` that the web process serves."""

    #: Directory the files are stored under; a relative path is taken from the project
    #: directory. Every worker and web process must see the same directory.
    root: Path = PROJECT_ROOT / "var" / "storage"
    #: Largest file ``save`` accepts, bytes; a larger one is refused and nothing is kept.
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    #: Seconds a download link is valid when its maker gives no lifetime (a link never
    #: outlives its file).
    link_lifetime_s: int = Field(default=7 * 86400, ge=60)
    #: Days a file is kept when its saver gives no expiry; expired files are deleted
    #: nightly by ``storage.purge_expired``.
    retention_days: int = Field(default=30, ge=1)

    @field_validator("root")
    @classmethod
    def _from_project(cls, value: Path) -> Path:
        return value if value.is_absolute() else PROJECT_ROOT / value


class Settings(BaseSettings):
    """Everything Conveyor reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="CONVEYOR_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    #: ``development`` turns Django's DEBUG on; ``production`` requires a 50+ character
    #: ``web.secret_key`` and turns on HTTPS redirect, HSTS and secure cookies.
    profile: Profile = Profile.DEVELOPMENT
    #: Celery's and Django's time zone, and the default time zone of a schedule.
    timezone: str = "UTC"
    #: Log level of the worker and beat.
    log_level: str = "INFO"
    #: Your own task modules, imported by every process beside Conveyor's ``tasks``
    #: (a JSON list, e.g. ``["myapp.jobs"]``).
    task_modules: list[str] = []
    log: LogSettings = LogSettings()
    broker: BrokerSettings = BrokerSettings()
    database: DatabaseSettings = DatabaseSettings()
    worker: WorkerSettings = WorkerSettings()
    smtp: SmtpSettings = SmtpSettings()
    web: WebSettings = WebSettings()
    flower: FlowerSettings = FlowerSettings()
    embedded: EmbeddedSettings = EmbeddedSettings()
    ledger: LedgerSettings = LedgerSettings()
    beat: BeatSettings = BeatSettings()
    services: ServicesSettings = ServicesSettings()
    cache: CacheSettings = CacheSettings()
    alerts: AlertSettings = AlertSettings()
    monitors: MonitorSettings = MonitorSettings()
    storage: StorageSettings = StorageSettings()
    reports: ReportSettings = ReportSettings()
    notifications: NotificationSettings = NotificationSettings()
    catalog: CatalogSettings = CatalogSettings()

    @model_validator(mode="after")
    def _limits_fit_visibility_timeout(self) -> Self:
        if self.ledger.recovery_after_s < 3 * self.ledger.heartbeat_interval_s:
            raise ValueError(
                f"ledger.recovery_after_s={self.ledger.recovery_after_s} must be at least three "
                f"heartbeats (ledger.heartbeat_interval_s={self.ledger.heartbeat_interval_s})"
            )
        if self.ledger.hold_after_s >= self.broker.visibility_timeout_s:
            raise ValueError(
                f"ledger.hold_after_s={self.ledger.hold_after_s} must be below "
                f"broker.visibility_timeout_s={self.broker.visibility_timeout_s}"
            )
        # A Redis message unacknowledged past the visibility timeout is delivered
        # again while it still runs (celery#7651, kombu#337).
        vt = self.broker.visibility_timeout_s
        for name, value in (
            ("worker.time_limit_s", self.worker.time_limit_s),
            ("worker.retry_backoff_max_s", self.worker.retry_backoff_max_s),
        ):
            if value >= vt:
                raise ValueError(
                    f"{name}={value} must be below broker.visibility_timeout_s={vt}, "
                    "or Redis redelivers the task while it still waits or runs"
                )
        if self.beat.renew_interval_s * 2 > self.beat.lease_ttl_s:
            raise ValueError(
                f"beat.lease_ttl_s={self.beat.lease_ttl_s} must be at least twice "
                f"beat.renew_interval_s={self.beat.renew_interval_s}, "
                "or a live leader loses its lease"
            )
        weak_key = self.web.secret_key == WebSettings().secret_key or len(self.web.secret_key) < 50
        if self.profile is Profile.PRODUCTION and weak_key:
            raise ValueError(
                "web.secret_key must be set to a random value of 50+ characters "
                "in the production profile"
            )
        return self

    @property
    def json_logs(self) -> bool:
        """True when workers write JSON log lines (``log.format``, else the profile's default)."""
        if self.log.format is None:
            return self.profile is Profile.PRODUCTION
        return self.log.format is LogFormat.JSON

    @property
    def mail_dir(self) -> Path:
        """Where mails go as ``.eml`` files when ``smtp.host`` is unset: the local mail sink."""
        return self.embedded.data_dir / "mail"

    @property
    def embedded_broker(self) -> bool:
        """True when Conveyor runs its own Redis."""
        return self.broker.url is None

    @property
    def embedded_database(self) -> bool:
        """True when Conveyor runs its own PostgreSQL."""
        return self.database.url is None

    @property
    def broker_url(self) -> str:
        """The broker to use, the embedded Redis when none is configured."""
        return self.broker.url or f"redis://127.0.0.1:{self.embedded.redis_port}/0"

    @property
    def embedded_cache(self) -> bool:
        """True when caches need the embedded Redis (none configured, broker not Redis)."""
        return self.cache.url is None and not self.broker.is_redis

    @property
    def cache_url(self) -> str:
        """The Redis that holds caches."""
        if self.cache.url:
            return self.cache.url
        if self.broker.is_redis:
            return self.broker_url
        return f"redis://127.0.0.1:{self.embedded.redis_port}/0"

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of PostgreSQL, the embedded one when none is configured."""
        return (
            self.database.url
            or f"postgresql+psycopg://postgres@127.0.0.1:{self.embedded.postgres_port}/conveyor"
        )


def _mask(url: str) -> str:
    """The URL without its password, fit for an error message or a log line."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


mask_url = _mask


class InvalidSettings(ValueError):
    """The environment holds a wrong value; the message names each setting and value."""


def load_settings() -> Settings:
    """Read the settings, or raise :class:`InvalidSettings` naming every wrong value.

    Values are shown as given, except that passwords in URLs are masked.
    """
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            env = "CONVEYOR_" + "__".join(str(part) for part in error["loc"]).upper()
            value = error.get("input")
            shown = _mask(value) if isinstance(value, str) else None
            given = f" (got {shown!r} from {env})" if shown is not None else ""
            reason = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{name}: {reason}{given}")
        raise InvalidSettings("invalid settings:\n  " + "\n  ".join(lines)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
