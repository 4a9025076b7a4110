# The two commands a newcomer needs: `make run` (the embedded suite) and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8080
STAMP  := $(VENV)/.installed
# test processes of `make test` (pytest-xdist; whole modules per process, as their fixtures are)
TEST_WORKERS ?= 2

.PHONY: run test test-fast lint bench services openapi clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## run the embedded suite: every service + gateway in one process on http://127.0.0.1:$(PORT)
run: $(STAMP)
	$(VENV)/bin/ecourt run --port $(PORT)

## every test tier: unit, embedded, real PostgreSQL + RabbitMQ + Redis, reliability, contracts
## (the slowest 25 tests are listed at the end: where the suite's time goes, run by run)
test: $(STAMP) services
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=25

## start PostgreSQL, RabbitMQ and Redis if they are down
services:
	bash scripts/services-up.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP) services
	$(PY) -m bench.run

openapi: $(STAMP)
	$(VENV)/bin/ecourt openapi

clean:
	rm -rf data .pytest_cache
