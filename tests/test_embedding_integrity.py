"""The database keeps chunk_embeddings' references whole: a vector needs its chunk and a registered model (the
model checked once per statement since migration 0012), deleting chunks takes their vectors and errors along,
and a model with vectors stays; also under two transactions racing each other."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from pipelines.embeddings import write_embeddings
from pipelines.models import register_model
from pipelines.sql import load_sql
from resources.embedders import EmbedderResource

SPEC = EmbedderResource(provider="local").spec()
DIMS = SPEC.dimensions
# A refusal through SQLAlchemy arrives wrapped; through the driver's COPY, as psycopg raised it.
REFUSED = (sa.exc.IntegrityError, psycopg.errors.ForeignKeyViolation)


def _setup(engine: sa.Engine, documents: int = 2, chunks_per_document: int = 2) -> list[tuple[int, str]]:
    """Registered model, documents with chunks; returns the chunks' (id, content_sha256)."""
    with engine.begin() as conn:
        register_model(conn, SPEC)
        conn.execute(
            sa.text(
                "INSERT INTO source_documents (source, source_key, content, content_sha256)"
                " SELECT 't', 'doc' || d, 'x', 'sha' || d FROM generate_series(1, :n) d"
            ),
            {"n": documents},
        )
        conn.execute(
            sa.text(
                "INSERT INTO document_chunks (document_id, chunk_index, content, content_sha256, char_start,"
                " char_end, token_count) SELECT d.id, i, 'text ' || d.id || '.' || i, 'c' || d.id || '.' || i,"
                " 0, 1, 1 FROM source_documents d, generate_series(0, :k - 1) i"
            ),
            {"k": chunks_per_document},
        )
        return [
            (r.id, r.content_sha256)
            for r in conn.execute(sa.text("SELECT id, content_sha256 FROM document_chunks ORDER BY id"))
        ]


def _vectors(n: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, DIMS)).astype(np.float32)


def _copy(conn: sa.Connection, rows: list[tuple[int, str, str]]) -> None:
    """(chunk_id, model, sha) rows through the write path's own binary COPY statement, skipping its prepare."""
    if not conn.in_transaction():
        conn.begin()  # the caller's commit or rollback then ends the COPY's transaction
    driver = conn.connection.driver_connection
    assert driver is not None
    vectors = _vectors(len(rows))
    with driver.cursor() as cur, cur.copy(load_sql("embeddings/copy_chunk_embeddings")) as copy:
        copy.set_types(["int8", "text", "vector", "text", "int4"])
        for (chunk_id, model, sha), vec in zip(rows, vectors, strict=True):
            copy.write_row((chunk_id, model, vec, sha, 1))


def _insert(conn: sa.Connection, chunk_id: int, model: str, sha: str = "s") -> None:
    conn.execute(
        sa.text(
            "INSERT INTO chunk_embeddings (chunk_id, model, embedding, content_sha256, token_count)"
            " VALUES (:c, :m, CAST(:v AS vector), :s, 1)"
        ),
        {"c": chunk_id, "m": model, "v": str(_vectors(1)[0].tolist()), "s": sha},
    )


def _record_error(conn: sa.Connection, chunk_id: int, model: str) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO embedding_errors (chunk_id, model, content_sha256, error) VALUES (:c, :m, 's', 'boom')"
        ),
        {"c": chunk_id, "m": model},
    )


def _count(engine: sa.Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


def _orphans(engine: sa.Engine) -> int:
    return _count(
        engine,
        "SELECT (SELECT count(*) FROM chunk_embeddings e WHERE NOT EXISTS"
        " (SELECT FROM document_chunks c WHERE c.id = e.chunk_id))"
        " + (SELECT count(*) FROM chunk_embeddings e WHERE NOT EXISTS"
        " (SELECT FROM embedding_models m WHERE m.name = e.model))"
        " + (SELECT count(*) FROM embedding_errors x WHERE NOT EXISTS"
        " (SELECT FROM document_chunks c WHERE c.id = x.chunk_id))",
    )


# --- refused writes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["copy", "insert"])
def test_a_vector_for_a_missing_chunk_is_refused_naming_the_chunk(engine, path):
    chunks = _setup(engine)
    missing = max(c for c, _ in chunks) + 1000
    with engine.connect() as conn, pytest.raises(REFUSED) as refused:
        if path == "copy":
            _copy(conn, [(chunks[0][0], SPEC.name, chunks[0][1]), (missing, SPEC.name, "s")])
        else:
            _insert(conn, missing, SPEC.name)
    assert f"(chunk_id)=({missing})" in str(refused.value)
    assert _count(engine, "SELECT count(*) FROM chunk_embeddings") == 0


@pytest.mark.parametrize("path", ["copy", "insert", "update"])
def test_a_vector_for_an_unregistered_model_is_refused_naming_the_model(engine, path):
    chunks = _setup(engine)
    with engine.connect() as conn:
        _copy(conn, [(chunks[0][0], SPEC.name, chunks[0][1])])
        conn.commit()
        with pytest.raises(REFUSED, match="model 'no-such-model' is not registered"):
            if path == "copy":
                _copy(conn, [(chunks[1][0], SPEC.name, "s"), (chunks[2][0], "no-such-model", "s")])
            elif path == "insert":
                _insert(conn, chunks[1][0], "no-such-model")
            else:
                conn.execute(sa.text("UPDATE chunk_embeddings SET model = 'no-such-model'"))
        conn.rollback()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT chunk_id, model FROM chunk_embeddings")).all() == [
            (chunks[0][0], SPEC.name)
        ]


def test_write_embeddings_refuses_an_unregistered_model(engine):
    chunks = _setup(engine)
    with engine.connect() as conn, pytest.raises(REFUSED, match="model 'unregistered'"):
        write_embeddings(conn, "unregistered", [chunks[0][0]], [chunks[0][1]], [1], _vectors(1))


# --- deletes -----------------------------------------------------------------------------------------------


def _embed_all(engine: sa.Engine, chunks: list[tuple[int, str]]) -> None:
    with engine.begin() as conn:
        assert write_embeddings(
            conn,
            SPEC.name,
            [c for c, _ in chunks],
            [s for _, s in chunks],
            [1] * len(chunks),
            _vectors(len(chunks)),
        ) == len(chunks)
        for chunk_id, _ in chunks:
            _record_error(conn, chunk_id, "other-model")


@pytest.mark.parametrize("how", ["chunks", "document"])
def test_deleting_chunks_deletes_their_vectors_and_errors_only(engine, how):
    chunks = _setup(engine, documents=3)
    _embed_all(engine, chunks)
    with engine.begin() as conn:
        doc = conn.execute(sa.text("SELECT min(document_id) FROM document_chunks")).scalar_one()
        gone = set(
            conn.execute(
                sa.text("SELECT id FROM document_chunks WHERE document_id = :d"), {"d": doc}
            ).scalars()
        )
        if how == "chunks":
            conn.execute(sa.text("DELETE FROM document_chunks WHERE document_id = :d"), {"d": doc})
        else:
            conn.execute(sa.text("DELETE FROM source_documents WHERE id = :d"), {"d": doc})
    kept = {c for c, _ in chunks} - gone
    with engine.connect() as conn:
        assert set(conn.execute(sa.text("SELECT chunk_id FROM chunk_embeddings")).scalars()) == kept
        assert set(conn.execute(sa.text("SELECT chunk_id FROM embedding_errors")).scalars()) == kept
    assert _orphans(engine) == 0


def test_a_model_with_vectors_cannot_be_deleted_renamed_or_truncated_away(engine):
    chunks = _setup(engine)
    _embed_all(engine, chunks[:1])
    statements = {
        "delete": "DELETE FROM embedding_models WHERE name = :m",
        "rename": "UPDATE embedding_models SET name = 'renamed' WHERE name = :m",
        "truncate": "TRUNCATE embedding_models CASCADE",
    }
    for what, statement in statements.items():
        with (
            engine.connect() as conn,
            pytest.raises(REFUSED, match="embedding_models") as refused,
        ):
            conn.execute(sa.text(statement), {"m": SPEC.name})
        if what != "truncate":
            assert SPEC.name in str(refused.value)
    # Only a change of its name or existence is refused: status changes go on, and a model without vectors goes.
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE embedding_models SET status = 'retired' WHERE name = :m"), {"m": SPEC.name}
        )
        conn.execute(
            sa.text(
                "INSERT INTO embedding_models (name, provider, model, dimensions) VALUES ('unused', 'local', 'u', 3)"
            )
        )
        conn.execute(sa.text("DELETE FROM embedding_models WHERE name = 'unused'"))
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM chunk_embeddings"))
        conn.execute(sa.text("DELETE FROM embedding_models WHERE name = :m"), {"m": SPEC.name})
    assert _count(engine, "SELECT count(*) FROM embedding_models") == 0


# --- two transactions racing -------------------------------------------------------------------------------


def _wait_until_blocked(engine: sa.Engine, pid: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _count(
            engine, "SELECT count(*) FROM pg_stat_activity WHERE pid = :p AND wait_event_type = 'Lock'", p=pid
        ):
            return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for a lock")


def _race(
    engine: sa.Engine, first: Callable[[sa.Connection], None], second: Callable[[sa.Connection], Any]
) -> Any:
    """`first` runs and holds its transaction open; `second` runs in another connection and must wait for it;
    then `first` commits. Returns what `second` returned, or the exception it raised."""
    outcome: dict[str, Any] = {}
    with engine.connect() as holder, engine.connect() as other:
        pid = other.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        other.commit()
        first(holder)

        def run() -> None:
            try:
                outcome["value"] = second(other)
                other.commit()
            except Exception as exc:  # the refusal under test, handed back to the test thread
                other.rollback()
                outcome["value"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        try:
            _wait_until_blocked(engine, pid)
        finally:
            holder.commit()
            thread.join(30)
        assert not thread.is_alive()
    return outcome["value"]


def test_chunk_deleted_while_its_vector_is_written_leaves_no_orphan(engine):
    """The write holds the chunk; the delete waits, then takes the committed vector with it."""
    chunks = _setup(engine, documents=1, chunks_per_document=2)
    target, sha = chunks[0]

    def write(conn: sa.Connection) -> None:
        assert write_embeddings(conn, SPEC.name, [target], [sha], [1], _vectors(1)) == 1

    def delete(conn: sa.Connection) -> int:
        return conn.execute(sa.text("DELETE FROM document_chunks WHERE id = :c"), {"c": target}).rowcount

    assert _race(engine, write, delete) == 1
    assert _count(engine, "SELECT count(*) FROM chunk_embeddings") == 0
    assert _orphans(engine) == 0


def test_vector_written_while_its_chunk_is_deleted_is_left_out(engine):
    """The delete holds the chunk; the write waits, then finds it gone and writes nothing for it."""
    chunks = _setup(engine, documents=1, chunks_per_document=2)
    ids, shas = [c for c, _ in chunks], [s for _, s in chunks]

    def delete(conn: sa.Connection) -> None:
        conn.execute(sa.text("DELETE FROM document_chunks WHERE id = :c"), {"c": ids[0]})

    def write(conn: sa.Connection) -> int:
        return write_embeddings(conn, SPEC.name, ids, shas, [1, 1], _vectors(2))

    assert _race(engine, delete, write) == 1
    assert _count(engine, "SELECT count(*) FROM chunk_embeddings") == 1
    assert _orphans(engine) == 0


def test_model_deleted_while_its_vectors_are_written_is_refused(engine):
    """The write holds the model; the delete waits, then sees the committed vectors and is refused."""
    chunks = _setup(engine)

    def write(conn: sa.Connection) -> None:
        _copy(conn, [(chunks[0][0], SPEC.name, chunks[0][1])])

    def delete(conn: sa.Connection) -> int:
        return conn.execute(
            sa.text("DELETE FROM embedding_models WHERE name = :m"), {"m": SPEC.name}
        ).rowcount

    refused = _race(engine, write, delete)
    assert isinstance(refused, REFUSED) and SPEC.name in str(refused)
    assert _count(engine, "SELECT count(*) FROM chunk_embeddings") == 1
    assert _orphans(engine) == 0


def test_vectors_written_while_their_model_is_deleted_are_refused(engine):
    """The delete holds the model; the write waits, then finds it gone and is refused."""
    chunks = _setup(engine)

    def delete(conn: sa.Connection) -> None:
        conn.execute(sa.text("DELETE FROM embedding_models WHERE name = :m"), {"m": SPEC.name})

    def write(conn: sa.Connection) -> None:
        _copy(conn, [(chunks[0][0], SPEC.name, chunks[0][1])])

    refused = _race(engine, delete, write)
    assert isinstance(refused, REFUSED) and f"model '{SPEC.name}'" in str(refused)
    assert _count(engine, "SELECT count(*) FROM chunk_embeddings") == 0
    assert _orphans(engine) == 0
