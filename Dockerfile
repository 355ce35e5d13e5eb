# One image for the three processes of a deployment (code server, webserver, daemon) and for the run
# pods of the K8sRunLauncher. No secret is baked in: DATABASE_URL, DAGSTER_PG_URL and OPENAI_API_KEY
# come from the environment at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/home

RUN useradd --create-home --uid 10001 app \
    && mkdir -p /opt/dagster/home /app \
    && chown app:app /opt/dagster/home /app

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
# Editable, so that the SQL files and the demo content stay beside the code that reads them.
RUN pip install --no-cache-dir -e '.[k8s]' \
    && cp deploy/dagster.yaml /opt/dagster/home/dagster.yaml

USER app
EXPOSE 3000 4266
# The compose file and the Helm values pick the command of each process; this default is the code server.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4266", "-m", "location.definitions", "--location-name", "rag_etl"]
