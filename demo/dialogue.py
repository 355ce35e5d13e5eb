"""A synthetic `ai_dialogue_log` with the shapes of a real RAG product, and a fast loader for it.

Latencies are log-normal with a slow tail, traffic follows a Tokyo day, a share of answers has no
citations (as null or as an empty array), costs follow the model mix, and a few "incident" days
breach the SLOs (slow provider, retriever outage, expensive model), so the UI and the checks have
something to show. Everything is drawn from one numpy Generator: the same seed gives the same log.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import sqlalchemy as sa
from psycopg import sql

from assets.partitions import METRICS_TIMEZONE
from pipelines.sql import composed, query

TZ = ZoneInfo(METRICS_TIMEZONE)
# Every demo row's session_id starts with this, so reloading replaces demo rows and nothing else.
DEMO_SESSION_PREFIX = "demo-"

COLUMNS = (
    "user_id",
    "session_id",
    "query",
    "response",
    "model_used",
    "citations",
    "citation_rate",
    "latency_ms",
    "token_cost_jpy",
    "relevance_score",
    "user_feedback",
    "temperature",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "created_at",
)
# Nullable integers must reach the CSV as "12", never as pandas' float rendering "12.0".
INTEGER_COLUMNS = ("latency_ms", "user_feedback", "prompt_tokens", "completion_tokens", "total_tokens")

# Share of the day's traffic per JST hour: quiet at night, a lunch bump, busiest in the evening.
_HOURLY = np.array(
    [
        2.0,
        1.2,
        0.7,
        0.4,
        0.3,
        0.4,
        0.9,
        2.0,
        3.5,
        4.5,
        5.0,
        5.2,
        5.5,
        5.0,
        4.6,
        4.6,
        5.0,
        5.5,
        6.2,
        7.0,
        7.6,
        7.4,
        6.0,
        3.8,
    ]
)
_HOURLY = _HOURLY / _HOURLY.sum()

# model, share of answers on a normal day, JPY per 1k prompt tokens, JPY per 1k completion tokens
_MODELS = (
    ("gpt-4o-mini", 0.70, 0.45, 1.8),
    ("gpt-4o", 0.20, 1.20, 4.8),
    ("claude-3-5-haiku", 0.10, 0.60, 3.0),
)
_TOPICS = (
    "コード進行",
    "スケール練習",
    "リズム感",
    "耳コピ",
    "作曲の始め方",
    "ミキシング",
    "ピアノの運指",
    "ギターのカッティング",
    "音楽理論の基礎",
    "ボイストレーニング",
    "DTM の環境",
    "譜読み",
)
_SYNTHETIC_SOURCES = (
    [(f"Material #{n}", "material") for n in range(101, 161)]
    + [(f"note.com/artist/{name}", "note") for name in ("aki", "mio", "kenta", "sora", "rin", "yuto", "hana")]
    + [(f"docs/lessons/lesson-{n:02d}.md", "document") for n in range(1, 31)]
    + [(f"https://example.com/guide/{n}", "web") for n in range(1, 9)]
)


@dataclass(frozen=True)
class DayProfile:
    day: dt.date
    rows: int
    latency_factor: float = 1.0
    citation_share: float = 0.82
    large_model_share: float = _MODELS[1][1]
    context_factor: float = 1.0
    relevance_mean: float = 0.77
    incident: str | None = None


@dataclass
class DemoDialogueSummary:
    rows: int
    first_day: dt.date
    last_day: dt.date
    incidents: dict[str, list[dt.date]] = field(default_factory=dict)


def _citation_pool(sources: Sequence[str]) -> list[tuple[str, str]]:
    if sources:
        return [(s, "document") for s in dict.fromkeys(sources)]
    return list(_SYNTHETIC_SOURCES)


def plan_days(
    first_day: dt.date, days: int, rows_per_day: int, rng: np.random.Generator, volume_jitter: float = 0.15
) -> list[DayProfile]:
    """Volume and health of each day; about one day in ten has an incident that breaches an SLO."""
    dates = [first_day + dt.timedelta(days=i) for i in range(days)]
    kinds = ("slow_provider", "retriever_outage", "expensive_model")
    # Each kind happens at least once (from a week of data on), so a short demo still shows breaches.
    per_kind = max(1, round(days * 0.035)) if days >= 7 else 0
    chosen: Sequence[int] = (
        rng.choice(days, size=min(days, per_kind * len(kinds)), replace=False).tolist() if per_kind else []
    )
    incident_of = {int(i): kinds[n % len(kinds)] for n, i in enumerate(chosen)}
    plan = []
    for i, day in enumerate(dates):
        weekend = day.weekday() >= 5
        volume = rows_per_day * (0.8 if weekend else 1.05) if volume_jitter else rows_per_day
        if volume_jitter:
            volume *= float(np.exp(rng.normal(0.0, volume_jitter)))
        profile = DayProfile(
            day=day,
            rows=max(1, round(volume)),
            latency_factor=float(np.exp(rng.normal(0.0, 0.06))),
            citation_share=float(np.clip(rng.normal(0.82, 0.03), 0.72, 0.92)),
            context_factor=float(np.exp(rng.normal(0.0, 0.05))),
        )
        incident = incident_of.get(i)
        if incident == "slow_provider":
            profile = _replace(profile, latency_factor=float(rng.uniform(1.9, 3.2)), incident=incident)
        elif incident == "retriever_outage":
            profile = _replace(
                profile, citation_share=float(rng.uniform(0.45, 0.64)), relevance_mean=0.6, incident=incident
            )
        elif incident == "expensive_model":
            profile = _replace(
                profile,
                large_model_share=float(rng.uniform(0.75, 0.95)),
                context_factor=float(rng.uniform(1.4, 1.9)),
                incident=incident,
            )
        plan.append(profile)
    return plan


def _replace(profile: DayProfile, **changes) -> DayProfile:
    return DayProfile(**{**profile.__dict__, **changes})


def _citations_json(
    n: np.ndarray, pool: list[tuple[str, str]], created: pd.DatetimeIndex, rng: np.random.Generator
) -> list[str | None]:
    """JSON text per row; rows with n == 0 are null or [] (producers write both)."""
    weights = 1.0 / np.arange(1, len(pool) + 1) ** 0.9  # a few documents answer most questions
    weights /= weights.sum()
    total = int(n.sum())
    picks = rng.choice(len(pool), size=total, p=weights)
    confidence = np.round(rng.beta(6.0, 2.0, size=total), 3)
    paragraph = rng.integers(0, 40, size=total)
    empty_as_null = rng.random(len(n)) < 0.4
    stamps = (created.strftime("%Y-%m-%dT%H:%M:%S.%f").str.slice(0, 23) + "Z").tolist()
    picks, confidence, paragraph = picks.tolist(), confidence.tolist(), paragraph.tolist()
    empty_as_null = empty_as_null.tolist()
    out: list[str | None] = []
    k = 0
    for row, count in enumerate(n.tolist()):
        if count == 0:
            out.append(None if empty_as_null[row] else "[]")
            continue
        items = []
        for j in range(k, k + count):
            source, kind = pool[picks[j]]
            items.append(
                {
                    "source": source,
                    "sourceType": kind,
                    "excerpt": f"{source} ¶{paragraph[j]}",
                    "confidence": confidence[j],
                    "timestamp": stamps[row],
                }
            )
        k += count
        out.append(json.dumps(items, ensure_ascii=False))
    return out


def generate_day(
    profile: DayProfile, rng: np.random.Generator, sources: Sequence[str] = (), n_users: int = 800
) -> pd.DataFrame:
    """One JST day of dialogue rows, as a DataFrame with the columns of `ai_dialogue_log` (less id)."""
    n = profile.rows
    start = pd.Timestamp(dt.datetime.combine(profile.day, dt.time(0), TZ)).tz_convert("UTC")
    hour = rng.choice(24, size=n, p=_HOURLY)
    millis = hour * 3_600_000 + rng.integers(0, 3_600_000, size=n)
    created = pd.DatetimeIndex(start + pd.to_timedelta(np.sort(millis), unit="ms"))

    # Log-normal body (median ~0.95 s) and a 4 % tail of slow retrievals / long generations.
    latency = rng.lognormal(np.log(950.0), 0.42, size=n) * profile.latency_factor
    slow = rng.random(n) < 0.04
    latency[slow] *= rng.lognormal(np.log(3.0), 0.35, size=int(slow.sum()))
    latency_ms = pd.array(np.maximum(latency.round(), 40).astype("int64"), dtype="Int64")
    latency_ms[rng.random(n) < 0.003] = pd.NA  # client gave up before the answer was timed

    weights = 1.0 / np.arange(1, n_users + 1) ** 1.1
    user = rng.choice(n_users, size=n, p=weights / weights.sum())
    user_id = np.char.add("demo-user-", np.char.zfill(user.astype(str), 4))
    session_no = rng.integers(0, 3, size=n)
    session_id = pd.Series(user_id).str.replace(
        "demo-user-", f"{DEMO_SESSION_PREFIX}{profile.day:%Y%m%d}-", regex=False
    )
    session_id = session_id + "-" + pd.Series(session_no.astype(str))

    small, large, mid = _MODELS
    p_large = profile.large_model_share
    rest = 1.0 - p_large
    shares = np.array([small[1], mid[1]]) / (small[1] + mid[1]) * rest
    model_idx = rng.choice(3, size=n, p=[shares[0], p_large, shares[1]])
    models = (small, large, mid)
    prompt_tokens = np.maximum(
        rng.lognormal(np.log(1400.0), 0.35, size=n) * profile.context_factor, 50
    ).astype(int)
    completion_tokens = np.maximum(rng.lognormal(np.log(320.0), 0.5, size=n), 5).astype(int)
    price_in = np.array([m[2] for m in models])[model_idx]
    price_out = np.array([m[3] for m in models])[model_idx]
    cost = np.round(prompt_tokens / 1000 * price_in + completion_tokens / 1000 * price_out, 4)
    cost[rng.random(n) < 0.02] = 0.0  # answered from the cache

    has_citations = rng.random(n) < profile.citation_share
    n_citations = np.where(has_citations, np.minimum(1 + rng.poisson(1.2, size=n), 5), 0)
    citations = _citations_json(n_citations, _citation_pool(sources), created, rng)
    backed = np.where(has_citations, np.round(rng.uniform(40, 100, size=n), 1), 0.0)

    a = 10.0 * profile.relevance_mean
    relevance = pd.array(np.round(rng.beta(a, 10.0 - a, size=n), 3), dtype="Float64")
    relevance[rng.random(n) < 0.15] = pd.NA  # the judge did not score every answer
    feedback = pd.array(rng.choice([-1, 0, 1, 2], size=n, p=[0.05, 0.10, 0.17, 0.68]), dtype="Int64")
    feedback[feedback == 2] = pd.NA  # most users never vote

    topic_idx = rng.integers(0, len(_TOPICS), size=n)
    topics = np.array(_TOPICS)[topic_idx]
    return pd.DataFrame(
        {
            "user_id": user_id,
            "session_id": session_id.to_numpy(),
            "query": np.char.add(topics, "について教えてください"),
            "response": np.char.add(topics, "のポイントを教材から説明します。"),
            "model_used": np.array([m[0] for m in models])[model_idx],
            "citations": citations,
            "citation_rate": backed,
            "latency_ms": latency_ms,
            "token_cost_jpy": cost,
            "relevance_score": relevance,
            "user_feedback": feedback,
            "temperature": rng.choice([0.2, 0.7], size=n, p=[0.8, 0.2]),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "created_at": created,
        }
    )


def generate_dialogue(
    first_day: dt.date,
    days: int,
    rows_per_day: int = 2_000,
    sources: Sequence[str] = (),
    seed: int = 7,
    volume_jitter: float = 0.15,
) -> tuple[list[DayProfile], Iterator[pd.DataFrame]]:
    """The plan of the days and a lazy iterator of one DataFrame per day (memory stays one day)."""
    rng = np.random.default_rng(seed)
    plan = plan_days(first_day, days, rows_per_day, rng, volume_jitter)
    return plan, (generate_day(p, rng, sources) for p in plan)


def copy_dialogue(conn: sa.Connection, frames: Iterator[pd.DataFrame]) -> int:
    """COPY the frames into ai_dialogue_log inside the caller's transaction; return the row count."""
    raw = conn.connection.driver_connection
    assert raw is not None, "a checked-out connection has its driver connection"
    statement = composed("demo/copy_dialogue", columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))
    written = 0
    with raw.cursor() as cur, cur.copy(statement) as copy:
        for frame in frames:
            frame = frame.astype({c: "Int64" for c in INTEGER_COLUMNS if c in frame})
            buffer = io.StringIO()
            frame.to_csv(
                buffer, header=False, index=False, columns=list(COLUMNS), date_format="%Y-%m-%d %H:%M:%S.%f%z"
            )
            copy.write(buffer.getvalue())
            written += len(frame)
    return written


def yesterday_jst(now: dt.datetime | None = None) -> dt.date:
    now = now or dt.datetime.now(TZ)
    return now.astimezone(TZ).date() - dt.timedelta(days=1)


def ingested_citation_sources(conn: sa.Connection, limit: int = 500) -> list[str]:
    """What citations can point at: the keys of the documents ingestion stored, in a stable order."""
    return list(conn.execute(query("demo/select_citation_sources"), {"limit": limit}).scalars())


def load_demo_dialogue(
    conn: sa.Connection,
    days: int = 30,
    end_day: dt.date | None = None,
    sources: Sequence[str] = (),
    seed: int = 7,
    rows_per_day: int = 2_000,
    volume_jitter: float = 0.15,
) -> DemoDialogueSummary:
    """Replace the demo rows of the `days` JST days ending with `end_day` (default: yesterday, JST).

    Only rows whose session_id marks them as demo rows are deleted, so a real log is never touched
    and loading twice leaves one copy. `sources` are the citation targets (e.g. from
    `ingested_citation_sources`); without any, synthetic material/note/web names are used.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    last_day = end_day or yesterday_jst()
    first_day = last_day - dt.timedelta(days=days - 1)
    window_start = dt.datetime.combine(first_day, dt.time(0), TZ)
    window_end = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(0), TZ)
    conn.execute(
        query("demo/delete_demo_dialogue"),
        {
            "window_start": window_start,
            "window_end": window_end,
            "session_pattern": f"{DEMO_SESSION_PREFIX}%",
        },
    )
    plan, frames = generate_dialogue(first_day, days, rows_per_day, sources, seed, volume_jitter)
    rows = copy_dialogue(conn, frames)
    incidents: dict[str, list[dt.date]] = {}
    for profile in plan:
        if profile.incident:
            incidents.setdefault(profile.incident, []).append(profile.day)
    return DemoDialogueSummary(rows=rows, first_day=first_day, last_day=last_day, incidents=incidents)
