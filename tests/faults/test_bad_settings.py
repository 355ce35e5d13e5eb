"""Bad settings are refused at start-up, naming the variable and the value, instead of meaning something else."""

from __future__ import annotations

import pytest

from location.resources import build_resources
from pipelines.embedders import EmbeddingConfigError, EmbedLimits, resolve_spec
from resources.embedders import EmbedderResource

# variable → values that used to be accepted silently (0 dimensions meant native, nan disabled the budget,
# concurrency 0 meant 1, a zero or nan rate meant unlimited, overlap ≥ max broke chunking later).
BAD = [
    ("EMBEDDING_DIMENSIONS", "0"),
    ("EMBEDDING_DIMENSIONS", "-8"),
    ("EMBEDDING_BUDGET_USD", "-1"),
    ("EMBEDDING_BUDGET_USD", "nan"),
    ("EMBEDDING_BUDGET_USD", "inf"),
    ("EMBEDDING_CONCURRENCY", "0"),
    ("EMBEDDING_CONCURRENCY", "-3"),
    ("EMBEDDING_RPM", "0"),
    ("EMBEDDING_RPM", "-5"),
    ("EMBEDDING_RPM", "nan"),
    ("EMBEDDING_TPM", "0"),
    ("EMBEDDING_TPM", "NaN"),
    ("EMBEDDING_PRICE_PER_MTOK", "-0.5"),
    ("CHUNK_MAX_CHARS", "0"),
    ("CHUNK_MAX_CHARS", "many"),
    ("CHUNK_OVERLAP", "-1"),
    ("CHUNK_OVERLAP", "5000"),
    # The mass-deletion guard: a typo must not switch it off, a bound must be a real bound.
    ("ALLOW_MASS_DELETION", "maybe"),
    ("ALLOW_MASS_DELETION", "2"),
    ("MASS_DELETION_MAX_DOCUMENTS", "-1"),
    ("MASS_DELETION_MAX_DOCUMENTS", "ten"),
    ("MASS_DELETION_MAX_PERCENT", "150"),
    ("MASS_DELETION_MAX_PERCENT", "-5"),
    ("MASS_DELETION_MAX_PERCENT", "nan"),
    ("DELETED_VECTOR_GRACE_DAYS", "-1"),
    ("DELETED_VECTOR_GRACE_DAYS", "inf"),
    ("EVAL_K", "0"),
    ("EVAL_MIN_RECALL", "1.5"),
    ("EVAL_MAX_DROP", "nan"),
    ("EVAL_SWITCH_TOLERANCE", "-0.1"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_build_resources_refuses_a_bad_setting_by_name(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as err:
        build_resources()
    message = str(err.value)
    assert name in message and value in message


def test_overlap_not_below_max_chars_names_both(monkeypatch):
    monkeypatch.setenv("CHUNK_MAX_CHARS", "300")
    monkeypatch.setenv("CHUNK_OVERLAP", "300")
    with pytest.raises(ValueError, match="CHUNK_OVERLAP=300 with CHUNK_MAX_CHARS=300"):
        build_resources()


def test_good_settings_still_build(monkeypatch):
    for name, value in {
        # The offline e5 model has one size; the hashing embedder takes any.
        "EMBEDDING_PROVIDER": "local",
        "EMBEDDING_DIMENSIONS": "256",
        "EMBEDDING_BUDGET_USD": "0",
        "EMBEDDING_CONCURRENCY": "1",
        "EMBEDDING_RPM": "0.5",
        "EMBEDDING_TPM": "1000",
        "CHUNK_MAX_CHARS": "300",
        "CHUNK_OVERLAP": "299",
        "ALLOW_MASS_DELETION": "yes",
        "MASS_DELETION_MAX_DOCUMENTS": "0",
        "MASS_DELETION_MAX_PERCENT": "2.5",
        "DELETED_VECTOR_GRACE_DAYS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    res = build_resources()
    embedder = res["embedder"]
    assert isinstance(embedder, EmbedderResource)
    assert embedder.spec().dimensions == 256 and embedder.limits().budget_usd == 0.0
    assert embedder.factory() is not None
    assert (res["content_sources"].chunk_max_chars, res["content_sources"].chunk_overlap) == (300, 299)
    limits = res["content_sources"].deletion_limits()
    assert (limits.allow, limits.max_documents, limits.max_percent) == (True, 0, 2.5)
    assert res["postgres"].deleted_vector_grace_days == 0


# The same values reaching the resource by other routes (run config, a YAML launchpad) are refused too.
@pytest.mark.parametrize(
    ("fields", "method", "words"),
    [
        ({"dimensions": 0}, "spec", "EMBEDDING_DIMENSIONS must be positive, got 0"),
        ({"price_per_million_tokens": float("nan")}, "spec", "EMBEDDING_PRICE_PER_MTOK"),
        ({"concurrency": 0}, "limits", "EMBEDDING_CONCURRENCY must be at least 1, got 0"),
        ({"budget_usd": -1.0}, "limits", "EMBEDDING_BUDGET_USD"),
        ({"budget_usd": float("nan")}, "limits", "got nan"),
        ({"budget_usd": float("inf")}, "limits", "got inf"),
        (
            {"requests_per_minute": 0.0},
            "factory",
            "EMBEDDING_RPM must be a finite number greater than 0, got 0.0",
        ),
        ({"tokens_per_minute": float("nan")}, "factory", "EMBEDDING_TPM"),
    ],
)
def test_the_resource_methods_refuse_bad_values_by_name(fields, method, words):
    resource = EmbedderResource(provider="local", **fields)
    with pytest.raises(EmbeddingConfigError, match=words.replace("(", r"\(")):
        getattr(resource, method)()


def test_zero_dimensions_is_not_the_native_dimension():
    assert resolve_spec("local", None, None, None, has_api_key=False).dimensions == 384
    with pytest.raises(EmbeddingConfigError, match="EMBEDDING_DIMENSIONS"):
        resolve_spec("openai", "text-embedding-3-small", 0, None, has_api_key=True)
    with pytest.raises(EmbeddingConfigError, match="EMBEDDING_CONCURRENCY"):
        EmbedLimits(concurrency=-1)
