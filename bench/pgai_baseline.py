"""pgai 0.12's vectorizer worker as the ingestion bench's peer baseline, on the same Postgres server and fake
embeddings server as rag-etl, in a database of its own.

pgai is installed from the package index into a venv of its own under `.bench/` (created on first use,
kept after). Its catalog goes in with `pgai.install` (no Postgres extension); one vectorizer reads a source
table of one row per page (path, text) with the recursive character splitter at our chunk size and overlap,
and embeds with `text-embedding-3-small` at 1,536 dimensions through the fake server. A phase is what a
real sync does:
  - sync: scan the corpus directory and upsert every page (COPY into a temp table, then one
    INSERT ... ON CONFLICT DO UPDATE WHERE the text changed, and a DELETE of pages no longer there), so
    pgai's trigger queues only what changed;
  - then pgai's worker in once mode (drain the queue, stop), run through its Python API in one long-lived
    process (`pgai_worker_driver.py`), as rag-etl's job runs are timed in the bench's own process.
First run = sync into the empty table + worker; unchanged re-run and 1 %-changed run = the same again.
`pgai vectorizer worker --once` in a fresh process is timed once too, beside rag-etl's `dagster job execute`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import sqlalchemy as sa
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".bench" / "pgai-venv"
# The worker extra also pulls document parsing (docling, hence torch and CUDA wheels: gigabytes) and other
# providers' SDKs; the column-loading, OpenAI-embedding path needs only these, at the extra's own pins.
REQUIREMENTS = (
    "pgai==0.12.*",
    "pgvector>=0.3,<1.0",
    "numpy",
    "filetype==1.2.0",
    "ijson>=3.3.0",
    "langchain-text-splitters>=0.2,<1.0",
    "openai>=1.44,<2.0",
    "tiktoken>=0.7,<1.0",
    "tokenizers",
    "exceptiongroup>=1.0,<2.0",
)
INSTALL_TIMEOUT_S = 900
DATABASE = "pgai_bench"
VECTORIZER = "bench"
MARKDOWN_SUFFIXES = (".md", ".markdown")


@dataclass(frozen=True)
class PgaiRun:
    wall_s: float
    sync_s: float
    worker_s: float
    pages_changed: int
    index_s: float = 0.0  # the HNSW build after its first run (part of wall_s)


def _bin(name: str) -> Path:
    return VENV / "bin" / name


def ensure_venv() -> str | None:
    """Create the venv and install pgai unless a finished install is there; None, or why it failed."""
    stamp = VENV / ".installed"
    wanted = "\n".join(REQUIREMENTS)
    if stamp.is_file() and stamp.read_text() == wanted and _bin("pgai").is_file():
        return None
    started = time.perf_counter()
    print(f"   pgai baseline: installing pgai 0.12 into {VENV.relative_to(REPO)} (first use)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, capture_output=True)
        subprocess.run(
            [str(_bin("python")), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
            check=True,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.CalledProcessError as exc:
        lines = [ln for ln in (exc.stderr or "").splitlines() if ln.strip() and "is ignored" not in ln]
        return f"installing pgai failed: {lines[-1] if lines else exc}"
    except subprocess.TimeoutExpired:
        return f"installing pgai took over {INSTALL_TIMEOUT_S} s"
    stamp.write_text(wanted)
    print(f"   pgai baseline: installed in {time.perf_counter() - started:.0f} s", flush=True)
    return None


def _iter_pages(root: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(root.rglob("*")):
        if path.suffix in MARKDOWN_SUFFIXES and path.is_file():
            yield str(path.relative_to(root)), path.read_text(encoding="utf-8")


class PgaiBaseline:
    """One pgai vectorizer in database `pgai_bench` of the server at `server_url` (SQLAlchemy form)."""

    def __init__(
        self, server_url: str, embeddings_base_url: str, model: str, dims: int, chunk: tuple[int, int]
    ):
        url = sa.make_url(server_url).set(drivername="postgresql")
        self.admin_url = url.render_as_string(hide_password=False)
        self.url = url.set(database=DATABASE).render_as_string(hide_password=False)
        self.base_url, self.model, self.dims, self.chunk = embeddings_base_url, model, dims, chunk
        self.tiktoken_cache = ""
        self.driver: subprocess.Popen[str] | None = None
        self.driver_log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        # pgai's `indexing` needs a scheduler this set-up has none of, so the bench builds the index itself,
        # as ours is built: over halfvec casts, once the vectors reach the same row threshold, with the
        # same memory and parallel workers (`index_settings(rows)`), but without CONCURRENTLY.
        self.index_min_rows: int | None = None
        self.index_settings: Callable[[int], dict[str, str]] = lambda _rows: {}
        self.indexed = False

    def __enter__(self) -> PgaiBaseline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.driver is not None:
            assert self.driver.stdin is not None
            self.driver.stdin.close()
            self.driver.wait(timeout=60)
            self.driver = None
        self.drop()
        self.driver_log.close()

    def _env(self) -> dict[str, str]:
        return {**os.environ, "OPENAI_API_KEY": "sk-bench", "TIKTOKEN_CACHE_DIR": self.tiktoken_cache}

    def _driver_result(self) -> tuple[float, str]:
        assert self.driver is not None and self.driver.stdout is not None
        for line in self.driver.stdout:
            if line.startswith("RESULT "):
                seconds, outcome = line.split(" ", 2)[1:]
                return float(seconds), outcome.strip()
        self.driver_log.seek(0)
        raise RuntimeError(f"pgai worker driver exited: {self.driver_log.read()[-2000:]}")

    def reset(self) -> None:
        """Untimed: a fresh database with pgai's catalog, the empty source table and its vectorizer."""
        self.drop()
        self.indexed = False
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        # pgai ships the tokenizer files its OpenAI embedder loads; its own test suite points tiktoken there
        # the same way, so nothing reaches for the network.
        probe = subprocess.run(
            [
                str(_bin("python")),
                "-c",
                "import sys, pgai; pgai.install(sys.argv[1]);"
                " from pgai.vectorizer.vectorizer import TIKTOKEN_CACHE_DIR; print(TIKTOKEN_CACHE_DIR)",
                self.url,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        self.tiktoken_cache = probe.stdout.strip().splitlines()[-1]
        if self.driver is None:
            self.driver = subprocess.Popen(
                [str(_bin("python")), str(Path(__file__).with_name("pgai_worker_driver.py")), self.url],
                env=self._env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.driver_log,
                text=True,
            )
            self._driver_result()  # ready: pgai imported
        size, overlap = self.chunk
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE pages (path text PRIMARY KEY, text text NOT NULL)")
            conn.execute(
                "SELECT ai.create_vectorizer('pages'::regclass, name => %(name)s,"
                " loading => ai.loading_column('text'),"
                " embedding => ai.embedding_openai(%(model)s, %(dims)s, api_key_name => 'OPENAI_API_KEY',"
                "   base_url => %(base_url)s),"
                " chunking => ai.chunking_recursive_character_text_splitter(%(size)s, %(overlap)s),"
                " destination => ai.destination_table(target_table => 'pages_embeddings'),"
                " indexing => ai.indexing_none(), scheduling => ai.scheduling_none())",
                {
                    "name": VECTORIZER,
                    "model": self.model,
                    "dims": self.dims,
                    "base_url": self.base_url,
                    "size": size,
                    "overlap": overlap,
                },
            )

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))

    def sync(self, root: Path) -> int:
        """Upsert every page under `root` and delete the vanished ones; returns how many rows changed."""
        with psycopg.connect(self.url) as conn:
            conn.execute("CREATE TEMP TABLE incoming (path text, text text) ON COMMIT DROP")
            with conn.cursor().copy("COPY incoming (path, text) FROM STDIN") as copy:
                for row in _iter_pages(root):
                    copy.write_row(row)
            changed = conn.execute(
                "INSERT INTO pages (path, text) SELECT path, text FROM incoming"
                " ON CONFLICT (path) DO UPDATE SET text = excluded.text"
                " WHERE pages.text IS DISTINCT FROM excluded.text"
            ).rowcount
            # A sync mirrors deletions too, as rag-etl's source scan does; pgai's trigger queues them.
            changed += conn.execute(
                "DELETE FROM pages p WHERE NOT EXISTS (SELECT FROM incoming i WHERE i.path = p.path)"
            ).rowcount
            conn.commit()
        return changed

    def worker(self, fresh_process: bool = False) -> None:
        """Drain the queue in once mode, in the warm driver or as `pgai vectorizer worker --once`; fails loudly
        if the worker failed or left anything queued."""
        if fresh_process:
            done = subprocess.run(
                [str(_bin("pgai")), "vectorizer", "worker", "--once", "-d", self.url, "--log-level", "warn"],
                env=self._env(),
                capture_output=True,
                text=True,
            )
            outcome = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-2000:]}"
        else:
            assert self.driver is not None and self.driver.stdin is not None
            self.driver.stdin.write("run\n")
            self.driver.stdin.flush()
            outcome = self._driver_result()[1]
        with psycopg.connect(self.url) as conn:
            schema, table = conn.execute(
                "SELECT queue_schema, queue_table FROM ai.vectorizer WHERE name = %s", (VECTORIZER,)
            ).fetchone() or ("", "")
            queued = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            ).fetchone()
            errors = conn.execute("SELECT message, details FROM ai.vectorizer_errors LIMIT 3").fetchall()
        if outcome != "ok" or (queued and queued[0]) or errors:
            raise RuntimeError(f"pgai worker: {outcome}; {queued} still queued; errors {errors}")

    def build_index(self) -> float:
        """The HNSW index over its destination table once it holds `index_min_rows` vectors; seconds taken."""
        if self.indexed or self.index_min_rows is None:
            return 0.0
        rows = self.counts()[1]
        if rows < self.index_min_rows:
            return 0.0
        started = time.perf_counter()
        with psycopg.connect(self.url, autocommit=True) as conn:
            for name, value in self.index_settings(rows).items():
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            conn.execute(
                sql.SQL(
                    "CREATE INDEX pages_embeddings_hnsw ON pages_embeddings"
                    " USING hnsw ((embedding::halfvec({dims})) halfvec_cosine_ops)"
                ).format(dims=sql.Literal(self.dims))
            )
        self.indexed = True
        return time.perf_counter() - started

    def run(self, root: Path, fresh_process: bool = False) -> PgaiRun:
        started = time.perf_counter()
        changed = self.sync(root)
        synced = time.perf_counter()
        self.worker(fresh_process)
        worked = time.perf_counter()
        index_s = self.build_index()
        ended = time.perf_counter()
        return PgaiRun(ended - started, synced - started, worked - synced, changed, index_s)

    def counts(self) -> tuple[int, int]:
        """Pages and chunks (rows of its destination table)."""
        with psycopg.connect(self.url) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pages), (SELECT count(*) FROM pages_embeddings)"
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])
