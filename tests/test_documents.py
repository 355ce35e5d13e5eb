import os

import pytest

from pipelines.lib import documents
from pipelines.lib.documents import (
    SourceItemError,
    decode_text,
    parse_markdown,
    read_item_bytes,
    row_document,
    split_frontmatter,
)


def test_frontmatter_gives_title_and_metadata():
    doc = parse_markdown(
        b"---\ntitle: Hello\ndate: 2024-02-29\ntags: [a, b]\n---\n# Heading\n\nBody\n", "x.md"
    )
    assert doc.title == "Hello"
    assert doc.metadata == {"title": "Hello", "date": "2024-02-29", "tags": ["a", "b"]}
    assert doc.content == "# Heading\n\nBody\n"


def test_title_falls_back_to_first_heading_then_file_name():
    assert parse_markdown("# 練習のコツ\n\n本文".encode(), "ja/tips.md").title == "練習のコツ"
    assert parse_markdown(b"no heading here", "notes/plain.md").title == "plain"


def test_bom_and_crlf_are_tolerated():
    meta, body = split_frontmatter(decode_text("\ufeff---\r\ntitle: t\r\n---\r\nbody\r\n".encode("utf-8")))
    assert meta == {"title": "t"} and body == "body\n"


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "empty file"),
        (b"  \n\t\n", "empty file"),
        (b"abc\x00def", "NUL byte at offset 3"),
        (b"caf\xe9", "invalid UTF-8 at byte 3"),
        (b"---\ntitle: [unclosed\n---\nbody", "broken YAML frontmatter"),
        (b"---\ntitle: x\nbody without closing fence", "never closed"),
        (b"---\n- a\n- b\n---\nbody", "must be a mapping"),
        (b"---\ntitle: x\n---\n   \n", "no content after the frontmatter"),
    ],
)
def test_bad_input_is_rejected_with_the_reason(raw, reason):
    with pytest.raises(SourceItemError, match=reason):
        parse_markdown(raw, "bad.md")


def test_huge_file_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "huge.md"
    with big.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB on paper, nothing on disk
    with pytest.raises(SourceItemError, match="52,428,800 bytes, over the 5,242,880-byte limit"):
        parse_markdown(read_item_bytes(big), "huge.md")


def _fstat_reporting(monkeypatch, size: int) -> list[int]:
    """os.fstat as the reader sees it reports `size` bytes, as if the file grew right after the call; the
    reads that follow still see the whole file. Returns the byte counts each os.read asked for."""
    real_fstat, real_read = os.fstat, os.read
    asked: list[int] = []

    def fstat(fd):
        st = list(real_fstat(fd))
        st[6] = size  # st_size
        return os.stat_result(st)

    def read(fd, n):
        asked.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(documents.os, "fstat", fstat)
    monkeypatch.setattr(documents.os, "read", read)
    return asked


@pytest.mark.parametrize("size", [1, 4_096, 1_500_000])
def test_a_file_is_read_whole_whatever_its_size(tmp_path, size):
    body = b"# T\n\n" + b"x" * (size - 5) + b"\n"
    (tmp_path / "a.md").write_bytes(body)
    assert (
        parse_markdown(read_item_bytes(tmp_path / "a.md", max_bytes=len(body)), "a.md").content
        == body.decode()
    )


def test_a_file_that_grew_after_fstat_is_read_whole_under_the_limit(tmp_path, monkeypatch):
    body = b"# T\n\n" + b"y" * 3_000_000 + b"\n"
    (tmp_path / "a.md").write_bytes(body)
    asked = _fstat_reporting(monkeypatch, 10)
    assert parse_markdown(read_item_bytes(tmp_path / "a.md"), "a.md").content == body.decode()
    assert max(asked) <= 1 << 20  # past what fstat said, a bounded piece at a time


def test_a_file_that_grew_past_the_limit_after_fstat_is_refused_unread(tmp_path, monkeypatch):
    (tmp_path / "a.md").write_bytes(b"# T\n\n" + b"z" * 2_000_000)
    asked = _fstat_reporting(monkeypatch, 10)
    with pytest.raises(SourceItemError, match="grew past the 1,000-byte limit"):
        parse_markdown(read_item_bytes(tmp_path / "a.md", max_bytes=1_000), "a.md")
    assert sum(asked) <= 1_001  # never more than one byte past the limit


def test_row_document_joins_text_columns_under_their_names():
    doc = row_document(
        "question_templates", 7, "Scales", {"question": "How?", "answer": None, "hint": "Slowly"}
    )
    assert doc.source == "table:question_templates" and doc.source_key == "7"
    assert doc.content == "## question\n\nHow?\n\n## hint\n\nSlowly"
    with pytest.raises(SourceItemError, match="every configured text column is empty"):
        row_document("t", 1, None, {"a": None, "b": "  "})
