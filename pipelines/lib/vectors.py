"""Embedding vectors as a provider returns them, checked before anything is stored. Pure functions."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported by the steps that handle vectors, not when the code location loads
    import numpy as np


class VectorDataError(ValueError):
    """An embeddings payload that cannot be stored; the message names the item and the reason."""


def decode_embedding_items(
    items: Iterable[tuple[object, object]], n_inputs: int, dimensions: int
) -> np.ndarray:
    """(index, embedding) pairs of one response as an (n_inputs, dimensions) float32 array.

    An embedding is a list of floats or base64 little-endian float32 (`encoding_format=base64`). Every
    index must appear once; every vector must have the dimension and be finite with a finite, non-zero
    norm: pgvector computes cosine distance in float32, and a zero vector or one whose squared norm
    overflows (components near 3e38) makes every distance to it NaN, so search would rank it anywhere.
    """
    import numpy as np

    pairs = list(items)
    if len(pairs) != n_inputs:
        raise VectorDataError(f"response has {len(pairs)} embeddings for {n_inputs} inputs")
    out = np.empty((n_inputs, dimensions), dtype=np.float32)
    seen: set[int] = set()
    for index, raw in pairs:
        if not isinstance(index, int) or not 0 <= index < n_inputs or index in seen:
            raise VectorDataError(f"response has a missing, duplicate or out-of-range index {index!r}")
        seen.add(index)
        try:
            if isinstance(raw, str):
                vec = np.frombuffer(base64.b64decode(raw, validate=True), dtype="<f4")
            else:
                vec = np.asarray(raw, dtype=np.float32)
        except (binascii.Error, ValueError, TypeError):
            raise VectorDataError(f"embedding {index} is not valid base64 float32 data") from None
        if vec.shape != (dimensions,):
            raise VectorDataError(
                f"embedding {index} has dimension {vec.shape[0] if vec.ndim else 0}, expected {dimensions}"
            )
        if not np.all(np.isfinite(vec)):
            raise VectorDataError(f"embedding {index} contains NaN or infinite values")
        with np.errstate(over="ignore"):
            squared_norm = np.dot(vec, vec)
        if not np.isfinite(squared_norm) or squared_norm == 0:
            raise VectorDataError(
                f"embedding {index} has a {'zero' if squared_norm == 0 else 'overflowing'} norm;"
                " cosine distance to it is undefined"
            )
        out[index] = vec
    return out


def as_matrix(vectors: object) -> np.ndarray:
    """Rows of vectors as one array, for the write path (numpy imported by the step that writes)."""
    import numpy as np

    return np.asarray(vectors)
