"""The ingestion assets through `dg.materialize` on real Postgres, and the tldr corpus end to end."""

import random
import shutil

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.chunks import document_chunks
from assets.embeddings import chunk_embeddings
from assets.sources import source_documents
from resources.embedders import EmbedderResource
from resources.sources import ContentSourcesResource
from testing.corpus import TLDR_FULL, TLDR_FULL_PAGES, TLDR_SAMPLE
from testing.fake_openai import FakeOpenAI

ASSETS = [source_documents, document_chunks, chunk_embeddings]


def materialize(postgres, sources, embedder=None):
    result = dg.materialize(
        ASSETS,
        resources={
            "postgres": postgres,
            "content_sources": sources,
            "embedder": embedder or EmbedderResource(provider="local"),
        },
    )
    assert result.success
    return {
        mat.asset_key.to_user_string(): {k: v.value for k, v in mat.metadata.items()}
        for mat in result.get_asset_materialization_events()
        for mat in [mat.event_specific_data.materialization]
    }, {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_assets_report_typed_metadata_and_checks(postgres, tmp_path):
    (tmp_path / "a.md").write_text("# A\n\nAlpha.\n")
    (tmp_path / "b.md").write_text("# B\n\nBeta.\n")
    (tmp_path / "bad.md").write_bytes(b"\xff")
    sources = ContentSourcesResource(content_dir=str(tmp_path))
    with FakeOpenAI() as fake:
        embedder = EmbedderResource(api_key="sk-x", base_url=fake.base_url, price_per_million_tokens=0.02)
        meta, checks = materialize(postgres, sources, embedder)
    assert meta["source_documents"]["documents_total"] == 2 and meta["source_documents"]["rejected"] == 1
    assert "bad.md" in meta["source_documents"]["rejected_items"]
    assert checks["no_rejected_items"].passed is False
    assert checks["no_rejected_items"].severity == dg.AssetCheckSeverity.WARN
    assert meta["document_chunks"]["chunks_total"] == 2 and checks["every_document_chunked"].passed
    emb = meta["chunk_embeddings"]
    assert (emb["chunks_embedded"], emb["requests"], emb["model"], emb["dimensions"]) == (
        2,
        1,
        "text-embedding-3-small",
        1536,
    )
    # Tokens are what the server billed (its usage rule: a token per 4 characters), not our estimate.
    assert emb["tokens"] == sum(max(1, len(t) // 4) for t in fake.texts_embedded)
    assert emb["cost_usd"] == pytest.approx(emb["tokens"] * 0.02 / 1e6, abs=1e-6)
    assert checks["no_failed_chunks"].passed


# The sample ships with the repository (150 pages and its LICENSE.md); the full corpus only runs where a
# checkout of it sits beside the repository, and says so in the test summary when it does not.
SAMPLE_FILES = 151
TLDR_CORPORA = [
    pytest.param(TLDR_SAMPLE, SAMPLE_FILES, id="sample"),
    pytest.param(
        TLDR_FULL,
        TLDR_FULL_PAGES,
        id="full",
        marks=[
            pytest.mark.slow,
            pytest.mark.skipif(
                not TLDR_FULL.is_dir(),
                reason=f"full tldr corpus not present at {TLDR_FULL}; ran the tests/data sample",
            ),
        ],
    ),
]


@pytest.mark.parametrize("source, n_files", TLDR_CORPORA)
def test_tldr_corpus_end_to_end(postgres, tmp_path, source, n_files):
    """Real English and Japanese pages (a sample, and all 4,931 where present): every file a document,
    spans cover each, re-runs are free, and an edit re-embeds only the edited file's changed chunks."""
    corpus = tmp_path / "tldr"
    shutil.copytree(source, corpus)
    files = sorted(p for p in corpus.rglob("*.md"))
    assert len(files) == n_files
    # Names that trip naive suffix handling are part of both corpora.
    assert {"pages/common/..md", "pages.ja/common/..md", "pages/common/c++.md"} <= {
        p.relative_to(corpus).as_posix() for p in files
    }
    sources = ContentSourcesResource(content_dir=str(corpus))
    meta, _ = materialize(postgres, sources)
    assert meta["source_documents"]["documents_total"] == len(files)
    assert (
        meta["chunk_embeddings"]["chunks_embedded"] + meta["chunk_embeddings"]["chunks_reused_by_hash"]
        == (meta["document_chunks"]["chunks_total"])
    )
    with postgres.connect() as conn:
        keys = set(conn.execute(sa.text("SELECT source_key FROM source_documents")).scalars())
        assert keys == {p.relative_to(corpus).as_posix() for p in files}
        # Spans: each chunk is the exact slice of its document and together they cover every non-space char.
        sample = [*random.Random(7).sample(sorted(keys), min(300, len(keys))), "pages.ja/common/tar.md"]
        rows = conn.execute(
            sa.text(
                "SELECT d.source_key, d.content, array_agg(c.char_start ORDER BY c.chunk_index),"
                " array_agg(c.char_end ORDER BY c.chunk_index), array_agg(c.content ORDER BY c.chunk_index)"
                " FROM source_documents d JOIN document_chunks c ON c.document_id = d.id"
                " WHERE d.source_key = ANY(:k) GROUP BY d.id"
            ),
            {"k": sample},
        ).all()
        assert len(rows) == len(set(sample))
        for key, text, starts, ends, contents in rows:
            covered = bytearray(len(text))
            for s, e, c in zip(starts, ends, contents):
                assert text[s:e] == c, key
                covered[s:e] = b"\x01" * (e - s)
            assert all(covered[i] or ch.isspace() for i, ch in enumerate(text)), key
        assert (
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM document_chunks c WHERE NOT EXISTS"
                    " (SELECT 1 FROM active_chunk_embeddings e WHERE e.chunk_id = c.id)"
                )
            ).scalar()
            == 0
        )

    meta2, _ = materialize(postgres, sources)
    assert meta2["chunk_embeddings"]["chunks_embedded"] == 0 and meta2["chunk_embeddings"]["requests"] == 0
    assert meta2["source_documents"]["inserted_or_updated"] == 0
    assert meta2["document_chunks"]["documents_rechunked"] == 0

    edited = corpus / "pages" / "common" / "git.md"
    with postgres.connect() as conn:
        before = set(
            conn.execute(
                sa.text(
                    "SELECT c.content FROM document_chunks c JOIN source_documents d"
                    " ON d.id = c.document_id WHERE d.source_key = 'pages/common/git.md'"
                )
            ).scalars()
        )
    edited.write_text(edited.read_text() + "\n- Show the edit made by the test:\n\n`git edit-test`\n")
    meta3, _ = materialize(postgres, sources)
    with postgres.connect() as conn:
        after = set(
            conn.execute(
                sa.text(
                    "SELECT c.content FROM document_chunks c JOIN source_documents d"
                    " ON d.id = c.document_id WHERE d.source_key = 'pages/common/git.md'"
                )
            ).scalars()
        )
    assert meta3["source_documents"]["inserted_or_updated"] == 1
    assert meta3["document_chunks"]["documents_rechunked"] == 1
    assert meta3["chunk_embeddings"]["chunks_embedded"] == len(after - before) >= 1
