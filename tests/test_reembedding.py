"""Blue/green re-embedding against real Postgres and the fake OpenAI-compatible server."""

import itertools
import threading

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.embeddings import chunk_embeddings, embedding_index
from assets.reembedding import embedding_model_switch, reembedding
from location.sensors import embedding_model_change_sensor
from pipelines.embedders import OpenAIEmbedder
from pipelines.embeddings import embed_pending
from pipelines.hnsw import DEFAULT_MAINTENANCE_WORK_MEM
from pipelines.lib.vector_index import index_name_for
from pipelines.models import active_model, coverage, drop_retired_embeddings, get_model
from pipelines.reembedding import build_model
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource
from testing.chunk_seed import add_chunks, chunk_texts
from testing.fake_openai import FakeOpenAI

LOCAL = "local-hash-v1"
SMALL = "text-embedding-3-small"


def openai_embedder(fake, **kw) -> EmbedderResource:
    kw.setdefault("model", SMALL)
    return EmbedderResource(provider="openai", api_key="sk-test", base_url=fake.base_url, max_retries=0, **kw)


def build(conn, embedder):
    return build_model(
        conn.engine,
        embedder.spec(),
        embedder.limits(),
        embedder.factory(),
        maintenance_work_mem=DEFAULT_MAINTENANCE_WORK_MEM,
    )


def reembed(postgres, embedder, instance=None, **run_config):
    return dg.materialize(
        [reembedding, embedding_model_switch],
        resources={"postgres": postgres, "embedder": embedder},
        run_config={"ops": {"reembedding": {"config": run_config}}} if run_config else None,
        raise_on_error=False,
        instance=instance,
    )


def statuses(conn) -> dict[str, str]:
    return dict(conn.execute(sa.text("SELECT name, status FROM embedding_models")).all())


def metadata(result, asset: str) -> dict:
    mat = result.asset_materializations_for_node(asset)[0]
    return {k: v.value for k, v in mat.metadata.items()}


def checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def index_def(conn, model: str, dims: int) -> str | None:
    return conn.execute(
        sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": index_name_for(model, dims)}
    ).scalar_one_or_none()


@pytest.fixture
def corpus(postgres):
    """60 chunks (two sharing a text) embedded by the local model, which is therefore active."""
    with postgres.connect() as conn:
        texts = chunk_texts(59)
        add_chunks(conn, [*texts, texts[0]])
    dg.materialize(
        [chunk_embeddings, embedding_index],
        resources={"postgres": postgres, "embedder": EmbedderResource(provider="local")},
    )
    return texts


def test_switch_from_local_to_1536_dimensions_and_back_without_re_embedding(postgres, corpus):
    with FakeOpenAI() as fake:
        to_small = reembed(postgres, openai_embedder(fake))
        assert to_small.success
        meta = metadata(to_small, "reembedding")
        # The duplicate text is sent once; everything else exactly once.
        assert sorted(fake.texts_embedded) == sorted(corpus)
        assert (
            meta["chunks_embedded"] == 60
            and meta["estimated_tokens"] > 0
            and meta["previous_active_model"] == LOCAL
        )
        assert checks(to_small) == {"covers_every_chunk": True, "hnsw_recall_at_10": True}
        with postgres.connect() as conn:
            assert statuses(conn) == {LOCAL: "retired", SMALL: "active"}
            assert "halfvec(1536)" in index_def(conn, SMALL, 1536) and "halfvec_cosine_ops" in index_def(
                conn, SMALL, 1536
            )
            assert index_def(conn, LOCAL, 384) is not None  # kept through the grace period
            assert conn.execute(
                sa.text("SELECT count(*), min(vector_dims(embedding)) FROM active_chunk_embeddings")
            ).one() == (60, 1536)

        back = reembed(postgres, EmbedderResource(provider="local"))
        assert back.success
        assert metadata(back, "reembedding")["reopened_retired_model"] is True
        assert metadata(back, "reembedding")["chunks_embedded"] == 0

        fake.reset_counts()
        again = reembed(postgres, openai_embedder(fake))
        assert again.success
        assert fake.request_count == 0
        assert metadata(again, "embedding_model_switch")["switched"] is True
        with postgres.connect() as conn:
            assert statuses(conn) == {LOCAL: "retired", SMALL: "active"}
            history = conn.execute(
                sa.text("SELECT from_model, to_model FROM embedding_model_switches ORDER BY id")
            ).all()
    assert [tuple(r) for r in history] == [(LOCAL, SMALL), (SMALL, LOCAL), (LOCAL, SMALL)]


@pytest.mark.usefixtures("corpus")
def test_readers_never_see_two_models_or_an_empty_index_during_switches(postgres):
    seen: list[tuple] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader():
        engine = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                while not stop.is_set():
                    seen.append(
                        tuple(
                            conn.execute(
                                sa.text(
                                    "SELECT count(*), count(DISTINCT model), min(model) FROM active_chunk_embeddings"
                                )
                            ).one()
                        )
                    )
        except sa.exc.SQLAlchemyError as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            engine.dispose()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with FakeOpenAI(latency_s=0.01) as fake:
            assert reembed(postgres, openai_embedder(fake, max_batch_inputs=8, concurrency=2)).success
            assert reembed(postgres, EmbedderResource(provider="local")).success
            assert reembed(postgres, openai_embedder(fake)).success
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert len(seen) > 20
    assert {(count, distinct) for count, distinct, _ in seen} == {(60, 1)}
    # The reader really watched the switches happen.
    models = [m for _, _, m in seen]
    assert set(models) == {LOCAL, SMALL}
    changes = sum(1 for a, b in itertools.pairwise(models) if a != b)
    assert changes >= 2


@pytest.mark.usefixtures("corpus")
def test_over_budget_run_refuses_before_any_request_and_says_how_to_allow_it(postgres):
    with FakeOpenAI() as fake:
        instance = dg.DagsterInstance.ephemeral()
        refused = reembed(postgres, openai_embedder(fake, budget_usd=1e-9), instance=instance)
        assert not refused.success
        failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
        message = failure.event_specific_data.error_display_string
        assert "EMBEDDING_BUDGET_USD" in message and "allow_over_budget" in message
        assert fake.request_count == 0
        # The estimate was published before the refusal.
        observed = instance.all_logs(refused.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION)
        estimate = observed[0].asset_observation.metadata
        assert estimate["estimated_tokens"].value > 0 and estimate["estimated_cost_usd"].value > 1e-9
        with postgres.connect() as conn:
            assert active_model(conn).name == LOCAL

        allowed = reembed(postgres, openai_embedder(fake, budget_usd=1e-9), allow_over_budget=True)
        assert allowed.success and fake.request_count > 0
        with postgres.connect() as conn:
            assert active_model(conn).name == SMALL


def test_interrupted_re_embedding_resumes_without_resending_finished_chunks(postgres, corpus, monkeypatch):
    real_embed = OpenAIEmbedder.embed
    calls = {"n": 0}

    def crash_on_fourth_request(self, texts):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("worker killed")
        return real_embed(self, texts)

    with FakeOpenAI() as fake:
        embedder = openai_embedder(fake, max_batch_inputs=10, concurrency=1)
        monkeypatch.setattr(OpenAIEmbedder, "embed", crash_on_fourth_request)
        with postgres.connect() as conn, pytest.raises(RuntimeError, match="worker killed"):
            build(conn, embedder)
        monkeypatch.setattr(OpenAIEmbedder, "embed", real_embed)
        with postgres.connect() as conn:
            finished = set(
                conn.execute(
                    sa.text(
                        "SELECT c.content FROM chunk_embeddings e JOIN document_chunks c ON c.id = e.chunk_id"
                        " WHERE e.model = :m"
                    ),
                    {"m": SMALL},
                ).scalars()
            )
            assert 0 < len(finished) < len(corpus)
            assert active_model(conn).name == LOCAL and get_model(conn, SMALL).status == "building"

        fake.reset_counts()
        with postgres.connect() as conn:
            result = build(conn, embedder)
        assert not finished & set(fake.texts_embedded)
        assert sorted(fake.texts_embedded) == sorted(set(corpus) - finished)
        assert result.coverage.complete and result.index.created


@pytest.mark.usefixtures("corpus")
def test_nightly_embedding_keeps_the_active_model_complete_while_another_is_configured(postgres):
    with FakeOpenAI() as fake, postgres.connect() as conn:
        add_chunks(conn, chunk_texts(5, seed=9, prefix="new"), source="late")
        result = dg.materialize(
            [chunk_embeddings], resources={"postgres": postgres, "embedder": openai_embedder(fake)}
        )
        meta = metadata(result, "chunk_embeddings")
        assert (meta["model"], meta["configured_model"], meta["chunks_embedded"]) == (LOCAL, SMALL, 5)
        assert fake.request_count == 0
        assert statuses(conn) == {LOCAL: "active", SMALL: "building"}
        assert coverage(conn, LOCAL).complete
        assert conn.execute(sa.text("SELECT count(*) FROM active_chunk_embeddings")).scalar_one() == 65


@pytest.mark.usefixtures("corpus")
def test_retired_vectors_are_dropped_after_the_grace_period_and_then_rebuilt_on_return(postgres):
    with FakeOpenAI() as fake:
        grace_30_days = PostgresResource(database_url=postgres.database_url, retired_grace_days=30)
        assert reembed(grace_30_days, openai_embedder(fake)).success
        with postgres.connect() as conn:
            assert drop_retired_embeddings(conn.engine, 30).total == 0
            dropped = drop_retired_embeddings(conn.engine, 0, batch_size=7)
            assert dropped.deleted == {LOCAL: 60}
            assert (
                conn.execute(
                    sa.text("SELECT count(*) FROM chunk_embeddings WHERE model = :m"), {"m": LOCAL}
                ).scalar_one()
                == 0
            )
            assert index_def(conn, LOCAL, 384) is None
            assert get_model(conn, LOCAL).embeddings_dropped_at is not None
            assert conn.execute(sa.text("SELECT count(*) FROM active_chunk_embeddings")).scalar_one() == 60

        back = reembed(postgres, EmbedderResource(provider="local"))
        assert back.success and metadata(back, "reembedding")["chunks_embedded"] == 60


@pytest.mark.usefixtures("corpus")
def test_switch_is_blocked_while_the_new_model_misses_chunks(postgres):
    with postgres.connect() as conn:
        add_chunks(conn, ["this chunk holds poison for the model"], source="bad")
        local = EmbedderResource(provider="local")
        embed_pending(conn.engine, local.spec(), local.limits(), local.factory())
    with FakeOpenAI() as fake:
        result = reembed(postgres, openai_embedder(fake))
    assert checks(result) == {"covers_every_chunk": False}
    assert result.asset_materializations_for_node("embedding_model_switch") == []
    with postgres.connect() as conn:
        assert statuses(conn) == {LOCAL: "active", SMALL: "building"}


@pytest.mark.usefixtures("corpus")
def test_sensor_launches_once_per_configuration_change(postgres):
    with FakeOpenAI() as fake:

        def evaluate(embedder, cursor):
            ctx = dg.build_sensor_context(
                cursor=cursor, resources={"postgres": postgres, "embedder": embedder}
            )
            return embedding_model_change_sensor(ctx), ctx.cursor

        same, cursor = evaluate(EmbedderResource(provider="local"), None)
        assert isinstance(same, dg.SkipReason) and cursor == LOCAL
        launch, cursor = evaluate(openai_embedder(fake), cursor)
        assert isinstance(launch, dg.RunRequest) and launch.tags["embedding_model"] == SMALL
        repeat, cursor = evaluate(openai_embedder(fake), cursor)
        assert isinstance(repeat, dg.SkipReason)
        other, _ = evaluate(openai_embedder(fake, dimensions=512), cursor)
        assert isinstance(other, dg.RunRequest) and other.tags["embedding_model"] == f"{SMALL}@512"


@pytest.mark.usefixtures("corpus")
def test_a_build_abandoned_by_changing_back_is_retired_and_its_vectors_reused_later(postgres):
    with FakeOpenAI() as fake:
        with postgres.connect() as conn:
            build(conn, openai_embedder(fake))  # built, never switched to
        back = reembed(postgres, EmbedderResource(provider="local"))
        assert back.success and metadata(back, "embedding_model_switch")["abandoned_builds_retired"] == SMALL
        with postgres.connect() as conn:
            assert statuses(conn) == {LOCAL: "active", SMALL: "retired"}
        fake.reset_counts()
        assert reembed(postgres, openai_embedder(fake)).success
        assert fake.request_count == 0
