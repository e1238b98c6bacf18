# tiendo — every target is a thin wrapper; `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install dev test test-fast hunt lint fmt proto dashboards migrate prepare bench bench-quick bench-readme clean-local

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv with pinned dependencies

dev: $(STAMP) ## run Kafka (KRaft), PostgreSQL, the three services, demo data and traffic
	$(BIN)/python -m devtools.devstack

test: $(STAMP) ## the whole suite against real Kafka and PostgreSQL (slow tests included)
	$(BIN)/pytest

test-fast: $(STAMP) ## the suite without the slow chaos and load tests
	$(BIN)/pytest -m "not slow"

# The property tests that hold live equal to history, and the boards and alerts to one state.
HUNT_TESTS ?= tests/counting/test_cutover_property.py tests/counting/test_as_of_days_property.py \
	tests/counting/test_conflicts.py tests/boards/test_one_state_property.py
HUNT_EXAMPLES ?= 150

hunt: $(STAMP) ## the property tests with HUNT_EXAMPLES examples each (~45 min at 150): look for a counterexample
	TIENDO_HUNT_EXAMPLES=$(HUNT_EXAMPLES) $(BIN)/pytest --timeout=0 -m "slow or not slow" $(HUNT_TESTS)

lint: $(STAMP) ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy tiendo services devtools scripts bench clients/python/tiendo_client tests

fmt: $(STAMP) ## format and auto-fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

proto: $(STAMP) ## regenerate the protobuf bindings from proto/
	$(BIN)/python scripts/gen_proto.py

dashboards: $(STAMP) ## generate the Grafana boards into deploy/grafana/dashboards/
	$(BIN)/python -m scripts.dashboards

migrate: $(STAMP) ## apply every service's migrations as the database owner (TIENDO_MIGRATE_DATABASE_URL)
	$(BIN)/tiendo migrate

prepare: $(STAMP) ## fetch the Kafka jars, initialise PostgreSQL and Kafka storage (make dev does it too)
	$(BIN)/python -m devtools.devstack --prepare-only

bench: $(STAMP) ## full benchmark, ~25 min (ceilings, ingest, apply, freshness, scale-out, 10M rebuild, 10M reads): bench/results/latest.json
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: $(STAMP) ## the benchmark at small sizes (about 5 minutes): bench/results/quick.json
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

bench-readme: $(STAMP) ## README's benchmark table and docs/capacity.md's figures from bench/results/latest.json
	$(BIN)/python -m bench.report --readme

clean-local: ## delete the local Kafka and PostgreSQL data (.local/)
	rm -rf .local/kafka .local/pg .local/demo-token
