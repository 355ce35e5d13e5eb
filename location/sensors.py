"""Sensors of the code location."""

from __future__ import annotations

import dagster as dg

from location.jobs import reembedding_job
from pipelines.lib.model_switch import model_change_decision
from pipelines.models import active_model
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource


@dg.sensor(
    job=reembedding_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches reembedding_job once when EMBEDDING_MODEL / EMBEDDING_DIMENSIONS name a model other"
    " than the active one.",
)
def embedding_model_change_sensor(
    context: dg.SensorEvaluationContext, postgres: PostgresResource, embedder: EmbedderResource
) -> dg.SkipReason | dg.RunRequest:
    configured = embedder.spec().name
    with postgres.begin() as conn:
        active = active_model(conn)
    decision = model_change_decision(configured, active.name if active else None, context.cursor)
    if decision.cursor != context.cursor:
        context.update_cursor(decision.cursor)
    if not decision.launch or active is None:
        return dg.SkipReason(decision.reason)
    context.log.info(decision.reason)
    return dg.RunRequest(tags={"embedding_model": configured, "previous_embedding_model": active.name})
