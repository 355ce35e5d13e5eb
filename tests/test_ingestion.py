"""Documents → chunks → embeddings against real Postgres, with the local embedder and the fake OpenAI server."""

import numpy as np
import pytest
import sqlalchemy as sa

from pipelines.chunks import chunk_documents
from pipelines.embeddings import BudgetExceededError, embed_pending
from pipelines.sources import sync_documents
from resources.embedders import EmbedderResource
from resources.sources import ContentSourcesResource, TableSource
from testing.fake_openai import FakeOpenAI, fake_vector

API_KEY = "sk-test"


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def sync(conn, sources):
    return sync_documents(conn.engine, sources.content_path, sources.table_specs())


def embed(conn, embedder, **kw):
    return embed_pending(conn.engine, embedder.spec(), embedder.limits(), embedder.factory(), **kw)


def ingest(conn, sources, embedder=None):
    synced = sync(conn, sources)
    chunks = chunk_documents(conn.engine, sources.chunk_max_chars, sources.chunk_overlap)
    emb = embed(conn, embedder or EmbedderResource(provider="local"))
    return synced, chunks, emb


def scalar(conn, sql, **params):
    return conn.execute(sa.text(sql), params).scalar_one()


@pytest.fixture
def content(tmp_path):
    root = tmp_path / "content"
    write(root, "a.md", "---\ntitle: A\n---\n# A\n\nAlpha text about scales.\n")
    write(root, "sub/b.md", "# B\n\nBeta text about chords.\n")
    write(root, "ja/c.md", "# 練習\n\nメトロノームを使って練習します。\n")
    return root


def test_bad_items_are_reported_and_everything_else_is_ingested(postgres, content):
    write(content, "bad/latin1.md", b"caf\xe9 au lait")
    write(content, "bad/nul.md", b"# x\n\x00")
    write(content, "bad/empty.md", b"")
    write(content, "bad/front.md", "---\ntitle: [oops\n---\nbody")
    with (content / "bad/huge.md").open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    with postgres.connect() as conn:
        stats = sync(conn, ContentSourcesResource(content_dir=str(content)))
        keys = conn.execute(sa.text("SELECT source_key FROM source_documents ORDER BY 1")).scalars().all()
        recorded = dict(conn.execute(sa.text("SELECT source_key, error FROM ingestion_errors")).all())
    assert keys == ["a.md", "ja/c.md", "sub/b.md"]
    reasons = {k: r for _, k, r in stats.errors}
    assert set(reasons) == {"bad/latin1.md", "bad/nul.md", "bad/empty.md", "bad/front.md", "bad/huge.md"}
    assert "invalid UTF-8" in reasons["bad/latin1.md"] and "NUL byte" in reasons["bad/nul.md"]
    assert "empty file" in reasons["bad/empty.md"] and "broken YAML" in reasons["bad/front.md"]
    assert "over the" in reasons["bad/huge.md"]
    assert recorded == reasons


def test_a_file_that_turns_bad_keeps_its_last_good_version(postgres, content):
    sources = ContentSourcesResource(content_dir=str(content))
    with postgres.connect() as conn:
        ingest(conn, sources)
        write(content, "a.md", b"\xff\xfe broken now")
        sync, _, _ = ingest(conn, sources)
        assert [k for _, k, _ in sync.errors] == ["a.md"]
        assert scalar(conn, "SELECT content FROM source_documents WHERE source_key='a.md'").startswith("# A")
        assert scalar(conn, "SELECT count(*) FROM active_chunk_embeddings") == 3
        write(content, "a.md", "# A\n\nFixed.\n")
        sync, _, _ = ingest(conn, sources)
        assert sync.errors == [] and scalar(conn, "SELECT count(*) FROM ingestion_errors") == 0


def test_missing_content_dir_deletes_nothing(postgres, content, tmp_path):
    with postgres.connect() as conn:
        ingest(conn, ContentSourcesResource(content_dir=str(content)))
        stats = sync(conn, ContentSourcesResource(content_dir=str(tmp_path / "nope")))
        assert stats.deleted == 0 and "does not exist" in stats.errors[0][2]
        assert scalar(conn, "SELECT count(*) FROM source_documents") == 3


def test_removed_file_takes_its_chunks_and_embeddings(postgres, content):
    sources = ContentSourcesResource(content_dir=str(content))
    with postgres.connect() as conn:
        ingest(conn, sources)
        (content / "sub/b.md").unlink()
        sync, _, _ = ingest(conn, sources)
        assert sync.deleted == 1
        assert scalar(conn, "SELECT count(*) FROM document_chunks") == 2
        assert scalar(conn, "SELECT count(*) FROM chunk_embeddings") == 2


def test_table_sources_and_hostile_identifiers(postgres, tmp_path):
    with postgres.connect() as conn:
        conn.execute(sa.text("CREATE TABLE question_templates (id int PRIMARY KEY, title text, body text)"))
        conn.execute(
            sa.text(
                "INSERT INTO question_templates VALUES (1, 'Scales', 'How to practise scales?'),"
                " (2, '和音', 'コードの押さえ方は？'), (3, 'Empty', NULL)"
            )
        )
        conn.commit()
        sources = ContentSourcesResource(
            content_dir=str(tmp_path),
            tables=[
                TableSource(table="question_templates", text_columns=["body"], title_column="title"),
                TableSource(table="no_such_table", text_columns=["body"]),
                TableSource(table='x"; DROP TABLE source_documents; --', text_columns=["body"]),
                TableSource(table="question_templates", text_columns=["body; DELETE"]),
                TableSource(table="question_templates", text_columns=["missing_col"]),
            ],
        )
        stats = sync(conn, sources)
        docs = conn.execute(
            sa.text("SELECT source, source_key, title FROM source_documents ORDER BY 2")
        ).all()
        assert docs == [
            ("table:question_templates", "1", "Scales"),
            ("table:question_templates", "2", "和音"),
        ]
        reasons = [r for _, _, r in stats.errors]
        assert any("every configured text column is empty" in r for r in reasons)
        assert any("'no_such_table' does not exist" in r for r in reasons)
        assert sum("not a plain identifier" in r for r in reasons) == 2
        assert any("no column(s) missing_col" in r for r in reasons)
        assert scalar(conn, "SELECT to_regclass('source_documents') IS NOT NULL")
        conn.execute(sa.text("DELETE FROM question_templates WHERE id = 2"))
        conn.commit()
        assert sync(conn, sources).deleted == 1


def test_identical_texts_are_sent_once_and_reruns_send_nothing(postgres, content):
    write(content, "dup1.md", "# Same\n\nIdentical body.\n")
    write(content, "dup2.md", "# Same\n\nIdentical body.\n")
    sources = ContentSourcesResource(content_dir=str(content))
    with FakeOpenAI() as fake, postgres.connect() as conn:
        embedder = EmbedderResource(api_key=API_KEY, base_url=fake.base_url, max_retries=0)
        _, _, stats = ingest(conn, sources, embedder)
        assert stats.chunks_embedded == 5 and stats.unique_texts == 4
        assert (
            sorted(fake.texts_embedded) == sorted(set(fake.texts_embedded)) and len(fake.texts_embedded) == 4
        )
        stored = conn.execute(
            sa.text(
                "SELECT c.content, e.embedding FROM chunk_embeddings e JOIN document_chunks c ON c.id = e.chunk_id"
            )
        ).all()
        for text, vec in stored:
            np.testing.assert_allclose(vec.to_numpy(), fake_vector(text, 1536), atol=1e-7)
        fake.reset_counts()
        _, _, again = ingest(conn, sources, embedder)
        assert fake.request_count == 0 and again.chunks_embedded == 0 and again.chunks_skipped == 5


def test_editing_one_file_reembeds_only_its_changed_chunks(postgres, tmp_path):
    root = tmp_path / "c"
    sections = "\n\n".join(
        f"## Part {i}\n\n" + f"Paragraph {i} says something distinct. " * 8 for i in range(6)
    )
    write(root, "long.md", "# Long\n\n" + sections)
    write(root, "other.md", "# Other\n\nUnrelated.\n")
    sources = ContentSourcesResource(content_dir=str(root), chunk_max_chars=400, chunk_overlap=0)
    with FakeOpenAI() as fake, postgres.connect() as conn:
        embedder = EmbedderResource(api_key=API_KEY, base_url=fake.base_url, max_retries=0)
        ingest(conn, sources, embedder)
        before = dict(
            conn.execute(
                sa.text(
                    "SELECT c.chunk_index, c.content FROM document_chunks c JOIN source_documents d"
                    " ON d.id = c.document_id WHERE d.source_key='long.md'"
                )
            ).all()
        )
        assert len(before) >= 6
        write(root, "long.md", ("# Long\n\n" + sections).replace("Paragraph 3 says", "Paragraph 3 now says"))
        fake.reset_counts()
        _, chunk_stats, _stats = ingest(conn, sources, embedder)
        after = dict(
            conn.execute(
                sa.text(
                    "SELECT c.chunk_index, c.content FROM document_chunks c JOIN source_documents d"
                    " ON d.id = c.document_id WHERE d.source_key='long.md'"
                )
            ).all()
        )
        changed = {t for i, t in after.items() if before.get(i) != t}
        assert changed and set(fake.texts_embedded) == changed
        assert chunk_stats.documents_chunked == 1
        assert (
            scalar(
                conn,
                "SELECT count(*) FROM chunk_embeddings e JOIN document_chunks c ON c.id = e.chunk_id"
                " WHERE e.content_sha256 <> c.content_sha256",
            )
            == 0
        )


def test_a_poisoned_input_fails_alone_and_the_rest_is_embedded(postgres, tmp_path):
    root = tmp_path / "c"
    for i in range(7):
        write(root, f"ok{i}.md", f"# Ok {i}\n\nFine text number {i}.\n")
    write(root, "bad.md", "# Bad\n\nThis contains poison for the model.\n")
    sources = ContentSourcesResource(content_dir=str(root))
    with FakeOpenAI() as fake, postgres.connect() as conn:
        embedder = EmbedderResource(api_key=API_KEY, base_url=fake.base_url, max_retries=0)
        _, _, stats = ingest(conn, sources, embedder)
        assert stats.chunks_embedded == 7 and stats.chunks_failed == 1
        err = conn.execute(
            sa.text(
                "SELECT c.content, x.error, x.attempts FROM embedding_errors x"
                " JOIN document_chunks c ON c.id = x.chunk_id"
            )
        ).one()
        assert "poison" in err.content and "HTTP 400" in err.error and err.attempts == 1
        # Failed chunks are retried on later runs, up to max_attempts, then left alone.
        embed(conn, embedder, max_attempts=2)
        fake.reset_counts()
        assert embed(conn, embedder, max_attempts=2).requests == 0 and fake.request_count == 0


def test_failed_requests_lose_nothing_committed_and_a_rerun_resumes(postgres, tmp_path):
    root = tmp_path / "c"
    for i in range(40):
        write(root, f"d{i:02}.md", f"# Doc {i}\n\nBody {i}.\n")
    sources = ContentSourcesResource(content_dir=str(root))
    with FakeOpenAI() as fake, postgres.connect() as conn:
        embedder = EmbedderResource(
            api_key=API_KEY, base_url=fake.base_url, max_retries=0, max_batch_inputs=10, concurrency=1
        )
        fake.inject(None, ("500",), ("wrong_dim",), None)
        _, _, stats = ingest(conn, sources, embedder)
        assert (stats.chunks_embedded, stats.chunks_failed, stats.requests) == (20, 20, 4)
        assert scalar(conn, "SELECT count(*) FROM embedding_errors") == 20
        errors = set(conn.execute(sa.text("SELECT error FROM embedding_errors")).scalars())
        assert any("HTTP 500" in e for e in errors) and any("dimension 1539" in e for e in errors)
        fake.reset_counts()
        stats = embed(conn, embedder)
        assert (stats.chunks_embedded, stats.requests, fake.request_count) == (20, 2, 2)
        assert scalar(conn, "SELECT count(*) FROM embedding_errors") == 0
        assert scalar(conn, "SELECT count(*) FROM active_chunk_embeddings") == 40


def test_budget_guard_refuses_before_any_request(postgres, content):
    sources = ContentSourcesResource(content_dir=str(content))
    with FakeOpenAI() as fake, postgres.connect() as conn:
        embedder = EmbedderResource(
            api_key=API_KEY, base_url=fake.base_url, price_per_million_tokens=1_000_000.0, budget_usd=1.0
        )
        sync(conn, sources)
        chunk_documents(conn.engine, sources.chunk_max_chars, sources.chunk_overlap)
        with pytest.raises(BudgetExceededError, match="EMBEDDING_BUDGET_USD"):
            embed(conn, embedder)
        assert fake.request_count == 0
        assert embed(conn, embedder, allow_over_budget=True).chunks_embedded == 3


def test_changing_chunk_size_rechunks_everything(postgres, content):
    with postgres.connect() as conn:
        ingest(conn, ContentSourcesResource(content_dir=str(content)))
        stats = chunk_documents(conn.engine, 30, 0)
        assert stats.documents_chunked == 3
        assert scalar(conn, "SELECT max(char_end - char_start) FROM document_chunks") <= 30


def test_chunks_deleted_or_rewritten_mid_request_are_skipped_not_fatal(postgres, content):
    from pipelines.embeddings import write_embeddings
    from pipelines.models import register_model

    sources = ContentSourcesResource(content_dir=str(content))
    with postgres.connect() as conn:
        sync(conn, sources)
        chunk_documents(conn.engine, sources.chunk_max_chars, sources.chunk_overlap)
        spec = EmbedderResource(provider="local").spec()
        register_model(conn, spec)
        conn.commit()
        rows = conn.execute(sa.text("SELECT id, content_sha256 FROM document_chunks ORDER BY id")).all()
        # While the request was in flight: one chunk's document was swept, another chunk was rewritten.
        conn.execute(
            sa.text(
                "DELETE FROM source_documents WHERE id = (SELECT document_id FROM document_chunks"
                " WHERE id = :id)"
            ),
            {"id": rows[0].id},
        )
        conn.execute(
            sa.text("UPDATE document_chunks SET content_sha256 = 'new' WHERE id = :id"), {"id": rows[1].id}
        )
        conn.commit()
        vectors = np.ones((3, spec.dimensions), dtype=np.float32)
        written = write_embeddings(
            conn, spec.name, [r.id for r in rows], [r.content_sha256 for r in rows], [1, 1, 1], vectors
        )
        conn.commit()
        assert written == 1
        assert conn.execute(sa.text("SELECT chunk_id FROM chunk_embeddings")).scalars().all() == [rows[2].id]


def test_requests_run_concurrently_up_to_the_configured_limit(postgres, tmp_path):
    root = tmp_path / "c"
    for i in range(24):
        write(root, f"d{i:02}.md", f"# Doc {i}\n\nBody {i}.\n")
    sources = ContentSourcesResource(content_dir=str(root))
    with FakeOpenAI(latency_s=0.3) as fake, postgres.connect() as conn:
        embedder = EmbedderResource(
            api_key=API_KEY, base_url=fake.base_url, max_retries=0, max_batch_inputs=2, concurrency=3
        )
        _, _, stats = ingest(conn, sources, embedder)
    assert stats.requests == 12 and stats.chunks_embedded == 24
    assert fake.max_in_flight == 3


def test_inputs_over_the_token_limit_are_recorded_without_a_request(postgres, tmp_path):
    root = tmp_path / "c"
    write(root, "small.md", "# Small\n\nShort.\n")
    write(root, "long.md", "# Long\n\n" + "word " * 400 + "\n")
    sources = ContentSourcesResource(content_dir=str(root), chunk_max_chars=5000, chunk_overlap=0)
    with FakeOpenAI() as fake, postgres.connect() as conn:
        embedder = EmbedderResource(
            api_key=API_KEY, base_url=fake.base_url, max_retries=0, max_input_tokens=200
        )
        _, _, stats = ingest(conn, sources, embedder)
        assert (stats.chunks_embedded, stats.chunks_failed) == (1, 1)
        assert all("word" not in t for t in fake.texts_embedded)
        assert "200-token limit" in conn.execute(sa.text("SELECT error FROM embedding_errors")).scalar_one()
