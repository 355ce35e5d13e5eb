"""The source-reader registry: which files under CONTENT_DIR are documents, and what turns a file's bytes
into one. Adding a format (PDF, HTML) is a parse function and one line in `READERS`; the file suffixes a
scan picks up and the reading rules an item's fingerprint hashes both follow from it. Pure."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from pipelines.lib.documents import ParsedDocument, SourceItemError, parse_markdown


@dataclass(frozen=True)
class Reader:
    """Files whose name ends (case-insensitively) with one of `suffixes`, read by `parse(raw, source_key)`."""

    suffixes: tuple[str, ...]
    parse: Callable[[bytes, str], ParsedDocument]


READERS: tuple[Reader, ...] = (Reader((".md", ".markdown"), parse_markdown),)


def suffixes() -> tuple[str, ...]:
    """Every suffix a registered reader takes, lower case."""
    return tuple(s for r in READERS for s in r.suffixes)


def reader_for(name: str) -> Reader | None:
    """The reader of a file name, or None: not a document. Not splitext: it sees no suffix in a name like
    "..md" (tldr's page for `..`)."""
    lowered = name.lower()
    for reader in READERS:
        if lowered.endswith(reader.suffixes):
            return reader
    return None


def reader_modules() -> list[ModuleType]:
    """The modules holding the registered readers' code: part of the reading rules an item's fingerprint
    hashes, so that a change to any reader re-reads every item once."""
    names = sorted({r.parse.__module__ for r in READERS})
    return [sys.modules[name] for name in names]


def parse_item(raw: bytes, source_key: str) -> ParsedDocument:
    """The document in a file's bytes, by the reader its name picks."""
    reader = reader_for(source_key)
    if reader is None:
        raise SourceItemError(f"no reader takes {source_key!r} (readers take {', '.join(suffixes())})")
    return reader.parse(raw, source_key)
