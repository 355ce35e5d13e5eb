import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from pipelines.lib.chunking import chunk_markdown, chunker_fingerprint, heading_path_at, headings

DOC = """# Guide

Intro paragraph.

## Install

```bash
# not a heading, a shell comment
pip install thing
```

### Linux

Use the package manager.

## Usage

Run it.
"""


def test_headings_skip_fenced_code():
    assert [(lvl, t) for _, lvl, t in headings(DOC)] == [
        (1, "Guide"),
        (2, "Install"),
        (3, "Linux"),
        (2, "Usage"),
    ]


def test_heading_path_follows_nesting():
    heads = headings(DOC)
    assert heading_path_at(heads, DOC.index("Use the package")) == ("Guide", "Install", "Linux")
    assert heading_path_at(heads, DOC.index("Run it")) == ("Guide", "Usage")
    assert heading_path_at(heads, 0) == ("Guide",)


def _assert_spans_cover(text, chunks, max_chars):
    covered = [False] * len(text)
    for c in chunks:
        assert text[c.char_start : c.char_end] == c.content
        assert len(c.content) <= max_chars
        for i in range(c.char_start, c.char_end):
            covered[i] = True
    missing = [i for i, ch in enumerate(text) if not covered[i] and not ch.isspace()]
    assert missing == []


@pytest.mark.parametrize("max_chars, overlap", [(60, 0), (120, 20), (2000, 100)])
def test_spans_are_exact_and_cover_the_document(max_chars, overlap):
    chunks = chunk_markdown(DOC, max_chars, overlap)
    _assert_spans_cover(DOC, chunks, max_chars)
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_japanese_text_is_split_at_sentence_boundaries():
    text = "# 練習\n\n" + "".join(f"これは{i}番目の文です。" for i in range(60))
    chunks = chunk_markdown(text, 100, 0)
    _assert_spans_cover(text, chunks, 100)
    assert len(chunks) > 3
    # Every chunk but the heading ends at a sentence end, never mid-sentence.
    assert all(re.search(r"。$", c.content) for c in chunks[1:])


# Reads {"text", "max_chars", "overlap"} on stdin, prints the chunks as JSON.
_CHUNK_IN_CHILD = """
import dataclasses, json, sys
from pipelines.lib.chunking import chunk_markdown
job = json.load(sys.stdin)
chunks = chunk_markdown(job["text"], job["max_chars"], job["overlap"])
print(json.dumps([dataclasses.asdict(c) for c in chunks], ensure_ascii=False))
"""


def _chunks_in_fresh_process(text: str, max_chars: int, overlap: int, hash_seed: str) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-c", _CHUNK_IN_CHILD],
        input=json.dumps({"text": text, "max_chars": max_chars, "overlap": overlap}),
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    return json.loads(out.stdout)


def test_chunking_is_deterministic_and_fingerprinted():
    assert chunk_markdown(DOC, 80, 10) == chunk_markdown(DOC, 80, 10)
    assert chunker_fingerprint(80, 10) != chunker_fingerprint(80, 0)


def test_chunks_are_identical_across_processes():
    """Stored chunks are only reused if another process (another run, another day) cuts the same text the
    same way: two fresh interpreters with different hash seeds must agree, and agree with this one."""
    text = DOC + "\n## 練習\n\n" + "".join(f"これは{i}番目の文です。" for i in range(40))
    first = _chunks_in_fresh_process(text, 80, 10, hash_seed="1")
    second = _chunks_in_fresh_process(text, 80, 10, hash_seed="2")
    assert len(first) > 5
    assert first == second
    here = [dataclasses.asdict(c) for c in chunk_markdown(text, 80, 10)]
    assert json.loads(json.dumps(here, ensure_ascii=False)) == first


def test_invalid_sizes_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        chunk_markdown(DOC, 100, 100)
