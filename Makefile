# Everything runs from .venv, created on first use; DAGSTER_HOME and the embedded database live in the repo.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# The demo's table source; override (or set to []) to ingest your own tables.
export SOURCE_TABLES ?= [{"table": "question_templates", "key_column": "id", "text_columns": ["question", "guidance"], "title_column": "title"}]

# The demo's labelled questions for the retrieval evaluation and the model switch's quality gate (docs/quality.md).
export EVAL_QUESTIONS ?= demo/eval_questions.jsonl

.PHONY: run stop ui metrics erase prod prod-stop deploy-check test test-heavy typecheck bench lint install clean-db migrate

# Dagster's CLI says its commands are superseded by the separate `dg` CLI, and our metrics asset uses the
# beta `backfill_policy`, and Dagster re-creates sensors whose jobs it binds to resources with the beta
# `owners`; none of it is actionable by whoever runs these targets.
CLI_WARNINGS := ignore::FutureWarning,ignore:Parameter `backfill_policy` of function `asset` is currently in beta,ignore:Parameter `owners` of initializer `SensorDefinition.__init__` is currently in beta
# `make metrics`: the JST days FROM..TO (default: the last DAYS days ending yesterday, JST) in one run.
DAYS ?= 1
JST_DAY = $(shell $(PYTHON) -c 'import datetime as d, zoneinfo as z; print(d.datetime.now(z.ZoneInfo("Asia/Tokyo")).date() - d.timedelta(days=$(1)))')
FROM ?= $(call JST_DAY,$(DAYS))
TO ?= $(call JST_DAY,1)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The home's dagster.yaml and its storage, created once under a file lock: runs started at once on a fresh
# home would otherwise each create Dagster's SQLite storage and can leave it unusable.
$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.local.yaml | $(VENV)/.installed
	$(PY) -m location.dagster_home --replace-config

run: install $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m demo.run

# The embedded server outlives `make run` and `make ui` (they share it); this stops it cleanly.
stop:
	@if [ -f .data/pg/postmaster.pid ]; then $(PY) -m demo.stop; else echo "embedded PostgreSQL is not running"; fi

ui: install $(DAGSTER_HOME)/dagster.yaml
	@$(PY) -m location.dagster_home
	PYTHONWARNINGS='$(CLI_WARNINGS)' $(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

metrics: install $(DAGSTER_HOME)/dagster.yaml
	@$(PY) -m location.dagster_home
	PYTHONWARNINGS='$(CLI_WARNINGS)' $(VENV)/bin/dagster asset materialize -m location.definitions \
		--select rag_metrics_history --partition-range $(FROM)...$(TO)

# `make erase USER_ID=<id> [REQUESTED_BY=<ticket>]`: erasure_job through Dagster's CLI. The config file
# holding the user id lives only as long as the command.
erase: install $(DAGSTER_HOME)/dagster.yaml
	@test -n "$(USER_ID)" || { echo "usage: make erase USER_ID=<id> [REQUESTED_BY=<ticket>]" >&2; exit 2; }
	@$(PY) -m location.dagster_home
	@cfg=$$(mktemp --suffix=.yaml) && trap 'rm -f "$$cfg"' EXIT && \
	  USER_ID='$(USER_ID)' REQUESTED_BY='$(REQUESTED_BY)' $(PY) -c 'import json, os; print(json.dumps({"ops": {"erase_user_dialogue_op": {"config": {"user_id": os.environ["USER_ID"], "requested_by": os.environ["REQUESTED_BY"] or None}}}}))' > "$$cfg" && \
	  PYTHONWARNINGS='$(CLI_WARNINGS)' $(VENV)/bin/dagster job execute -m location.definitions -j erasure_job -c "$$cfg"

# Production mode on this machine: code server (gRPC, :4266), webserver (:3000) and daemon as three
# processes over Postgres run storage (DAGSTER_PG_URL, or a `dagster` database in the embedded server).
PROD_HOME ?= $(CURDIR)/.dagster_prod

prod: install
	DAGSTER_HOME=$(PROD_HOME) $(PY) -m location.deploy start

prod-stop:
	DAGSTER_HOME=$(PROD_HOME) $(PY) -m location.deploy stop

# The container deployment for real (docs/deploy.md): builds the image from ./Dockerfile, starts
# deploy/compose.yaml, runs ingestion_job through the webserver, kills the code server, down/up; its own
# Docker daemon when none is reachable. Needs root for apt-get and dockerd; slow, so not in `make test`.
deploy-check: install
	@command -v dockerd >/dev/null && command -v docker-compose >/dev/null && command -v debootstrap >/dev/null || \
	  { echo "installing docker.io, docker-compose, debootstrap (apt-get)"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null; }
	PYTHONUNBUFFERED=1 $(PY) -m testing.deploy_check

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -n 2 -q

# The fault suite's heavy variants (kill -9 over 50k documents, multi-MB items): minutes, not in `make test`.
test-heavy: install
	$(PY) -m pytest -m heavy -v

typecheck: install
	$(VENV)/bin/mypy

# The schema owner's step: apply pending migrations to DATABASE_URL (or the embedded server).
migrate: install
	$(PY) -m location.migrate_cli

# `make bench BENCH=rate_limit`: only the benchmarks whose module name contains a word of BENCH.
bench: install
	PYTHONUNBUFFERED=1 $(PY) -m bench $(BENCH)

lint: install
	$(VENV)/bin/ruff check .

clean-db: stop
	rm -rf .data $(DAGSTER_HOME) $(PROD_HOME)
