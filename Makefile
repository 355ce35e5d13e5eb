# Everything runs from .venv, created on first use; DAGSTER_HOME and the embedded database live in the repo.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# The demo's table source; override (or set to []) to ingest your own tables.
export SOURCE_TABLES ?= [{"table": "question_templates", "key_column": "id", "text_columns": ["question", "guidance"], "title_column": "title"}]

.PHONY: run ui test typecheck bench lint install clean-db migrate

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.local.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.local.yaml $@

run: install $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m demo.run

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -n 2 -q

typecheck: install
	$(VENV)/bin/mypy

# The schema owner's step: apply pending migrations to DATABASE_URL (or the embedded server).
migrate: install
	$(PY) -m pipelines.location.migrate_cli

bench: install
	PYTHONUNBUFFERED=1 $(PY) -m bench

lint: install
	$(VENV)/bin/ruff check .

clean-db:
	rm -rf .data $(DAGSTER_HOME)
