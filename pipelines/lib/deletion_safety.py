"""Rules that keep a mistake from costing the corpus (docs/deletion-safety.md).

When ingestion may delete the documents gone from a source: a run that would delete more than a bounded share
of a source looks like a wrong setting (CONTENT_DIR unset or pointing elsewhere, a renamed table or key column)
rather than a change to the content, and is refused until an operator says it is meant. And how long the
vectors of deleted chunks stay reusable, so that content coming back is embedded again for free."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_DELETED_VECTOR_GRACE_DAYS = 7.0
DEFAULT_MAX_DOCUMENTS = 20
DEFAULT_MAX_PERCENT = 10.0
# How the refusal tells an operator to allow the deletion: the asset's run config and the environment.
ALLOW_RUN_CONFIG = "ops: {source_documents: {config: {allow_mass_deletion: true}}}"
ALLOW_ENV = "ALLOW_MASS_DELETION=1"
SAMPLE_KEYS = 5


@dataclass(frozen=True)
class DeletionLimits:
    """A deletion is a mass deletion when it is above both bounds: more than `max_documents` documents and
    more than `max_percent` % of the documents the source held before the run."""

    max_documents: int = DEFAULT_MAX_DOCUMENTS
    max_percent: float = DEFAULT_MAX_PERCENT
    allow: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_documents, bool) or not isinstance(self.max_documents, int):
            raise ValueError(f"MASS_DELETION_MAX_DOCUMENTS must be an integer, got {self.max_documents!r}")
        if self.max_documents < 0:
            raise ValueError(f"MASS_DELETION_MAX_DOCUMENTS must be zero or more, got {self.max_documents}")
        if not (math.isfinite(self.max_percent) and 0 <= self.max_percent <= 100):
            raise ValueError(f"MASS_DELETION_MAX_PERCENT must be between 0 and 100, got {self.max_percent}")

    def exceeded_by(self, deleting: int, stored: int) -> bool:
        # In integers where possible: 10 % of 200 is exactly 20, and 20 is not more than it.
        return deleting > self.max_documents and deleting * 100 > self.max_percent * stored


@dataclass(frozen=True)
class MassDeletion:
    """One source's deletion: how many documents it would delete of how many stored, and a few of their keys."""

    source: str
    deleting: int
    stored: int
    sample: tuple[str, ...] = ()

    def describe(self) -> str:
        share = 100.0 * self.deleting / self.stored if self.stored else 100.0
        text = (
            f"{self.deleting} of the {self.stored} stored documents of source {self.source!r} ({share:.0f} %)"
        )
        if self.sample:
            more = self.deleting - len(self.sample)
            text += f", e.g. {', '.join(repr(k) for k in self.sample)}" + (
                f" and {more} more" if more > 0 else ""
            )
        return text


class MassDeletionRefusedError(RuntimeError):
    """The run would delete more of a source than the limits allow; nothing was deleted."""

    def __init__(self, deletions: Sequence[MassDeletion], limits: DeletionLimits, where: str = ""):
        self.deletions = tuple(deletions)
        self.limits = limits
        super().__init__(refusal_message(self.deletions, limits, where))


def refusal_message(deletions: Sequence[MassDeletion], limits: DeletionLimits, where: str = "") -> str:
    lines = [
        "refused to delete documents gone from their source: this run would delete "
        + "; ".join(d.describe() for d in deletions)
        + f". The limit is {limits.max_documents} documents or {limits.max_percent:g} % of a source, whichever"
        " is more. Nothing was deleted.",
        "This is what a wrong setting looks like (CONTENT_DIR unset or pointing elsewhere"
        + (f", now {where}" if where else "")
        + "; a renamed table or key column in SOURCE_TABLES): check it and run again.",
        f"If the deletion is meant, allow it for one run with run config `{ALLOW_RUN_CONFIG}` (launchpad), or"
        f" set {ALLOW_ENV} for the code location; the bounds are MASS_DELETION_MAX_DOCUMENTS and"
        " MASS_DELETION_MAX_PERCENT. See docs/deletion-safety.md.",
    ]
    return "\n".join(lines)


def sample_keys(keys: Sequence[str]) -> tuple[str, ...]:
    return tuple(keys[:SAMPLE_KEYS])
