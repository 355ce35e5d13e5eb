"""Table sources stream: rows are fetched a page at a time from a held cursor, never the whole table. Small
page and batch sizes here, so that every boundary case occurs (a duplicated key split over two pages, a
vanished key at a page edge), checked against a from-scratch reading of the whole table."""

from __future__ import annotations

import collections
import hashlib
import tracemalloc

import pytest
import sqlalchemy as sa

import pipelines.sources as sources_mod
from pipelines.sources import TableSpec, sync_documents

FAQ = TableSpec(table="faq", key_column="id", text_columns=("question", "answer"), title_column="title")


def expected_from_scratch(conn: sa.Connection, stored_before: dict[str, tuple[str, str]]) -> dict:
    """What the table should give, recomputed from one plain read of all of it: key -> (title, sha256) for
    every key held by exactly one row with some text; a key shared by several rows keeps what was stored."""
    rows = conn.execute(sa.text("SELECT id, title, question, answer FROM faq")).all()
    counts = collections.Counter(r.id for r in rows if r.id is not None)
    expected = {}
    for r in rows:
        if r.id is None:
            continue
        key = str(r.id)
        if counts[r.id] > 1:
            if key in stored_before:
                expected[key] = stored_before[key]
            continue
        parts = [f"## {col}\n\n{val}" for col, val in (("question", r.question), ("answer", r.answer)) if val]
        if parts:
            content = "\n\n".join(parts)
            expected[key] = (r.title or f"faq {key}", hashlib.sha256(content.encode()).hexdigest())
    return expected


def stored(conn: sa.Connection) -> dict[str, tuple[str, str]]:
    rows = conn.execute(
        sa.text("SELECT source_key, title, content_sha256 FROM source_documents WHERE source = 'table:faq'")
    ).all()
    return {k: (t, h) for k, t, h in rows}


def fetched_pages() -> tuple[list[int], object]:
    """Rows returned by each FETCH from a table cursor, and the listener recording them."""
    sizes: list[int] = []

    def record(_conn, cursor, statement, *_rest) -> None:
        if "FETCH FORWARD" in statement:
            sizes.append(cursor.rowcount)

    return sizes, record


def test_a_table_of_many_pages_gives_what_reading_it_whole_gives_across_runs(postgres, tmp_path, monkeypatch):
    monkeypatch.setattr(sources_mod, "TABLE_PAGE", 7)
    monkeypatch.setattr(sources_mod, "UPSERT_BATCH", 5)
    monkeypatch.setattr(sources_mod, "KEY_PAGE", 4)
    engine = postgres.engine
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE faq (id int, title text, question text, answer text)"))
        conn.execute(
            sa.text(
                "INSERT INTO faq SELECT i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'T' || i END,"
                " 'question ' || i, CASE WHEN i % 4 = 0 THEN NULL ELSE 'answer ' || i END"
                " FROM generate_series(1, 40) i"
            )
        )
        # In key order, the two rows of 7 are the 7th and 8th: the first page ends between them. Both
        # rows of 14 fall inside the third page. Two NULL keys; 20 has no text at all.
        conn.execute(
            sa.text(
                "INSERT INTO faq VALUES (7, 'again', 'q', 'a'), (14, 'again', 'q', 'a'),"
                " (NULL, 'n', 'q', 'a'), (NULL, 'n', 'q', 'a')"
            )
        )
        conn.execute(sa.text("UPDATE faq SET question = NULL, answer = NULL WHERE id = 20"))
    sizes, record = fetched_pages()
    sa.event.listen(engine, "after_cursor_execute", record)
    try:
        first = sync_documents(engine, tmp_path / "none", [FAQ])
    finally:
        sa.event.remove(engine, "after_cursor_execute", record)
    # 44 rows, seven a page: six full pages and a last of two.
    assert sizes == [7] * 6 + [2]
    with engine.connect() as conn:
        expected = expected_from_scratch(conn, {})
        assert stored(conn) == expected and len(expected) == 37  # 40 keys, less 7, 14 and 20
    reasons = {k: e for s, k, e in first.errors if s == "table:faq"}
    assert reasons.keys() == {"7", "14", "20", "NULL"}
    assert "2 rows share this key" in reasons["7"] and "2 rows share this key" in reasons["14"]
    assert "2 row(s) have a NULL key" in reasons["NULL"]
    assert "every configured text column is empty" in reasons["20"]
    assert (first.scanned, first.inserted_or_updated, first.deleted) == (37, 37, 0)

    with engine.begin() as conn:
        before = stored(conn)
        # The first key, one at a key page's edge, the last; 7 becomes unique, 5 becomes shared (it keeps
        # what was stored), 10 changes, 41 is new.
        conn.execute(sa.text("DELETE FROM faq WHERE id IN (1, 13, 40)"))
        conn.execute(sa.text("DELETE FROM faq WHERE id = 7 AND title = 'again'"))
        conn.execute(sa.text("INSERT INTO faq VALUES (5, 'twin', 'q', 'a'), (41, NULL, 'new', NULL)"))
        conn.execute(sa.text("UPDATE faq SET answer = 'changed' WHERE id = 10"))
    again = sync_documents(engine, tmp_path / "none", [FAQ])
    with engine.connect() as conn:
        after = stored(conn)
        assert after == expected_from_scratch(conn, before)
    assert after["5"] == before["5"] and after["10"] != before["10"] and {"1", "13", "40"}.isdisjoint(after)
    assert (again.inserted_or_updated, again.deleted, again.unchanged) == (3, 3, 32)
    assert {k for s, k, _ in again.errors if s == "table:faq"} == {"5", "14", "20", "NULL"}


def _fill(engine: sa.Engine, table: str, rows: int) -> int:
    """`rows` rows of 4 KB distinct text; returns the bytes of text."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id int PRIMARY KEY, body text)"))
        conn.execute(
            sa.text(f"INSERT INTO {table} SELECT i, repeat(md5(i::text), 128) FROM generate_series(1, :n) i"),
            {"n": rows},
        )
    return rows * 4096


def _peak_bytes(engine: sa.Engine, table: str, root) -> int:
    tracemalloc.start()
    try:
        stats = sync_documents(engine, root, [TableSpec(table=table, text_columns=("body",))])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stats.inserted_or_updated == stats.scanned > 0
    return peak


def test_memory_does_not_grow_with_the_table(postgres, tmp_path, monkeypatch):
    monkeypatch.setattr(sources_mod, "TABLE_PAGE", 25)
    monkeypatch.setattr(sources_mod, "UPSERT_BATCH", 25)
    engine = postgres.engine
    _fill(engine, "warm", 60)
    _peak_bytes(engine, "warm", tmp_path)  # caches (SQL files, compiled statements) filled once
    small_text = _fill(engine, "small", 200)
    large_text = _fill(engine, "large", 1000)
    sizes, record = fetched_pages()
    small = _peak_bytes(engine, "small", tmp_path)
    sa.event.listen(engine, "after_cursor_execute", record)
    try:
        large = _peak_bytes(engine, "large", tmp_path)
    finally:
        sa.event.remove(engine, "after_cursor_execute", record)
    assert sizes == [25] * 40 + [0]
    # Five times the rows add 3.2 MB of text; held whole, that text alone would add it to the peak. What
    # does grow is the set of keys read (for finding vanished ones): tens of bytes a row.
    assert large - small < 0.1 * (large_text - small_text), (small, large)


def test_the_cursor_is_freed_when_the_run_stops_midway(postgres, tmp_path, monkeypatch):
    monkeypatch.setattr(sources_mod, "TABLE_PAGE", 5)
    monkeypatch.setattr(sources_mod, "UPSERT_BATCH", 5)
    engine = postgres.engine
    _fill(engine, "rows", 30)

    def fail(*_args) -> None:
        raise RuntimeError("stopped midway")

    spec = TableSpec(table="rows", text_columns=("body",))
    pids: set[int] = set()
    sa.event.listen(engine, "checkout", lambda dbapi_conn, *_: pids.add(dbapi_conn.info.backend_pid))

    def open_cursors() -> int:
        with engine.connect() as conn:
            # The connection the run used (the pool's only one), where a cursor left open would stay.
            assert conn.connection.dbapi_connection.info.backend_pid in pids
            return conn.execute(sa.text("SELECT count(*) FROM pg_cursors")).scalar_one()

    assert sync_documents(engine, tmp_path, [spec]).inserted_or_updated == 30
    assert open_cursors() == 0
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE rows SET body = body || '.'"))
    monkeypatch.setattr(sources_mod, "_apply_batch", fail)
    with pytest.raises(RuntimeError, match="stopped midway"):
        sync_documents(engine, tmp_path, [spec])
    assert len(pids) == 1 and open_cursors() == 0


def test_a_key_column_with_no_order_is_refused_by_name_and_nothing_deleted(postgres, tmp_path):
    engine = postgres.engine
    spec = TableSpec(table="docs", key_column="k", text_columns=("body",))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE docs (k text, body text)"))
        conn.execute(sa.text("INSERT INTO docs VALUES ('a', 'alpha'), ('b', 'beta')"))
    assert sync_documents(engine, tmp_path, [spec]).inserted_or_updated == 2
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE docs ALTER COLUMN k TYPE json USING to_json(k)"))
    stats = sync_documents(engine, tmp_path, [spec])
    assert stats.deleted == 0
    assert any(s == "table:docs" and "cannot be read in key order" in e for s, _, e in stats.errors)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM source_documents")).scalar() == 2
