"""Secrets out of text that is logged or stored. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Iterable

# OpenAI-style keys (sk-..., sk-proj-...) even when they are not the configured one: a provider or proxy
# may echo any key it was sent.
_API_KEY = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/\-]{8,}=*")
REDACTED = "***"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every configured secret and anything that looks like an API key replaced by ***."""
    for secret in secrets:
        # A very short "secret" would blank ordinary words; keys are never that short.
        if secret and len(secret) >= 6:
            text = text.replace(secret, REDACTED)
    text = _API_KEY.sub(REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
