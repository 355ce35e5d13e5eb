"""Retrieval quality of a labelled question set: parsing the set, recall@k and MRR, and the rules that
judge a score (the evaluation check, the model switch's gate). Pure functions.

A question set is JSONL, one object a line: `{"question": "...", "expected": ["en/billing.md", ...]}`.
An expected key names a document by its `source_key` (`en/billing.md`) or by `source:source_key`
(`local:en/billing.md`); a question counts as answered at the rank of the first document, in the order
search returns them, that any of its keys names.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class QuestionSetError(ValueError):
    """The question set cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Question:
    text: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class QuestionSet:
    name: str
    questions: tuple[Question, ...]
    # Changes with any edit of the questions, so a score is only ever compared with one of the same set.
    digest: str


def parse_questions(lines: Iterable[str], name: str) -> QuestionSet:
    questions: list[Question] = []
    digest = hashlib.sha256()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QuestionSetError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise QuestionSetError(f"{where}: expected an object with `question` and `expected`")
        text, expected = item.get("question"), item.get("expected")
        if isinstance(expected, str):
            expected = [expected]
        if not isinstance(text, str) or not text.strip():
            raise QuestionSetError(f"{where}: `question` must be a non-empty string")
        if (
            not isinstance(expected, list)
            or not expected
            or not all(isinstance(k, str) and k for k in expected)
        ):
            raise QuestionSetError(f"{where}: `expected` must be a document key or a non-empty list of them")
        questions.append(Question(text.strip(), tuple(expected)))
        digest.update(json.dumps([text.strip(), expected], ensure_ascii=False).encode("utf-8"))
    if not questions:
        raise QuestionSetError(f"{name}: no questions")
    return QuestionSet(name, tuple(questions), digest.hexdigest()[:16])


def document_ranking(hits: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(source, source_key) of each hit's document, in first-seen order: several chunks of one document
    count once, at the rank of the best."""
    seen: dict[tuple[str, str], None] = {}
    for hit in hits:
        seen.setdefault(hit, None)
    return list(seen)


def first_relevant_rank(documents: Sequence[tuple[str, str]], expected: Sequence[str]) -> int | None:
    """1-based rank of the first document any expected key names, or None when none is retrieved."""
    wanted = set(expected)
    for rank, (source, key) in enumerate(documents, 1):
        if key in wanted or f"{source}:{key}" in wanted:
            return rank
    return None


@dataclass(frozen=True)
class Score:
    questions: int
    k: int
    recall_at_k: float
    mrr: float

    def describe(self) -> str:
        return f"recall@{self.k} {self.recall_at_k:.3f}, MRR {self.mrr:.3f} over {self.questions} questions"


def score(ranks: Sequence[int | None], k: int) -> Score:
    """recall@k: the share of questions answered within the first k documents; MRR: the mean of 1/rank
    (0 for a question not answered among the documents retrieved)."""
    if not ranks:
        raise ValueError("no questions to score")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    n = len(ranks)
    return Score(
        questions=n,
        k=k,
        recall_at_k=sum(r is not None and r <= k for r in ranks) / n,
        mrr=sum(1 / r for r in ranks if r is not None) / n,
    )


@dataclass(frozen=True)
class Judgement:
    passed: bool
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return "; ".join(self.reasons)


def judge_run(current: Score, previous: Score | None, *, floor: float, max_drop: float) -> Judgement:
    """The evaluation check: fails when recall@k is below `floor`, or when recall@k or MRR fell by more than
    `max_drop` since the previous run on the same question set."""
    reasons = []
    if current.recall_at_k < floor:
        reasons.append(f"recall@{current.k} {current.recall_at_k:.3f} is below the floor {floor:.3f}")
    if previous is not None:
        for metric in ("recall_at_k", "mrr"):
            before, now = getattr(previous, metric), getattr(current, metric)
            if before - now > max_drop + 1e-12:
                reasons.append(
                    f"{_label(metric, current.k)} fell from {before:.3f} to {now:.3f} (more than {max_drop:.3f})"
                )
    if reasons:
        return Judgement(False, tuple(reasons))
    return Judgement(
        True, (f"{current.describe()}: at or above the floor and within {max_drop:.3f} of the last run",)
    )


@dataclass(frozen=True)
class GateDecision:
    allowed: bool
    skipped: bool
    reason: str


def gate_switch(
    active: Score | None, candidate: Score | None, *, tolerance: float, skipped_because: str | None = None
) -> GateDecision:
    """Whether a switch may make `candidate`'s model active: refused when its recall@k or MRR is more than
    `tolerance` below the active model's. Skipped (and said so) when there is nothing to compare."""
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"the switch tolerance must be a finite number of at least 0, got {tolerance!r}")
    if skipped_because is not None or active is None or candidate is None:
        return GateDecision(
            True, True, f"quality gate skipped: {skipped_because or 'no active model to compare'}"
        )
    worse = [
        f"{_label(metric, candidate.k)} {getattr(candidate, metric):.3f} < {getattr(active, metric):.3f}"
        for metric in ("recall_at_k", "mrr")
        if getattr(active, metric) - getattr(candidate, metric) > tolerance + 1e-12
    ]
    both = f"new: {candidate.describe()}; active: {active.describe()}"
    if worse:
        return GateDecision(
            False,
            False,
            f"refused: the new model scores worse ({', '.join(worse)}, tolerance {tolerance:.3f}); {both}",
        )
    return GateDecision(True, False, f"passed (tolerance {tolerance:.3f}); {both}")


def _label(metric: str, k: int) -> str:
    return f"recall@{k}" if metric == "recall_at_k" else "MRR"
