"""The retrieval evaluation's pure rules: parsing a question set, recall@k / MRR, the check and the gate."""

import pytest

from pipelines.lib.retrieval_eval import (
    QuestionSetError,
    Score,
    document_ranking,
    first_relevant_rank,
    gate_switch,
    judge_run,
    parse_questions,
    score,
)


def test_parse_questions_accepts_a_key_or_a_list_and_names_the_bad_line():
    qs = parse_questions(
        ['{"question": "a?", "expected": "en/x.md"}', "", '{"question": " b? ", "expected": ["k1", "k2"]}'],
        "set.jsonl",
    )
    assert [(q.text, q.expected) for q in qs.questions] == [("a?", ("en/x.md",)), ("b?", ("k1", "k2"))]
    for line, reason in (
        ("not json", "not JSON"),
        ('["a"]', "an object"),
        ('{"question": "", "expected": "k"}', "`question`"),
        ('{"question": "q", "expected": []}', "`expected`"),
        ('{"question": "q", "expected": [1]}', "`expected`"),
    ):
        with pytest.raises(QuestionSetError, match=rf"set\.jsonl line 2: .*{reason}"):
            parse_questions(['{"question": "ok", "expected": "k"}', line], "set.jsonl")
    with pytest.raises(QuestionSetError, match="no questions"):
        parse_questions(["", "  "], "empty.jsonl")


def test_digest_follows_the_questions_not_the_file_layout():
    a = parse_questions(['{"question": "q", "expected": ["k"]}'], "a")
    b = parse_questions(["", '{"expected": ["k"],  "question": "q"}'], "b")
    c = parse_questions(['{"question": "q", "expected": ["k2"]}'], "a")
    assert a.digest == b.digest != c.digest


def test_documents_rank_once_at_their_best_chunk_and_keys_match_with_or_without_source():
    docs = document_ranking([("local", "a"), ("local", "b"), ("local", "a"), ("table", "a"), ("local", "c")])
    assert docs == [("local", "a"), ("local", "b"), ("table", "a"), ("local", "c")]
    assert first_relevant_rank(docs, ["c"]) == 4
    assert first_relevant_rank(docs, ["table:a"]) == 3
    assert first_relevant_rank(docs, ["b", "c"]) == 2
    assert first_relevant_rank(docs, ["zzz", "local:zzz"]) is None


def test_recall_and_mrr_against_a_hand_computation():
    ranks = [1, 3, None, 6, 2]
    s = score(ranks, k=5)
    # answered within 5: ranks 1, 3 and 2 → 3 of 5; MRR = (1 + 1/3 + 0 + 1/6 + 1/2) / 5
    assert s.recall_at_k == pytest.approx(3 / 5)
    assert s.mrr == pytest.approx((1 + 1 / 3 + 1 / 6 + 1 / 2) / 5)
    assert score(ranks, k=6).recall_at_k == pytest.approx(4 / 5)
    with pytest.raises(ValueError):
        score([], 5)


def test_the_check_fails_below_the_floor_or_on_a_drop_beyond_the_tolerance():
    good = Score(10, 5, 0.8, 0.6)
    assert judge_run(good, None, floor=0.8, max_drop=0.05).passed  # exactly on the floor
    low = judge_run(Score(10, 5, 0.7, 0.6), None, floor=0.8, max_drop=0.05)
    assert not low.passed and "below the floor" in low.describe()
    # A fall of exactly the tolerance passes; a hair more fails, for recall and MRR alike.
    assert judge_run(Score(10, 5, 0.75, 0.55), good, floor=0.0, max_drop=0.05).passed
    mrr_drop = judge_run(Score(10, 5, 0.8, 0.54), good, floor=0.0, max_drop=0.05)
    assert not mrr_drop.passed and "MRR fell from 0.600 to 0.540" in mrr_drop.describe()
    recall_drop = judge_run(Score(10, 5, 0.7, 0.6), good, floor=0.0, max_drop=0.05)
    assert not recall_drop.passed and "recall@5 fell from 0.800 to 0.700" in recall_drop.describe()


def test_the_gate_refuses_a_worse_model_with_both_scores_and_says_when_it_skipped():
    active = Score(10, 5, 0.8, 0.6)
    refused = gate_switch(active, Score(10, 5, 0.7, 0.6), tolerance=0.02)
    assert not refused.allowed and not refused.skipped
    assert "recall@5 0.700 < 0.800" in refused.reason
    assert (
        "new: recall@5 0.700, MRR 0.600" in refused.reason
        and "active: recall@5 0.800, MRR 0.600" in refused.reason
    )
    assert not gate_switch(active, Score(10, 5, 0.8, 0.57), tolerance=0.02).allowed  # MRR alone
    within = gate_switch(active, Score(10, 5, 0.78, 0.58), tolerance=0.02)
    assert within.allowed and not within.skipped
    assert gate_switch(active, active, tolerance=0.0).allowed
    assert gate_switch(active, Score(10, 5, 0.9, 0.7), tolerance=0.0).allowed
    skipped = gate_switch(None, None, tolerance=0.02, skipped_because="EVAL_QUESTIONS is not set")
    assert skipped.allowed and skipped.skipped and "skipped: EVAL_QUESTIONS is not set" in skipped.reason
    with pytest.raises(ValueError):
        gate_switch(active, active, tolerance=-0.1)
