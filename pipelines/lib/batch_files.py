"""Request and result files of the OpenAI Batch API for embeddings, and the rules around them. Pure functions.

One line of a request file is one embeddings request (many inputs), identified by a `custom_id`; the
caller keeps which content hashes each `custom_id` carries, in order, so that the response's embedding
`i` maps back to the i-th text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported by the steps that handle vectors, not when the code location loads
    import numpy as np

from pipelines.lib.vectors import VectorDataError, decode_embedding_items

ENDPOINT = "/v1/embeddings"
COMPLETION_WINDOW = "24h"
# The Batch API bills half the synchronous list price.
BATCH_PRICE_FACTOR = 0.5
MODES = ("off", "on", "auto")

# Statuses after which a batch changes no more; 'completed', 'expired' and 'cancelled' may carry output.
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
OPEN_STATUSES = frozenset({"preparing", "validating", "in_progress", "finalizing", "cancelling"})


class BatchFileError(ValueError):
    pass


def request_line(custom_id: str, model: str, texts: Sequence[str], dimensions: int | None) -> bytes:
    body: dict = {"model": model, "input": list(texts), "encoding_format": "base64"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def use_batch_api(mode: str, tokens: int, min_tokens: int, *, has_batch_api: bool, remainder: bool) -> bool:
    """Whether to send `tokens` of pending input through the Batch API.

    `on` sends everything through it except the remainder of an earlier batch round (retries of failed
    lines) below `min_tokens`, which the synchronous path finishes in minutes instead of hours; `auto`
    uses it only at `min_tokens` and above; never for a provider without one (`has_batch_api`).
    """
    if mode not in MODES:
        raise BatchFileError(f"EMBEDDING_BATCH_API must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off" or not has_batch_api or tokens <= 0:
        return False
    if tokens >= min_tokens:
        return True
    return mode == "on" and not remainder


def batch_cost_usd(sync_cost_usd: float) -> float:
    return sync_cost_usd * BATCH_PRICE_FACTOR


def next_poll_delay_s(polls: int, initial_s: float, maximum_s: float) -> float:
    """Exponential backoff between status polls of one batch: initial, 2x, 4x, … capped at maximum."""
    return min(maximum_s, initial_s * math.pow(2, min(polls, 30)))


@dataclass
class ParsedLine:
    """One line of an output or error file: either vectors for `custom_id`, or why its texts failed."""

    line_no: int
    custom_id: str
    vectors: np.ndarray | None = None
    tokens: int = 0
    error: str | None = None


@dataclass
class ParsedFile:
    lines: list[ParsedLine] = field(default_factory=list)
    # Lines that cannot be attributed to a known request (not JSON, no or unknown custom_id, repeated).
    unattributed: list[str] = field(default_factory=list)


def parse_result_line(
    raw: bytes | str, line_no: int, expected_inputs: dict[str, int], dimensions: int
) -> ParsedLine | str:
    """Check one result line against the requests it may answer (custom_id → number of inputs).

    Returns the parsed line, or a reason string when the line cannot be attributed to a request."""
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"line {line_no}: not valid JSON"
    if not isinstance(doc, dict):
        return f"line {line_no}: not a JSON object"
    custom_id = doc.get("custom_id")
    if not isinstance(custom_id, str) or custom_id not in expected_inputs:
        return f"line {line_no}: unknown custom_id {custom_id!r}"
    out = ParsedLine(line_no, custom_id)
    response = doc.get("response") or {}
    if doc.get("error"):
        err = doc["error"]
        out.error = f"batch error {err.get('code', '')}: {err.get('message', '')}".strip()
        return out
    status = response.get("status_code")
    body = response.get("body") or {}
    if status != 200:
        message = (body.get("error") or {}).get("message", "") if isinstance(body, dict) else ""
        out.error = f"HTTP {status} in batch: {message}".strip()
        return out
    try:
        out.vectors = decode_embeddings(body.get("data"), expected_inputs[custom_id], dimensions)
    except BatchFileError as exc:
        out.error = f"line {line_no}: {exc}"
        return out
    usage = body.get("usage") or {}
    out.tokens = int(usage.get("total_tokens") or usage.get("prompt_tokens") or 0)
    return out


def decode_embeddings(data: object, n_inputs: int, dimensions: int) -> np.ndarray:
    """A result line's `data` as an (n_inputs, dimensions) float32 array, checked as the synchronous
    path checks its responses (`decode_embedding_items`)."""
    if not isinstance(data, list):
        raise BatchFileError(f"no embeddings list for {n_inputs} inputs")
    try:
        return decode_embedding_items(
            (
                (item.get("index"), item.get("embedding")) if isinstance(item, dict) else (None, None)
                for item in data
            ),
            n_inputs,
            dimensions,
        )
    except VectorDataError as exc:
        raise BatchFileError(str(exc)) from None
