"""pgai 0.12's vectorizer worker as the ingestion bench's peer baseline, on the same Postgres server and fake
embeddings server as rag-etl, in a database of its own.

pgai is installed from the package index into a venv of its own under `.bench/` (created on first use,
kept after). Its catalog goes in with `pgai.install` (no Postgres extension); one vectorizer reads a source
table of one row per page (path, text) with the recursive character splitter at our chunk size and overlap,
and embeds with `text-embedding-3-small` at 1,536 dimensions through the fake server. A phase is what a
real sync does:
  - sync: scan the corpus directory and upsert every page (COPY into a temp table, then one
    INSERT ... ON CONFLICT DO UPDATE WHERE the text changed), so pgai's trigger queues only what changed;
  - then `pgai vectorizer worker --once`, a fresh process that drains the queue and exits.
First run = sync into the empty table + worker; unchanged re-run and 1 %-changed run = the same again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
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

    def reset(self) -> None:
        """Untimed: a fresh database with pgai's catalog, the empty source table and its vectorizer."""
        self.drop()
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
        """Upsert every page under `root`; returns how many rows changed (so were queued)."""
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
            conn.commit()
        return changed

    def worker(self) -> None:
        """`pgai vectorizer worker --once`: drains the queue and exits; fails loudly if anything is left."""
        env = {
            **os.environ,
            "OPENAI_API_KEY": "sk-bench",
            "TIKTOKEN_CACHE_DIR": self.tiktoken_cache,
        }
        done = subprocess.run(
            [str(_bin("pgai")), "vectorizer", "worker", "--once", "-d", self.url, "--log-level", "warn"],
            env=env,
            capture_output=True,
            text=True,
        )
        with psycopg.connect(self.url) as conn:
            schema, table = conn.execute(
                "SELECT queue_schema, queue_table FROM ai.vectorizer WHERE name = %s", (VECTORIZER,)
            ).fetchone() or ("", "")
            queued = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            ).fetchone()
            errors = conn.execute("SELECT message, details FROM ai.vectorizer_errors LIMIT 3").fetchall()
        if done.returncode != 0 or (queued and queued[0]) or errors:
            raise RuntimeError(
                f"pgai worker exited {done.returncode}, {queued} still queued, errors {errors}:"
                f" {done.stderr[-2000:]}"
            )

    def run(self, root: Path) -> PgaiRun:
        started = time.perf_counter()
        changed = self.sync(root)
        synced = time.perf_counter()
        self.worker()
        ended = time.perf_counter()
        return PgaiRun(ended - started, synced - started, ended - synced, changed)

    def counts(self) -> tuple[int, int]:
        """Pages and chunks (rows of its destination table)."""
        with psycopg.connect(self.url) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pages), (SELECT count(*) FROM pages_embeddings)"
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])
