"""Markdown-aware chunking with heading paths and character spans. Pure functions."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.lib.documents import sha256_text
from pipelines.lib.tokens import estimate_tokens

if TYPE_CHECKING:
    from semantic_text_splitter import MarkdownSplitter

CHUNKER_VERSION = "md-v1"
DEFAULT_MAX_CHARS = 1200
DEFAULT_OVERLAP = 100
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^(```|~~~)")


@dataclass(frozen=True)
class Chunk:
    index: int
    content: str
    char_start: int
    char_end: int
    token_count: int
    heading_path: tuple[str, ...]

    @property
    def content_sha256(self) -> str:
        return sha256_text(self.content)


def chunker_fingerprint(max_chars: int, overlap: int) -> str:
    """Changes whenever chunk boundaries could change, so that documents get re-chunked."""
    return f"{CHUNKER_VERSION}:{max_chars}:{overlap}"


@functools.lru_cache(maxsize=8)
def _splitter(max_chars: int, overlap: int) -> MarkdownSplitter:
    if max_chars <= 0 or overlap < 0 or overlap >= max_chars:
        raise ValueError(f"need 0 <= overlap < max_chars, got max_chars={max_chars}, overlap={overlap}")
    # Imported by the chunking step, not when the code location loads.
    from semantic_text_splitter import MarkdownSplitter

    return MarkdownSplitter(max_chars, overlap=overlap)


def headings(text: str) -> list[tuple[int, int, str]]:
    """(char offset, level, title) of every ATX heading outside fenced code blocks."""
    found = []
    offset = 0
    in_fence = False
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        if _FENCE.match(stripped):
            in_fence = not in_fence
        elif not in_fence:
            m = _HEADING.match(stripped)
            if m:
                found.append((offset, len(m.group(1)), m.group(2).strip()))
        offset += len(line)
    return found


def heading_path_at(heads: list[tuple[int, int, str]], position: int) -> tuple[str, ...]:
    stack: list[tuple[int, str]] = []
    for offset, level, title in heads:
        if offset > position:
            break
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
    return tuple(title for _, title in stack)


# The splitter's cost grows faster than linearly in the length of a run it cannot break (a line with no
# spaces, or Japanese with no punctuation: 200k characters took 20 s, 1 MB 71 s). A line longer than this
# is cut into windows of this size before splitting; ordinary markdown has no such line, so its chunks are
# exactly what the splitter alone gives.
LONG_LINE_CHARS = 8192
_LONG_LINE = re.compile(rf"[^\n]{{{LONG_LINE_CHARS + 1},}}")
_BREAK = re.compile(r"\s|[。、．，！？.,;:!?]")


def _segments(text: str) -> list[tuple[int, int]]:
    """Spans covering `text` in order: the stretches between long lines whole, each long line in windows
    of at most LONG_LINE_CHARS, cut after the last space or punctuation of a window where it has one."""
    spans: list[tuple[int, int]] = []
    position = 0
    for m in _LONG_LINE.finditer(text):
        if m.start() > position:
            spans.append((position, m.start()))
        start = m.start()
        while m.end() - start > LONG_LINE_CHARS:
            window = text[start : start + LONG_LINE_CHARS]
            breaks = [b.end() for b in _BREAK.finditer(window, LONG_LINE_CHARS // 2)]
            cut = start + (breaks[-1] if breaks else LONG_LINE_CHARS)
            spans.append((start, cut))
            start = cut
        spans.append((start, m.end()))
        position = m.end()
    if position < len(text) or not spans:
        spans.append((position, len(text)))
    return spans


def chunk_markdown(
    text: str, max_chars: int = DEFAULT_MAX_CHARS, overlap: int = DEFAULT_OVERLAP
) -> list[Chunk]:
    heads = headings(text)
    splitter = _splitter(max_chars, overlap)
    chunks: list[Chunk] = []
    for seg_start, seg_end in _segments(text):
        for offset, piece in splitter.chunk_indices(text[seg_start:seg_end]):
            start = seg_start + offset
            chunks.append(
                Chunk(
                    index=len(chunks),
                    content=piece,
                    char_start=start,
                    char_end=start + len(piece),
                    token_count=estimate_tokens(piece),
                    heading_path=heading_path_at(heads, start),
                )
            )
    return chunks
