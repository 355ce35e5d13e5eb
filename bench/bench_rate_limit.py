"""The shared rate limiter against a provider with OpenAI's kind of limits: a fake server answering in 400 ms,
with 250,000 tokens and 3,000 requests per minute (429 with `retry-after` beyond them). A first embedding
run with EMBEDDING_TPM / EMBEDDING_RPM set, the same run without them, and the quota's floor side by side;
then a 1 %-changed run started right after the limited one, and its wait.

    python -m bench.bench_rate_limit     # ~1.5 windows of tokens: each run ~30 s
    BENCH_SCALE=full python -m bench.bench_rate_limit   # the whole tldr corpus (~3 windows): ~2 min a run

The floor: the provider lets one window's quota through at once and then refills at quota/60 s, so
sending T tokens takes at least (T - TPM) / TPM x 60 s (likewise for requests), plus one request's
latency for the last answer. T is the fake server's own count of the tokens it admitted.

Each run times `embed_pending`, the embedding work of the `chunk_embeddings` step: the quota decides it,
and the rest of a Dagster run is measured by bench_ingest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from bench.common import edit_pages, report, throwaway_postgres
from bench.fake_server import FakeServerProcess, fake_openai_process
from pipelines.chunks import chunk_documents
from pipelines.db import dispose_engine
from pipelines.embeddings import EmbedStats, embed_pending
from pipelines.lib.chunking import DEFAULT_MAX_CHARS, DEFAULT_OVERLAP, chunk_markdown
from pipelines.sources import sync_documents
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource
from testing.corpus import TLDR_FULL
from testing.fake_openai import count_tokens
from testing.synthetic_corpus import edit_corpus, page_path, page_text

FULL = os.environ.get("BENCH_SCALE") == "full"
LATENCY_S = 0.4
TPM = 250_000
RPM = 3_000
MODEL = "text-embedding-3-small"
# Without the full tldr corpus, synthetic pages up to this many tokens (the fake server's count): the
# whole tldr corpus's size at full scale, 1.5 windows by default.
SYNTHETIC_TOKENS = 790_000 if FULL else 375_000


@dataclass(frozen=True)
class Corpus:
    describe: str
    edit: Callable[[Path], int]  # changes 1 % of the pages under the root, returns how many


def make_corpus(root: Path) -> Corpus:
    """The tldr corpus when it sits beside the repository (every other page by default, all of it at full
    scale), else synthetic pages of about SYNTHETIC_TOKENS tokens."""
    if TLDR_FULL.is_dir():
        pages = sorted(p.relative_to(TLDR_FULL) for p in TLDR_FULL.rglob("*.md"))
        chosen = pages if FULL else pages[::2]
        for rel in chosen:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(TLDR_FULL / rel, root / rel)
        which = "all" if FULL else "every other page"
        return Corpus(
            f"tldr, {len(chosen):,} of {len(pages):,} pages ({which}) from {TLDR_FULL}",
            lambda r: edit_pages(r, 0.01),
        )
    tokens, n = 0, 0
    while tokens < SYNTHETIC_TOKENS:
        text = page_text(n)
        tokens += count_tokens([c.content for c in chunk_markdown(text, DEFAULT_MAX_CHARS, DEFAULT_OVERLAP)])
        path = root / page_path(n)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        n += 1
    return Corpus(
        f"synthetic, {n:,} pages of ~{SYNTHETIC_TOKENS:,} tokens (no tldr corpus at {TLDR_FULL})",
        lambda r: len(edit_corpus(r, n, 0.01)),
    )


def _ingest(postgres: PostgresResource, root: Path) -> None:
    sync_documents(postgres.engine, root)
    chunk_documents(postgres.engine, DEFAULT_MAX_CHARS, DEFAULT_OVERLAP)


def _embedder(fake: FakeServerProcess, limited: bool) -> EmbedderResource:
    return EmbedderResource(
        provider="openai",
        model=MODEL,
        api_key="sk-bench",
        base_url=fake.base_url,
        tokens_per_minute=TPM if limited else None,
        requests_per_minute=RPM if limited else None,
    )


def _embed(postgres: PostgresResource, embedder: EmbedderResource) -> tuple[EmbedStats, float, float]:
    """(stats, wall seconds, seconds the limiter's senders waited in all)."""
    factory = embedder.factory(postgres.engine)
    started = time.perf_counter()
    stats = embed_pending(postgres.engine, embedder.spec(), embedder.limits(), factory)
    wall = time.perf_counter() - started
    waited = getattr(factory.rate_limiter, "waited_s", 0.0)
    assert stats.chunks_failed == 0, f"{stats.chunks_failed} chunks failed: {stats.failures[:3]}"
    return stats, wall, waited


def _pending_tokens(postgres: PostgresResource) -> int:
    """The fake's count of the distinct texts lacking a vector: what the next run will send."""
    with postgres.engine.connect() as conn:
        texts = conn.execute(
            sa.text("SELECT DISTINCT content FROM chunks_to_embed(:m, 3)"), {"m": MODEL}
        ).scalars()
        return count_tokens(list(texts))


def _first_run(
    root: Path, limited: bool, after: Callable[[PostgresResource, FakeServerProcess], None] | None
):
    """One first run against a fresh provider (full quota) and a fresh database."""
    with (
        throwaway_postgres() as postgres,
        fake_openai_process(LATENCY_S, RPM, TPM) as fake,
    ):
        _ingest(postgres, root)
        stats, wall, waited = _embed(postgres, _embedder(fake, limited))
        counts = fake.limit_counts()
        label = "with EMBEDDING_TPM/RPM" if limited else "without a limiter"
        print(
            f"   first run {label}: {wall:.1f} s, {stats.requests} requests, {counts['tokens_admitted']:,} tokens,"
            f" {counts['rate_limited']} x 429, limiter waited {waited:.1f} s in all",
            flush=True,
        )
        if after is not None:
            after(postgres, fake)
        # The cached engine's idle connections would hold the throwaway server's shutdown for minutes.
        dispose_engine(postgres.url)
        return wall, counts, stats


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp:
        root = Path(tmp) / "content"
        corpus = make_corpus(root)
        print(f"   corpus: {corpus.describe}; provider: {LATENCY_S * 1000:.0f} ms, {TPM:,} TPM, {RPM:,} RPM")
        changed: dict[str, float] = {}

        def one_percent(postgres: PostgresResource, fake: FakeServerProcess) -> None:
            pages = corpus.edit(root)
            _ingest(postgres, root)
            tokens = _pending_tokens(postgres)
            changed["provider_wait"] = fake.seconds_until(tokens)
            before = fake.limit_counts()["tokens_admitted"]
            stats, wall, waited = _embed(postgres, _embedder(fake, limited=True))
            sent = fake.limit_counts()["tokens_admitted"] - before
            changed.update(pages=pages, tokens=sent, wall=wall, waited=waited, requests=stats.requests)
            assert sent == tokens, f"the 1 % run sent {sent} tokens, {tokens} were pending"

        # The unlimited run first: the limited one is followed by the 1 % change, which edits the corpus.
        unlimited_s, unlimited, _ = _first_run(root, limited=False, after=None)
        limited_s, limited, _ = _first_run(root, limited=True, after=one_percent)
    tokens = limited["tokens_admitted"]
    floor = max(0.0, (tokens - TPM) / TPM, (limited["requests"] - RPM) / RPM) * 60 + LATENCY_S
    print(
        f"   quota floor for {tokens:,} tokens: ({tokens:,} - {TPM:,}) / {TPM:,} x 60 s + {LATENCY_S} s = {floor:.1f} s"
    )
    report(
        f"first run, EMBEDDING_TPM set ({limited['rate_limited']} x 429)",
        limited_s,
        "s",
        floor,
        "quota floor",
        limited_s / floor,
        "<= 1.10, 0 x 429",
    )
    report(
        f"first run, no limiter ({unlimited['rate_limited']} x 429)",
        unlimited_s,
        "s",
        floor,
        "quota floor",
        unlimited_s / floor,
        "(the provider's 429s pace it)",
    )
    report(
        "first run, EMBEDDING_TPM set vs no limiter",
        limited_s,
        "s",
        unlimited_s,
        "no limiter",
        limited_s / unlimited_s,
        "<= ~1",
    )
    print(
        f"   1 %-changed run right after ({changed['pages']} pages, {changed['tokens']:,} tokens,"
        f" {changed['requests']} requests): {changed['wall']:.1f} s, limiter waited {changed['waited']:.1f} s;"
        f" the provider would have taken its tokens after {changed['provider_wait']:.1f} s (goal: within ~1 s of it)",
        flush=True,
    )


if __name__ == "__main__":
    run()
