"""The production mode, end to end: `dagster code-server start`, `dagster-daemon run` and
`dagster-webserver` as real processes (started by `location.deploy.start`, as `make prod` does) over
Postgres run storage in the embedded server, with the instance config rendered from
deploy/dagster.yaml. Runs are submitted through the webserver's GraphQL API; the OpenAI path goes to
the fake server of testing/fake_openai.py.

Every wait has a deadline, and the processes are stopped (their whole process groups) on any exit.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import pytest
import sqlalchemy as sa
from dagster_graphql import DagsterGraphQLClient

from location import deploy
from testing.fake_openai import FakeOpenAI

pytestmark = pytest.mark.deploy

JST = ZoneInfo("Asia/Tokyo")
LOCATION = {"repository_location_name": "rag_etl", "repository_name": "__repository__"}
N_DOCS = 12


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(what: str, condition: Callable[[], object], timeout_s: float, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _url(server_url: str, database: str, driver: str) -> str:
    return (
        sa.make_url(server_url)
        .set(drivername=driver, database=database)
        .render_as_string(hide_password=False)
    )


class Deployment:
    def __init__(self, home: Path, web_port: int, storage: sa.Engine, data: sa.Engine, procs: dict):
        self.home = home
        self.storage = storage
        self.data = data
        self.procs = procs
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=web_port)

    def gql(self, query: str, **variables) -> dict:
        return self.client._execute(query, variables)

    def status(self, run_id: str) -> str:
        return self.client.get_run_status(run_id).value

    def wait_finished(self, run_id: str, timeout_s: float) -> str:
        return _wait(
            f"run {run_id} to finish",
            lambda: (s := self.status(run_id)) in ("SUCCESS", "FAILURE", "CANCELED") and s,
            timeout_s,
        )

    def events(self, *run_ids: str) -> list[tuple[str, str, str | None]]:
        """(run_id, event type, asset key) of the runs, straight from Postgres event-log storage."""
        with self.storage.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT run_id, dagster_event_type, asset_key FROM event_logs"
                    " WHERE run_id = ANY(:ids) AND dagster_event_type IS NOT NULL ORDER BY id"
                ),
                {"ids": list(run_ids)},
            )
            return [tuple(r) for r in rows]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(expected_api_key="sk-deploy-test") as server:
        yield server


@pytest.fixture
def deployment(
    tmp_path: Path, pg_server_url: str, database_url: str, fake: FakeOpenAI
) -> Iterator[Deployment]:
    storage_db = f"dagster_{os.getpid()}_{time.monotonic_ns()}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{storage_db}"')
    admin.dispose()

    content = tmp_path / "content"
    content.mkdir()
    for i in range(N_DOCS):
        (content / f"doc{i:02d}.md").write_text(
            f"# Guide {i}\n\nStep {i}: configure the widget number {i} before the nightly run.\n"
        )

    home = tmp_path / "dagster_home"
    home.mkdir()
    # The production config, with the monitoring loop tightened so that the test sees it act.
    (home / "dagster.yaml").write_text(
        deploy.render_instance({"run_monitoring": {"poll_interval_seconds": 2, "start_timeout_seconds": 60}})
    )
    env = {
        k: v
        for k, v in os.environ.items()
        # EVAL_: this corpus has no labelled questions (`make test` exports the demo's, for make run).
        if not k.startswith(("DAGSTER_", "OPENAI_", "EMBEDDING_", "EVAL_", "PYTEST_"))
        and k not in ("DATABASE_URL", "SOURCE_TABLES", "CONTENT_DIR")
    }
    env.update(
        DAGSTER_PG_URL=_url(pg_server_url, storage_db, "postgresql"),
        DATABASE_URL=database_url,
        EMBEDDING_PROVIDER="openai",
        OPENAI_API_KEY="sk-deploy-test",
        OPENAI_BASE_URL=fake.base_url,
        CONTENT_DIR=str(content),
        SOURCE_TABLES="[]",
    )
    grpc_port, web_port = _free_port(), _free_port()
    procs = deploy.start(home, env, grpc_port=grpc_port, web_port=web_port, timeout_s=90)
    storage = sa.create_engine(
        _url(pg_server_url, storage_db, "postgresql+psycopg"), poolclass=sa.pool.NullPool
    )
    data = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        yield Deployment(home, web_port, storage, data, procs)
    finally:
        deploy.stop(home, procs, timeout_s=10)
        storage.dispose()
        data.dispose()
        for name in deploy.PROCESSES:
            log = home / "process-logs" / f"{name}.log"
            if log.exists():
                print(f"--- {name} (last lines)\n" + "\n".join(log.read_text().splitlines()[-15:]))


def _run_workers(code_server_pid: int) -> list[psutil.Process]:
    """The run worker processes under the code server: the executing children of its gRPC server.

    `dagster code-server start` is a proxy that runs the gRPC server as a child; that server starts
    one process per run (multiprocessing spawn), which in turn starts one per step.
    """
    proxy = psutil.Process(code_server_pid)
    workers = []
    for grpc_server in proxy.children():
        for child in grpc_server.children():
            cmdline = " ".join(child.cmdline())
            if "spawn_main" in cmdline:
                workers.append(child)
    return workers


SCHEDULE_QUERY = """
query ($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    ... on Schedule {
      cronSchedule executionTimezone
      scheduleState { status }
      futureTicks(limit: 2) { results { timestamp } }
    }
  }
}
"""

START_SCHEDULE = """
mutation ($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}
"""

DRY_RUN = """
mutation ($selector: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
    __typename
    ... on DryRunInstigationTick {
      evaluationResult { skipReason error { message } runRequests { jobName tags { key value } } }
    }
    ... on PythonError { message }
  }
}
"""

START_SENSOR = """
mutation ($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}
"""

SENSOR_TICKS = """
query ($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { status ticks(limit: 5) { status skipReason runIds } } }
  }
}
"""


def test_production_mode(deployment: Deployment, fake: FakeOpenAI) -> None:
    d = deployment
    selector = {"repositoryLocationName": "rag_etl", "repositoryName": "__repository__"}

    # --- The sensor, started through the API, is evaluated by the daemon against the real database.
    started = d.gql(START_SENSOR, selector={**selector, "sensorName": "embedding_model_change_sensor"})
    assert started["startSensor"]["__typename"] == "Sensor", started
    assert started["startSensor"]["sensorState"]["status"] == "RUNNING"

    # --- A run submitted through GraphQL is queued, dequeued by the daemon and succeeds.
    metrics_run = d.client.submit_job_execution(
        "metrics_job", tags={"dagster/partition": "2025-06-14"}, **LOCATION
    )
    assert d.wait_finished(metrics_run, 90) == "SUCCESS"
    types = [t for _, t, _ in d.events(metrics_run)]
    # The queue is the coordinator's: only the daemon takes a run from ENQUEUED to STARTING.
    assert types.index("PIPELINE_ENQUEUED") < types.index("PIPELINE_STARTING") < types.index("PIPELINE_START")
    assert "ASSET_MATERIALIZATION" in types and "PIPELINE_SUCCESS" in types
    with d.data.connect() as conn:
        days = conn.execute(sa.text("SELECT date::text FROM rag_metrics_history")).scalars().all()
    assert days == ["2025-06-14"]

    ticks = _wait(
        "a sensor tick recorded by the daemon",
        lambda: d.gql(SENSOR_TICKS, selector={**selector, "sensorName": "embedding_model_change_sensor"})[
            "sensorOrError"
        ]["sensorState"]["ticks"],
        60,
    )
    assert ticks[0]["status"] == "SKIPPED"
    assert ticks[0]["skipReason"].startswith("no active embedding model yet")

    # --- Kill the run worker mid-run: the run is marked failed and retried, and nothing is duplicated.
    fake.inject(("slow", 120))  # the first embeddings request hangs: the run is inside chunk_embeddings
    ingest_run = d.client.submit_job_execution("ingestion_job", **LOCATION)
    _wait("the first embeddings request", lambda: fake.request_count >= 1, 90)
    workers = _run_workers(d.procs["code-server"].pid)
    assert len(workers) == 1, [w.cmdline() for w in workers]
    doomed = [workers[0], *workers[0].children(recursive=True)]
    for proc in doomed:
        proc.send_signal(signal.SIGKILL)
    assert d.wait_finished(ingest_run, 60) == "FAILURE"

    def retry_run() -> str | None:
        runs = d.client._execute(
            "query ($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results { runId } } } }",
            {"f": {"tags": [{"key": "dagster/parent_run_id", "value": ingest_run}]}},
        )["runsOrError"]["results"]
        return runs[0]["runId"] if runs else None

    retry = _wait("the retry run launched by the daemon", retry_run, 60)
    assert d.wait_finished(retry, 90) == "SUCCESS"

    events = d.events(ingest_run, retry)
    materialized = [(run, key) for run, t, key in events if t == "ASSET_MATERIALIZATION"]
    # Sources and chunks finished before the kill and are not redone; embeddings, their index and the
    # retrieval evaluation land once, in the retry.
    assert sorted(k for _, k in materialized) == sorted(
        [
            '["chunk_embeddings"]',
            '["document_chunks"]',
            '["embedding_index"]',
            '["retrieval_quality"]',
            '["source_documents"]',
        ]
    )
    assert (retry, '["chunk_embeddings"]') in materialized and (retry, '["embedding_index"]') in materialized
    assert (retry, '["retrieval_quality"]') in materialized
    with d.data.connect() as conn:
        docs = conn.execute(sa.text("SELECT count(*) FROM source_documents")).scalar()
        chunks = conn.execute(sa.text("SELECT count(*) FROM document_chunks")).scalar()
        vectors = conn.execute(sa.text("SELECT count(*) FROM chunk_embeddings")).scalar()
    assert docs == N_DOCS
    assert vectors == chunks >= N_DOCS
    # Texts answered by the fake server: the killed request was never answered; the retry sent each
    # chunk text once.
    answered = fake.texts_embedded
    assert len(answered) == len(set(answered)) == chunks

    # --- The schedule, started through the API; its next ticks are 02:00 Asia/Tokyo.
    schedule = {**selector, "scheduleName": "nightly_schedule"}
    started = d.gql(START_SCHEDULE, selector=schedule)
    assert started["startSchedule"]["scheduleState"]["status"] == "RUNNING", started
    info = d.gql(SCHEDULE_QUERY, selector=schedule)["scheduleOrError"]
    assert info["executionTimezone"] == "Asia/Tokyo"
    assert info["scheduleState"]["status"] == "RUNNING"
    now = datetime.now(JST)
    next_2am = now.replace(hour=2, minute=0, second=0, microsecond=0)
    if next_2am <= now:
        next_2am += timedelta(days=1)
    tick_times = [datetime.fromtimestamp(t["timestamp"], JST) for t in info["futureTicks"]["results"]]
    assert tick_times == [next_2am, next_2am + timedelta(days=1)]

    # What the tick at 02:00 JST on 15 June 2025 requests: yesterday's Tokyo day.
    tick = datetime(2025, 6, 15, 2, 0, tzinfo=JST).timestamp()
    dry = d.gql(DRY_RUN, selector=schedule, timestamp=tick)["scheduleDryRun"]
    result = dry["evaluationResult"]
    assert result["error"] is None, result
    (request,) = result["runRequests"]
    assert request["jobName"] == "nightly_job"
    assert {t["key"]: t["value"] for t in request["tags"]}["dagster/partition"] == "2025-06-14"

    # The daemon's state is in Postgres schedule storage: both instigators running, every daemon beating.
    deploy_names = ("nightly_schedule", "embedding_model_change_sensor")
    with d.storage.connect() as conn:
        heartbeats = set(conn.execute(sa.text("SELECT daemon_type FROM daemon_heartbeats")).scalars())
        instigators = conn.execute(
            sa.text("SELECT instigator_type, status, instigator_body FROM instigators")
        ).all()
    assert {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING"} <= heartbeats
    states = {
        name: (kind, status) for kind, status, body in instigators for name in deploy_names if name in body
    }
    assert states["nightly_schedule"] == ("SCHEDULE", "RUNNING")
    # The sensor is running by default in code; starting it through the API leaves it so.
    assert states["embedding_model_change_sensor"] in {("SENSOR", "RUNNING"), ("SENSOR", "DECLARED_IN_CODE")}
