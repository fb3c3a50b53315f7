# quant-assets: every target bootstraps .venv from uv.lock itself.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(HOME)/.local/bin/uv
endif
VENV := .venv
STAMP := $(VENV)/.synced
# With DAGSTER_PG_HOST set, the Dagster instance lives in PostgreSQL (dagster_home/postgres).
ifdef DAGSTER_PG_HOST
export DAGSTER_HOME ?= $(CURDIR)/dagster_home/postgres
else
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
endif

.PHONY: demo test test-ui dev bench sync clean

$(UV):
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --user "uv==0.13.8" || $(PYTHON) -m pip install --quiet "uv==0.13.8"

$(STAMP): pyproject.toml uv.lock | $(UV)
	@UV_BIN=$$(command -v uv || echo $(UV)); $$UV_BIN sync --frozen --all-groups
	@touch $(STAMP)

sync: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/quant-assets demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# The UI in headless Chromium (Debian: apt-get install chromium); skipped with a message without it.
test-ui: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m ui -rs

dev: $(STAMP)
	$(VENV)/bin/quant-assets dev

bench: $(STAMP)
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b; done

clean:
	rm -rf data dagster_home/storage dagster_home/logs dagster_home/history dagster_home/schedules dagster_home/.telemetry
