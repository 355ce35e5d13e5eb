"""The Batch API path holds a page, never the pending corpus: planning reads totals, submission reads texts a
page at a time and writes each request file to disk as it grows. Checked structurally (rows per statement
with small pages, at two corpus sizes) and by the peak memory of the submitting process at two sizes; and
that what is uploaded is every pending text exactly once, as an independent reading of the corpus says."""

import hashlib
import json
import tracemalloc
from collections import Counter
from typing import Any

import openai
import pytest
import sqlalchemy as sa

import pipelines.batch_embeddings as batch_module
import pipelines.embeddings as embeddings_module
from pipelines.batch_embeddings import (
    BatchFileError,
    PendingText,
    iter_texts_to_submit,
    plan_batch_embedding,
    submit_batches,
)
from pipelines.embedders import EmbedLimits
from pipelines.lib.tokens import estimate_tokens
from pipelines.models import register_model
from resources.embedders import EmbedderResource
from testing.chunk_seed import add_chunks, chunk_texts
from testing.fake_openai_batch import FakeOpenAIBatch, fake_batch_server_process

SHARED = "One paragraph that several documents share, word for word."
COPIES = 3


def spec_for(model: str, base_url: str):
    return EmbedderResource(
        provider="openai", model=model, dimensions=1536, api_key="sk-test", base_url=base_url
    ).spec()


def plan_and_submit(conn: sa.Connection, spec, limits: EmbedLimits, base_url: str):
    register_model(conn, spec)
    conn.commit()
    client = openai.OpenAI(api_key="sk-test", base_url=base_url, max_retries=0)
    try:
        plan = plan_batch_embedding(conn, spec, limits)
        submitted = submit_batches(conn, client, spec, iter_texts_to_submit(conn, plan), limits)
    finally:
        client.close()
    return plan, submitted


class StatementLog:
    """Rows each statement returned (SELECTs) and parameter sets each executemany sent."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.param_sets: list[int] = []

    def __call__(self, _conn, cursor, _statement, parameters, _context, executemany) -> None:
        if cursor.description is not None:
            self.rows.append(cursor.rowcount)
        if executemany:
            self.param_sets.append(len(parameters))


def test_batch_plan_and_submission_read_bounded_pages_and_send_every_text_once(postgres, monkeypatch):
    page, inputs, per_file = 4, 3, 5
    monkeypatch.setattr(embeddings_module, "PAGE_TEXTS", page)
    monkeypatch.setattr(batch_module, "PAGE_TEXTS", page)
    monkeypatch.setattr(batch_module, "MAPPING_GROUP", 4)
    limits = EmbedLimits(max_batch_inputs=inputs, max_requests_per_file=per_file, poll_initial_s=0)
    engine = postgres.engine
    seen: dict[int, StatementLog] = {}
    with FakeOpenAIBatch() as fake, engine.connect() as conn:
        corpus: list[str] = []
        for size, model in ((12, "text-embedding-3-small"), (60, "text-embedding-3-large")):
            # Grow the corpus to `size` distinct texts (plus one text shared by COPIES chunks); a model not
            # seen before has all of it pending.
            fresh = chunk_texts(size - len(corpus), seed=size, prefix=f"s{size}-")
            add_chunks(
                conn, fresh + ([SHARED] * COPIES if not corpus else []), per_document=7, source=f"s{size}"
            )
            corpus += fresh
            distinct = [*corpus, SHARED]
            files_before = set(fake.files)
            log = seen[size] = StatementLog()
            sa.event.listen(engine, "after_cursor_execute", log)
            try:
                plan, submitted = plan_and_submit(conn, spec_for(model, fake.base_url), limits, fake.base_url)
            finally:
                sa.event.remove(engine, "after_cursor_execute", log)

            # The plan's totals against an independent reading of the corpus.
            assert plan.stats.unique_texts == len(distinct)
            assert plan.stats.estimated_tokens == sum(estimate_tokens(t) for t in distinct)
            # What was uploaded: every distinct text exactly once, in files and requests within the limits.
            uploaded = [fake.files[f]["content"] for f in set(fake.files) - files_before]
            requests = [json.loads(line) for body in uploaded for line in body.splitlines()]
            sent = Counter(t for r in requests for t in r["body"]["input"])
            assert sent == Counter(distinct)
            assert all(len(r["body"]["input"]) <= inputs for r in requests)
            assert all(len(body.splitlines()) <= per_file for body in uploaded)
            assert sum(b.texts for b in submitted) == len(distinct) and len(submitted) == len(uploaded)
            mapped = conn.execute(
                sa.text(
                    "SELECT count(*) FROM embedding_batch_requests r JOIN embedding_batches b ON b.id = r.batch,"
                    " unnest(r.content_sha256s) AS s WHERE b.model = :m"
                ),
                {"m": plan.stats.model},
            ).scalar_one()
            conn.commit()
            assert mapped == len(distinct)

    # Five times the pending texts, the same largest read: a page of texts with all their chunks
    # (the shared text's COPIES chunks at most), never the corpus; mapping rows go a group at a time.
    small, large = seen[12], seen[60]
    bound = page + COPIES - 1
    assert max(small.rows) <= bound and max(large.rows) <= bound < 13
    assert max(large.param_sets) <= 4 + inputs - 1
    # More pages were read for more texts: the bound is not met by reading less.
    assert len(large.rows) > len(small.rows)


def _peak_while_submitting(
    postgres, texts: list[str], pending: int, model: str, base_url: str
) -> tuple[int, Any]:
    engine = postgres.engine
    with engine.connect() as conn:
        add_chunks(conn, texts, per_document=20, source=model)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            plan, submitted = plan_and_submit(
                conn, spec_for(model, base_url), EmbedLimits(max_batch_inputs=16, poll_initial_s=0), base_url
            )
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    assert plan.stats.unique_texts == pending == sum(b.texts for b in submitted)
    return peak, submitted


def test_request_files_stay_within_the_byte_limit_and_a_line_over_it_is_refused(postgres):
    engine = postgres.engine
    texts = chunk_texts(20, seed=7)
    with FakeOpenAIBatch() as fake, engine.connect() as conn:
        add_chunks(conn, texts)
        # One text per request: each request line is a few hundred bytes, so a file holds only a few.
        limits = EmbedLimits(max_batch_inputs=1, max_file_bytes=1_000, poll_initial_s=0)
        plan_and_submit(conn, spec_for("text-embedding-3-small", fake.base_url), limits, fake.base_url)
        bodies = [f["content"] for f in fake.files.values()]
        assert len(bodies) > 1
        assert all(len(body) <= 1_000 for body in bodies)
        assert Counter(
            t for b in bodies for line in b.splitlines() for t in json.loads(line)["body"]["input"]
        ) == Counter(texts)

        with pytest.raises(
            BatchFileError, match=r"request line 0 is [0-9]+ bytes, over the 100-byte file limit"
        ):
            plan_and_submit(
                conn,
                spec_for("text-embedding-3-large", fake.base_url),
                EmbedLimits(max_file_bytes=100, poll_initial_s=0),
                fake.base_url,
            )


def test_submitting_four_times_the_texts_does_not_raise_peak_memory(postgres, monkeypatch):
    """tracemalloc peak of the submitting process (the fake server runs in another process, since it keeps
    what it is sent): 4 KB texts, 150 and then 600 more of them pending. Holding the texts or the request
    lines would add several MB; paging holds 64 texts and one request."""
    monkeypatch.setattr(embeddings_module, "PAGE_TEXTS", 64)
    monkeypatch.setattr(batch_module, "PAGE_TEXTS", 64)

    def big_texts(n: int, tag: str) -> list[str]:
        return [" ".join([t] * 40) for t in chunk_texts(n, seed=n, prefix=tag)]

    small, large = big_texts(150, "a"), big_texts(600, "b")
    with fake_batch_server_process() as base_url:
        peak_small, _ = _peak_while_submitting(postgres, small, 150, "text-embedding-3-small", base_url)
        # A second model: the 150 texts of the first run and the 600 new ones are all pending for it.
        peak_large, submitted = _peak_while_submitting(
            postgres, large, 750, "text-embedding-3-large", base_url
        )
    extra_bytes = sum(len(t.encode()) for t in large)
    assert sum(b.file_bytes for b in submitted) > extra_bytes  # the uploads did grow: 750 texts, as JSON
    print(f"peak {peak_small} B for 150 texts, {peak_large} B for 750; the 600 added hold {extra_bytes} B")
    assert peak_large - peak_small < extra_bytes / 4, (peak_small, peak_large, extra_bytes)


def _submit_texts(conn: sa.Connection, fake: FakeOpenAIBatch, texts: list[str], limits: EmbedLimits) -> list:
    """`texts` straight through submit_batches to the fake; the status of each batch at its first retrieve,
    when the API has validated it."""
    spec = spec_for("text-embedding-3-small", fake.base_url)
    register_model(conn, spec)
    conn.commit()
    pending = (
        PendingText(t, hashlib.sha256(t.encode()).hexdigest(), estimate_tokens(t), [i])
        for i, t in enumerate(texts)
    )
    client = openai.OpenAI(api_key="sk-test", base_url=fake.base_url, max_retries=0)
    try:
        submitted = submit_batches(conn, client, spec, pending, limits)
        return [client.batches.retrieve(b.batch_id).status for b in submitted]
    finally:
        client.close()


def _inputs_per_file(fake: FakeOpenAIBatch) -> list[list[str]]:
    return [
        [t for line in f["content"].splitlines() for t in json.loads(line)["body"]["input"]]
        for f in fake.files.values()
    ]


def test_a_reembedding_of_60000_texts_stays_under_the_apis_50000_inputs_per_batch(postgres):
    """Issue 21 item 3: with the default limits, 60,000 texts used to go as one file of 30 requests x 2,048
    inputs, which the API (and the fake, like it) fails at validation."""
    texts = [f"text number {i}" for i in range(60_000)]
    with FakeOpenAIBatch() as fake, postgres.engine.connect() as conn:
        statuses = _submit_texts(conn, fake, texts, EmbedLimits())
        per_file = _inputs_per_file(fake)
    assert "failed" not in statuses and len(statuses) == len(per_file) >= 2
    assert max(map(len, per_file)) <= 50_000
    assert sorted(t for f in per_file for t in f) == sorted(texts)


def test_no_request_or_file_carries_more_inputs_than_a_batch_may(postgres):
    """A per-batch input cap below the per-request one bounds the requests too; every limit holds at once."""
    texts = [f"short text {i}" for i in range(250)]
    limits = EmbedLimits(max_inputs_per_file=100, max_requests_per_file=3)
    with FakeOpenAIBatch() as fake, postgres.engine.connect() as conn:
        fake.max_batch_inputs = 100
        statuses = _submit_texts(conn, fake, texts, limits)
        per_file = _inputs_per_file(fake)
        requests = [len(f["content"].splitlines()) for f in fake.files.values()]
    assert "failed" not in statuses
    assert [len(f) for f in per_file] == [100, 100, 50]
    assert max(requests) <= 3
    assert Counter(t for f in per_file for t in f) == Counter(texts)
