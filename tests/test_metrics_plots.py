"""What the rag_metrics_history asset page plots after a single-run backfill, read through the UI's own
GraphQL query (the webserver's schema on the instance) and the UI's rule for picking each partition's
point: the latest materialization of the partition, else its latest observation."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster_graphql.test.utils import execute_dagster_graphql

from tests.test_alerts import day_rows, run_metrics
from tests.test_metrics import insert

ROOT = Path(__file__).resolve().parents[1]
FIRST = dt.date(2025, 6, 1)
DAYS = [(FIRST + dt.timedelta(days=i)).isoformat() for i in range(30)]

# The events query the asset page's Plots tab sends in Dagster 1.13 (RecentAssetEventsQuery), reduced to
# the fields the plots read.
QUERY = """
query Plots($assetKey: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      assetEventHistory(
        limit: 1000
        partitions: $partitions
        eventTypeSelectors: [MATERIALIZATION, OBSERVATION]
      ) {
        results {
          __typename
          ... on MaterializationEvent { partition timestamp runId metadataEntries { ...Entry } }
          ... on ObservationEvent { partition timestamp runId metadataEntries { ...Entry } }
        }
      }
    }
  }
}
fragment Entry on MetadataEntry {
  label
  __typename
  ... on FloatMetadataEntry { floatValue }
  ... on IntMetadataEntry { intValue }
}
"""


def plotted(instance: dg.DagsterInstance) -> dict[str, dict[str, float | None]]:
    """partition → {label: y} for every numeric entry of the event the UI plots for that partition."""
    origin = LoadableTargetOrigin(
        executable_path=sys.executable,
        module_name="location.definitions",
        attribute="defs",
        working_directory=str(ROOT),
    )
    with in_process_test_workspace(instance, origin) as context:
        result = execute_dagster_graphql(
            context, QUERY, {"assetKey": {"path": ["rag_metrics_history"]}, "partitions": DAYS}
        )
    assert not result.errors, result.errors
    events = result.data["assetOrError"]["assetEventHistory"]["results"]
    points = {}
    for day in DAYS:
        mine = sorted((e for e in events if e["partition"] == day), key=lambda e: -float(e["timestamp"]))
        chosen = next(
            (e for e in mine if e["__typename"] == "MaterializationEvent"), mine[0] if mine else None
        )
        if chosen is None:
            continue
        points[day] = {
            m["label"]: m.get("floatValue", m.get("intValue"))
            for m in chosen["metadataEntries"]
            if m["__typename"] in ("FloatMetadataEntry", "IntMetadataEntry")
        }
    return points


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_a_30_day_single_run_backfill_plots_one_point_per_day(postgres, instance):
    for i, day in enumerate(DAYS):
        # A different p95 and cost each day; every fifth day misses the SLOs.
        slow = i % 5 == 0
        insert(
            postgres,
            day_rows(
                day, n=8 + i, cited=8 + i, latency_ms=1000 + 10 * i + (4000 if slow else 0), cost_jpy=1.5
            ),
        )
    result = run_metrics(postgres, instance, DAYS[0], DAYS[-1])
    assert len(result.get_asset_materialization_events()) == 30  # Dagster: one event per partition

    points = plotted(instance)

    with postgres.connect() as conn:
        table = {
            str(r["date"]): r
            for r in conn.execute(sa.text("SELECT * FROM rag_metrics_history ORDER BY date")).mappings()
        }
    assert sorted(points) == DAYS
    for day in DAYS:
        row, point = table[day], points[day]
        assert point["latency_p95_ms"] == round(row["latency_p95_ms"], 1), day
        assert point["cost_per_answer_jpy"] == round(float(row["cost_per_answer"]), 2), day
        assert point["total_queries"] == row["total_queries"], day
        assert point["overall_met"] == (1.0 if row["slo_compliance"]["overallMet"] else 0.0), day
        # A constant is not plotted: `days` (1 for each day's own event) is text.
        assert "days" not in point and point["days_missing_slo"] == 1 - point["overall_met"], day
    # Distinct per-day values, not one value repeated across the range.
    assert len({p["latency_p95_ms"] for p in points.values()}) == 30
    assert [d for d in DAYS if points[d]["overall_met"] == 0.0] == DAYS[::5]

    # The nightly single day lands on its own partition too, and replaces only that day's point.
    insert(postgres, day_rows(DAYS[-1], n=5, cited=5, latency_ms=9000, cost_jpy=1.0))
    run_metrics(postgres, instance, DAYS[-1])
    again = plotted(instance)
    assert again[DAYS[-1]]["latency_p95_ms"] == 9000.0
    assert {d: again[d] for d in DAYS[:-1]} == {d: points[d] for d in DAYS[:-1]}
