# One image for the three processes of a deployment (code server, webserver, daemon) and for the run
# pods of the K8sRunLauncher. No secret is baked in: DATABASE_URL, DAGSTER_PG_URL and OPENAI_API_KEY
# come from the environment at run time, or as secret files that deploy/entrypoint.sh reads.
#
# BASE_IMAGE is the public image a user pulls; `make deploy-check` passes a locally built stand-in.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/home \
    PGPASSFILE=/home/app/.pgpass

RUN useradd --create-home --uid 10001 app \
    && mkdir -p /opt/dagster/home /app \
    && chown app:app /opt/dagster/home

WORKDIR /app
COPY pyproject.toml README.md ./
COPY location ./location
COPY pipelines ./pipelines
COPY assets ./assets
COPY resources ./resources
COPY demo ./demo
COPY sql ./sql
COPY deploy ./deploy
COPY workspace.yaml ./
# Editable, so that the SQL files and the demo content stay beside the code that reads them. A build
# machine behind its own package index or TLS proxy passes its pip settings as build secrets
# (`--secret id=pip.conf,src=...`, `--secret id=pip_cert,src=...`): mounted for this step only,
# never stored in a layer. Without them pip uses its defaults.
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=pip_cert \
    pip install --no-cache-dir -e '.[k8s]' \
    && cp deploy/dagster.yaml /opt/dagster/home/dagster.yaml

USER app
EXPOSE 3000 4266
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
# The compose file and the Helm values pick the command of each process; this default is the code server.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4266", "-m", "location.definitions", "--location-name", "rag_etl"]
