# The two entry points of the README: `make run` and `make test`.
# Everything they need is set up here, idempotently, on a fresh Debian box.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
# pip says only what went wrong: one -q still relays setuptools' notice that
# a strict editable install was made (it always is here, by design), and the
# version check is noise on every `make run`.
PIP_QUIET := -qq --disable-pip-version-check

.PHONY: run test dev lint typecheck system-deps test-deps bench reliability clean

# Debian packages: liblzo2-dev to build python-lzo (the daemon needs only
# that); memcached, redis and prometheus are the peers and the scraper the
# test suite starts.
RUN_DEBS := liblzo2-dev
TEST_DEBS := $(RUN_DEBS) memcached redis-server prometheus
define install_debs
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

system-deps:
	$(call install_debs,$(RUN_DEBS))

test-deps:
	$(call install_debs,$(TEST_DEBS))

$(STAMP): pyproject.toml | system-deps
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --upgrade pip setuptools wheel
	$(BIN)/pip install $(PIP_QUIET) -e '.[test]' --config-settings editable_mode=strict
	@touch $@

# Re-link the editable install: strict mode links files one by one, so a
# new module needs this (cheap, no downloads).
dev: $(STAMP)
	@$(BIN)/pip install $(PIP_QUIET) --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

run: dev
	$(BIN)/tmemd $(ARGS)

lint: dev
	$(BIN)/ruff check tmemd proto client tests bench
	$(BIN)/ruff format --check tmemd proto client tests bench

typecheck: dev
	$(BIN)/mypy -p tmemd -p tmem.proto -p tmem.client -p tmem.bench

test: test-deps dev
	$(BIN)/python -m pytest tests $(ARGS)

# The reliability suite (at most ten minutes): prints one table and writes
# docs/reliability.md with the figures of this run.
reliability: dev
	$(BIN)/python -m tmemd.reliability --write docs/reliability.md

bench: dev
	$(BIN)/tmemd-bench --quick $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
