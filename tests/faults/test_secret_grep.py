"""A provider that echoes the API key in its 401, 400 and 500 bodies leaves the key nowhere: not in the
runs' stdout or stderr, not in any file of the Dagster instance (run and event storage, compute logs), not
in any column of any table. The jobs run as an operator runs them: `dagster job execute` against an
instance on disk (sqlite storage, local compute logs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from testing.fake_openai_batch import FakeOpenAIBatch

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-grepme-0123456789abcdefXYZ"
WRONG_KEY = "sk-grepme-wrong-9876543210zyx"
# Anything that looks like an OpenAI key, not only the configured one (and not the tail of "task-…").
KEY_LIKE = re.compile(rb"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{8,}")


def _execute(job: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "execute",
            "-m",
            "location.definitions",
            "-j",
            job,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
    )


def _leaks(blob: bytes) -> list[bytes]:
    found = KEY_LIKE.findall(blob)
    return found + [k.encode() for k in (KEY, WRONG_KEY) if k.encode() in blob]


def test_an_echoed_key_is_in_no_output_file_or_table(database_url, tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    for i in range(4):
        (content / f"d{i}.md").write_text(f"# Doc {i}\n\nPlain text of document {i}.\n")
    (content / "bad.md").write_text("# Bad\n\nThis document carries poison for the model.\n")
    home = tmp_path / "dagster_home"
    home.mkdir()
    outputs: list[bytes] = []
    with FakeOpenAIBatch(expected_api_key=KEY) as fake:
        fake.echo_key = True
        base = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDING_", "OPENAI_"))},
            "DAGSTER_HOME": str(home),
            "DATABASE_URL": database_url,
            "CONTENT_DIR": str(content),
            "SOURCE_TABLES": "[]",
            "OPENAI_BASE_URL": fake.base_url,
            "EMBEDDING_PROVIDER": "openai",
            "EMBEDDING_MODEL": "text-embedding-3-small",
            "EMBEDDING_DIMENSIONS": "64",
        }
        # The right key: a 500 (retried) and a 400 for the poisoned text, both quoting the key.
        fake.inject(("500",))
        ok = _execute("ingestion_job", {**base, "OPENAI_API_KEY": KEY})
        outputs += [ok.stdout, ok.stderr]
        assert ok.returncode == 0, ok.stderr[-3000:].decode(errors="replace")
        assert {r["status"] for r in fake.requests} >= {200, 400, 500}
        # A wrong key: the 401 quotes it, and the run fails.
        bad = _execute("ingestion_job", {**base, "OPENAI_API_KEY": WRONG_KEY})
        outputs += [bad.stdout, bad.stderr]
        assert bad.returncode != 0 and b"HTTP 401" in bad.stdout + bad.stderr
        # The Batch API path: a new model's build submits a batch file; the files endpoint refuses the key.
        fake.refusal = (401, "Incorrect API key provided: {key}")
        batch = _execute(
            "reembedding_job",
            {
                **base,
                "OPENAI_API_KEY": KEY,
                "EMBEDDING_DIMENSIONS": "32",
                "EMBEDDING_BATCH_API": "on",
                "EMBEDDING_BATCH_MIN_TOKENS": "1",
            },
        )
        outputs += [batch.stdout, batch.stderr]
        assert batch.returncode != 0 and b"HTTP 401" in batch.stdout + batch.stderr
    # Every echo did reach the client: the grep below looks where a leak would land.
    assert all(KEY in h or WRONG_KEY in h for h in fake.auth_headers)

    for i, blob in enumerate(outputs):
        assert _leaks(blob) == [], f"output {i}"
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".err" for p in files), "no compute log was written"
    event_text = b"".join(p.read_bytes() for p in files)
    assert b"HTTP 401" in event_text and b"HTTP 400" in event_text
    for path in files:
        assert _leaks(path.read_bytes()) == [], str(path.relative_to(home))

    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        tables = conn.execute(
            sa.text(
                "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables"
                " WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
        ).scalars()
        dumped = {t: "\n".join(conn.execute(sa.text(f"SELECT t::text FROM {t} t")).scalars()) for t in tables}
    engine.dispose()
    assert "HTTP 400" in dumped["public.embedding_errors"]
    assert "HTTP 401" in dumped["public.embedding_batches"]
    for table, text in dumped.items():
        assert _leaks(text.encode()) == [], table
