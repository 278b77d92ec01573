# Kith — every target is one line a newcomer can read. Python >= 3.11 is all `run` needs;
# `test` also uses Node >= 20 with npm, and installs Debian's chromium if missing (as root).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE   := tests/watermelon
NPM_STAMP := $(NODE)/node_modules/.installed

.PHONY: run test lint bench eval openapi clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q --upgrade pip && $(BIN)/pip install -q -e ".[dev]" && touch $(STAMP)

$(NPM_STAMP): $(NODE)/package.json $(NODE)/package-lock.json
	cd $(NODE) && npm ci --no-audit --no-fund && touch node_modules/.installed

chromium:            ## Debian's Chromium for the caregiver page's browser test, installed if missing
	@sh tests/setup/chromium.sh

run: $(STAMP)        ## embedded PostgreSQL + Valkey (unless DATABASE_URL/REDIS_URL), migrations, worker + API
	$(BIN)/kith dev

test: $(STAMP) $(NPM_STAMP) chromium  ## the whole suite (+ the real WatermelonDB from npm, Chromium), same servers as `run`; exit 5 is a failure
	npm ci --no-audit --no-fund --silent  # the root package.json: client-generation checks
	$(BIN)/pytest $(PYTEST_ARGS) || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }

lint: $(STAMP)       ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: $(STAMP)      ## benchmarks, each next to its ceiling measured in the same run
	@command -v wrk >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && apt-get install -y -qq wrk >/dev/null) || true
	$(BIN)/python -m bench

eval: $(STAMP)       ## the rules engine's labelled evaluation (decision 0010): precision, recall, false alarms
	$(BIN)/python -m bench.rules_eval

openapi: $(STAMP)    ## write schemas/openapi.json and schemas/tables.schema.json for client generators
	$(BIN)/kith openapi --out-dir schemas

clean:               ## remove the venv and the embedded servers' data
	rm -rf $(VENV) .kith test-output $(NODE)/node_modules
