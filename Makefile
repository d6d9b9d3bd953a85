# tango-bluesky-suite: `make demo` brings the suite up and runs a scan; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint bench venv redis-server debian-packages down clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	@touch $@

$(TEST_STAMP): $(STAMP)
	$(PIP) install --quiet -e '.[dev,test,sardana,notebooks]'
	@touch $@

venv: $(STAMP)

# Debian packages the suite runs against: redis-server for the Redis bridge; MariaDB, Tango's
# C++ DataBaseds (tango-db), Starter, TangoAccessControl and TangoTest for the facility-deployment tests. Installed
# with apt when missing and we are root, else say how. dbconfig-no-thanks keeps tango-db's
# postinst from wanting a running system MariaDB: the tests create the schema themselves.
DEBIAN_PACKAGES := redis-server mariadb-server tango-db tango-starter tango-accesscontrol tango-test
DEBIAN_EXTRA := dbconfig-no-thanks
debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's$$missing with apt"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(DEBIAN_EXTRA) $$missing >/dev/null; \
	else \
		echo "missing Debian packages:$$missing: run 'sudo DEBIAN_FRONTEND=noninteractive apt-get install -y $(DEBIAN_EXTRA)$$missing' and try again"; exit 1; \
	fi

redis-server: debian-packages

demo: $(STAMP) redis-server
	$(VENV)/bin/tango-suite up --detach
	$(VENV)/bin/tango-suite demo
	@echo "The stack is still running: '$(VENV)/bin/tango-suite status' shows it, '$(VENV)/bin/tango-suite down' stops it."

test: $(TEST_STAMP) debian-packages
	$(PY) -m pytest

# ruff, the layering contracts in pyproject.toml ([tool.importlinter]) and mypy over ophyd_tango, bridges and tango_servers.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: $(TEST_STAMP) debian-packages
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

down:
	$(VENV)/bin/tango-suite down

clean:
	rm -rf $(VENV) build *.egg-info
