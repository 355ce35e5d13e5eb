"""Chunks in the database: the work behind the `document_chunks` asset."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from pipelines.lib.chunking import chunk_markdown, chunker_fingerprint
from pipelines.sql import query

CHUNK_PAGE = 200


@dataclass
class ChunkStats:
    documents_chunked: int = 0
    chunks_written: int = 0
    chunks_unchanged: int = 0
    chunks_deleted: int = 0


def chunk_documents(engine: sa.Engine, max_chars: int, overlap: int) -> ChunkStats:
    """Re-chunk the documents whose content or chunker settings changed, a page per transaction."""
    fingerprint = chunker_fingerprint(max_chars, overlap)
    stats = ChunkStats()
    after_id = 0
    with engine.connect() as conn:
        while True:
            with conn.begin():
                docs = conn.execute(
                    query("chunks/select_documents_to_chunk"),
                    {"fingerprint": fingerprint, "after_id": after_id, "limit": CHUNK_PAGE},
                ).all()
                if not docs:
                    break
                after_id = docs[-1].id
                rows: list[dict[str, object]] = []
                ids, counts = [], []
                for doc in docs:
                    chunks = chunk_markdown(doc.content, max_chars, overlap)
                    ids.append(doc.id)
                    counts.append(len(chunks))
                    rows.extend(
                        {
                            "document_id": doc.id,
                            "chunk_index": c.index,
                            "content": c.content,
                            "content_sha256": c.content_sha256,
                            "char_start": c.char_start,
                            "char_end": c.char_end,
                            "token_count": c.token_count,
                            "metadata": json.dumps(
                                {"heading_path": list(c.heading_path)}, ensure_ascii=False
                            ),
                        }
                        for c in chunks
                    )
                # rowcount counts inserted plus actually-changed rows: the upsert skips identical ones.
                written = conn.execute(query("chunks/upsert_document_chunks"), rows).rowcount if rows else 0
                stats.chunks_written += written
                stats.chunks_unchanged += len(rows) - written
                stats.chunks_deleted += conn.execute(
                    query("chunks/delete_surplus_chunks"), {"document_ids": ids, "chunk_counts": counts}
                ).rowcount
                conn.execute(
                    query("chunks/mark_documents_chunked"),
                    {
                        "fingerprint": fingerprint,
                        "document_ids": ids,
                        "content_sha256s": [d.content_sha256 for d in docs],
                    },
                )
            stats.documents_chunked += len(docs)
    return stats


def chunk_counts(conn: sa.Connection) -> tuple[int, int]:
    """(chunks in total, documents without any chunk)."""
    row = conn.execute(query("chunks/count_chunks_and_unchunked_documents")).one()
    return row.chunks, row.unchunked
