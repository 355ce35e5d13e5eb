"""Retrieval quality: a labelled question set scored against a model's vectors through the search path
readers use (`pipelines.search`), stored per evaluation in `retrieval_evaluations`; the evaluation asset's
run and the model switch's quality gate. The rules themselves are in `pipelines.lib.retrieval_eval`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from pipelines.embedders import (
    EmbedderFactory,
    EmbeddingConfigError,
    EmbeddingError,
    ModelSpec,
    embed_queries,
)
from pipelines.lib.retrieval_eval import (
    GateDecision,
    Judgement,
    QuestionSet,
    QuestionSetError,
    Score,
    document_ranking,
    first_relevant_rank,
    gate_switch,
    judge_run,
    parse_questions,
    score,
)
from pipelines.models import active_model, get_model
from pipelines.search import search_by_vector
from pipelines.sql import query

# Chunks retrieved per question: several chunks of one document count once, so k documents need more.
MIN_DEPTH = 20


@dataclass(frozen=True)
class EvalSettings:
    """EVAL_QUESTIONS (the JSONL; None: no evaluation, the gate is skipped), EVAL_K, EVAL_MIN_RECALL (the
    check's floor on recall@k), EVAL_MAX_DROP (how far recall@k or MRR may fall from the last run),
    EVAL_SWITCH_TOLERANCE (how far below the active model a new one may score and still be switched to)."""

    questions: str | None = None
    k: int = 5
    min_recall: float = 0.5
    max_drop: float = 0.05
    switch_tolerance: float = 0.02

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"EVAL_K must be at least 1, got {self.k}")
        for setting, value in (
            ("EVAL_MIN_RECALL", self.min_recall),
            ("EVAL_MAX_DROP", self.max_drop),
            ("EVAL_SWITCH_TOLERANCE", self.switch_tolerance),
        ):
            if not 0 <= value <= 1:
                raise ValueError(f"{setting} must be between 0 and 1, got {value!r}")


def load_question_set(path: str) -> QuestionSet:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise QuestionSetError(f"EVAL_QUESTIONS={path}: cannot read it ({exc.strerror})") from None
    return parse_questions(text.splitlines(), file.name)


def evaluate_model(
    engine: sa.Engine, embedders: EmbedderFactory, spec: ModelSpec, questions: QuestionSet, k: int
) -> Score:
    """Score `spec`'s stored vectors: each question embedded with that model (on its question side) and
    searched exactly as `pipelines.search` answers readers, through the model's index when it has one."""
    texts = [q.text for q in questions.questions]
    with embedders.open(spec) as embedder:
        vectors = embed_queries(embedder, texts)
    depth = max(MIN_DEPTH, 4 * k)
    ranks = []
    for question, vector in zip(questions.questions, vectors):
        hits = search_by_vector(engine, spec.name, spec.dimensions, vector, k=depth)
        documents = document_ranking((h.source, h.source_key) for h in hits)
        ranks.append(first_relevant_rank(documents, question.expected))
    return score(ranks, k)


def record_score(
    engine: sa.Engine, model: str, purpose: str, questions: QuestionSet, result: Score, run_id: str | None
) -> int:
    with engine.begin() as conn:
        row_id: int = conn.execute(
            query("evaluation/insert_retrieval_evaluation"),
            {
                "model": model,
                "purpose": purpose,
                "question_set": questions.name,
                "question_digest": questions.digest,
                "questions": result.questions,
                "k": result.k,
                "recall_at_k": result.recall_at_k,
                "mrr": result.mrr,
                "run_id": run_id,
            },
        ).scalar_one()
    return row_id


def previous_score(
    engine: sa.Engine, questions: QuestionSet, k: int, before_id: int
) -> tuple[str, Score] | None:
    """The evaluation asset's run before `before_id` on the same questions: (the model then active, its score)."""
    with engine.begin() as conn:
        row = conn.execute(
            query("evaluation/select_last_retrieval_evaluation"),
            {"question_digest": questions.digest, "k": k, "before_id": before_id},
        ).one_or_none()
    return (row.model, Score(row.questions, row.k, row.recall_at_k, row.mrr)) if row else None


def last_model_score(engine: sa.Engine, model: str, questions: QuestionSet, k: int) -> Score | None:
    with engine.begin() as conn:
        row = conn.execute(
            query("evaluation/select_last_model_evaluation"),
            {"model": model, "question_digest": questions.digest, "k": k},
        ).one_or_none()
    return Score(row.questions, row.k, row.recall_at_k, row.mrr) if row else None


@dataclass(frozen=True)
class ActiveEvaluation:
    model: str
    questions: QuestionSet
    score: Score
    # The previous run's (model, score): the model may differ after a switch.
    previous: tuple[str, Score] | None
    judgement: Judgement


def evaluate_active(
    engine: sa.Engine, embedders: EmbedderFactory, settings: EvalSettings, run_id: str | None
) -> ActiveEvaluation | None:
    """The evaluation asset's work: score the active model, store it, judge it against the floor and the
    previous run (whichever model that scored). None when no model is active yet."""
    if settings.questions is None:
        raise QuestionSetError("EVAL_QUESTIONS is not set")
    questions = load_question_set(settings.questions)
    with engine.begin() as conn:
        model = active_model(conn)
    if model is None:
        return None
    result = evaluate_model(engine, embedders, model.spec(), questions, settings.k)
    row_id = record_score(engine, model.name, "asset", questions, result, run_id)
    previous = previous_score(engine, questions, settings.k, row_id)
    judgement = judge_run(
        result, previous[1] if previous else None, floor=settings.min_recall, max_drop=settings.max_drop
    )
    return ActiveEvaluation(model.name, questions, result, previous, judgement)


@dataclass(frozen=True)
class GateOutcome:
    decision: GateDecision
    active_model: str | None
    active: Score | None = None
    candidate: Score | None = None


def gate_model_switch(
    engine: sa.Engine,
    embedders: EmbedderFactory,
    target: str,
    settings: EvalSettings,
    *,
    run_id: str | None = None,
    allow_worse: bool = False,
) -> GateOutcome:
    """Before `target` becomes active: score it and the active model on the question set, with the vectors
    each already has (the questions cost one embedding request per model, the chunks none). Both scores
    are stored; the decision says whether the switch may go ahead. An active model that cannot embed now
    (its key is gone) is judged by its last stored score. `allow_worse` lets a refused model through and
    says so."""
    with engine.begin() as conn:
        active = active_model(conn)
        candidate = get_model(conn, target)
    if active is None or active.name == target:
        reason = "no active model yet" if active is None else f"{target} is already the active model"
        return GateOutcome(
            gate_switch(None, None, tolerance=settings.switch_tolerance, skipped_because=reason),
            active.name if active else None,
        )
    if settings.questions is None:
        reason = "EVAL_QUESTIONS is not set, so the new model's retrieval quality was not compared"
        return GateOutcome(
            gate_switch(None, None, tolerance=settings.switch_tolerance, skipped_because=reason), active.name
        )
    if candidate is None:
        raise QuestionSetError(f"model {target!r} is not registered; run the reembedding asset first")
    questions = load_question_set(settings.questions)
    new = evaluate_model(engine, embedders, candidate.spec(), questions, settings.k)
    record_score(engine, target, "switch_gate", questions, new, run_id)
    try:
        old = evaluate_model(engine, embedders, active.spec(), questions, settings.k)
    except (EmbeddingConfigError, EmbeddingError) as exc:
        # E.g. a rollback from an API model to the offline one with the key gone: its last stored score
        # stands in, so that rolling back stays possible and free.
        stored = last_model_score(engine, active.name, questions, settings.k)
        if stored is None:
            reason = f"the active model {active.name} cannot embed the questions now ({exc}) and has no stored score"
            skipped = gate_switch(None, None, tolerance=settings.switch_tolerance, skipped_because=reason)
            return GateOutcome(skipped, active.name, None, new)
        old = stored
    else:
        record_score(engine, active.name, "switch_gate", questions, old, run_id)
    decision = gate_switch(old, new, tolerance=settings.switch_tolerance)
    if not decision.allowed and allow_worse:
        decision = GateDecision(True, False, f"overridden (allow_worse_model): {decision.reason}")
    return GateOutcome(decision, active.name, old, new)
