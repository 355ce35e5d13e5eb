"""Stage 3c: retrieval quality of the active model on a labelled question set (EVAL_QUESTIONS)."""

import dagster as dg

from assets.embeddings import embedding_index
from pipelines.lib.retrieval_eval import QuestionSetError, Score
from pipelines.retrieval_eval import ActiveEvaluation, EvalSettings, evaluate_active
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource

CHECK = "retrieval_quality_holds"


@dg.asset(
    deps=[embedding_index],
    group_name="embeddings",
    kinds={"postgres", "pgvector"},
    check_specs=[
        dg.AssetCheckSpec(
            CHECK,
            asset="retrieval_quality",
            description="Warns when recall@k is below EVAL_MIN_RECALL, or recall@k or MRR fell by more than"
            " EVAL_MAX_DROP since the last run on the same question set (whichever model was active then).",
        )
    ],
)
def retrieval_quality(
    context: dg.AssetExecutionContext, postgres: PostgresResource, embedder: EmbedderResource
) -> dg.MaterializeResult:
    """recall@k and MRR of the active model on the labelled questions of EVAL_QUESTIONS, searched the way
    readers search (`pipelines.search`); one row per run in `retrieval_evaluations`, plotted per
    materialization in the UI."""
    settings = embedder.evaluation.settings()
    if settings.questions is None:
        # Said plainly in the UI, never a silent pass.
        return _not_evaluated("not evaluated: EVAL_QUESTIONS is not set")
    try:
        found = evaluate_active(
            postgres.engine, embedder.factory(postgres.engine), settings, context.run.run_id
        )
    except QuestionSetError as exc:
        raise dg.Failure(description=str(exc)) from None
    if found is None:
        return _not_evaluated("not evaluated: no active embedding model yet")
    score = found.score
    context.log.info(f"{found.model}: {score.describe()}; {found.judgement.describe()}")
    return dg.MaterializeResult(
        metadata={
            **_numbers(score),
            # Constant from run to run: text, so that the UI does not plot them.
            "k": dg.MetadataValue.text(str(score.k)),
            "questions": dg.MetadataValue.text(str(score.questions)),
            "model": dg.MetadataValue.text(found.model),
            "question_set": dg.MetadataValue.text(f"{found.questions.name} ({found.questions.digest})"),
        },
        check_results=[_check_result(found, settings)],
    )


def _numbers(score: Score) -> dict[str, dg.MetadataValue]:
    return {
        "recall_at_k": dg.MetadataValue.float(round(score.recall_at_k, 4)),
        "mrr": dg.MetadataValue.float(round(score.mrr, 4)),
    }


def _check_result(found: ActiveEvaluation, settings: EvalSettings) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=CHECK,
        passed=found.judgement.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=found.judgement.describe(),
        metadata={
            **_numbers(found.score),
            "model": dg.MetadataValue.text(found.model),
            "floor": settings.min_recall,
            "max_drop": settings.max_drop,
            **_previous(found.previous),
        },
    )


def _previous(previous: tuple[str, Score] | None) -> dict[str, dg.MetadataValue]:
    if previous is None:
        return {"previous_run": dg.MetadataValue.text("none")}
    model, score = previous
    return {
        "previous_model": dg.MetadataValue.text(model),
        "previous_recall_at_k": dg.MetadataValue.float(round(score.recall_at_k, 4)),
        "previous_mrr": dg.MetadataValue.float(round(score.mrr, 4)),
    }


def _not_evaluated(reason: str) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"evaluation": dg.MetadataValue.text(reason)},
        check_results=[
            dg.AssetCheckResult(
                check_name=CHECK,
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"skipped, {reason}",
                metadata={"skipped": True},
            )
        ],
    )
