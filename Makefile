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

# Debian packages: liblzo2-dev to build python-lzo and gcc for the mypyc
# build (docs/build.md; the daemon needs only those); memcached, redis and
# prometheus are the peers and the scraper the test suite starts.
RUN_DEBS := liblzo2-dev gcc
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

# The compiled build also needs Python's headers: a python.org or pyenv
# Python has them; Debian's python3 needs python3-dev.
system-deps:
	$(call install_debs,$(RUN_DEBS))
	@$(PY) -c "import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
	  || $(call install_debs,python3-dev)

test-deps:
	$(call install_debs,$(TEST_DEBS))

PIP := $(BIN)/pip install $(PIP_QUIET)
# Every source the build reads: a change to any of them rebuilds (a compiled
# module's .so would otherwise shadow its edited .py).
BUILD_INPUTS := setup.py pyproject.toml $(shell find tmemd proto client bench -name '*.py' 2>/dev/null)
# TMEMD_PURE_PYTHON=1 makes `make dev` install the interpreted build.
BUILT := $(VENV)/.built-$(if $(filter-out 0,$(TMEMD_PURE_PYTHON)),interpreted,compiled)

# The venv and the dependencies (interpreted, so the compile below runs once).
$(STAMP): pyproject.toml | system-deps
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel mypy
	TMEMD_PURE_PYTHON=1 $(PIP) -e '.[test]' --config-settings editable_mode=strict
	@touch $@

# The editable install, compiled with mypyc unless TMEMD_PURE_PYTHON=1
# (about two minutes on 2 cores).  Stale extension modules are removed
# first: beside a source they would shadow it.
$(BUILT): $(STAMP) $(BUILD_INPUTS)
	@find tmemd proto client -name '*.so' -delete; rm -f $(VENV)/.built-*
	$(PIP) --no-deps --no-build-isolation -e . --config-settings editable_mode=strict
	@touch $@
	@$(BIN)/tmemd --version

dev: $(BUILT)

run: dev
	$(BIN)/tmemd $(ARGS)

lint: dev
	$(BIN)/ruff check tmemd proto client tests bench setup.py
	$(BIN)/ruff format --check tmemd proto client tests bench setup.py

typecheck: dev
	$(BIN)/mypy -p tmemd -p tmem.proto -p tmem.client -p tmem.bench

# The suite against the compiled build, then the engine's model and
# invariant tests again against the interpreted one (the same sources
# loaded as Python: tmem.proto._build).
ENGINE_TESTS := tests/property/test_engine_model.py tests/property/test_engine_pam_model.py \
	tests/property/test_pam_models.py tests/unit/test_engine.py tests/unit/test_build.py
test: test-deps dev
	TMEMD_EXPECT_BUILD=compiled $(BIN)/python -m pytest tests $(ARGS)
	TMEMD_PURE_PYTHON=1 TMEMD_EXPECT_BUILD=interpreted $(BIN)/python -m pytest -q $(ENGINE_TESTS)

# The reliability suite (at most ten minutes): prints one table and writes
# docs/reliability.md with the figures of this run.
reliability: dev
	$(BIN)/python -m tmemd.reliability --write docs/reliability.md

bench: dev
	$(BIN)/tmemd-bench --quick $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache *.so
	find tmemd proto client -name '*.so' -delete
