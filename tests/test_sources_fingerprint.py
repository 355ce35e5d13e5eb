"""The unchanged-scan shortcut: a file whose stored scan fingerprint matches is not parsed. Every file is still
read and hashed, so any change of its bytes (a body byte, the frontmatter alone, an mtime put back) is
ingested; rows changed since by anyone, new reading rules or new provenance defaults take the full path; and
whatever happened in between, the stored rows equal a fresh database's ingest of the same tree."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import pipelines.sources as sources_mod
from pipelines.db import dispose_engine
from pipelines.lib import readers
from pipelines.lib.documents import parse_markdown
from pipelines.lib.provenance import ProvenanceDefaults
from pipelines.sources import sync_documents
from tests.conftest import _database_url

_twins = itertools.count()


def write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


@pytest.fixture
def parsed(monkeypatch) -> list[str]:
    """The keys the scan parses, in order."""
    keys: list[str] = []

    def counting(raw: bytes, source_key: str, source: str = "local"):
        keys.append(source_key)
        return parse_markdown(raw, source_key, source)

    monkeypatch.setattr(readers, "READERS", (readers.Reader(readers.suffixes(), counting),))
    return keys


@pytest.fixture
def twin_engine(pg_server_url) -> Iterator[sa.Engine]:
    """A second fresh database: the recomputation from scratch."""
    name = f"scan_twin_{os.getpid()}_{next(_twins)}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template_ragetl')
    url = _database_url(pg_server_url, name)
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()
    dispose_engine(url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
    admin.dispose()


def stored(engine: sa.Engine) -> dict:
    """Everything ingestion derives from the tree, without ids and clock times: acquired_at only as whether
    it is the document's own."""
    with engine.connect() as conn:
        docs = {
            r.source_key: tuple(r[1:])
            for r in conn.execute(
                sa.text(
                    "SELECT d.source_key, d.title, d.content, d.content_sha256, d.metadata::text,"
                    " p.content_type, p.source_uri, p.license_type, p.acquisition_method, p.rights_holder,"
                    " p.hash_sha256, p.retention_years,"
                    " CASE WHEN p.acquired_at = d.acquired_at THEN 'document' ELSE p.acquired_at::text END"
                    " FROM source_documents d LEFT JOIN provenance p ON p.content_id = d.id"
                )
            )
        }
        errors = set(conn.execute(sa.text("SELECT source, source_key, error FROM ingestion_errors")).all())
    return {"documents": docs, "errors": errors}


def tree(root: Path) -> None:
    write(root, "a.md", "# Alpha\n\nFirst body.\n")
    write(root, "b.md", "---\ntitle: Bravo\nlicense: CC-BY-4.0\n---\nBravo body.\n")
    write(root, "sub/c.md", "# Charlie\n\nThird body.\n")
    write(root, "d.md", "---\nacquired_at: 2020-01-02\nretention_years: 3\n---\n# Delta\n\nFourth.\n")
    write(root, "e.md", "# Echo\n\nFifth body.\n")


def test_unchanged_files_are_read_but_not_parsed(postgres, tmp_path, parsed):
    tree(tmp_path)
    first = sync_documents(postgres.engine, tmp_path)
    assert first.inserted_or_updated == 5 and len(parsed) == 5
    parsed.clear()
    again = sync_documents(postgres.engine, tmp_path)
    assert (again.scanned, again.unchanged, again.inserted_or_updated, again.errors) == (5, 5, 0, [])
    assert parsed == []


def test_one_byte_of_the_body_changed_with_the_mtime_put_back_is_ingested(postgres, tmp_path, parsed):
    tree(tmp_path)
    sync_documents(postgres.engine, tmp_path)
    path = tmp_path / "sub/c.md"
    before = path.stat()
    raw = path.read_bytes()
    edited = raw.replace(b"Third", b"Thirx")
    assert len(edited) == len(raw) and edited != raw
    path.write_bytes(edited)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size
    parsed.clear()
    stats = sync_documents(postgres.engine, tmp_path)
    assert (stats.inserted_or_updated, stats.unchanged, parsed) == (1, 4, ["sub/c.md"])
    with postgres.engine.connect() as conn:
        content = conn.execute(sa.text("SELECT content FROM source_documents WHERE source_key = 'sub/c.md'"))
        assert content.scalar_one() == "# Charlie\n\nThirx body.\n"


def test_a_frontmatter_only_edit_is_ingested(postgres, tmp_path, parsed):
    """The body, and with it the content hash, stays: only the bytes of the file tell the edit."""
    tree(tmp_path)
    sync_documents(postgres.engine, tmp_path)
    write(tmp_path, "b.md", "---\ntitle: Bravo II\nlicense: MIT\n---\nBravo body.\n")
    parsed.clear()
    stats = sync_documents(postgres.engine, tmp_path)
    assert (stats.inserted_or_updated, stats.unchanged, parsed) == (1, 4, ["b.md"])
    with postgres.engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT d.title, d.metadata, p.license_type FROM source_documents d"
                " JOIN provenance p ON p.content_id = d.id WHERE d.source_key = 'b.md'"
            )
        ).one()
    assert tuple(row) == ("Bravo II", {"title": "Bravo II", "license": "MIT"}, "MIT")


def test_bytes_that_parse_to_the_same_rows_are_parsed_once_then_skipped(postgres, tmp_path, parsed):
    """CRLF line ends parse to the same document: nothing is written but the new fingerprint, and the next
    scan of those bytes skips parsing."""
    tree(tmp_path)
    sync_documents(postgres.engine, tmp_path)
    write(tmp_path, "a.md", "# Alpha\r\n\r\nFirst body.\r\n")
    parsed.clear()
    stats = sync_documents(postgres.engine, tmp_path)
    assert (stats.inserted_or_updated, stats.unchanged, parsed) == (0, 5, ["a.md"])
    parsed.clear()
    assert sync_documents(postgres.engine, tmp_path).unchanged == 5 and parsed == []


def test_rows_changed_by_anyone_else_are_put_right(postgres, tmp_path, parsed):
    tree(tmp_path)
    sync_documents(postgres.engine, tmp_path)
    expected = stored(postgres.engine)
    with postgres.engine.begin() as conn:
        conn.execute(sa.text("UPDATE source_documents SET title = 'Vandalised' WHERE source_key = 'a.md'"))
        conn.execute(
            sa.text(
                "UPDATE source_documents SET metadata = '{\"x\": 1}' WHERE source_key = 'b.md';"
                " UPDATE provenance SET license_type = 'stolen' WHERE content_id ="
                " (SELECT id FROM source_documents WHERE source_key = 'd.md')"
            )
        )
    parsed.clear()
    stats = sync_documents(postgres.engine, tmp_path)
    assert sorted(parsed) == ["a.md", "b.md", "d.md"]
    assert (stats.inserted_or_updated, stats.unchanged) == (2, 3)  # d.md: only its provenance row
    assert stored(postgres.engine) == expected


def test_new_reading_rules_or_defaults_parse_everything_again(postgres, tmp_path, parsed, monkeypatch):
    tree(tmp_path)
    sync_documents(postgres.engine, tmp_path)
    parsed.clear()
    defaults = {"local": ProvenanceDefaults(retention_years=9)}
    stats = sync_documents(postgres.engine, tmp_path, (), defaults)
    assert len(parsed) == 5 and stats.unchanged == 5
    with postgres.engine.connect() as conn:
        years = dict(
            conn.execute(
                sa.text(
                    "SELECT d.source_key, p.retention_years FROM source_documents d"
                    " JOIN provenance p ON p.content_id = d.id"
                )
            ).all()
        )
    assert years == {"a.md": 9, "b.md": 9, "sub/c.md": 9, "d.md": 3, "e.md": 9}
    parsed.clear()
    sync_documents(postgres.engine, tmp_path, (), defaults)
    assert parsed == []
    monkeypatch.setattr(sources_mod, "_reading_rules", lambda: b"rules of a newer release")
    sync_documents(postgres.engine, tmp_path, (), defaults)
    assert len(parsed) == 5


def test_after_any_history_the_rows_equal_a_fresh_ingest_of_the_same_tree(postgres, tmp_path, twin_engine):
    root = tmp_path / "content"
    tree(root)
    defaults = {"*": ProvenanceDefaults(license_type="proprietary")}
    engine = postgres.engine
    sync_documents(engine, root, (), defaults)
    sync_documents(engine, root, (), defaults)
    write(root, "a.md", "# Alpha\n\nFirst body, edited.\n")  # a body edit
    write(root, "b.md", "---\ntitle: Bravo\nlicense: MIT\n---\nBravo body.\n")  # frontmatter only
    (root / "sub/c.md").rename(root / "sub/c2.md")  # a rename: same bytes, another key
    (root / "e.md").unlink()  # a deletion
    write(root, "f.md", "# Foxtrot\n\nNew.\n")  # a new file
    write(root, "d.md", "---\nretention_years: soon\n---\n# Delta\n\nFourth.\n")  # turns bad: kept as it was
    write(root, "g.md", b"# Golf\n\n\xff broken\n")  # bad from the start
    sync_documents(engine, root, (), defaults)
    defaults = {"*": ProvenanceDefaults(license_type="internal", retention_years=5)}
    sync_documents(engine, root, (), defaults)
    stats = sync_documents(engine, root, (), defaults)  # the shortcut's run
    assert stats.unchanged == 4 and {k for _, k, _ in stats.errors} == {"d.md", "g.md"}

    # The fresh database first ingests d.md as it was (a bad file keeps its last good version), then the tree.
    bad_d = (root / "d.md").read_bytes()
    write(root, "d.md", "---\nacquired_at: 2020-01-02\nretention_years: 3\n---\n# Delta\n\nFourth.\n")
    sync_documents(twin_engine, root, (), {"*": ProvenanceDefaults(license_type="proprietary")})
    write(root, "d.md", bad_d)
    sync_documents(twin_engine, root, (), defaults)
    ours, fresh = stored(engine), stored(twin_engine)
    assert set(ours["documents"]) == {"a.md", "b.md", "sub/c2.md", "d.md", "f.md"}
    assert ours == fresh
    # (title, content, hash, metadata, content_type, source_uri, license_type, method, holder, hash, years, acquired)
    b, a = ours["documents"]["b.md"], ours["documents"]["a.md"]
    assert (b[0], b[6], b[10]) == ("Bravo", "MIT", 5)
    assert (a[1], a[6], a[10], a[11]) == ("# Alpha\n\nFirst body, edited.\n", "internal", 5, "document")


@pytest.mark.parametrize("group", [1, 2, 3, 100])
def test_vanished_files_are_found_in_the_ranges_the_scan_reads(
    postgres, tmp_path, parsed, monkeypatch, group
):
    """The scan reads stored fingerprints a key range per group of files; the ranges together cover every
    stored key, so files gone before the first, between two groups and after the last are all deleted,
    and nothing else is. Names mix case, punctuation and non-ASCII, whose orders differ by collation."""
    monkeypatch.setattr(sources_mod, "READ_GROUP_FILES", group)
    names = ["B.md", "a.md", "_x.md", "Ä.md", "ä.md", "z.md", "日本.md", "sub/Z.md", "sub/a b.md", "..md"]
    for i, name in enumerate(names):
        write(tmp_path, name, f"# Page {i}\n\nBody {i}.\n")
    engine = postgres.engine
    assert sync_documents(engine, tmp_path).inserted_or_updated == len(names)
    keys = sorted(names)  # code point order: the scan's
    gone = {keys[0], keys[4], keys[5], keys[-1], keys[-2]}
    for name in gone:
        (tmp_path / name).unlink()
    parsed.clear()
    stats = sync_documents(engine, tmp_path)
    assert (stats.deleted, stats.unchanged, stats.inserted_or_updated, parsed) == (5, 5, 0, [])
    with engine.connect() as conn:
        stored_keys = set(conn.execute(sa.text("SELECT source_key FROM source_documents")).scalars())
    assert stored_keys == set(names) - gone
    # Nothing on disk but a file whose name cannot be a key: every stored document has vanished, and the
    # unreadable name is reported.
    for name in set(names) - gone:
        (tmp_path / name).unlink()
    (tmp_path / os.fsdecode(b"bad\xff.md")).write_text("# Bad\n\nName.\n")
    stats = sync_documents(engine, tmp_path)
    assert stats.deleted == 5 and [k for _, k, _ in stats.errors] == ["bad\\xff.md"]
