# tango-bluesky-suite: `make demo` brings the suite up and runs a scan; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint bench venv redis-server tango-test down clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	@touch $@

$(TEST_STAMP): $(STAMP)
	$(PIP) install --quiet -e '.[dev,test,sardana,notebooks]'
	@touch $@

venv: $(STAMP)

# Debian's redis-server: installed with apt when missing and we are root, else say how.
redis-server:
	@if command -v redis-server >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's redis-server with apt"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	else \
		echo "redis-server is missing: run 'sudo apt-get install redis-server' and try again"; exit 1; \
	fi

# Debian's tango-test (Tango's C++ TangoTest device, a foreign device for the tests), likewise.
tango-test:
	@if [ -x /usr/lib/tango/TangoTest ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's tango-test with apt"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tango-test >/dev/null; \
	else \
		echo "tango-test is missing: run 'sudo apt-get install tango-test' and try again"; exit 1; \
	fi

demo: $(STAMP) redis-server
	$(VENV)/bin/tango-suite up --detach
	$(VENV)/bin/tango-suite demo
	@echo "The stack is still running: '$(VENV)/bin/tango-suite status' shows it, '$(VENV)/bin/tango-suite down' stops it."

test: $(TEST_STAMP) redis-server tango-test
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(TEST_STAMP) redis-server tango-test
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

down:
	$(VENV)/bin/tango-suite down

clean:
	rm -rf $(VENV) build *.egg-info
