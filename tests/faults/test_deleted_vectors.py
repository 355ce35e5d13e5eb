"""Deleted content's vectors stay reusable for a grace period (issue 21, item 1): adding the same content back
costs no embedding request, measured at the fake OpenAI server; the period's end, a retention sweep and an
erasure purge them, and each model keeps its own."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.chunks import document_chunks
from assets.embeddings import chunk_embeddings
from assets.sources import source_documents
from pipelines.embeddings import embed_pending
from pipelines.erasure import erase_user_dialogue
from pipelines.models import drop_retired_embeddings
from pipelines.retention import sweep_expired
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource
from resources.sources import ContentSourcesResource, TableSource
from testing.corpus import TLDR_SAMPLE
from testing.fake_openai import FakeOpenAI

ASSETS = [source_documents, document_chunks, chunk_embeddings]
ALLOW = {"ops": {"source_documents": {"config": {"allow_mass_deletion": True}}}}
SMALL, LARGE = "text-embedding-3-small", "text-embedding-3-large"


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


def embedder(fake: FakeOpenAI, model: str = SMALL) -> EmbedderResource:
    return EmbedderResource(api_key="sk-test", base_url=fake.base_url, model=model)


def run(
    postgres: PostgresResource,
    fake: FakeOpenAI,
    sources: ContentSourcesResource,
    *,
    allow: bool = False,
) -> dict[str, dict[str, Any]]:
    result = dg.materialize(
        ASSETS,
        resources={"postgres": postgres, "content_sources": sources, "embedder": embedder(fake)},
        run_config=ALLOW if allow else {},
    )
    assert result.success
    return {
        node: {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}
        for node in ("source_documents", "chunk_embeddings")
    }


def in_dir(path: Path) -> ContentSourcesResource:
    return ContentSourcesResource(content_dir=str(path))


def rows(engine: sa.Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def vectors_by_text(engine: sa.Engine, model: str = SMALL) -> dict[str, str]:
    """content hash → the stored vector (as text, exactly) of every chunk of the model."""
    return dict(
        rows(engine, "SELECT content_sha256, embedding::text FROM chunk_embeddings WHERE model = :m", m=model)
    )


def kept(engine: sa.Engine) -> dict[tuple[str, str], dt.datetime]:
    return {
        (m, h): until
        for m, h, until in rows(engine, "SELECT model, content_sha256, keep_until FROM deleted_chunk_vectors")
    }


def chunk_texts(engine: sa.Engine, keys: set[str]) -> dict[str, str]:
    """content hash → text of the chunks of the documents with these keys."""
    return dict(
        rows(
            engine,
            "SELECT c.content_sha256, c.content FROM document_chunks c JOIN source_documents d"
            " ON d.id = c.document_id WHERE d.source_key = ANY(:keys)",
            keys=sorted(keys),
        )
    )


def test_re_adding_deleted_content_costs_no_embedding_request(postgres, fake, tmp_path):
    mine = tmp_path / "mine"
    shutil.copytree(TLDR_SAMPLE, mine)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "other.md").write_text("# Other\n\nSomething else.\n")
    engine = postgres.engine

    first = run(postgres, fake, in_dir(mine))["chunk_embeddings"]
    assert first["requests"] == fake.request_count > 0
    paid = vectors_by_text(engine)
    chunks = rows(engine, "SELECT count(*) FROM document_chunks")[0][0]

    # The wrong folder, allowed on purpose: every document goes, every distinct text's vector is kept.
    moved = run(postgres, fake, in_dir(elsewhere), allow=True)["source_documents"]
    assert moved["deleted"] == 151 and moved["deleted_vectors_kept"] == len(paid)
    assert set(kept(engine)) == {(SMALL, h) for h in paid}
    other = set(vectors_by_text(engine))  # the other folder's page, embedded by that run

    fake.reset_counts()
    back = run(postgres, fake, in_dir(mine))["chunk_embeddings"]
    assert fake.request_count == 0 and back["requests"] == 0 and back["tokens"] == 0
    assert back["chunks_reused_by_hash"] == chunks and back["chunks_embedded"] == 0
    # The very vectors paid for the first time, and no chunk without one.
    assert vectors_by_text(engine) == paid
    assert rows(engine, "SELECT count(*) FROM chunks_without_embedding(:m)", m=SMALL)[0][0] == 0
    # Taken back, they left the cache; only the other folder's page, deleted by this run, is kept now.
    assert set(kept(engine)) == {(SMALL, h) for h in other}


def test_the_grace_period_ends_at_the_configured_time_and_the_sweep_purges(postgres, fake, tmp_path):
    mine = tmp_path / "mine"
    shutil.copytree(TLDR_SAMPLE, mine)
    engine = postgres.engine
    run(postgres, fake, in_dir(mine))
    gone = sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*.md"))[:5]
    texts = chunk_texts(engine, set(gone))
    others = set(
        chunk_texts(engine, {p.relative_to(mine).as_posix() for p in mine.rglob("*.md")} - set(gone))
    )
    unique = {h: t for h, t in texts.items() if h not in others}
    assert unique
    for key in gone:
        (mine / key).unlink()
    assert run(postgres, fake, in_dir(mine))["source_documents"]["deleted_vectors_kept"] == len(unique)

    # Eight days later (with the default seven-day period): the next embedding step purges them.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE deleted_chunk_vectors SET deleted_at = deleted_at - interval '8 days'"))
    assert run(postgres, fake, in_dir(mine))["chunk_embeddings"]["deleted_vectors_purged"] == len(unique)
    assert kept(engine) == {}

    for key in gone:
        shutil.copy2(TLDR_SAMPLE / key, mine / key)
    fake.reset_counts()
    run(postgres, fake, in_dir(mine))
    assert set(fake.texts_embedded) == set(unique.values())


def test_a_vector_past_its_keep_until_is_never_reused(postgres, fake, tmp_path):
    (tmp_path / "a.md").write_text("# A\n\nAlpha.\n")
    (tmp_path / "b.md").write_text("# B\n\nBeta.\n")
    engine = postgres.engine
    run(postgres, fake, in_dir(tmp_path))
    (tmp_path / "b.md").unlink()
    run(postgres, fake, in_dir(tmp_path))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE deleted_chunk_vectors SET keep_until = now() - interval '1 second'"))
    (tmp_path / "b.md").write_text("# B\n\nBeta.\n")
    fake.reset_counts()
    meta = run(postgres, fake, in_dir(tmp_path))["chunk_embeddings"]
    assert fake.request_count == 1 and meta["chunks_embedded"] == 1 and meta["deleted_vectors_purged"] == 1


def test_a_zero_grace_period_keeps_nothing(database_url, fake, tmp_path):
    postgres = PostgresResource(database_url=database_url, hnsw_min_rows=0, deleted_vector_grace_days=0)
    (tmp_path / "a.md").write_text("# A\n\nAlpha.\n")
    (tmp_path / "b.md").write_text("# B\n\nBeta.\n")
    run(postgres, fake, in_dir(tmp_path))
    (tmp_path / "b.md").unlink()
    meta = run(postgres, fake, in_dir(tmp_path))["source_documents"]
    assert meta["deleted"] == 1 and meta["deleted_vectors_kept"] == 0 and kept(postgres.engine) == {}


def _page(title: str, body: str, front: str = "") -> str:
    return (f"---\n{front}---\n" if front else "") + f"# {title}\n\n{body}\n"


def test_swept_content_does_not_survive_in_the_cache(postgres, fake, tmp_path):
    """A retention sweep keeps nothing of what it deletes and purges the same texts kept from earlier deletions;
    a deleted document's kept vectors go when its retention ends, even before the grace period does."""
    engine = postgres.engine
    body = "The shared paragraph that two pages hold word for word."
    (tmp_path / "shared.md").write_text(_page("Shared", body))
    (tmp_path / "expired.md").write_text(
        _page("Shared", body, "retention_years: 1\nacquired_at: 2020-01-01\n")
    )
    # One calendar year after this, on the Tokyo calendar: in two or three days (a leap day in between).
    soon = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=363)
    (tmp_path / "soon.md").write_text(
        _page(
            "Soon", "A page whose retention ends in a few days.", f"retention_years: 1\nacquired_at: {soon}\n"
        )
    )
    run(postgres, fake, in_dir(tmp_path))
    shared = set(chunk_texts(engine, {"shared.md"}))
    assert shared == set(chunk_texts(engine, {"expired.md"}))  # the same chunk texts
    soon_texts = set(chunk_texts(engine, {"soon.md"}))
    (soon_expiry,) = rows(
        engine,
        "SELECT p.expires_at FROM provenance p JOIN source_documents d ON d.id = p.content_id"
        " WHERE d.source_key = 'soon.md'",
    )[0]

    (tmp_path / "shared.md").unlink()
    (tmp_path / "soon.md").unlink()
    run(postgres, fake, in_dir(tmp_path))
    before = kept(engine)
    assert set(before) == {(SMALL, h) for h in shared | soon_texts}
    assert {before[(SMALL, h)] for h in soon_texts} == {soon_expiry}  # its expiry, not the grace period

    with engine.connect() as conn:
        now = sweep_expired(conn)
    assert now.documents == 1  # expired.md, whose texts are shared.md's
    assert set(kept(engine)) == {(SMALL, h) for h in soon_texts}
    with engine.connect() as conn:
        later = sweep_expired(conn, as_of=now.as_of + dt.timedelta(days=4))
    assert later.documents == 0 and later.kept_vectors_purged == len(soon_texts) and kept(engine) == {}

    (tmp_path / "shared.md").write_text(_page("Shared", body))
    fake.reset_counts()
    run(postgres, fake, in_dir(tmp_path))
    assert fake.request_count == 1 and set(fake.texts_embedded) == set(
        chunk_texts(engine, {"shared.md"}).values()
    )


def test_each_model_keeps_its_own_and_a_retired_model_takes_its_kept_vectors_along(postgres, fake, tmp_path):
    engine = postgres.engine
    (tmp_path / "a.md").write_text("# A\n\nAlpha.\n")
    (tmp_path / "b.md").write_text("# B\n\nBeta.\n")
    run(postgres, fake, in_dir(tmp_path))
    large = embedder(fake, LARGE)
    embed_pending(engine, large.spec(), large.limits(), large.factory(engine))  # a building model, complete
    (tmp_path / "b.md").unlink()
    run(postgres, fake, in_dir(tmp_path))
    b_texts = {h for m, h in kept(engine)}
    assert set(kept(engine)) == {(m, h) for m in (SMALL, LARGE) for h in b_texts}

    (tmp_path / "b.md").write_text("# B\n\nBeta.\n")
    fake.reset_counts()
    run(postgres, fake, in_dir(tmp_path))  # the active model takes its own vector back, and only it
    assert fake.request_count == 0 and set(kept(engine)) == {(LARGE, h) for h in b_texts}
    dims = rows(engine, "SELECT DISTINCT model, vector_dims(embedding) FROM chunk_embeddings")
    assert set(dims) == {(SMALL, 1536), (LARGE, 3072)}

    # The large model is given up: once its vectors go, its kept ones go too.
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE embedding_models SET status = 'retired', retired_at = now() - interval '30 days'"
                " WHERE name = :m"
            ),
            {"m": LARGE},
        )
    (live,) = rows(engine, "SELECT count(*) FROM chunk_embeddings WHERE model = :m", m=LARGE)[0]
    assert drop_retired_embeddings(engine, 7).deleted == {LARGE: live}
    assert kept(engine) == {}


def test_an_erasure_keeps_no_deleted_vector_and_dialogue_rows_are_never_kept(postgres, fake, tmp_path):
    engine = postgres.engine
    (tmp_path / "a.md").write_text("# A\n\nAlpha.\n")
    (tmp_path / "b.md").write_text("# B\n\nBeta.\n")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ai_dialogue_log (user_id, query, created_at)"
                " SELECT 'u1', 'a question about item ' || g, now() FROM generate_series(1, 3) g"
            )
        )
    dialogue = ContentSourcesResource(
        content_dir=str(tmp_path), tables=[TableSource(table="ai_dialogue_log", text_columns=["query"])]
    )
    run(postgres, fake, dialogue)
    (tmp_path / "b.md").unlink()
    run(postgres, fake, dialogue)
    assert len(kept(engine)) == 1
    with engine.connect() as conn:
        erased = erase_user_dialogue(conn, "u1")
    assert erased.rows_deleted == 3 and erased.kept_vectors_purged == 1 and kept(engine) == {}
    # The next run deletes the documents made of the erased rows and keeps none of their vectors.
    meta = run(postgres, fake, dialogue)["source_documents"]
    assert meta["deleted"] == 3 and meta["deleted_vectors_kept"] == 0 and kept(engine) == {}
