"""One wrong setting must not delete the corpus (issue 21, item 1): a run that would delete more than a bounded
share of a source is refused before anything is deleted, names the source and the counts and says how to
allow it; the run config flag or ALLOW_MASS_DELETION lets it through, and small deletions go on as before."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.chunks import document_chunks
from assets.embeddings import chunk_embeddings
from assets.sources import source_documents
from location.resources import build_resources
from pipelines.lib.deletion_safety import DeletionLimits, MassDeletionRefusedError
from pipelines.sources import TableSpec, sync_documents
from resources.embedders import EmbedderResource
from resources.sources import DEFAULT_CONTENT_DIR, ContentSourcesResource
from testing.corpus import TLDR_SAMPLE

ASSETS = [source_documents, document_chunks, chunk_embeddings]
ALLOW = {"ops": {"source_documents": {"config": {"allow_mass_deletion": True}}}}


def tldr_copy(root: Path) -> Path:
    shutil.copytree(TLDR_SAMPLE, root)
    return root


def markdown_keys(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.md")}


def run(postgres, resources: dict[str, Any], run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        resources={"postgres": postgres, "embedder": EmbedderResource(provider="local"), **resources},
        run_config=run_config or {},
        raise_on_error=False,
    )


def corpus(engine: sa.Engine) -> dict[str, Any]:
    """Everything a deletion would take: each document's content hash, every chunk, every vector."""
    with engine.connect() as conn:
        return {
            "documents": dict(
                conn.execute(sa.text("SELECT source_key, content_sha256 FROM source_documents")).all()
            ),
            "chunks": set(conn.execute(sa.text("SELECT id, content_sha256 FROM document_chunks")).all()),
            "vectors": set(
                conn.execute(sa.text("SELECT chunk_id, model, embedding::text FROM chunk_embeddings")).all()
            ),
        }


def refusal(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    failure = result.failure_data_for_node("source_documents")
    assert failure is not None and failure.user_failure_data is not None
    return failure.user_failure_data.description or ""


def test_a_new_user_without_content_dir_keeps_the_whole_corpus(postgres, tmp_path, monkeypatch):
    mine = tldr_copy(tmp_path / "mine")
    first = run(postgres, {"content_sources": ContentSourcesResource(content_dir=str(mine))})
    assert first.success
    before = corpus(postgres.engine)
    assert set(before["documents"]) == markdown_keys(mine) and len(before["documents"]) == 151
    assert len(before["vectors"]) == len(before["chunks"]) > 151

    # `make prod` without CONTENT_DIR: the code location's resources, built from an environment that lacks it.
    monkeypatch.delenv("CONTENT_DIR", raising=False)
    monkeypatch.delenv("SOURCE_TABLES", raising=False)
    for name in ("ALLOW_MASS_DELETION", "MASS_DELETION_MAX_DOCUMENTS", "MASS_DELETION_MAX_PERCENT"):
        monkeypatch.delenv(name, raising=False)
    env_sources = build_resources()["content_sources"]
    assert isinstance(env_sources, ContentSourcesResource)
    assert Path(env_sources.content_dir) == DEFAULT_CONTENT_DIR
    message = refusal(run(postgres, {"content_sources": env_sources}))
    assert "151 of the 151 stored documents of source 'local' (100 %), e.g. 'LICENSE.md'" in message
    assert "allow_mass_deletion: true" in message and "ALLOW_MASS_DELETION=1" in message
    assert str(DEFAULT_CONTENT_DIR) in message
    # Nothing deleted, and the demo's pages were not written beside the corpus either.
    assert corpus(postgres.engine) == before

    allowed = run(postgres, {"content_sources": env_sources}, ALLOW)
    assert allowed.success
    meta = allowed.asset_materializations_for_node("source_documents")[0].metadata
    assert meta["deleted"].value == 151
    assert set(corpus(postgres.engine)["documents"]) == markdown_keys(DEFAULT_CONTENT_DIR)


def test_the_environment_setting_allows_it_for_every_run(postgres, tmp_path, monkeypatch):
    mine = tldr_copy(tmp_path / "mine")
    assert run(postgres, {"content_sources": ContentSourcesResource(content_dir=str(mine))}).success
    monkeypatch.setenv("CONTENT_DIR", str(DEFAULT_CONTENT_DIR))
    monkeypatch.delenv("SOURCE_TABLES", raising=False)
    monkeypatch.setenv("ALLOW_MASS_DELETION", "1")
    env_sources = build_resources()["content_sources"]
    result = run(postgres, {"content_sources": env_sources})
    assert result.success
    assert result.asset_materializations_for_node("source_documents")[0].metadata["deleted"].value == 151


def test_a_large_wrong_tree_is_refused_after_reading_it_and_before_deleting(postgres, tmp_path):
    """More files than stored documents: the listing alone cannot tell, so the refusal comes once every source
    is read, before the first delete. The wrong tree's pages were written (new documents, nothing lost)."""
    mine = tldr_copy(tmp_path / "mine")
    assert run(postgres, {"content_sources": ContentSourcesResource(content_dir=str(mine))}).success
    before = corpus(postgres.engine)
    other = tmp_path / "other"
    other.mkdir()
    for i in range(200):
        (other / f"note-{i:03}.md").write_text(f"# Note {i}\n\nSomething else entirely, number {i}.\n")
    message = refusal(run(postgres, {"content_sources": ContentSourcesResource(content_dir=str(other))}))
    assert "151 of the 151 stored documents of source 'local'" in message
    after = corpus(postgres.engine)
    assert {k: after["documents"][k] for k in before["documents"]} == before["documents"]
    assert before["chunks"] <= after["chunks"] and before["vectors"] <= after["vectors"]


def test_small_deletions_go_on_and_the_bounds_are_both_needed(postgres, tmp_path):
    mine = tldr_copy(tmp_path / "mine")
    engine = postgres.engine
    sync_documents(engine, mine)
    pages = sorted(markdown_keys(mine))

    # 20 of 151 is above 10 % but not above 20 documents: deleted as before.
    for key in pages[:20]:
        (mine / key).unlink()
    assert sync_documents(engine, mine).deleted == 20
    # 21 of the 131 left is above both: refused, every stored document kept.
    for key in pages[20:41]:
        (mine / key).unlink()
    with pytest.raises(MassDeletionRefusedError) as err:
        sync_documents(engine, mine)
    assert (err.value.deletions[0].deleting, err.value.deletions[0].stored) == (21, 131)
    assert len(corpus(engine)["documents"]) == 131
    # With a lower document bound the share decides (the refused run deleted nothing: 131 stored).
    limits = DeletionLimits(max_documents=5, max_percent=10)
    for key in pages[33:41]:
        shutil.copy2(TLDR_SAMPLE / key, mine / key)
    assert sync_documents(engine, mine, limits=limits).deleted == 13  # 13 of 131: 9.9 %
    for key in pages[41:53]:
        (mine / key).unlink()
    with pytest.raises(MassDeletionRefusedError):  # 12 of 118: 10.2 %
        sync_documents(engine, mine, limits=limits)
    shutil.copy2(TLDR_SAMPLE / pages[52], mine / pages[52])
    assert sync_documents(engine, mine, limits=limits).deleted == 11  # 11 of 118: 9.3 %


def test_every_source_is_checked_before_any_deletes(postgres, tmp_path):
    """The markdown source may lose 10 pages, but the table source would lose all its rows: the run is
    refused and neither loses anything."""
    mine = tldr_copy(tmp_path / "mine")
    engine = postgres.engine
    faq = TableSpec(table="faq", key_column="id", text_columns=("answer",))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE faq (id int PRIMARY KEY, answer text)"))
        conn.execute(sa.text("INSERT INTO faq SELECT g, 'answer ' || g FROM generate_series(1, 30) g"))
    sync_documents(engine, mine, [faq])
    before = corpus(engine)
    assert len(before["documents"]) == 181
    for key in sorted(markdown_keys(mine))[:10]:
        (mine / key).unlink()
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE faq"))
    with pytest.raises(MassDeletionRefusedError) as err:
        sync_documents(engine, mine, [faq])
    assert [(d.source, d.deleting, d.stored) for d in err.value.deletions] == [("table:faq", 30, 30)]
    assert "'table:faq'" in str(err.value)
    assert corpus(engine)["documents"] == before["documents"]
    stats = sync_documents(engine, mine, [faq], limits=DeletionLimits(allow=True))
    assert stats.deleted == 40 and [d.source for d in stats.mass_deletions_allowed] == ["table:faq"]


def test_the_flag_and_the_settings_are_described_where_the_launchpad_shows_them():
    config = source_documents.op.config_schema.config_type
    assert config is not None
    assert "ALLOW_MASS_DELETION" in (config.fields["allow_mass_deletion"].description or "")
    fields = ContentSourcesResource.to_config_schema().as_field().config_type.fields  # type: ignore[attr-defined]
    for name in ("allow_mass_deletion", "mass_deletion_max_documents", "mass_deletion_max_percent"):
        assert name.upper() in (fields[name].description or "")
