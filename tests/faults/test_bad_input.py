"""Bad source items and hostile content: each is refused by name while every good item goes on."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import stat
import unicodedata

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.sources import source_documents
from pipelines.lib.chunking import LONG_LINE_CHARS, _segments, chunk_markdown
from pipelines.lib.documents import SourceItemError, parse_markdown, split_frontmatter
from resources.sources import ContentSourcesResource, TableSource

GOOD = "# Good\n\nA page that must be ingested whatever its neighbours hold.\n"


def _ingest(postgres, sources) -> tuple[dg.ExecuteInProcessResult, dict[str, str]]:
    result = dg.materialize([source_documents], resources={"postgres": postgres, "content_sources": sources})
    with postgres.connect() as conn:
        errors = dict(conn.execute(sa.text("SELECT source_key, error FROM ingestion_errors")).all())
    return result, errors


def _keys(postgres) -> set[str]:
    with postgres.connect() as conn:
        return set(conn.execute(sa.text("SELECT source_key FROM source_documents")).scalars())


# Frontmatter that used to fail the whole step (or exhaust memory): name → (file text, words the reason has).
BAD_FRONTMATTER = {
    "feb30.md": ("---\nacquired_at: 2024-02-30\n---\n# A\n\nbody\n", "not valid"),
    "nul-title.md": ('---\ntitle: "bad\\0title"\n---\n# A\n\nbody\n', "NUL"),
    "surrogate.md": ('---\ntitle: "\\uD800"\n---\n# A\n\nbody\n', "surrogate"),
    "deep.md": ("---\na: " + "[" * 20_000 + "]" * 20_000 + "\n---\n# A\n\nbody\n", "nested deeper"),
    "laughs.md": (
        "---\n"
        + 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
        + "---\n# A\n\nbody\n",
        "alias",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FRONTMATTER))
def test_hostile_frontmatter_is_refused_with_its_reason(name):
    text, reason = BAD_FRONTMATTER[name]
    with pytest.raises(SourceItemError, match=reason):
        parse_markdown(text.encode(), name)


def test_frontmatter_without_aliases_still_parses_nested_values():
    meta, body = split_frontmatter("---\ntitle: T\ntags: [a, b]\nnested: {x: {y: 1}}\n---\nbody\n")
    assert meta == {"title": "T", "tags": ["a", "b"], "nested": {"x": {"y": 1}}} and body == "body\n"


def test_bad_files_are_each_reported_and_good_files_still_ingested(postgres, tmp_path):
    root = tmp_path / "content"
    root.mkdir()
    (root / "good.md").write_text(GOOD)
    for name, (text, _) in BAD_FRONTMATTER.items():
        (root / name).write_text(text, encoding="utf-8", errors="surrogatepass")
    # A name that is not UTF-8 (Latin-1 "é"); os.walk hands it over with surrogate escapes.
    (root.joinpath(os.fsdecode(b"caf\xe9.md"))).write_text(GOOD)
    (tmp_path / "outside.md").write_text("# Secret\n\nroot:x:0:0:outside the content root\n")
    (root / "passwd.md").symlink_to(tmp_path / "outside.md")
    (root / "zero.md").symlink_to("/dev/zero")
    os.mkfifo(root / "pipe.md")
    (root / "inside.md").symlink_to(root / "good.md")

    result, errors = _ingest(postgres, ContentSourcesResource(content_dir=str(root)))

    assert result.success
    assert _keys(postgres) == {"good.md", "inside.md"}
    for name, (_, reason) in BAD_FRONTMATTER.items():
        assert reason in errors[name], (name, errors.get(name))
    assert "not valid UTF-8" in errors["caf\\xe9.md"]
    assert "outside the content directory" in errors["passwd.md"]
    assert "outside the content directory" in errors["zero.md"]
    assert "named pipe" in errors["pipe.md"]
    with postgres.connect() as conn:
        stored = " ".join(conn.execute(sa.text("SELECT content FROM source_documents")).scalars())
    assert "root:x:0:0" not in stored


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a device node needs root")
def test_a_device_node_inside_the_root_is_not_read(postgres, tmp_path):
    (tmp_path / "good.md").write_text(GOOD)
    os.mknod(tmp_path / "null.md", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    result, errors = _ingest(postgres, ContentSourcesResource(content_dir=str(tmp_path)))
    assert result.success and _keys(postgres) == {"good.md"}
    assert "character device" in errors["null.md"]


def test_an_empty_content_directory_deletes_nothing(postgres, tmp_path):
    (tmp_path / "good.md").write_text(GOOD)
    sources = ContentSourcesResource(content_dir=str(tmp_path))
    assert _ingest(postgres, sources)[0].success
    (tmp_path / "good.md").unlink()
    result, errors = _ingest(postgres, sources)
    assert result.success and _keys(postgres) == {"good.md"}
    assert "no markdown files" in errors[str(tmp_path.resolve())]


def test_table_rows_with_null_or_duplicate_keys_are_refused_and_the_rest_ingested(postgres, tmp_path):
    (tmp_path / "good.md").write_text(GOOD)
    with postgres.connect() as conn:
        conn.execute(sa.text("CREATE TABLE faq (id int, q text)"))
        conn.execute(sa.text("INSERT INTO faq VALUES (1, 'one'), (2, 'two'), (2, 'again'), (NULL, 'none')"))
        conn.execute(sa.text("CREATE TABLE other (id int, q text)"))
        conn.execute(sa.text("INSERT INTO other VALUES (1, 'fine')"))
        conn.commit()
    sources = ContentSourcesResource(
        content_dir=str(tmp_path),
        tables=[
            TableSource(table="faq", key_column="id", text_columns=["q"]),
            TableSource(table="other", key_column="id", text_columns=[]),
            TableSource(table="pg_authid", key_column="oid", text_columns=["rolname"]),
        ],
    )
    result, _ = _ingest(postgres, sources)
    assert result.success
    with postgres.connect() as conn:
        rows = conn.execute(sa.text("SELECT source, source_key FROM source_documents ORDER BY 1, 2")).all()
        by_source = conn.execute(sa.text("SELECT source, source_key, error FROM ingestion_errors")).all()
    assert [tuple(r) for r in rows] == [("local", "good.md"), ("table:faq", "1")]
    reasons = {(s, k): e for s, k, e in by_source}
    assert "share this key" in reasons[("table:faq", "2")]
    assert "NULL key" in reasons[("table:faq", "NULL")]
    assert "text_columns is empty" in reasons[("table:other", "other")]
    assert "system catalog" in reasons[("table:pg_authid", "pg_authid")]


@pytest.mark.parametrize(
    "text", ["x" * 300_000, "あ" * 300_000, "# T\n\nintro\n\n" + "y" * 50_000 + "\n\nend.\n"]
)
def test_long_unbroken_runs_reach_the_splitter_in_bounded_windows_with_exact_spans(text):
    segments = _segments(text)
    assert segments[0][0] == 0 and segments[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(segments))
    assert max(len(line) for s, e in segments for line in text[s:e].split("\n")) <= LONG_LINE_CHARS
    chunks = chunk_markdown(text)
    assert all(text[c.char_start : c.char_end] == c.content for c in chunks)
    covered = bytearray(len(text))
    for c in chunks:
        covered[c.char_start : c.char_end] = b"\x01" * (c.char_end - c.char_start)
    assert all(covered[i] or ch.isspace() for i, ch in enumerate(text))


def test_ordinary_markdown_is_one_segment_so_its_chunks_do_not_change():
    text = "# Title\n\n" + "\n\n".join(f"Paragraph {i} " + "words " * 200 for i in range(20))
    assert _segments(text) == [(0, len(text))]


def test_an_acquisition_date_in_the_future_is_refused_by_file_and_field(postgres, tmp_path):
    """acquired_at is when the content was acquired: a date later than now plus a day of clock skew is a
    typo or a placeholder, refused by name; an earlier version of the file is kept, and a date just inside
    the skew (an author's clock ahead of ours) is accepted."""
    root = tmp_path / "content"
    root.mkdir()
    (root / "good.md").write_text(GOOD)
    (root / "later.md").write_text("---\nacquired_at: 2019-04-01\n---\n# Later\n\nFirst version.\n")
    result, errors = _ingest(postgres, ContentSourcesResource(content_dir=str(root)))
    assert result.success and errors == {}

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)
    (root / "far.md").write_text("---\nacquired_at: 2999-01-01\n---\n# Far\n\nFrom the future.\n")
    (root / "later.md").write_text(
        "---\nacquired_at: 2999-01-01T00:00:00Z\n---\n# Later\n\nSecond version.\n"
    )
    (root / "soon.md").write_text(f"---\nacquired_at: {soon.isoformat()}\n---\n# Soon\n\nClock ahead.\n")
    result, errors = _ingest(postgres, ContentSourcesResource(content_dir=str(root)))

    assert result.success
    assert set(errors) == {"far.md", "later.md"}
    for reason in errors.values():
        assert "acquired_at" in reason and "2999-01-01" in reason and "future" in reason, reason
    assert _keys(postgres) == {"good.md", "later.md", "soon.md"}
    with postgres.connect() as conn:
        kept = conn.execute(
            sa.text(
                "SELECT d.content, p.acquired_at FROM source_documents d"
                " JOIN provenance p ON p.content_id = d.id WHERE d.source_key = 'later.md'"
            )
        ).one()
        stored_soon = conn.execute(
            sa.text(
                "SELECT p.acquired_at FROM source_documents d"
                " JOIN provenance p ON p.content_id = d.id WHERE d.source_key = 'soon.md'"
            )
        ).scalar_one()
    assert kept.content.strip().endswith("First version.")
    assert kept.acquired_at.year == 2019
    assert abs(stored_soon - soon) < dt.timedelta(seconds=1)


def test_nfc_and_nfd_spellings_of_one_file_name_are_one_document(postgres, tmp_path):
    """A name typed on one system and copied from another (macOS writes NFD) is the same name: one
    document, keyed by its NFC spelling, whichever spelling is on disk. Two files whose names differ only
    so are a collision, refused by both names: nothing stored under the name is replaced or deleted."""
    nfc, nfd = unicodedata.normalize("NFC", "café.md"), unicodedata.normalize("NFD", "café.md")
    assert nfc != nfd
    root = tmp_path / "content"
    root.mkdir()
    (root / "good.md").write_text(GOOD)
    (root / nfd).write_text("# Café\n\nWritten on a Mac.\n")
    result, errors = _ingest(postgres, ContentSourcesResource(content_dir=str(root)))
    assert result.success and errors == {}
    assert _keys(postgres) == {"good.md", nfc}

    (root / nfd).rename(root / nfc)  # the same file, now spelled NFC: still the one document, unchanged
    result, errors = _ingest(postgres, ContentSourcesResource(content_dir=str(root)))
    assert result.success and errors == {}
    assert _keys(postgres) == {"good.md", nfc}
    assert result.asset_materializations_for_node("source_documents")[0].metadata["deleted"].value == 0

    (root / nfd).write_text("# Café\n\nA second file under the other spelling.\n")
    result, errors = _ingest(postgres, ContentSourcesResource(content_dir=str(root)))
    assert result.success
    assert set(errors) == {nfc}
    assert ascii(nfc) in errors[nfc] and ascii(nfd) in errors[nfc] and "Unicode" in errors[nfc], errors
    assert _keys(postgres) == {"good.md", nfc}
    with postgres.connect() as conn:
        content = conn.execute(
            sa.text("SELECT content FROM source_documents WHERE source_key = :k"), {"k": nfc}
        ).scalar_one()
    assert "Written on a Mac." in content
