# Two commands for a newcomer: `make run` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit lint bench install browsers clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The console's browser tests drive Debian's chromium (no browser download by Playwright).
browsers:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "browsers: /usr/bin/chromium is missing; install Debian's chromium (root needed)"; fi

run: $(STAMP)
	$(PY) -m app run

# Test modules run in TEST_PROCESSES parallel processes (pytest-xdist), a module's tests
# together; each process has its own database, Redis database and RabbitMQ vhost. Most
# acceptance tests wait (on processes, slots, timeouts), so three keep two cores busy.
TEST_PROCESSES ?= 3

test: $(STAMP) browsers
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile

# Pure logic: needs no server and provisions none (tests/integration/test_tiers.py proves it).
test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) -m bench
	$(PY) -m bench.ledger
	$(PY) -m bench.beat
	$(PY) -m bench.export

clean:
	rm -rf $(VENV) var .pytest_cache
