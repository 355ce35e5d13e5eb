"""The OpenAI Batch API path of re-embedding: the submission hook of the `reembedding` asset, and the jobs
that apply finished batches and cancel open ones (launched by `batch_embedding_sensor` or from the UI)."""

import contextlib
from collections.abc import Iterator

import dagster as dg

from pipelines.batch_embeddings import (
    BatchApiError,
    BatchLimits,
    apply_batch,
    cancel_open_batches,
    check_budget,
    iter_texts_to_submit,
    list_batches,
    plan_batch_embedding,
    record_oversize,
    submit_batches,
)
from pipelines.embeddings import BudgetExceededError
from pipelines.lib.batch_files import use_batch_api
from pipelines.models import active_model
from pipelines.reembedding import prepare_target
from resources.batch_api import BatchApiSettings
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource


def batch_limits(embedder: EmbedderResource, settings: BatchApiSettings) -> BatchLimits:
    return BatchLimits(
        max_batch_inputs=embedder.max_batch_inputs,
        max_batch_tokens=embedder.max_batch_tokens,
        max_input_tokens=embedder.max_input_tokens,
        max_requests_per_file=settings.max_requests_per_file,
        max_file_bytes=settings.max_file_bytes,
        poll_initial_s=settings.poll_initial_s,
        poll_max_s=settings.poll_max_s,
    )


@contextlib.contextmanager
def open_batch_client(embedder: EmbedderResource) -> Iterator:
    import openai

    if not embedder.api_key:
        raise dg.Failure(description="the Batch API needs OPENAI_API_KEY to be set")
    client = openai.OpenAI(
        api_key=embedder.api_key,
        base_url=embedder.base_url,
        max_retries=embedder.max_retries,
        timeout=embedder.timeout_s,
    )
    try:
        yield client
    finally:
        client.close()


def submit_embedding_batches(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    embedder: EmbedderResource,
    *,
    max_attempts: int,
    allow_over_budget: bool,
    check_name: str,
    first_embedding_only: bool = False,
    retry_abandoned: bool = False,
) -> dg.MaterializeResult | None:
    """When EMBEDDING_BATCH_API picks the Batch API (or batches of this model are still open), submit what
    the configured model lacks and return the materialization; otherwise None (the synchronous path runs).

    For `reembedding` the blocking check `check_name` fails until `batch_embedding_sensor` has applied the
    batches and re-run the build; for `chunk_embeddings` (`first_embedding_only`) only a corpus's first
    embedding, or one whose batches are still open, goes this way: nightly top-ups stay synchronous."""
    settings = embedder.batch_api
    spec = embedder.spec()
    if settings.mode == "off" or spec.provider != "openai":
        return None
    limits = batch_limits(embedder, settings)
    with postgres.connect() as conn:
        active = active_model(conn)
        conn.commit()
        if first_embedding_only and active is not None:
            open_now = [b for b in list_batches(conn, "open") if b.model == spec.name]
            if active.name != spec.name or not open_now:
                return None
        prepare_target(postgres.engine, spec)
        plan = plan_batch_embedding(
            conn, spec, limits, max_attempts=max_attempts, retry_abandoned=retry_abandoned
        )
        waiting = plan.in_open_batches > 0
        chosen = waiting or use_batch_api(
            settings.mode,
            plan.stats.estimated_tokens,
            settings.min_tokens,
            provider=spec.provider,
            remainder=plan.remainder,
        )
        if not chosen:
            return None
        record_oversize(conn, plan)
        metadata = {
            "model": dg.MetadataValue.text(spec.name),
            "batch_api": dg.MetadataValue.text(settings.mode),
            "texts_to_embed": dg.MetadataValue.int(plan.stats.unique_texts),
            "texts_in_open_batches": dg.MetadataValue.int(plan.in_open_batches),
            "estimated_tokens": dg.MetadataValue.int(plan.stats.estimated_tokens),
            "estimated_cost_usd": dg.MetadataValue.float(round(plan.batch_cost_usd, 6)),
            "sync_cost_usd": dg.MetadataValue.float(round(plan.sync_cost_usd, 6)),
            "saving_usd": dg.MetadataValue.float(round(plan.sync_cost_usd - plan.batch_cost_usd, 6)),
            "budget_usd": dg.MetadataValue.float(embedder.budget_usd)
            if embedder.budget_usd is not None
            else dg.MetadataValue.text("none"),
            "chunks_reused_by_hash": dg.MetadataValue.int(plan.stats.chunks_reused),
            "chunks_failed": dg.MetadataValue.int(plan.stats.chunks_failed),
        }
        context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata=metadata))
        try:
            check_budget(plan, embedder.budget_usd, allow_over_budget)
        except BudgetExceededError as exc:
            raise dg.Failure(
                description=f"{exc} (in the launchpad: ops: {context.op_execution_context.op.name}: config: allow_over_budget: true)",
                metadata=metadata,
            ) from None
        submitted = []
        if plan.stats.unique_texts:
            with open_batch_client(embedder) as client:
                try:
                    submitted = submit_batches(
                        conn,
                        client,
                        spec,
                        iter_texts_to_submit(conn, plan),
                        limits,
                        run_id=context.run.run_id,
                        log=context.log.info,
                    )
                except BatchApiError as exc:
                    raise dg.Failure(description=str(exc)) from None
        open_batches = [b for b in list_batches(conn, "open") if b.model == spec.name]
    metadata["batches_submitted"] = dg.MetadataValue.text(", ".join(b.batch_id for b in submitted) or "none")
    metadata["batches_open"] = dg.MetadataValue.int(len(open_batches))
    metadata["requests"] = dg.MetadataValue.int(sum(b.requests for b in submitted))
    waiting_note = (
        f"{len(open_batches)} Batch API batches of {spec.name} are open; batch_embedding_sensor applies them as"
        " they finish and then re-runs reembedding_job, which checks coverage and switches."
    )
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=check_name,
                # Coverage is incomplete by construction while batches are open; failures are what they are.
                passed=False if check_name == "covers_every_chunk" else plan.stats.chunks_failed == 0,
                severity=dg.AssetCheckSeverity.ERROR
                if check_name == "covers_every_chunk"
                else dg.AssetCheckSeverity.WARN,
                description=waiting_note,
                metadata={"batches_open": len(open_batches), "chunks_failed": plan.stats.chunks_failed},
            )
        ],
    )


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
