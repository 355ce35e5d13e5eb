"""The source-reader plug point: a reader registered in `READERS` is picked up by the scan, and its code
joins the reading rules, with nothing else kept in step by hand."""

import pytest
import sqlalchemy as sa

import pipelines.sources as sources_mod
from pipelines.lib import readers
from pipelines.lib.documents import ParsedDocument
from pipelines.sources import sync_documents


def parse_plain_text(raw: bytes, source_key: str) -> ParsedDocument:
    first, _, rest = raw.decode().partition("\n")
    return ParsedDocument(
        source="local", source_key=source_key, title=first, content=rest.strip(), metadata={}
    )


@pytest.fixture
def with_text_reader(monkeypatch):
    monkeypatch.setattr(readers, "READERS", (*readers.READERS, readers.Reader((".txt",), parse_plain_text)))


@pytest.mark.usefixtures("with_text_reader")
def test_a_registered_reader_is_scanned_and_parsed(postgres, tmp_path):
    (tmp_path / "a.md").write_text("# Alpha\n\nMarkdown body.\n")
    (tmp_path / "b.TXT").write_text("Beta\nPlain body.\n")
    (tmp_path / "c.pdf").write_bytes(b"%PDF-1.4 no reader for this one")
    stats = sync_documents(postgres.engine, tmp_path)
    assert (stats.scanned, stats.inserted_or_updated, stats.errors) == (2, 2, [])
    with postgres.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT source_key, title, content FROM source_documents ORDER BY 1")
        ).all()
    assert [tuple(r) for r in rows] == [
        ("a.md", "Alpha", "# Alpha\n\nMarkdown body.\n"),
        ("b.TXT", "Beta", "Plain body."),
    ]


def test_the_reading_rules_follow_the_registry(monkeypatch):
    rules = sources_mod._reading_rules.__wrapped__
    before = rules()
    assert readers.suffixes() == (".md", ".markdown")
    monkeypatch.setattr(readers, "READERS", (*readers.READERS, readers.Reader((".txt",), parse_plain_text)))
    assert readers.suffixes() == (".md", ".markdown", ".txt")
    # This module now holds reading code: a change to it must re-read every item.
    assert rules() != before
