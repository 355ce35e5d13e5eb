"""The sensor that follows OpenAI Batch API embedding batches."""

from __future__ import annotations

import dagster as dg

from assets.batch_embeddings import batch_embedding_apply_job, open_batch_client
from location.jobs import reembedding_job
from pipelines.batch_embeddings import list_batches, poll_batches, resume_key
from pipelines.models import coverage, get_model
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource


@dg.sensor(
    jobs=[batch_embedding_apply_job, reembedding_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Polls open Batch API embedding batches (backing off per batch), launches batch_embedding_apply_job"
    " for each finished one, and re-runs reembedding_job once all of a model's batches are applied.",
)
def batch_embedding_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource, embedder: EmbedderResource
):
    requests: list[dg.RunRequest] = []
    with postgres.connect() as conn:
        if list_batches(conn, "open"):
            limits = embedder.limits()
            with open_batch_client(embedder) as client:
                for batch_id, status in poll_batches(conn, client, limits, log=context.log.info):
                    context.log.info(f"batch {batch_id} is {status}")
            requests = [
                dg.RunRequest(
                    run_key=f"apply-{b.batch_id}",
                    job_name=batch_embedding_apply_job.name,
                    run_config={"ops": {"apply_embedding_batches": {"config": {"batch_ids": [b.batch_id]}}}},
                    tags={"embedding_model": b.model, "embedding_batch": b.batch_id},
                )
                for b in list_batches(conn, "ready")
            ]
        configured = embedder.spec().name
        key = resume_key(conn, configured)
        model = get_model(conn, configured)
        if (
            key
            and model is not None
            and (model.status != "active" or not coverage(conn, configured).complete)
        ):
            requests.append(
                dg.RunRequest(
                    run_key=key, job_name=reembedding_job.name, tags={"embedding_model": configured}
                )
            )
        conn.commit()
    return requests or dg.SkipReason("no Batch API batch finished")
