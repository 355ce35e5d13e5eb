"""The retrieval evaluation and the switch's quality gate, end to end against real Postgres, the real search
path and the fake OpenAI-compatible server, with models whose quality the test controls: the hashing
embedder finds each document from words only it contains, while the fake server's vectors are random
points, so its answers are chance. Every expected score is recomputed here by brute force in numpy."""

import json

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

from assets.embeddings import chunk_embeddings, embedding_index
from assets.reembedding import embedding_model_switch, reembedding
from assets.retrieval_quality import retrieval_quality
from location.alert_sensors import metric_alerts_sensor
from pipelines.lib.hashing_embedder import embed_texts
from pipelines.models import active_model, coverage, get_model
from pipelines.retrieval_eval import MIN_DEPTH
from resources.alerts import AlertsResource
from resources.embedders import EmbedderResource
from resources.evaluation import EvaluationSettings
from testing.chunk_seed import add_chunks
from testing.fake_openai import FakeOpenAI, fake_vector
from tests.alert_receiver import receiver

N_DOCS = 30
K = 5
SMALL = "text-embedding-3-small"
DEPTH = 20


def doc_text(i: int) -> str:
    # Two words no other document has, among words every document has.
    return f"zq{i}alpha zq{i}beta: notes about lessons, practice and the school's help pages."


QUESTIONS = [(f"zq{i}alpha zq{i}beta", i) for i in range(0, N_DOCS, 2)]


@pytest.fixture
def questions_file(tmp_path, postgres):
    """The documents (one chunk each) and a question set naming each one's source_key."""
    with postgres.connect() as conn:
        add_chunks(conn, [doc_text(i) for i in range(N_DOCS)], per_document=1)
        keys = dict(
            conn.execute(
                sa.text(
                    "SELECT c.content, d.source_key FROM document_chunks c"
                    " JOIN source_documents d ON d.id = c.document_id"
                )
            ).all()
        )
    path = tmp_path / "questions.jsonl"
    path.write_text(
        "\n".join(json.dumps({"question": q, "expected": [keys[doc_text(i)]]}) for q, i in QUESTIONS)
    )
    return str(path)


def expected_score(vector) -> tuple[float, float]:
    """recall@K and MRR by brute force: cosine of every question against every document, in numpy."""
    docs = np.stack([vector(doc_text(i)) for i in range(N_DOCS)])
    ranks = []
    for q, i in QUESTIONS:
        order = np.argsort(-(docs @ vector(q)), kind="stable")
        ranks.append(int(np.where(order == i)[0][0]) + 1)
    ranks_arr = np.array(ranks)
    # The evaluation reads DEPTH chunks per question (one per document here): deeper counts as not found.
    return float(np.mean(ranks_arr <= K)), float(np.mean(np.where(ranks_arr <= DEPTH, 1 / ranks_arr, 0)))


def hashing(dims=384):
    return lambda text: embed_texts([text], dims)[0]


def random_points(text):
    return fake_vector(text, 1536)


def settings(path, **kw) -> EvaluationSettings:
    return EvaluationSettings(questions=path, k=K, **kw)


def local(path, **kw) -> EmbedderResource:
    return EmbedderResource(provider="local", evaluation=settings(path), **kw)


def fake_model(fake, path) -> EmbedderResource:
    return EmbedderResource(
        provider="openai", api_key="sk-test", base_url=fake.base_url, max_retries=0, evaluation=settings(path)
    )


def embed(postgres, embedder, instance=None):
    assert dg.materialize(
        [chunk_embeddings, embedding_index, retrieval_quality],
        resources={"postgres": postgres, "embedder": embedder},
        instance=instance,
    ).success


def switch(postgres, embedder, allow_worse=False, instance=None):
    return dg.materialize(
        [reembedding, embedding_model_switch],
        resources={"postgres": postgres, "embedder": embedder},
        run_config={"ops": {"embedding_model_switch": {"config": {"allow_worse_model": allow_worse}}}},
        raise_on_error=False,
        instance=instance,
    )


def metadata(result, asset):
    [mat] = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in mat.metadata.items()}


def gate_rows(postgres):
    with postgres.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT model, recall_at_k, mrr FROM retrieval_evaluations WHERE purpose = 'switch_gate' ORDER BY id"
            )
        ).all()


def test_the_controlled_models_are_what_the_test_says():
    assert max(MIN_DEPTH, 4 * K) == DEPTH
    good, chance = expected_score(hashing()), expected_score(random_points)
    assert good == (1.0, 1.0)
    assert chance[0] < 0.7 and chance[1] < 0.6  # far enough below for the gate's tolerance


def test_evaluation_scores_the_active_model_through_search_as_numpy_does(postgres, questions_file):
    embed(postgres, local(questions_file))
    with postgres.connect() as conn:
        row = conn.execute(
            sa.text("SELECT model, purpose, questions, k, recall_at_k, mrr FROM retrieval_evaluations")
        ).one()
    assert (
        row.model == "local-hash-v1"
        and row.purpose == "asset"
        and (row.questions, row.k) == (len(QUESTIONS), K)
    )
    assert (row.recall_at_k, row.mrr) == pytest.approx(expected_score(hashing()))


def test_a_worse_model_is_refused_with_both_scores_and_an_override_costs_no_chunk_requests(
    postgres, questions_file
):
    embed(postgres, local(questions_file))
    good, chance = expected_score(hashing()), expected_score(random_points)
    with FakeOpenAI() as fake:
        refused = switch(postgres, fake_model(fake, questions_file))
        assert not refused.success
        failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
        message = failure.event_specific_data.error_display_string
        assert f"{SMALL} not switched to; readers keep local-hash-v1" in message
        assert f"new: recall@{K} {chance[0]:.3f}, MRR {chance[1]:.3f}" in message
        assert f"active: recall@{K} {good[0]:.3f}, MRR {good[1]:.3f}" in message
        assert [r.model for r in gate_rows(postgres)] == [SMALL, "local-hash-v1"]
        assert [(r.recall_at_k, r.mrr) for r in gate_rows(postgres)] == [
            pytest.approx(chance),
            pytest.approx(good),
        ]
        with postgres.connect() as conn:
            assert active_model(conn).name == "local-hash-v1"
            assert get_model(conn, SMALL).status == "building" and coverage(conn, SMALL).complete

        sent_before = len(fake.texts_embedded)
        forced = switch(postgres, fake_model(fake, questions_file), allow_worse=True)
        assert forced.success
        # Only the gate's questions were embedded again: the model's chunk vectors were kept.
        assert sorted(fake.texts_embedded[sent_before:]) == sorted(q for q, _ in QUESTIONS)
        meta = metadata(forced, "embedding_model_switch")
        assert meta["quality_gate"].startswith("overridden (allow_worse_model): refused")
        assert (meta["new_model_recall_at_k"], meta["active_model_recall_at_k"]) == pytest.approx(
            (chance[0], good[0]), abs=1e-4
        )
        with postgres.connect() as conn:
            assert active_model(conn).name == SMALL

        # Rolling back to the better model, with no API key configured any more, passes the gate on the
        # active model's stored score and sends no request at all.
        requests = fake.request_count
        back = switch(postgres, local(questions_file))
        assert back.success and metadata(back, "reembedding")["chunks_embedded"] == 0
        assert fake.request_count == requests
        meta = metadata(back, "embedding_model_switch")
        assert meta["quality_gate"].startswith("passed") and meta["active_model_mrr"] == pytest.approx(
            chance[1], abs=1e-4
        )


def test_an_equal_or_better_model_goes_through(postgres, questions_file):
    with FakeOpenAI() as fake:
        embed(postgres, fake_model(fake, questions_file))
        better = switch(postgres, local(questions_file))
    assert better.success
    meta = metadata(better, "embedding_model_switch")
    assert meta["switched"] and meta["quality_gate"].startswith("passed")
    assert (meta["new_model_recall_at_k"], meta["active_model_recall_at_k"]) == pytest.approx(
        (1.0, expected_score(random_points)[0]), abs=1e-4
    )
    equal = switch(postgres, local(questions_file, dimensions=512))
    assert equal.success
    meta = metadata(equal, "embedding_model_switch")
    assert meta["switched"] and meta["active_model"] == "local-hash-v1@512"
    assert expected_score(hashing(512)) == (1.0, 1.0)
    assert meta["new_model_mrr"] == meta["active_model_mrr"] == 1.0


def test_without_a_question_set_the_gate_says_it_skipped(postgres, questions_file):
    embed(postgres, local(questions_file))
    result = switch(postgres, EmbedderResource(provider="local", dimensions=256))
    assert result.success
    meta = metadata(result, "embedding_model_switch")
    assert meta["switched"] and meta["quality_gate"].startswith(
        "quality gate skipped: EVAL_QUESTIONS is not set"
    )
    assert "new_model_recall_at_k" not in meta and gate_rows(postgres) == []
    evaluated = dg.materialize(
        [retrieval_quality], resources={"postgres": postgres, "embedder": EmbedderResource(provider="local")}
    )
    [check] = evaluated.get_asset_check_evaluations()
    assert check.passed and check.description == "skipped, not evaluated: EVAL_QUESTIONS is not set"


def test_a_bad_question_set_fails_the_evaluation_by_name(postgres, questions_file, tmp_path):
    embed(postgres, local(questions_file))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "fine", "expected": ["k"]}\n{"question": "no answer"}\n')
    result = dg.materialize(
        [retrieval_quality],
        resources={"postgres": postgres, "embedder": local(str(bad))},
        raise_on_error=False,
    )
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "bad.jsonl line 2: `expected` must be" in failure.event_specific_data.error_display_string


def test_the_check_fires_on_a_drop_and_the_alert_goes_to_the_webhook(postgres, questions_file):
    with dg.instance_for_test() as instance:
        embed(postgres, local(questions_file), instance=instance)
        with FakeOpenAI() as fake:
            assert switch(
                postgres, fake_model(fake, questions_file), allow_worse=True, instance=instance
            ).success
            after = dg.materialize(
                [retrieval_quality],
                resources={"postgres": postgres, "embedder": fake_model(fake, questions_file)},
                instance=instance,
            )
        chance = expected_score(random_points)
        [check] = after.get_asset_check_evaluations()
        assert not check.passed
        assert f"recall@{K} fell from 1.000 to {chance[0]:.3f}" in check.description
        assert check.metadata["previous_model"].value == "local-hash-v1"
        # Every materialization's numbers are there for the UI to plot.
        records = instance.fetch_materializations(dg.AssetKey("retrieval_quality"), limit=10).records
        assert sorted(
            r.asset_materialization.metadata["recall_at_k"].value for r in records
        ) == pytest.approx(sorted([1.0, chance[0]]), abs=1e-4)
        with receiver() as r:
            alerts = AlertsResource(webhook_url=r.url, format="json", backoff_s=0.05)
            context = dg.build_sensor_context(
                instance=instance, resources={"postgres": postgres, "alerts": alerts}
            )
            metric_alerts_sensor(context)
            metric_alerts_sensor(
                dg.build_sensor_context(
                    instance=instance,
                    cursor=context.cursor,
                    resources={"postgres": postgres, "alerts": alerts},
                )
            )
        [body] = r.bodies
        assert (body["kind"], body["severity"], body["metric"]) == (
            "retrieval_quality",
            "warning",
            "retrieval_recall_at_k",
        )
        assert body["value"] == pytest.approx(chance[0], abs=1e-4) and SMALL in body["text"]
