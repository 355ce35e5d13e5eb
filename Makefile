# Everything runs from .venv, created on first use; DAGSTER_HOME and the embedded database live in the repo.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: run ui test bench lint install clean-db

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	@mkdir -p $(DAGSTER_HOME)
	$(PY) -m pipelines.demo

ui: install
	@mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

test: install
	$(PY) -m pytest -n 2 -q

bench: install
	$(PY) -m bench

lint: install
	$(VENV)/bin/ruff check .

clean-db:
	rm -rf .data $(DAGSTER_HOME)
