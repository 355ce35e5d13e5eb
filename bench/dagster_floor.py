"""An ingestion job with nothing to do: the same shape as `ingestion_job` (four chained assets, the same
three checks, one of them blocking, typed metadata, the in-process executor) with empty bodies. Its run time
on the bench's instance is what Dagster itself costs a run of that shape, the floor under any unchanged
re-run of ours; the ingestion bench prints it beside the unchanged run.

`floor_one_step_job` is the same four assets and checks as one multi-asset step: what collapsing the chain
into a single step would save. Most of a run's cost is Dagster writing its events (run and asset planning,
step, materialization and check events), which a single step still writes for each asset."""

from __future__ import annotations

import dagster as dg


def _done(check: str | None = None) -> dg.MaterializeResult:
    checks = [dg.AssetCheckResult(check_name=check, passed=True, metadata={"n": 0})] if check else []
    return dg.MaterializeResult(
        metadata={"n": dg.MetadataValue.int(0), "duration_s": dg.MetadataValue.float(0.0)},
        check_results=checks,
    )


@dg.asset(check_specs=[dg.AssetCheckSpec("no_rejected_items", asset="floor_sources")])
def floor_sources() -> dg.MaterializeResult:
    return _done("no_rejected_items")


@dg.asset(
    deps=[floor_sources],
    check_specs=[dg.AssetCheckSpec("every_document_chunked", asset="floor_chunks", blocking=True)],
)
def floor_chunks() -> dg.MaterializeResult:
    return _done("every_document_chunked")


@dg.asset(deps=[floor_chunks], check_specs=[dg.AssetCheckSpec("no_failed_chunks", asset="floor_embeddings")])
def floor_embeddings() -> dg.MaterializeResult:
    return _done("no_failed_chunks")


@dg.asset(deps=[floor_embeddings])
def floor_index() -> dg.MaterializeResult:
    return _done()


floor_job = dg.define_asset_job(
    "floor_job",
    selection=dg.AssetSelection.assets(floor_index).upstream(),
    executor_def=dg.in_process_executor,
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec("one_step_sources"),
        dg.AssetSpec("one_step_chunks", deps=["one_step_sources"]),
        dg.AssetSpec("one_step_embeddings", deps=["one_step_chunks"]),
        dg.AssetSpec("one_step_index", deps=["one_step_embeddings"]),
    ],
    check_specs=[
        dg.AssetCheckSpec("no_rejected_items", asset="one_step_sources"),
        dg.AssetCheckSpec("every_document_chunked", asset="one_step_chunks", blocking=True),
        dg.AssetCheckSpec("no_failed_chunks", asset="one_step_embeddings"),
    ],
)
def one_step_chain():
    for stage in ("sources", "chunks", "embeddings", "index"):
        yield dg.MaterializeResult(
            asset_key=f"one_step_{stage}",
            metadata={"n": dg.MetadataValue.int(0), "duration_s": dg.MetadataValue.float(0.0)},
        )
    for stage, check in (
        ("sources", "no_rejected_items"),
        ("chunks", "every_document_chunked"),
        ("embeddings", "no_failed_chunks"),
    ):
        yield dg.AssetCheckResult(
            asset_key=f"one_step_{stage}", check_name=check, passed=True, metadata={"n": 0}
        )


floor_one_step_job = dg.define_asset_job(
    "floor_one_step_job",
    selection=dg.AssetSelection.assets(one_step_chain),
    executor_def=dg.in_process_executor,
)

defs = dg.Definitions(
    assets=[floor_sources, floor_chunks, floor_embeddings, floor_index, one_step_chain],
    jobs=[floor_job, floor_one_step_job],
)
