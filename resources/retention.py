"""Per-source provenance and retention defaults, from the `RETENTION_DEFAULTS` environment variable."""

from __future__ import annotations

import os

from pipelines.lib.retention import ProvenanceDefaults, parse_retention_defaults

RETENTION_DEFAULTS_ENV = "RETENTION_DEFAULTS"


def retention_defaults_from_env() -> dict[str, ProvenanceDefaults]:
    """Unset or empty means no defaults: retention null (keep forever) and built-in terms."""
    return parse_retention_defaults(os.environ.get(RETENTION_DEFAULTS_ENV))
