"""erasure_job on real Postgres: one user's rows go, the days they touched are recomputed and match an
independent computation over what is left, the audit row names no one, and a rerun changes nothing."""

import datetime as dt
import os
import re
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from location.jobs import erasure_job
from pipelines.erasure import ErasureError, erase_user_dialogue, targets_of
from pipelines.lib import slo
from tests.test_metrics import assert_matches, expected, insert, jst, log_frame, materialize, row, stored

ERASED = "user-to-forget-7f3a"
ROOT = Path(__file__).resolve().parents[1]
SECURITY_DOC = ROOT / "docs" / "security.md"


def seed(postgres) -> None:
    """ERASED has rows either side of the 2025-06-10 JST midnight (2025-06-09 15:00 UTC) and one on a
    day whose metrics were never computed; others share those days, and 06-11 has no ERASED row."""
    insert(
        postgres,
        [
            row(jst("2025-06-09", 23, 10), user_id=ERASED, latency_ms=9000, user_feedback=-1),
            row(jst("2025-06-09", 23, 50), user_id=ERASED, latency_ms=8000, citations=[]),
            row(jst("2025-06-10", 0, 5), user_id=ERASED, latency_ms=7000, relevance_score=0.1),
            row(jst("2025-06-10", 0, 40), user_id=ERASED, token_cost_jpy=40),
            row(jst("2025-06-10", 9), user_id=ERASED, citations=[{"source": "only-erased"}]),
            row(jst("2025-06-20", 9), user_id=ERASED),
            row(jst("2025-06-09", 8), user_id="u-b", latency_ms=1200),
            row(jst("2025-06-09", 23, 59), user_id="u-c", latency_ms=800, user_feedback=0),
            row(jst("2025-06-10", 0, 0), user_id="u-b", latency_ms=1500),
            row(jst("2025-06-10", 13), user_id="u-c", latency_ms=600, citations=None),
            row(jst("2025-06-11", 10), user_id="u-b", latency_ms=900),
        ],
    )


def audit_rows(postgres) -> list[dict]:
    with postgres.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM erasure_audit ORDER BY id")).mappings()]


def test_erasure_across_jst_midnight_recomputes_exactly_the_touched_days(postgres):
    seed(postgres)
    assert materialize(postgres, "2025-06-09", "2025-06-11").success
    before = stored(postgres)

    with postgres.connect() as conn:
        result = erase_user_dialogue(conn, ERASED, batch_size=2, run_id="run-1", requested_by="ticket-42")

    assert result.rows_deleted == 6
    assert result.batches == 3
    assert result.days == [dt.date(2025, 6, 9), dt.date(2025, 6, 10), dt.date(2025, 6, 20)]
    # 06-20 was never computed: erasure leaves it to the metrics job rather than inventing a row
    assert result.days_recomputed == [dt.date(2025, 6, 9), dt.date(2025, 6, 10)]

    after = stored(postgres)
    assert sorted(after) == ["2025-06-09", "2025-06-10", "2025-06-11"]
    frame = log_frame(postgres)
    assert ERASED not in set(frame["user_id"])
    assert len(frame) == 5
    for day in ("2025-06-09", "2025-06-10"):
        assert_matches(after[day], expected(frame, day))
        assert after[day]["dagster_run_id"] == "run-1"
        assert after[day]["total_queries"] < before[day]["total_queries"]
    assert after["2025-06-11"] == before["2025-06-11"]

    # the same numbers as computing the remaining log from scratch through the metrics asset
    assert materialize(postgres, "2025-06-09", "2025-06-10").success
    fresh = stored(postgres)
    for day in ("2025-06-09", "2025-06-10"):
        for column in ("total_queries", "unique_users", "latency_p95_ms", "total_cost", "slo_compliance"):
            assert after[day][column] == fresh[day][column], (day, column)

    [audit] = audit_rows(postgres)
    assert audit["rows_deleted"] == 6 and audit["batches"] == 3
    assert audit["days"] == result.days and audit["days_recomputed"] == result.days_recomputed
    assert audit["run_id"] == "run-1" and audit["requested_by"] == "ticket-42"
    assert audit["completed_at"] is not None
    assert ERASED not in repr(audit)


def test_second_erasure_deletes_nothing_recomputes_nothing_and_is_audited(postgres):
    seed(postgres)
    assert materialize(postgres, "2025-06-09", "2025-06-11").success
    with postgres.connect() as conn:
        erase_user_dialogue(conn, ERASED, run_id="run-1")
    first = stored(postgres)
    with postgres.connect() as conn:
        again = erase_user_dialogue(conn, ERASED, run_id="run-2")
    assert (again.rows_deleted, again.batches, again.days, again.days_recomputed) == (0, 0, [], [])
    assert stored(postgres) == first
    audits = audit_rows(postgres)
    assert [(a["run_id"], a["rows_deleted"], a["days"]) for a in audits] == [
        ("run-1", 6, [dt.date(2025, 6, 9), dt.date(2025, 6, 10), dt.date(2025, 6, 20)]),
        ("run-2", 0, []),
    ]
    assert all(a["completed_at"] is not None for a in audits)


def test_recomputed_day_keeps_the_slo_targets_it_was_computed_with(postgres):
    seed(postgres)
    config = {"ops": {"rag_metrics_history": {"config": {"latency_p95_max_ms": 12345.0}}}}
    assert materialize(postgres, "2025-06-10", run_config=config).success
    with postgres.connect() as conn:
        erase_user_dialogue(conn, ERASED)
    compliance = stored(postgres)["2025-06-10"]["slo_compliance"]
    assert compliance["latencyP95"]["target"] == 12345.0
    assert targets_of(compliance) == slo.SloTargets(latency_p95_max_ms=12345.0)


@pytest.mark.parametrize("user_id", ["", "   "])
def test_blank_user_id_is_refused_and_nothing_is_deleted(postgres, user_id):
    seed(postgres)
    with postgres.connect() as conn, pytest.raises(ErasureError, match="user_id"):
        erase_user_dialogue(conn, user_id)
    assert len(log_frame(postgres)) == 11
    assert audit_rows(postgres) == []


def test_erasure_job_from_run_config_keeps_the_user_id_out_of_logs_and_metadata(postgres):
    seed(postgres)
    result = erasure_job.execute_in_process(
        run_config={"ops": {"erase_user_dialogue_op": {"config": {"user_id": ERASED, "batch_size": 4}}}},
        resources={"postgres": postgres},
        tags={"requested_by": "dpo@example.com"},
    )
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert metadata["rows_deleted"] == 6 and metadata["batches"] == 2
    assert metadata["days"] == ["2025-06-09", "2025-06-10", "2025-06-20"]
    assert metadata["days_recomputed"] == []  # no metrics were computed in this database
    for event in result.all_events:
        assert ERASED not in (event.message or "")
        assert ERASED not in repr(getattr(event.event_specific_data, "metadata", ""))
    [audit] = audit_rows(postgres)
    assert audit["run_id"] == result.run_id and audit["requested_by"] == "dpo@example.com"
    assert ERASED not in set(log_frame(postgres)["user_id"])


@pytest.mark.slow  # two Dagster CLI processes
def test_readme_erasure_commands(postgres, database_url, tmp_path):
    """docs/security.md's erasure command as written, then deleting its run; no file keeps the user id."""
    section = SECURITY_DOC.read_text()
    [block] = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    delete = re.search(r"`(\.venv/bin/dagster run delete --force) <run id>`", section).group(1)
    insert(
        postgres,
        [row(jst("2025-06-10", 9), user_id="demo-user-0001"), row(jst("2025-06-10", 9), user_id="u-b")],
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The tests run inside the installed .venv: make must not reinstall it.
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DAGSTER_HOME": str(home),
        "MAKEFLAGS": "-o .venv/.installed",
    }
    done = subprocess.run(
        ["bash", "-c", block], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "RUN_SUCCESS" in done.stdout + done.stderr
    assert "Warning:" not in done.stdout + done.stderr
    assert set(log_frame(postgres)["user_id"]) == {"u-b"}
    [audit] = audit_rows(postgres)
    assert audit["requested_by"] == "ticket-1234" and audit["rows_deleted"] == 1

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(audit["run_id"])
        assert run.run_config["ops"]["erase_user_dialogue_op"]["config"]["user_id"] == "demo-user-0001"
    gone = subprocess.run(
        [*delete.split(), audit["run_id"]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert gone.returncode == 0, gone.stderr[-2000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(audit["run_id"]) is None
