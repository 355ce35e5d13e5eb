"""Synthetic documents and chunks written straight into the database, for re-embedding tests and benchmarks."""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING

import sqlalchemy as sa

from pipelines.lib.tokens import estimate_tokens

if TYPE_CHECKING:
    import numpy as np

WORDS = [
    "scale",
    "chord",
    "tempo",
    "rhythm",
    "melody",
    "harmony",
    "practice",
    "lesson",
    "metronome",
    "interval",
    "octave",
    "pitch",
    "finger",
    "posture",
    "bow",
    "string",
    "piano",
    "violin",
    "guitar",
    "teacher",
    "student",
    "score",
    "note",
    "rest",
    "beat",
    "measure",
    "key",
    "minor",
    "major",
    "arpeggio",
    "etude",
    "recital",
    "refund",
    "invoice",
    "billing",
    "account",
    "session",
    "schedule",
    "feedback",
    "exam",
]


def chunk_texts(n: int, seed: int = 0, prefix: str = "c") -> list[str]:
    """`n` distinct texts of 12–30 words; the tag keeps each unique."""
    rng = random.Random(seed)
    return [
        f"{prefix}{i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30))) + "."
        for i in range(n)
    ]


def add_chunks(
    conn: sa.Connection, texts: list[str], per_document: int = 10, source: str = "test"
) -> list[int]:
    """Insert documents holding `texts` as chunks (in order); return the chunk ids. Commits."""
    ids: list[int] = []
    for start in range(0, len(texts), per_document):
        part = texts[start : start + per_document]
        body = "\n\n".join(part)
        doc_id = conn.execute(
            sa.text(
                "INSERT INTO source_documents (source, source_key, title, content, content_sha256)"
                " VALUES (:s, :k, :t, :c, :h) RETURNING id"
            ),
            {
                "s": source,
                "k": f"{source}-{start}-{len(ids)}",
                "t": f"doc {start}",
                "c": body,
                "h": hashlib.sha256(body.encode()).hexdigest(),
            },
        ).scalar_one()
        offset = 0
        for index, text in enumerate(part):
            ids.append(
                conn.execute(
                    sa.text(
                        "INSERT INTO document_chunks (document_id, chunk_index, content, content_sha256,"
                        " char_start, char_end, token_count) VALUES (:d, :i, :c, :h, :s, :e, :t) RETURNING id"
                    ),
                    {
                        "d": doc_id,
                        "i": index,
                        "c": text,
                        "h": hashlib.sha256(text.encode()).hexdigest(),
                        "s": offset,
                        "e": offset + len(text),
                        "t": estimate_tokens(text),
                    },
                ).scalar_one()
            )
            offset += len(text) + 2
    conn.commit()
    return ids


def seed_active_model_vectors(
    conn: sa.Connection, model: str, vectors: np.ndarray, seed: int = 4
) -> list[int]:
    """One chunk a vector (100 chunks a document), `model` registered active with the vectors' dimension and
    the vectors written through the write path; returns the chunk ids in the vectors' order. The caller
    commits."""
    from pipelines.embeddings import write_embeddings

    n, dims = vectors.shape
    ids = add_chunks(conn, chunk_texts(n, seed=seed), per_document=100)
    conn.execute(
        sa.text(
            "INSERT INTO embedding_models (name, provider, model, dimensions, status)"
            " VALUES (:n, 'local', :n, :d, 'active')"
        ),
        {"n": model, "d": dims},
    )
    shas = conn.execute(
        sa.text("SELECT content_sha256 FROM document_chunks WHERE id = ANY(:ids) ORDER BY id"),
        {"ids": ids},
    ).scalars()
    assert write_embeddings(conn, model, ids, list(shas), [1] * n, vectors) == n
    return ids
