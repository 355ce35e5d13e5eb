"""Ingestion holds a bounded batch, never the corpus: sources are read and written a batch of files at a time,
and chunks to embed are read a page at a time. Structural checks of those bounds (small batch sizes, so that
every boundary case occurs), and that the paged path gives what reading everything at once gives."""

import sqlalchemy as sa

import pipelines.embeddings as embeddings
import pipelines.sources as sources_mod
from pipelines.chunks import chunk_documents
from pipelines.embeddings import PendingText, embed_pending, iter_pending
from pipelines.models import register_model
from pipelines.sources import sync_documents
from pipelines.sql import query
from resources.embedders import EmbedderResource
from testing.fake_openai import FakeOpenAI, fake_vector


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def corpus(root, distinct=9, copies=7):
    """`distinct` different pages and `copies` pages with one identical body: that text has more chunks than
    a small page holds, and its chunks are spread over several documents."""
    for i in range(distinct):
        write(root, f"d/{i:02}.md", f"# Page {i}\n\nBody of page {i}, about topic {i * 7}.\n")
    for i in range(copies):
        write(root, f"same/{i:02}.md", "# Same\n\nOne body shared by several files.\n")


def page_sizes(statement_text):
    """Rows returned by each execution of one statement, recorded from the cursor."""
    sizes: list[int] = []

    def record(_conn, cursor, statement, *_rest):
        if statement.strip() == statement_text.strip():
            sizes.append(cursor.rowcount)

    return sizes, record


def collect_pending(rows) -> list[PendingText]:
    """Every chunk grouped by text in one pass: the reading the pages must match."""
    by_sha: dict[str, PendingText] = {}
    for r in rows:
        item = by_sha.setdefault(
            r.content_sha256, PendingText(r.content, r.content_sha256, r.token_count, [])
        )
        item.chunk_ids.append(r.id)
    return list(by_sha.values())


def test_pending_texts_are_read_in_bounded_pages_and_match_reading_everything(postgres, tmp_path):
    corpus(tmp_path)
    engine = postgres.engine
    sync_documents(engine, tmp_path, ())
    chunk_documents(engine, 800, 100)
    spec = EmbedderResource(provider="local").spec()
    with engine.begin() as conn:
        register_model(conn, spec)
        # Nothing is embedded yet: every chunk is pending.
        everything = collect_pending(
            conn.execute(
                sa.text("SELECT id, content, content_sha256, token_count FROM document_chunks ORDER BY id")
            )
        )
    compiled = str(query("embeddings/select_chunks_to_embed_page").compile(engine))
    sizes, record = page_sizes(compiled)
    sa.event.listen(engine, "after_cursor_execute", record)
    try:
        with engine.connect() as conn:
            streamed = list(iter_pending(conn, spec.name, 3, page_texts=3))
    finally:
        sa.event.remove(engine, "after_cursor_execute", record)
    as_set = lambda items: {(p.content_sha256, p.text, p.tokens, tuple(sorted(p.chunk_ids))) for p in items}  # noqa: E731
    assert as_set(streamed) == as_set(everything)
    assert len(streamed) == len(everything) == 10  # each text once, its chunks together
    assert max(len(p.chunk_ids) for p in streamed) == 7
    total = sum(len(p.chunk_ids) for p in everything)
    # Ten texts, three a page: four pages. A page holds at most three texts, so at most three rows plus the
    # further chunks of the text seven chunks share.
    assert len(sizes) == 4 and sum(sizes) == total == 16
    assert max(sizes) <= 3 + 6


def test_embedding_page_by_page_sends_each_text_once_and_stores_its_vector(postgres, tmp_path, monkeypatch):
    corpus(tmp_path)
    monkeypatch.setattr(embeddings, "PAGE_TEXTS", 2)
    engine = postgres.engine
    sync_documents(engine, tmp_path, ())
    chunk_documents(engine, 800, 100)
    with FakeOpenAI() as fake:
        embedder = EmbedderResource(
            api_key="sk-test", base_url=fake.base_url, max_retries=0, max_batch_inputs=3
        )
        stats = embed_pending(engine, embedder.spec(), embedder.limits(), embedder.factory())
        assert len(fake.texts_embedded) == len(set(fake.texts_embedded)) == stats.unique_texts == 10
        assert stats.chunks_embedded == 16 and stats.requests == 4 == stats.minimum_requests
        with engine.connect() as conn:
            stored = conn.execute(
                sa.text(
                    "SELECT c.content, e.embedding FROM document_chunks c"
                    " LEFT JOIN chunk_embeddings e ON e.chunk_id = c.id"
                )
            ).all()
        assert len(stored) == 16
        for text, vec in stored:
            assert vec is not None and abs(vec.to_numpy() - fake_vector(text, 1536)).max() < 1e-6
        fake.reset_counts()
        again = embed_pending(engine, embedder.spec(), embedder.limits(), embedder.factory())
        assert fake.request_count == 0 and again.chunks_skipped == 16


def test_sources_are_written_a_batch_at_a_time_and_vanished_files_found_across_key_pages(
    postgres, tmp_path, monkeypatch
):
    corpus(tmp_path)
    monkeypatch.setattr(sources_mod, "UPSERT_BATCH", 4)
    monkeypatch.setattr(sources_mod, "KEY_PAGE", 3)
    held: list[int] = []
    apply_batch = sources_mod._apply_batch
    monkeypatch.setattr(
        sources_mod,
        "_apply_batch",
        lambda conn, src, docs, *a: (held.append(len(docs)), apply_batch(conn, src, docs, *a)),
    )
    engine = postgres.engine
    first = sync_documents(engine, tmp_path, ())
    assert (first.scanned, first.inserted_or_updated, first.deleted) == (16, 16, 0)
    assert held == [4, 4, 4, 4]
    removed = ["d/00.md", "d/05.md", "same/06.md"]  # the first key, one inside, the last
    for rel in removed:
        (tmp_path / rel).unlink()
    write(tmp_path, "d/03.md", "# Page 3\n\nRewritten.\n")
    again = sync_documents(engine, tmp_path, ())
    assert (again.scanned, again.inserted_or_updated, again.unchanged, again.deleted) == (13, 1, 12, 3)
    with engine.connect() as conn:
        keys = set(conn.execute(sa.text("SELECT source_key FROM source_documents")).scalars())
    on_disk = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.md")}
    assert keys == on_disk and len(keys) == 13


def test_changes_spread_over_read_batches_are_written_together_a_batch_at_most(
    postgres, tmp_path, monkeypatch
):
    corpus(tmp_path)  # 16 pages: four read batches of 4
    monkeypatch.setattr(sources_mod, "UPSERT_BATCH", 4)
    engine = postgres.engine
    sync_documents(engine, tmp_path, ())
    writes: list[int] = []  # documents per upsert statement

    def count(_conn, _cursor, statement, parameters, *_args) -> None:
        if statement.lstrip().startswith("INSERT INTO source_documents"):
            writes.append(len(parameters) if isinstance(parameters, list | tuple) else 1)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        # One edit in each of three read batches: one write.
        for rel in ("d/01.md", "d/06.md", "same/03.md"):
            write(tmp_path, rel, f"# {rel}\n\nEdited.\n")
        three = sync_documents(engine, tmp_path, ())
        assert (three.inserted_or_updated, three.unchanged, writes) == (3, 13, [3])
        writes.clear()
        # Six edits: a full batch of four is written as soon as it has gathered, the rest at the end.
        for rel in ("d/00.md", "d/02.md", "d/04.md", "d/07.md", "same/01.md", "same/05.md"):
            write(tmp_path, rel, f"# {rel}\n\nEdited again.\n")
        six = sync_documents(engine, tmp_path, ())
        assert (six.inserted_or_updated, six.unchanged, writes) == (6, 10, [4, 2])
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT source_key, content FROM source_documents")).all())
    assert (
        stored["d/06.md"] == "# d/06.md\n\nEdited.\n"
        and stored["same/05.md"] == "# same/05.md\n\nEdited again.\n"
    )
    assert len(stored) == 16
