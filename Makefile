# Developer shortcuts; each target runs inside the project's virtual environment (.venv).
# `make venv` creates it the way CI does (.ci/run).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv demo test lint format bench docs docs-serve

venv:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install torch==2.13.0 -e ".[test]"

demo:  ## README's first command: NUTS on eight schools, the run saved to runs/schools
	$(PY) -m ppgen fit eight_schools --data eight_schools --method nuts --out runs/schools

test:  ## README's test command
	$(PY) -m pytest -n 2 -q

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check ppgen tests benchmarks tutorials

format:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format ppgen tests benchmarks tutorials

bench:  ## the core benchmarks at full size (tens of minutes on 2 cores)
	$(PY) -m benchmarks.bench_core
	$(PY) -m benchmarks.bench_e2e

docs:  ## the documentation site, strict (any warning fails), into site/
	$(VENV)/bin/mkdocs build --strict -d site

docs-serve:  ## the documentation site with live reload on http://127.0.0.1:8000
	$(VENV)/bin/mkdocs serve
