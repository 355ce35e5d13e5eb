"""kill -9 at every stage, then a rerun: exactly the texts without a committed vector are sent again.

Each job runs as a real OS process (the code location's job, executed the way a launched run executes it)
against the test's database and a fake embeddings server whose vectors are a function of the text. The
process is killed with SIGKILL at a point the test holds it at: a row lock the stage must wait for, or a
request the fake server does not answer. What was committed at that moment is read from the database once
the process is dead; the rerun must send the rest, each text once, and leave every vector provably right.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import psutil
import pytest
import sqlalchemy as sa

from assets.chunks import document_chunks
from assets.embeddings import chunk_embeddings
from assets.reembedding import embedding_model_switch, reembedding
from assets.retention import retention_sweep
from assets.sources import source_documents
from pipelines.chunks import CHUNK_PAGE
from pipelines.sources import UPSERT_BATCH
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource
from resources.sources import ContentSourcesResource
from testing.fake_openai import FakeOpenAI, fake_vector

REPO = Path(__file__).resolve().parents[2]
DIMS = 16
MODEL_A = "text-embedding-3-small"
MODEL_B = "text-embedding-3-large"
BATCH_INPUTS = 25  # small requests, so that a kill lands between committed and uncommitted ones

# What a launched run does: reconstruct the job from the code location and execute it on the instance.
DRIVER = """
import json, os, sys
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
job, config, select = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
repo = ReconstructableRepository.for_module("location.definitions", "defs", os.getcwd())
with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(
        repo.get_reconstructable_job(job), instance=instance, run_config=config, raise_on_error=False,
        asset_selection=[dg.AssetKey(k) for k in select] or None,
    )
sys.exit(0 if result.success else 1)
"""


def write_corpus(root: Path, later: int = 20, dup_every: int = 50, big: dict[str, str] | None = None) -> int:
    """One upsert batch of files sorted first, `later` more (and the `big` ones) in a subdirectory sorted
    after them; every `dup_every`-th file repeats file 0's text, so identical texts must cost one input."""
    (root / "z_later").mkdir(parents=True)
    for name, text in (big or {}).items():
        (root / "z_later" / name).write_text(text)
    n = UPSERT_BATCH + later
    for i in range(n):
        body = "Note zero, shared by its copies." if i % dup_every == 0 else f"Note {i}: {i * 7919 % 104729}."
        path = root / (f"n{i:05d}.md" if i < UPSERT_BATCH else f"z_later/n{i:05d}.md")
        path.write_text(f"# Title {i % dup_every}\n\n{body}\n")
    return n + len(big or {})


def multi_mb_items() -> dict[str, str]:
    """A 4.9 MB line without a space (just under the 5 MB file limit) and three multi-MB pages of prose."""
    words = ["kernel", "パイプライン", "socket", "圧縮", "replica", "stream"]
    pages = {
        f"big{k}.md": f"# Big {k}\n\n"
        + "\n\n".join(
            " ".join(words[(i * 7 + j + k) % len(words)] for j in range(60)) + f" {k}-{i}."
            for i in range(5000)
        )
        for k in range(3)
    }
    return {"unbroken.md": "# Unbroken\n\n" + "x" * 4_900_000 + "\n", **pages}


CORPORA = [
    pytest.param({}, BATCH_INPUTS, id="small"),
    # `make test-heavy`
    pytest.param({"later": 49_500}, 2048, id="50k-docs", marks=pytest.mark.heavy),
    pytest.param({"big": multi_mb_items}, 256, id="multi-mb-items", marks=pytest.mark.heavy),
]


@dataclass
class Launcher:
    tmp: Path
    database_url: str
    content_dir: Path
    fake: FakeOpenAI
    batch_inputs: int = BATCH_INPUTS

    def env(self, model: str) -> dict[str, str]:
        home = self.tmp / "dagster_home"
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDING_", "OPENAI_", "DAGSTER_"))}
        return {
            **env,
            "DAGSTER_HOME": str(home),
            "DATABASE_URL": self.database_url,
            "CONTENT_DIR": str(self.content_dir),
            "SOURCE_TABLES": "[]",
            "EMBEDDING_PROVIDER": "openai",
            "EMBEDDING_MODEL": model,
            "EMBEDDING_DIMENSIONS": str(DIMS),
            "OPENAI_API_KEY": "sk-kill-suite-0000",
            "OPENAI_BASE_URL": self.fake.base_url,
            "PYTHONWARNINGS": "ignore",
        }

    def start(
        self,
        job: str,
        model: str = MODEL_A,
        config: dict[str, Any] | None = None,
        select: list[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        # Resource config in run config replaces the location's whole embedder config, so it is all here;
        # the point is the small requests.
        embedder = {
            "provider": "openai",
            "model": model,
            "dimensions": DIMS,
            "api_key": {"env": "OPENAI_API_KEY"},
            "base_url": self.fake.base_url,
            "max_batch_inputs": self.batch_inputs,
        }
        config = {"resources": {"embedder": {"config": embedder}}, **(config or {})}
        # A file, not a pipe: a run whose output nobody reads must never block on a full pipe.
        with (self.tmp / f"{job}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-c", DRIVER, job, json.dumps(config), json.dumps(select or [])],
                cwd=REPO,
                env=self.env(model),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def launcher(tmp_path: Path, database_url: str, fake: FakeOpenAI) -> Launcher:
    return Launcher(tmp_path, database_url, tmp_path / "content", fake)


def wait_for(what: str, condition: Callable[[], object], timeout: float = 120.0, proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"the run ended (exit {proc.returncode}) before {what}; see its log in tmp_path"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def scalar(engine: sa.Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def lock_waiters(engine: sa.Engine) -> int:
    return scalar(
        engine,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run and everything it started (its session): nothing gets to clean up."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def model_name(engine: sa.Engine, base: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT name FROM embedding_models WHERE model = :b AND dimensions = :d"),
            {"b": base, "d": DIMS},
        ).scalar_one_or_none()


def committed_texts(engine: sa.Engine, model: str | None) -> set[str]:
    """Texts with a committed vector for `model`: what a rerun must not pay for again."""
    if model is None:
        return set()
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.text(
                    "SELECT c.content FROM chunk_embeddings e JOIN document_chunks c ON c.id = e.chunk_id"
                    " WHERE e.model = :m AND e.content_sha256 = c.content_sha256"
                ),
                {"m": model},
            ).scalars()
        )


def all_texts(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT content FROM document_chunks")).scalars())


def assert_resent_exactly(fake: FakeOpenAI, expected: set[str]) -> None:
    sent = Counter(fake.texts_embedded)
    assert [t for t, n in sent.items() if n > 1] == []
    assert set(sent) == expected


def assert_store_is_sound(engine: sa.Engine, model: str, files: int) -> None:
    """Every document once, no orphans, and every chunk with exactly one vector of `model`, equal to the fake
    server's vector of the chunk's text, recomputed here."""
    with engine.connect() as conn:
        q = lambda sql: conn.execute(sa.text(sql), {"m": model}).scalar_one()  # noqa: E731
        assert q("SELECT count(*) FROM source_documents") == files
        assert q("SELECT count(DISTINCT (source, source_key)) FROM source_documents") == files
        assert q("SELECT count(*) FROM source_documents d WHERE NOT EXISTS"
                 " (SELECT 1 FROM provenance p WHERE p.content_id = d.id)") == 0  # fmt: skip
        assert q("SELECT count(*) FROM document_chunks c LEFT JOIN source_documents d ON d.id = c.document_id"
                 " WHERE d.id IS NULL") == 0  # fmt: skip
        assert q("SELECT count(*) FROM chunk_embeddings e LEFT JOIN document_chunks c ON c.id = e.chunk_id"
                 " WHERE c.id IS NULL") == 0  # fmt: skip
        assert q("SELECT count(*) FROM source_documents WHERE chunked_sha256 IS NULL") == 0
        rows = conn.execute(
            sa.text(
                "SELECT c.id, c.content, count(e.chunk_id) AS n, min(e.embedding::text) AS vec"
                " FROM document_chunks c LEFT JOIN chunk_embeddings e ON e.chunk_id = c.id AND e.model = :m"
                " AND e.content_sha256 = c.content_sha256 GROUP BY c.id, c.content"
            ),
            {"m": model},
        ).all()
    assert rows and all(r.n == 1 for r in rows), [r.id for r in rows if r.n != 1][:10]
    stored = np.array([json.loads(r.vec) for r in rows], dtype=np.float32)
    expected = np.stack([fake_vector(r.content, DIMS) for r in rows])
    np.testing.assert_allclose(stored, expected, rtol=0, atol=1e-6)


def fake_embedder(fake: FakeOpenAI, model: str, batch_inputs: int = BATCH_INPUTS) -> EmbedderResource:
    return EmbedderResource(
        provider="openai",
        model=model,
        dimensions=DIMS,
        api_key="sk-kill-suite-0000",
        base_url=fake.base_url,
        max_batch_inputs=batch_inputs,
    )


def ingest_in_process(
    postgres: PostgresResource, content: Path, fake: FakeOpenAI, model: str, batch_inputs: int = BATCH_INPUTS
) -> None:
    """The ingestion assets in this process: the set-up of a test, or the rerun after a kill."""
    embedder = fake_embedder(fake, model, batch_inputs)
    result = dg.materialize(
        [source_documents, document_chunks, chunk_embeddings],
        resources={
            "postgres": postgres,
            "content_sources": ContentSourcesResource(content_dir=str(content)),
            "embedder": embedder,
        },
    )
    assert result.success


# -- ingestion_job: sources → chunks → embeddings ------------------------------------------------------


def hold_row(engine: sa.Engine, sql: str, **params: Any) -> Callable[[], None]:
    """Run `sql` in a transaction left open, so that its row locks hold until the returned release."""
    conn = engine.connect()
    tx = conn.begin()
    conn.execute(sa.text(sql), params)

    def release() -> None:
        tx.rollback()
        conn.close()

    return release


def hold_answers(fake: FakeOpenAI, answered: int) -> threading.Event:
    """The fake server answers `answered` requests, then holds every later one until the event is set."""
    release = threading.Event()
    fake.inject(*[("pass",)] * answered, *[("hold", release)] * 1000)
    return release


def between_commits(engine: sa.Engine, fake: FakeOpenAI, base_model: str) -> Callable[[], bool]:
    """True once a request is held and every answered one is committed: the run sits between two commits."""
    return lambda: (
        fake.held >= 1 and committed_texts(engine, model_name(engine, base_model)) == set(fake.texts_embedded)
    )


@pytest.mark.parametrize(("corpus", "batch_inputs"), CORPORA)
def test_ingestion_killed_in_each_stage_then_rerun_resends_only_uncommitted_texts(
    corpus: dict[str, Any],
    batch_inputs: int,
    launcher: Launcher,
    fake: FakeOpenAI,
    postgres: PostgresResource,
    engine: sa.Engine,
) -> None:
    files = write_corpus(launcher.content_dir, **{k: v() if callable(v) else v for k, v in corpus.items()})
    launcher.batch_inputs = batch_inputs
    count = lambda sql: scalar(engine, sql)  # noqa: E731

    # 1. sources: an uncommitted row with the key of a file of the second upsert batch; that batch waits on it.
    release = hold_row(
        engine,
        "INSERT INTO source_documents (source, source_key, content, content_sha256) VALUES ('local', :k, 'x', 'x')",
        k=f"z_later/n{UPSERT_BATCH:05d}.md",
    )
    try:
        proc = launcher.start("ingestion_job")
        wait_for("source_documents to wait on the held row", lambda: lock_waiters(engine) >= 1, proc=proc)
        kill_group(proc)
    finally:
        release()
    assert count("SELECT count(*) FROM source_documents") == UPSERT_BATCH
    assert count("SELECT count(*) FROM document_chunks") == 0 and fake.request_count == 0

    # 2. chunks: the first document of the second chunking page locked against updates, so that the page's
    # transaction waits to mark its documents chunked (the sources step, resuming, does not touch it).
    release = hold_row(
        engine,
        "SELECT 1 FROM source_documents WHERE id = (SELECT id FROM source_documents ORDER BY id OFFSET :n LIMIT 1)"
        " FOR NO KEY UPDATE",
        n=CHUNK_PAGE,
    )
    try:
        proc = launcher.start("ingestion_job")
        wait_for("document_chunks to wait on the held row", lambda: lock_waiters(engine) >= 1, proc=proc)
        kill_group(proc)
    finally:
        release()
    assert count("SELECT count(*) FROM source_documents") == files
    assert count("SELECT count(*) FROM source_documents WHERE chunked_sha256 IS NOT NULL") == CHUNK_PAGE
    assert count("SELECT count(*) FROM chunk_embeddings") == 0 and fake.request_count == 0

    # 3. chunk_embeddings: four requests answered and committed, the next ones held by the server.
    release_requests = hold_answers(fake, 4)
    try:
        proc = launcher.start("ingestion_job")
        wait_for("answered requests to be committed", between_commits(engine, fake, MODEL_A), proc=proc)
        kill_group(proc)
        before = committed_texts(engine, model_name(engine, MODEL_A))
    finally:
        release_requests.set()
    assert 0 < len(before) < len(all_texts(engine))
    fake.faults.clear()
    fake.reset_counts()

    # 4. The rerun sends exactly the texts without a committed vector, each once.
    ingest_in_process(postgres, launcher.content_dir, fake, MODEL_A, batch_inputs)
    model = model_name(engine, MODEL_A)
    assert model is not None
    assert_resent_exactly(fake, all_texts(engine) - before)
    assert_store_is_sound(engine, model, files)


# -- reembedding_job: the blue/green build, and its step process ----------------------------------------


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_reembedding_killed_mid_build_leaves_no_step_behind_and_resends_only_uncommitted_texts(
    launcher: Launcher, fake: FakeOpenAI, postgres: PostgresResource, engine: sa.Engine
) -> None:
    files = write_corpus(launcher.content_dir)
    ingest_in_process(postgres, launcher.content_dir, fake, MODEL_A)
    fake.reset_counts()
    release = hold_answers(fake, 4)
    proc = launcher.start("reembedding_job", model=MODEL_B)
    survivors: list[int] = []
    try:
        wait_for(
            "the build's answered requests to be committed",
            between_commits(engine, fake, MODEL_B),
            proc=proc,
        )
        # The step runs in a process forked from the executor's forkserver, not in the run's own process.
        descendants = psutil.Process(proc.pid).children(recursive=True)
        cmdlines = {p.pid: " ".join(p.cmdline())[:120] for p in descendants}
        assert len(descendants) >= 2, cmdlines
        # Only the run's process dies, as when a worker is OOM-killed: its step must not carry on alone.
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(_gone(p.pid) for p in descendants):
            time.sleep(0.1)
        survivors = [p.pid for p in descendants if not _gone(p.pid)]
        assert survivors == [], f"outlived their run: {[cmdlines[p] for p in survivors]}"
        model = model_name(engine, MODEL_B)
        before = committed_texts(engine, model)
    finally:
        release.set()
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
    assert before and len(before) < len(all_texts(engine))
    fake.faults.clear()
    fake.reset_counts()

    embedder = fake_embedder(fake, MODEL_B)
    rerun = dg.materialize(
        [reembedding, embedding_model_switch], resources={"postgres": postgres, "embedder": embedder}
    )
    assert rerun.success

    assert_resent_exactly(fake, all_texts(engine) - before)
    model = model_name(engine, MODEL_B)
    assert model is not None
    assert_store_is_sound(engine, model, files)
    assert scalar(engine, "SELECT name FROM embedding_models WHERE status = 'active'") == model


# -- the retention sweep ----------------------------------------------------------------------------------


def test_retention_sweep_killed_mid_sweep_deletes_each_expired_document_once(
    launcher: Launcher, fake: FakeOpenAI, postgres: PostgresResource, engine: sa.Engine
) -> None:
    content = launcher.content_dir
    content.mkdir()
    for i in range(60):
        # Two in three expired long ago; the rest are kept for 1000 years.
        years = 1000 if i % 3 == 2 else 1
        (content / f"r{i:03d}.md").write_text(
            f"---\ntitle: R {i}\nacquired_at: 2001-01-01\nretention_years: {years}\n---\n# R {i}\n\nText {i}.\n"
        )
    ingest_in_process(postgres, content, fake, MODEL_A)
    with engine.connect() as conn:
        expired = (
            conn.execute(
                sa.text("SELECT content_id FROM provenance WHERE retention_years = 1 ORDER BY content_id")
            )
            .scalars()
            .all()
        )
        kept = set(
            conn.execute(sa.text("SELECT content_id FROM provenance WHERE retention_years = 1000")).scalars()
        )
    assert len(expired) == 40
    batch = 10
    # The third batch's first document locked: two batches commit, the third waits for it.
    release = hold_row(
        engine, "SELECT 1 FROM provenance WHERE content_id = :i FOR UPDATE", i=expired[2 * batch]
    )
    config = {"ops": {"retention_sweep": {"config": {"batch_size": batch}}}}
    proc = launcher.start("nightly_job", config=config, select=["retention_sweep"])
    audited = "SELECT count(*) FROM retention_audit WHERE NOT dry_run"
    try:
        wait_for(
            "two committed batches and a third waiting",
            lambda: lock_waiters(engine) >= 1 and scalar(engine, audited) == 2 * batch,
            proc=proc,
        )
        kill_group(proc)
        deleted_at_kill = set(expired) - set(
            scalar(engine, "SELECT coalesce(array_agg(id), '{}') FROM source_documents")
        )
    finally:
        release()
    assert deleted_at_kill == set(expired[: 2 * batch])

    assert dg.materialize([retention_sweep], resources={"postgres": postgres}, run_config=config).success

    with engine.connect() as conn:
        audit = Counter(
            conn.execute(sa.text("SELECT content_id FROM retention_audit WHERE NOT dry_run")).scalars()
        )
        remaining = set(conn.execute(sa.text("SELECT id FROM source_documents")).scalars())
        tombstones = conn.execute(sa.text("SELECT count(*) FROM retention_tombstones")).scalar_one()
        orphans = conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM document_chunks c WHERE NOT EXISTS"
                " (SELECT 1 FROM source_documents d WHERE d.id = c.document_id))"
                " + (SELECT count(*) FROM chunk_embeddings e WHERE NOT EXISTS"
                " (SELECT 1 FROM document_chunks c WHERE c.id = e.chunk_id))"
            )
        ).scalar_one()
    assert set(audit) == set(expired) and set(audit.values()) == {1}
    assert remaining == kept
    assert tombstones == len(expired)
    assert orphans == 0
