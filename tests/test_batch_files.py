"""Batch API request and result files, and the rules of batch mode: pure functions."""

import base64
import json

import numpy as np
import pytest

from pipelines.embedders import PROVIDERS
from pipelines.lib.batch_files import (
    BatchFileError,
    batch_cost_usd,
    next_poll_delay_s,
    parse_result_line,
    request_line,
    use_batch_api,
)


def test_request_line_is_one_json_request_to_the_embeddings_endpoint():
    line = request_line("r7", "text-embedding-3-small", ["a", "ü"], None)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    doc = json.loads(line)
    assert doc == {
        "custom_id": "r7",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "text-embedding-3-small", "input": ["a", "ü"], "encoding_format": "base64"},
    }
    assert json.loads(request_line("r", "m", ["a"], 256))["body"]["dimensions"] == 256


@pytest.mark.parametrize(
    ("mode", "tokens", "remainder", "provider", "expected"),
    [
        ("off", 10**9, False, "openai", False),
        ("auto", 999, False, "openai", False),
        ("auto", 1000, False, "openai", True),
        ("on", 5, False, "openai", True),
        ("on", 5, True, "openai", False),  # a small remainder of retries goes synchronously
        ("on", 5000, True, "openai", True),
        ("on", 5000, False, "local", False),
        ("on", 0, False, "openai", False),
    ],
)
def test_when_the_batch_api_is_used(mode, tokens, remainder, provider, expected):
    has = PROVIDERS[provider].batch_api
    assert use_batch_api(mode, tokens, 1000, has_batch_api=has, remainder=remainder) is expected


def test_unknown_mode_is_named():
    with pytest.raises(BatchFileError, match="'sometimes'"):
        use_batch_api("sometimes", 1, 1, has_batch_api=True, remainder=False)


def test_batch_price_is_half_and_polls_back_off_to_a_cap():
    assert batch_cost_usd(195.0) == 97.5
    assert [next_poll_delay_s(n, 60, 1800) for n in range(7)] == [60, 120, 240, 480, 960, 1800, 1800]


def _b64(vec) -> str:
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()


def _line(custom_id="r0", status=200, vectors=((1.0, 2.0), (3.0, 4.0)), error=None) -> str:
    body = (
        {
            "data": [{"index": i, "embedding": _b64(v)} for i, v in enumerate(vectors)],
            "usage": {"total_tokens": 9},
        }
        if status == 200
        else {"error": {"message": "refused"}}
    )
    return json.dumps(
        {"custom_id": custom_id, "response": {"status_code": status, "body": body}, "error": error}
    )


def test_a_good_line_gives_its_vectors_in_input_order():
    parsed = parse_result_line(_line(), 1, {"r0": 2}, 2)
    assert parsed.error is None and parsed.tokens == 9
    assert np.array_equal(parsed.vectors, np.array([[1, 2], [3, 4]], dtype=np.float32))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"custom_id": "r0", "respo', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (_line(custom_id="r9"), "unknown custom_id 'r9'"),
    ],
)
def test_lines_that_cannot_be_attributed_are_refused_with_the_line_number(raw, reason):
    assert parse_result_line(raw, 4, {"r0": 2}, 2) == f"line 4: {reason}"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_line(status=400), "HTTP 400 in batch: refused"),
        (_line(vectors=((1.0, 2.0, 3.0), (1.0, 2.0, 3.0))), "dimension 3, expected 2"),
        (_line(vectors=((1.0, float("nan")), (1.0, 2.0))), "NaN or infinite"),
        (_line(vectors=((1.0, 2.0),)), "1 embeddings for 2 inputs"),
        (_line(error={"code": "batch_expired", "message": "not processed"}), "batch_expired: not processed"),
    ],
)
def test_bad_answers_fail_their_request_with_a_reason(raw, reason):
    parsed = parse_result_line(raw, 2, {"r0": 2}, 2)
    assert parsed.custom_id == "r0" and parsed.vectors is None and reason in parsed.error
