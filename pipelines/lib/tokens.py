"""Token counts: exact with tiktoken when its encoding is cached locally, else a conservative estimate."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
from pathlib import Path

_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def _tiktoken_cache_file() -> Path:
    # Mirrors tiktoken's own cache lookup so we only use it when it will not try the network.
    base = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    base = base or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return Path(base) / hashlib.sha1(_CL100K_URL.encode()).hexdigest()


@functools.cache
def _encoding():
    try:
        import tiktoken
    except ImportError:
        return None
    if not _tiktoken_cache_file().is_file():
        return None
    try:
        return tiktoken.get_encoding("cl100k_base")
    except Exception:
        return None


def conservative_estimate(text: str) -> int:
    """An over-estimate of cl100k tokens: ~3 ASCII characters per token, 1.5 tokens per other character.

    English runs ~4 characters per token and CJK ~1 token per character, so this errs high, which
    is the safe side for request limits and budgets.
    """
    ascii_chars = sum(1 for ch in text if ord(ch) < 128) if not text.isascii() else len(text)
    other = len(text) - ascii_chars
    return max(1, math.ceil(ascii_chars / 3 + other * 1.5))


def estimate_tokens(text: str) -> int:
    enc = _encoding()
    if enc is not None:
        return max(1, len(enc.encode(text, disallowed_special=())))
    return conservative_estimate(text)


def tokenizer_name() -> str:
    return "tiktoken cl100k_base" if _encoding() is not None else "conservative estimate"
