"""Reading source items into documents: decoding, validation, YAML frontmatter. Pure functions."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_MAX_BYTES = 5 * 1024 * 1024


class SourceItemError(ValueError):
    """An item that cannot be ingested; the message names the reason, the caller names the item."""


@dataclass(frozen=True)
class ParsedDocument:
    source: str
    source_key: str
    title: str | None
    content: str
    metadata: dict = field(default_factory=dict)

    @property
    def content_sha256(self) -> str:
        return sha256_text(self.content)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json_safe(value):
    """Frontmatter may hold dates and other YAML types that jsonb cannot; keep them as ISO strings."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def decode_text(raw: bytes) -> str:
    if not raw.strip():
        raise SourceItemError("empty file")
    nul = raw.find(b"\x00")
    if nul != -1:
        raise SourceItemError(f"contains a NUL byte at offset {nul}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceItemError(f"invalid UTF-8 at byte {exc.start}: {exc.reason}") from None
    return text.removeprefix("\ufeff")


def split_frontmatter(text: str) -> tuple[dict, str]:
    """Return (frontmatter mapping, body). Text without a leading `---` fence has no frontmatter."""
    normalised = text.replace("\r\n", "\n")
    if not normalised.startswith("---\n"):
        return {}, normalised
    end = normalised.find("\n---", 3)
    while end != -1 and normalised[end + 4 : end + 5] not in ("\n", ""):
        end = normalised.find("\n---", end + 4)
    if end == -1:
        raise SourceItemError("frontmatter opened with '---' is never closed")
    block = normalised[4:end]
    body = normalised[end + 4 :].removeprefix("\n")
    try:
        meta = yaml.safe_load(block) if block.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        raise SourceItemError(f"broken YAML frontmatter{where}: {getattr(exc, 'problem', exc)}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise SourceItemError(f"frontmatter must be a mapping, got {type(meta).__name__}")
    return _json_safe(meta), body


def first_heading(body: str) -> str | None:
    for line in body.splitlines():
        if line.startswith("# "):
            return line[2:].strip() or None
    return None


def parse_markdown(raw: bytes, source_key: str, source: str = "local") -> ParsedDocument:
    text = decode_text(raw)
    meta, body = split_frontmatter(text)
    if not body.strip():
        raise SourceItemError("no content after the frontmatter")
    title = meta.get("title")
    title = str(title) if title is not None else first_heading(body) or Path(source_key).stem
    return ParsedDocument(source=source, source_key=source_key, title=title, content=body, metadata=meta)


def read_markdown_file(
    path: str | os.PathLike, source_key: str, max_bytes: int = DEFAULT_MAX_BYTES
) -> ParsedDocument:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            # Checked before reading so a huge file never lands in memory.
            raise SourceItemError(f"file is {size:,} bytes, over the {max_bytes:,}-byte limit")
        raw = f.read()
    return parse_markdown(raw, source_key)


def row_document(table: str, key, title, texts: dict[str, object]) -> ParsedDocument:
    """A document from a table row: the configured text columns, each under its column name."""
    parts = [f"## {col}\n\n{val}" for col, val in texts.items() if val is not None and str(val).strip()]
    if not parts:
        raise SourceItemError("every configured text column is empty")
    content = "\n\n".join(parts)
    if "\x00" in content:
        raise SourceItemError("contains a NUL character")
    return ParsedDocument(
        source=f"table:{table}",
        source_key=str(key),
        title=str(title) if title is not None else f"{table} {key}",
        content=content,
        metadata={"table": table, "columns": list(texts)},
    )


def metadata_json(meta: dict) -> str:
    return json.dumps(meta, ensure_ascii=False, sort_keys=True)
