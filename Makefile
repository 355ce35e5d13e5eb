# Everything runs from .venv, created on first use; DAGSTER_HOME and the embedded database live in the repo.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# The demo's table source; override (or set to []) to ingest your own tables.
export SOURCE_TABLES ?= [{"table": "question_templates", "key_column": "id", "text_columns": ["question", "guidance"], "title_column": "title"}]

.PHONY: run ui prod prod-stop test bench lint install clean-db

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

# Production mode on this machine: code server (gRPC, :4266), webserver (:3000) and daemon as three
# processes over Postgres run storage (DAGSTER_PG_URL, or a `dagster` database in the embedded server).
PROD_HOME ?= $(CURDIR)/.dagster_prod

prod: install
	DAGSTER_HOME=$(PROD_HOME) $(PY) -m pipelines.deploy start

prod-stop:
	DAGSTER_HOME=$(PROD_HOME) $(PY) -m pipelines.deploy stop

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 -q

bench: install
	$(PY) -m bench

lint: install
	$(VENV)/bin/ruff check .

clean-db:
	rm -rf .data $(DAGSTER_HOME) $(PROD_HOME)
