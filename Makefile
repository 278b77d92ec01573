# Kith — every target is one line a newcomer can read. Python >= 3.11 is all you need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench openapi clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q --upgrade pip && $(BIN)/pip install -q -e ".[dev]" && touch $(STAMP)

run: $(STAMP)        ## embedded PostgreSQL + Valkey (unless DATABASE_URL/REDIS_URL), migrations, worker + API
	$(BIN)/kith dev

test: $(STAMP)       ## the whole suite, same servers as `run`; exit 5 (no tests collected) is a failure
	$(BIN)/pytest $(PYTEST_ARGS) || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }

lint: $(STAMP)       ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: $(STAMP)      ## benchmarks, each next to its ceiling measured in the same run
	@command -v wrk >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && apt-get install -y -qq wrk >/dev/null) || true
	$(BIN)/python -m bench

openapi: $(STAMP)    ## write schemas/openapi.json and schemas/tables.schema.json for client generators
	$(BIN)/kith openapi --out-dir schemas

clean:               ## remove the venv and the embedded servers' data
	rm -rf $(VENV) .kith test-output
