"""Every pair of the location's jobs run at once against one database: both succeed, no text is sent more
often than when the two run one after the other, and the data ends as after one of the two sequential orders.

Each database starts from the same state: a small corpus ingested and embedded with the active model, a
changed corpus on disk (an edit, an addition, a deletion), a newly configured model that re-embedding
builds, dialogue rows for the metrics and one user's erasure, and — when a Batch API job takes part — one
finished batch to apply and one open batch to cancel."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.batch_embeddings import open_batch_client
from location.definitions import ASSETS
from location.definitions import JOBS as LOCATION_JOBS
from pipelines.batch_embeddings import (
    iter_texts_to_submit,
    list_batches,
    plan_batch_embedding,
    poll_batches,
    submit_batches,
)
from pipelines.db import dispose_engine
from pipelines.erasure import erase_user_dialogue
from pipelines.lib.timezone import BUSINESS_TIMEZONE
from pipelines.metrics import refresh_rag_metrics
from pipelines.reembedding import prepare_target
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource
from resources.sources import ContentSourcesResource
from testing.fake_openai_batch import BatchScript, FakeOpenAIBatch
from tests.conftest import _database_url
from tests.test_erasure import ERASED
from tests.test_erasure import seed as seed_dialogue

ACTIVE = "text-embedding-3-small"
CONFIGURED = "text-embedding-3-large"
DAY = "2025-06-10"
JOBS = tuple(job.name for job in LOCATION_JOBS)
BATCH_JOBS = {"batch_embedding_apply_job", "cancel_embedding_batches_job"}
PAIRS = list(itertools.combinations_with_replacement(JOBS, 2))

DOCS_BEFORE = {f"d{i}.md": f"# Doc {i}\n\nThe body of document {i}, about topic {i * 7}.\n" for i in range(6)}
DOCS_AFTER = {
    **{k: v for k, v in DOCS_BEFORE.items() if k != "d5.md"},
    "d0.md": "# Doc 0\n\nThe body of document 0, rewritten since the last run.\n",
    "d6.md": "# Doc 6\n\nA document added since the last run.\n",
}


def _embedder(fake: FakeOpenAIBatch, model: str) -> EmbedderResource:
    return EmbedderResource(
        provider="openai",
        model=model,
        dimensions=256,
        api_key="sk-pairs-test-key",
        base_url=fake.base_url,
        max_retries=0,
    )


def _definitions(postgres: PostgresResource, content: Path, embedder: EmbedderResource) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        jobs=LOCATION_JOBS,
        resources={
            "postgres": postgres,
            "embedder": embedder,
            "content_sources": ContentSourcesResource(content_dir=str(content), tables=[]),
        },
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAIBatch]:
    with FakeOpenAIBatch() as server:
        yield server


@pytest.fixture(scope="module")
def start(pg_server_url: str, fake: FakeOpenAIBatch, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A template database holding the starting state, and the changed corpus on disk."""
    content = tmp_path_factory.mktemp("pairs_content")
    for name, text in DOCS_BEFORE.items():
        (content / name).write_text(text)
    name = f"pairs_start_{os.getpid()}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template_ragetl')
    url = _database_url(pg_server_url, name)
    postgres = PostgresResource(database_url=url)
    defs = _definitions(postgres, content, _embedder(fake, ACTIVE))
    assert defs.resolve_job_def("ingestion_job").execute_in_process().success
    seed_dialogue(postgres)
    dispose_engine(url)
    for f in content.iterdir():
        f.unlink()
    for name_, text in DOCS_AFTER.items():
        (content / name_).write_text(text)
    fake.reset_counts()
    yield name, content
    admin.dispose()


@dataclass
class Database:
    url: str
    postgres: PostgresResource
    run_config: dict[str, dict[str, Any]]


def _fresh(pg_server_url: str, template: str, label: str) -> Database:
    name = f"pairs_{os.getpid()}_{label}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    admin.dispose()
    url = _database_url(pg_server_url, name)
    return Database(url, PostgresResource(database_url=url), {})


def _add_batches(db: Database, fake: FakeOpenAIBatch, embedder: EmbedderResource) -> None:
    """One finished batch (ready to apply) and one still in progress (to cancel), of the configured model."""
    spec = embedder.spec()
    limits = dataclasses.replace(embedder.limits(), poll_initial_s=0)
    prepare_target(db.postgres.engine, spec)
    with db.postgres.connect() as conn, open_batch_client(embedder) as client:
        pending = list(iter_texts_to_submit(conn, plan_batch_embedding(conn, spec, limits)))
        assert len(pending) >= 4
        half = len(pending) // 2
        fake.script(BatchScript(states=("validating", "completed")))
        [ready] = submit_batches(conn, client, spec, pending[:half], limits)
        fake.script(BatchScript(states=("validating", "in_progress")))
        submit_batches(conn, client, spec, pending[half:], limits)
        poll_batches(conn, client, limits)
        assert [b.batch_id for b in list_batches(conn, "ready")] == [ready.batch_id]
    db.run_config["batch_embedding_apply_job"] = {
        "ops": {"apply_embedding_batches": {"config": {"batch_ids": [ready.batch_id]}}}
    }


def _run(defs: dg.Definitions, job: str, db: Database) -> dg.ExecuteInProcessResult:
    kwargs: dict[str, Any] = {"raise_on_error": False}
    if job in ("nightly_job", "metrics_job"):
        kwargs["partition_key"] = DAY
    if job == "erasure_job":
        kwargs["run_config"] = {"ops": {"erase_user_dialogue_op": {"config": {"user_id": ERASED}}}}
    if job in db.run_config:
        kwargs["run_config"] = db.run_config[job]
    return defs.resolve_job_def(job).execute_in_process(**kwargs)


def _failures(result: dg.ExecuteInProcessResult) -> str:
    return "; ".join(
        f"{e.step_key}: {e.step_failure_data.error.message.strip()}"
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data.error is not None
    )


SNAPSHOT = {
    "documents": "SELECT source, source_key, content_sha256, chunked_sha256 FROM source_documents ORDER BY 1, 2",
    "chunks": "SELECT d.source_key, c.chunk_index, c.content_sha256 FROM document_chunks c"
    " JOIN source_documents d ON d.id = c.document_id ORDER BY 1, 2",
    "vectors": "SELECT d.source_key, c.chunk_index, e.model, e.content_sha256, md5(e.embedding::text)"
    " FROM chunk_embeddings e JOIN document_chunks c ON c.id = e.chunk_id"
    " JOIN source_documents d ON d.id = c.document_id ORDER BY 1, 2, 3",
    "models": "SELECT name, status FROM embedding_models ORDER BY 1",
    # Not chunks_covered: how many chunks existed at the moment of the switch depends on the interleaving.
    "switches": "SELECT from_model, to_model FROM embedding_model_switches ORDER BY id",
    "embedding_errors": "SELECT model, count(*), sum(attempts) FROM embedding_errors GROUP BY 1 ORDER BY 1",
    "ingestion_errors": "SELECT source, source_key, error FROM ingestion_errors ORDER BY 1, 2",
    "tombstones": "SELECT source, source_key, content_sha256 FROM retention_tombstones ORDER BY 1, 2, 3",
    "dialogue": "SELECT user_id, count(*) FROM ai_dialogue_log GROUP BY 1 ORDER BY 1",
    "metrics": "SELECT to_jsonb(m) - 'computed_at' - 'dagster_run_id' FROM rag_metrics_history m ORDER BY date",
    "erasures": "SELECT rows_deleted, batches, days, days_recomputed, completed_at IS NOT NULL"
    " FROM erasure_audit ORDER BY rows_deleted DESC",
    "batches": "SELECT model, status, requests, texts, applied_at IS NOT NULL, texts_written, texts_failed"
    " FROM embedding_batches ORDER BY id",
    "indexes": "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE i.indrelid = 'chunk_embeddings'::regclass ORDER BY 1",
}


def _snapshot(db: Database) -> dict[str, list[tuple]]:
    with db.postgres.connect() as conn:
        out = {k: [tuple(r) for r in conn.execute(sa.text(q))] for k, q in SNAPSHOT.items()}
        conn.commit()
    return out


@pytest.mark.parametrize("first,second", PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_two_jobs_at_once_end_as_one_after_the_other(pg_server_url, fake, start, first, second):
    template, content = start
    tag = f"{JOBS.index(first)}_{JOBS.index(second)}"
    embedder = _embedder(fake, CONFIGURED)

    def prepared(label: str) -> tuple[Database, dg.Definitions]:
        db = _fresh(pg_server_url, template, f"{tag}_{label}")
        if {first, second} & BATCH_JOBS:
            _add_batches(db, fake, embedder)
        return db, _definitions(db.postgres, content, embedder)

    databases: list[Database] = []
    try:
        # At once.
        db, defs = prepared("together")
        databases.append(db)
        fake.reset_counts()
        results: dict[int, dg.ExecuteInProcessResult] = {}
        threads = [
            threading.Thread(target=lambda i=i, job=job: results.__setitem__(i, _run(defs, job, db)))
            for i, job in enumerate((first, second))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "a run did not finish in 120 s"
        for i, job in enumerate((first, second)):
            assert results[i].success, f"{job} failed beside the other: {_failures(results[i])}"
        together, sent_together = _snapshot(db), Counter(fake.model_texts)
        assert [t for t, n in sent_together.items() if n > 1] == []

        # One after the other, in either order: the data must end as after one of them, and every text sent
        # must be one that an order sends (run at once, a build may read a text that the other run then
        # replaces: either order pays for it, not both).
        orders = [(first, second)] if first == second else [(first, second), (second, first)]
        matched, sendable = None, Counter[tuple[str, str]]()
        for n, order in enumerate(orders):
            db, defs = prepared(f"seq{n}")
            databases.append(db)
            fake.reset_counts()
            for job in order:
                result = _run(defs, job, db)
                assert result.success, f"{job} failed on its own: {_failures(result)}"
            sequential = _snapshot(db)
            sendable.update(fake.model_texts)
            if sequential == together:
                matched = order
            elif n == 0:
                diff = {k: (together[k], sequential[k]) for k in SNAPSHOT if together[k] != sequential[k]}
            if matched and not set(sent_together) - set(sendable):
                break
        assert matched, f"the data differs from {orders[0]} run one after the other (and the reverse): {diff}"
        assert set(sent_together) - set(sendable) == set()
    finally:
        for db in databases:
            dispose_engine(db.url)


def test_a_metrics_run_computed_before_an_erasure_commits_keeps_no_erased_row(postgres):
    """The interleaving the pairs above can only hit by chance, made certain: a metrics run has read the
    day (the erased user's rows included) and not yet committed when the erasure deletes those rows."""
    seed_dialogue(postgres)
    tz = ZoneInfo(BUSINESS_TIMEZONE)
    day = dt.date.fromisoformat(DAY)
    window = (
        dt.datetime.combine(day, dt.time(0), tz),
        dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tz),
    )
    erased = threading.Event()

    def erase() -> None:
        with postgres.connect() as conn:
            erase_user_dialogue(conn, ERASED)
        erased.set()

    with postgres.begin() as conn:
        refresh_rag_metrics(conn, *window)
        eraser = threading.Thread(target=erase)
        eraser.start()
        # Without the lock the erasure finishes here, finding no metrics row of the day to recompute.
        erased.wait(2)
    eraser.join(60)
    assert erased.is_set()

    def stored() -> dict:
        with postgres.connect() as conn:
            return dict(
                conn.execute(sa.text("SELECT * FROM rag_metrics_history WHERE date = :d"), {"d": day})
                .mappings()
                .one()
            )

    after = stored()
    # Recomputed from what the log holds now: the stored day must already be exactly that.
    with postgres.begin() as conn:
        refresh_rag_metrics(conn, *window)
    recomputed = stored()
    volatile = {"computed_at", "dagster_run_id"}
    assert {k: v for k, v in after.items() if k not in volatile} == {
        k: v for k, v in recomputed.items() if k not in volatile
    }
