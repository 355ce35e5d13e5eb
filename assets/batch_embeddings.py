"""The OpenAI Batch API path of re-embedding: the submission hook of the `reembedding` asset, and the jobs
that apply finished batches and cancel open ones (launched by `batch_embedding_sensor` or from the UI)."""

import contextlib
from collections.abc import Iterator
from typing import Any

import dagster as dg

from pipelines.batch_embeddings import (
    BatchApiError,
    BatchPlan,
    BatchSubmission,
    apply_batch,
    cancel_open_batches,
    submit_missing_to_batch_api,
)
from pipelines.embedders.openai_compatible import open_client
from pipelines.embeddings import BudgetExceededError
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource


@contextlib.contextmanager
def open_batch_client(embedder: EmbedderResource) -> Iterator:
    if not embedder.api_key:
        raise dg.Failure(description="the Batch API needs OPENAI_API_KEY to be set")
    client = open_client(embedder.factory())
    try:
        yield client
    finally:
        client.close()


def plan_metadata(plan: BatchPlan, mode: str, budget_usd: float | None) -> dict[str, dg.MetadataValue]:
    """A Batch API plan as the observation and materialization metadata show it."""
    return {
        "model": dg.MetadataValue.text(plan.stats.model),
        "batch_api": dg.MetadataValue.text(mode),
        "texts_to_embed": dg.MetadataValue.int(plan.stats.unique_texts),
        "texts_in_open_batches": dg.MetadataValue.int(plan.in_open_batches),
        "estimated_tokens": dg.MetadataValue.int(plan.stats.estimated_tokens),
        "estimated_cost_usd": dg.MetadataValue.float(round(plan.batch_cost_usd, 6)),
        "sync_cost_usd": dg.MetadataValue.float(round(plan.sync_cost_usd, 6)),
        "saving_usd": dg.MetadataValue.float(round(plan.sync_cost_usd - plan.batch_cost_usd, 6)),
        "budget_usd": dg.MetadataValue.float(budget_usd)
        if budget_usd is not None
        else dg.MetadataValue.text("none"),
        "chunks_reused_by_hash": dg.MetadataValue.int(plan.stats.chunks_reused),
        "chunks_failed": dg.MetadataValue.int(plan.stats.chunks_failed),
    }


def submission_result(
    done: BatchSubmission, metadata: dict[str, dg.MetadataValue], check_name: str
) -> dg.MaterializeResult:
    """The materialization of a submission: its batches, and `check_name` failing while batches are open
    (`covers_every_chunk`, by construction) or warning on failed texts (`no_failed_chunks`)."""
    open_batches, failed = len(done.open_batches), done.plan.stats.chunks_failed
    metadata["batches_submitted"] = dg.MetadataValue.text(
        ", ".join(b.batch_id for b in done.submitted) or "none"
    )
    metadata["batches_open"] = dg.MetadataValue.int(open_batches)
    metadata["requests"] = dg.MetadataValue.int(sum(b.requests for b in done.submitted))
    coverage = check_name == "covers_every_chunk"
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=check_name,
                passed=False if coverage else failed == 0,
                severity=dg.AssetCheckSeverity.ERROR if coverage else dg.AssetCheckSeverity.WARN,
                description=f"{open_batches} Batch API batches of {done.plan.stats.model} are open;"
                " batch_embedding_sensor applies them as they finish and then re-runs reembedding_job, which"
                " checks coverage and switches.",
                metadata={"batches_open": open_batches, "chunks_failed": failed},
            )
        ],
    )


def submit_embedding_batches(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    embedder: EmbedderResource,
    *,
    check_name: str,
    first_embedding_only: bool = False,
    **run_config: Any,
) -> dg.MaterializeResult | None:
    """The Batch API hook of both embedding assets (`submit_missing_to_batch_api`, given the `run_config`):
    the materialization when it submitted or batches are open, else None (the synchronous path runs)."""
    settings, metadata = embedder.batch_api, {}

    def publish(plan: BatchPlan) -> None:
        metadata.update(plan_metadata(plan, settings.mode, embedder.budget_usd))
        context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata=metadata))

    try:
        with postgres.connect() as conn:
            done = submit_missing_to_batch_api(
                conn,
                embedder.spec(),
                embedder.limits(),
                lambda: open_batch_client(embedder),
                mode=settings.mode,
                min_tokens=settings.min_tokens,
                first_embedding_only=first_embedding_only,
                run_id=context.run.run_id,
                log=context.log.info,
                on_plan=publish,
                **run_config,
            )
    except BudgetExceededError as exc:
        hint = (
            f"in the launchpad: ops: {context.op_execution_context.op.name}: config: allow_over_budget: true"
        )
        raise dg.Failure(description=f"{exc} ({hint})", metadata=metadata) from None
    except BatchApiError as exc:
        raise dg.Failure(description=str(exc)) from None
    return None if done is None else submission_result(done, metadata, check_name)


class ApplyBatchesConfig(dg.Config):
    batch_ids: list[str]


@dg.op(description="Download finished Batch API batches and write their vectors (each batch once).")
def apply_embedding_batches(
    context: dg.OpExecutionContext,
    config: ApplyBatchesConfig,
    postgres: PostgresResource,
    embedder: EmbedderResource,
) -> None:
    written = failed = 0
    with postgres.connect() as conn, open_batch_client(embedder) as client:
        for batch_id in config.batch_ids:
            try:
                result = apply_batch(conn, client, batch_id, log=context.log.info)
            except BatchApiError as exc:
                raise dg.Failure(description=str(exc)) from None
            written += result.chunks_written
            failed += result.texts_failed
            context.log_event(
                dg.AssetObservation(
                    asset_key="reembedding",
                    metadata={
                        "batch_id": batch_id,
                        "batch_status": result.status,
                        "already_applied": result.already_applied,
                        "texts_written": result.texts_written,
                        "chunks_written": result.chunks_written,
                        "texts_failed": result.texts_failed,
                        "texts_released": result.texts_released,
                        "unattributable_lines": len(result.problems),
                    },
                )
            )
    context.log.info(f"{written} chunk vectors written, {failed} texts failed")


@dg.job(description="Apply finished OpenAI Batch API embedding batches; launched by batch_embedding_sensor.")
def batch_embedding_apply_job() -> None:
    apply_embedding_batches()


class CancelBatchesConfig(dg.Config):
    model: str | None = None


@dg.op(description="Cancel every open Batch API embedding batch (of `model`, or all).")
def cancel_embedding_batches(
    context: dg.OpExecutionContext,
    config: CancelBatchesConfig,
    postgres: PostgresResource,
    embedder: EmbedderResource,
) -> None:
    with postgres.connect() as conn, open_batch_client(embedder) as client:
        try:
            asked = cancel_open_batches(conn, client, config.model, log=context.log.info)
        except BatchApiError as exc:
            raise dg.Failure(description=str(exc)) from None
    context.log.info(f"asked to cancel {len(asked)} batches; the sensor applies what they finished")


@dg.job(description="Cancel open OpenAI Batch API embedding batches; what they finished is still applied.")
def cancel_embedding_batches_job() -> None:
    cancel_embedding_batches()
