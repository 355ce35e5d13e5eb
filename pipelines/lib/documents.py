"""Reading source items into documents: decoding, validation, YAML frontmatter. Pure functions."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import itertools
import json
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
# Frontmatter is a handful of keys; these bounds keep a hostile header from costing more than its body.
MAX_FRONTMATTER_CHARS = 64 * 1024
MAX_FRONTMATTER_DEPTH = 32


class SourceItemError(ValueError):
    """An item that cannot be ingested; the message names the reason, the caller names the item."""


@dataclass(frozen=True)
class ParsedDocument:
    source: str
    source_key: str
    title: str | None
    content: str
    metadata: dict = field(default_factory=dict)
    # What the item hashed to as read (bytes and reading rules), where its source has one: markdown files.
    read_fingerprint: str | None = None

    @property
    def content_sha256(self) -> str:
        return sha256_text(self.content)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json_safe(value: object, path: str = "frontmatter", depth: int = 0) -> object:
    """Frontmatter may hold dates and other YAML types that jsonb cannot; keep them as ISO strings.

    Text that Postgres cannot store (NUL, lone surrogates from YAML escapes such as "\\uD800") is
    refused here, naming the key, so one bad header never fails the batch it would have been written in.
    """
    if depth > MAX_FRONTMATTER_DEPTH:
        raise SourceItemError(f"{path} is nested deeper than {MAX_FRONTMATTER_DEPTH} levels")
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = _storable_text(str(k), f"{path}: a key")
            out[key] = _json_safe(v, f"{path}.{key}", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, str):
        return _storable_text(value, path)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return _storable_text(str(value), path)


def _storable_text(text: str, where: str) -> str:
    nul = text.find("\x00")
    if nul != -1:
        raise SourceItemError(f"{where} contains a NUL character at position {nul}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SourceItemError(
            f"{where} contains an unpaired surrogate (U+{ord(text[exc.start]):04X}) at position {exc.start}"
        ) from None
    return text


class _FrontmatterLoader(yaml.SafeLoader):
    """SafeLoader without aliases: an anchor referenced many times ("billion laughs") expands a few
    hundred bytes into gigabytes, and frontmatter never needs one."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise SourceItemError(
                f"YAML frontmatter uses an alias (*{event.anchor}) at line {event.start_mark.line + 2};"
                " aliases are not allowed"
            )
        # Counted here rather than caught as a RecursionError deep inside the composer.
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_FRONTMATTER_DEPTH:
                mark = self.peek_event().start_mark
                raise SourceItemError(
                    f"YAML frontmatter is nested deeper than {MAX_FRONTMATTER_DEPTH} levels at line {mark.line + 2}"
                )
            return super().compose_node(parent, index)  # type: ignore[arg-type]
        finally:
            self._depth -= 1


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
    if len(block) > MAX_FRONTMATTER_CHARS:
        raise SourceItemError(
            f"frontmatter is {len(block):,} characters, over the {MAX_FRONTMATTER_CHARS:,}-character limit"
        )
    try:
        meta = yaml.load(block, Loader=_FrontmatterLoader) if block.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        raise SourceItemError(f"broken YAML frontmatter{where}: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise SourceItemError(
            f"YAML frontmatter is nested deeper than {MAX_FRONTMATTER_DEPTH} levels"
        ) from None
    except ValueError as exc:
        # PyYAML builds dates itself: `2024-02-30` matches its timestamp pattern and fails in `datetime`.
        raise SourceItemError(f"YAML frontmatter has a value that is not valid: {exc}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise SourceItemError(f"frontmatter must be a mapping, got {type(meta).__name__}")
    safe = _json_safe(meta)
    assert isinstance(safe, dict)
    return safe, body


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


def read_item_bytes(
    path: str | os.PathLike[str],
    max_bytes: int = DEFAULT_MAX_BYTES,
    root: str | os.PathLike[str] | None = None,
) -> bytes:
    """The bytes of one regular file. A link is followed only to a regular file inside `root`: a link to the
    password file would otherwise be ingested and sent to the embeddings API, a named pipe would hang
    the run and a device such as /dev/zero would be read until memory ran out."""
    target = os.fspath(path)
    # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: a link fails with ELOOP and is
    # resolved below, so that the common case (no link) costs no lstat of its own.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        if exc.errno != errno.ELOOP or not os.path.islink(target):
            raise SourceItemError(f"cannot open: {exc.strerror}") from None
        target = os.path.realpath(target)
        if root is not None:
            real_root = os.path.realpath(root)
            if os.path.commonpath([real_root, target]) != real_root:
                raise SourceItemError("symbolic link leads outside the content directory") from None
        try:
            # The resolved path is final: a link swapped in meanwhile fails here rather than being followed.
            fd = os.open(target, flags)
        except OSError as again:
            raise SourceItemError(f"cannot open: {again.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceItemError(f"not a regular file ({_file_kind(st.st_mode)})")
        if st.st_size > max_bytes:
            # Checked before reading so a huge file never lands in memory.
            raise SourceItemError(f"file is {st.st_size:,} bytes, over the {max_bytes:,}-byte limit")
        raw = _read_capped(fd, st.st_size, max_bytes)
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise SourceItemError(f"file grew past the {max_bytes:,}-byte limit while it was read")
    return raw


def _read_capped(fd: int, size: int, max_bytes: int) -> bytes:
    """The file's bytes to EOF, or the first max_bytes + 1 of them when it grew past the limit after fstat
    (the caller refuses it; it is never read whole). Sized by fstat: a buffered read(max_bytes + 1)
    allocates the whole limit for every file, which cost more than the reading on an unchanged re-run."""
    parts: list[bytes] = []
    total = 0
    want = min(size, max_bytes) + 1  # one byte more than expected: a grown file shows at once
    while total <= max_bytes:
        chunk = os.read(fd, want)
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
        if total == size and len(parts) == 1:
            # All of the file fstat saw, in one read: a read for its end would find what an append after
            # this one would, and costs a system call per file on an unchanged re-run.
            break
        want = min(max_bytes + 1 - total, 1 << 20)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def printable_file_name(name: str) -> str:
    """A name from the file system as text that can be shown and stored: bytes that are not UTF-8
    (os.walk hands them over as surrogate escapes) become \\xNN."""
    if name.isascii():
        return name  # nothing to escape, and most names are
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def row_document(table: str, key, title, texts: dict[str, object]) -> ParsedDocument:
    """A document from a table row: the configured text columns, each under its column name."""
    parts = [f"## {col}\n\n{val}" for col, val in texts.items() if val is not None and str(val).strip()]
    if not parts:
        raise SourceItemError("every configured text column is empty")
    content = _storable_text("\n\n".join(parts), "text")
    return ParsedDocument(
        source=f"table:{table}",
        source_key=str(key),
        title=_storable_text(str(title), "title") if title is not None else f"{table} {key}",
        content=content,
        metadata={"table": table, "columns": list(texts)},
    )


def table_documents(
    table: str,
    text_columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    seen: set[str],
    errors: list[tuple[str, str]],
) -> Iterator[ParsedDocument]:
    """Documents from rows of (key, title, *text columns), yielded as the rows come: every key read joins
    `seen`, and each refused row adds (key, reason) to `errors`.

    The rows must come in key order (rows sharing a key next to each other, NULL keys anywhere): then a
    duplicated key is found by comparing neighbours, and no more than one row is held. A NULL key cannot
    name a document, and a key shared by several rows is ambiguous: those rows are refused by name while
    the table's other rows go on. A duplicated key still counts as seen, so the version ingested before
    stays rather than being deleted as vanished.
    """
    nulls = 0
    for key, group in itertools.groupby(rows, key=lambda row: None if row[0] is None else str(row[0])):
        if key is None:
            nulls += sum(1 for _ in group)
            continue
        seen.add(key)
        count = 0
        row: Sequence[object] | None = None
        for each in group:  # the first row is kept; the others are only counted
            count, row = count + 1, row or each
        if count > 1:
            errors.append((key, f"{count} rows share this key; keys must be unique"))
            continue
        assert row is not None
        try:
            yield row_document(table, key, row[1], dict(zip(text_columns, row[2:], strict=True)))
        except SourceItemError as exc:
            errors.append((key, str(exc)))
    if nulls:
        errors.append(("NULL", f"{nulls} row(s) have a NULL key and cannot be ingested"))


def metadata_json(meta: dict) -> str:
    return json.dumps(meta, ensure_ascii=False, sort_keys=True)
