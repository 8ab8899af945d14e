"""WSGI entry point: ``gunicorn app.web.wsgi:application``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.django_settings")
application = get_wsgi_application()
