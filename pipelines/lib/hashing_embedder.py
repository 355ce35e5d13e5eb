"""The offline embedder: signed feature hashing of words and character n-grams, L2-normalised.

Deterministic across processes and machines (no salted `hash()`), and works for Japanese text,
which has no spaces, through the character n-grams.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
# Distinct odd multipliers give independent-enough hashes of n-gram code points.
_MULT = np.array([0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F], dtype=np.uint64)
_MASK32 = np.uint64(0xFFFFFFFF)


def _char_ngram_hashes(text: str, n: int) -> np.ndarray:
    codes = np.frombuffer(text.lower().encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < n:
        return np.empty(0, dtype=np.uint64)
    h = np.full(len(codes) - n + 1, n, dtype=np.uint64)
    for k in range(n):
        h = (h * _MULT[k] + codes[k : len(codes) - n + 1 + k]) & _MASK32
    # A final mix so nearby code points spread over all buckets.
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x2C1B3C6D)) & _MASK32
    h ^= h >> np.uint64(12)
    return h


def embed_text(text: str, dimensions: int) -> np.ndarray:
    words = [w.lower() for w in _WORD.findall(text)]
    word_h = np.fromiter((zlib.crc32(w.encode("utf-8")) for w in words), dtype=np.uint64, count=len(words))
    feats = np.concatenate([word_h, _char_ngram_hashes(text, 2), _char_ngram_hashes(text, 3)])
    weights = np.concatenate([np.full(len(word_h), 2.0), np.full(len(feats) - len(word_h), 1.0)])
    vec = np.zeros(dimensions, dtype=np.float64)
    if len(feats):
        buckets = (feats % np.uint64(dimensions)).astype(np.int64)
        signs = np.where((feats >> np.uint64(31)) & np.uint64(1), -1.0, 1.0)
        np.add.at(vec, buckets, signs * weights)
    norm = float(np.linalg.norm(vec))
    if norm == 0:
        vec[0] = 1.0
        norm = 1.0
    return (vec / norm).astype(np.float32)


def embed_texts(texts: list[str], dimensions: int) -> np.ndarray:
    if not texts:
        return np.zeros((0, dimensions), dtype=np.float32)
    return np.stack([embed_text(t, dimensions) for t in texts])
