# The two commands of the README: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps: reinstall only when pyproject.toml changes.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py serve

test: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo
	$(BIN)/pytest

# The path users run (bench/path_bench.py: serve as `make run` starts it, public API,
# receiver in its own process); with BENCH_PG_URL and BENCH_REDIS_URL also on PostgreSQL +
# Redis. BENCH_ARGS="--quick" tries the harness; "--write-docs" updates docs/benchmarks.md.
# Then the engine-only drain (outbox rows written in one transaction) as a secondary figure.
bench: $(VENV)/.test
	$(BIN)/python bench/path_bench.py $(BENCH_ARGS) \
	    $(if $(BENCH_PG_URL),--pg-url $(BENCH_PG_URL) --redis-url $(BENCH_REDIS_URL))
	$(BIN)/python bench/delivery_bench.py --only fan-out $(filter --quick,$(BENCH_ARGS))

clean:
	rm -rf $(VENV) var
