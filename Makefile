# The two entry points of the README: `make run` and `make test`.
# Everything they need is set up here, idempotently, on a fresh Debian box.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test dev lint typecheck system-deps bench clean

# Debian packages: liblzo2-dev to build python-lzo; memcached, redis and
# prometheus are the peers and the scraper the integration tests start.
DEBS := liblzo2-dev memcached redis-server prometheus
system-deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml | system-deps
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=strict
	@touch $@

# Re-link the editable install: strict mode links files one by one, so a
# new module needs this (cheap, no downloads).
dev: $(STAMP)
	@$(BIN)/pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

run: dev
	$(BIN)/tmemd $(ARGS)

lint: dev
	$(BIN)/ruff check tmemd proto client tests bench
	$(BIN)/ruff format --check tmemd proto client tests bench

typecheck: dev
	$(BIN)/mypy -p tmemd -p tmem.proto -p tmem.client

test: dev
	$(BIN)/python -m pytest tests $(ARGS)

bench: dev
	$(BIN)/python bench/throughput.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
