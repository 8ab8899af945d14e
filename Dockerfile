# One image for every Conveyor process; docker-compose.yml runs it as
# `python -m app migrate|worker|beat|flower|web`, one command per container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only the packages and their metadata: no .venv, var/, .env or tests in the image.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY beat ./beat
COPY config ./config
COPY tasks ./tasks
RUN pip install . \
    && rm -rf /src

# Flower's state (flower.db) and the mail outbox (when no SMTP host is set) live
# in the data directory; run unprivileged.
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/conveyor conveyor
ENV CONVEYOR_EMBEDDED__DATA_DIR=/var/lib/conveyor
WORKDIR /var/lib/conveyor
USER conveyor

EXPOSE 8000 5555
CMD ["python", "-m", "app", "--help"]
