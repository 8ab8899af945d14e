"""Django settings for the web process and the beat database, from :mod:`config.settings`."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from urllib.parse import unquote, urlsplit

from config.settings import PROJECT_ROOT, Profile, get_settings

_settings = get_settings()
_db = urlsplit(_settings.database_url)

SECRET_KEY = _settings.web.secret_key
DEBUG = _settings.profile is Profile.DEVELOPMENT
ALLOWED_HOSTS = _settings.web.allowed_hosts if _settings.profile is Profile.PRODUCTION else ["*"]
USE_TZ = True
TIME_ZONE = _settings.timezone

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "beat.apps.BeatConfig",
    "app.web.apps.WebConfig",
    "axes",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the console's CSS and scripts from gunicorn itself; no file server needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username and address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]
ROOT_URLCONF = "app.web.urls"
WSGI_APPLICATION = "app.web.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Before the apps' own: the console's pages replace some of Django admin's.
        "DIRS": [PROJECT_ROOT / "app" / "web" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "app.web.admin.console",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": unquote(_db.username or ""),
        "PASSWORD": unquote(_db.password or ""),
        "HOST": _db.hostname or "",
        "PORT": str(_db.port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"connect_timeout": 5},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# A request body may carry a payload up to the ledger's limit (the API answers 413 above it).
DATA_UPLOAD_MAX_MEMORY_SIZE = _settings.ledger.max_payload_bytes + 64 * 1024
STATIC_URL = "static/"
#: ``python -m django collectstatic`` writes here; WhiteNoise serves it, and the apps'
#: own static files too (USE_FINDERS), so the console works without collecting first.
STATIC_ROOT = _settings.embedded.data_dir / "static"
WHITENOISE_USE_FINDERS = True
with contextlib.suppress(OSError):  # WhiteNoise warns about a missing root
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
LOGIN_URL = "/console/login/"

# Console logins: five failures of one user name from one address lock that pair out
# for six minutes (AXES_COOLOFF_TIME, 0.1 h); each attempt during the lock restarts
# it. It ends by itself, or an admin removes it under "Access attempts" in the
# console. Other users and addresses are unaffected.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=6)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
DJANGO_CELERY_BEAT_TZ_AWARE = True

if _settings.profile is Profile.PRODUCTION:
    SECURE_SSL_REDIRECT = True
    # Orchestrators and Prometheus reach the process itself, over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
    SECURE_HSTS_SECONDS = 31_536_000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
