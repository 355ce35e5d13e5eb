"""Settings of the retrieval evaluation and the switch's quality gate: config nested in the embedder resource
(`embedder.evaluation`), filled from EVAL_* by `location.resources.build_resources`."""

from __future__ import annotations

import dagster as dg

from pipelines.retrieval_eval import EvalSettings

_D = EvalSettings()


class EvaluationSettings(dg.Config):
    """`questions` (EVAL_QUESTIONS): the labelled JSONL, unset for none; `k` (EVAL_K); `min_recall`
    (EVAL_MIN_RECALL), `max_drop` (EVAL_MAX_DROP): the check's floor and largest fall from the last run;
    `switch_tolerance` (EVAL_SWITCH_TOLERANCE): how far below the active model a new one may score."""

    questions: str | None = _D.questions
    k: int = _D.k
    min_recall: float = _D.min_recall
    max_drop: float = _D.max_drop
    switch_tolerance: float = _D.switch_tolerance

    def settings(self) -> EvalSettings:
        return EvalSettings(
            questions=self.questions,
            k=self.k,
            min_recall=self.min_recall,
            max_drop=self.max_drop,
            switch_tolerance=self.switch_tolerance,
        )
