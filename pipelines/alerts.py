"""Alert delivery: webhook notifiers, bounded retries, and the `alerts_sent` bookkeeping that makes every
alert go out once. Called by the alert sensors, never by an asset, so a receiver that is down or hangs
cannot fail or stall a pipeline run."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from pipelines.lib.alerts import Alert, checked_format, payload
from pipelines.lib.redact import redact
from pipelines.sql import query


class DeliveryError(RuntimeError):
    """A delivery attempt failed; the message never contains the webhook URL."""


class Notifier(Protocol):
    format: str

    def send(self, body: dict[str, Any]) -> None:
        """Deliver one alert body or raise DeliveryError."""


class WebhookNotifier:
    """POSTs JSON to an incoming webhook: `format` picks the body (`slack` or `json`).

    The URL embeds the receiver's token, so it is kept private: errors say what went wrong (status,
    timeout, refused) without it, and `repr` hides it.
    """

    def __init__(self, url: str, format: str = "slack", timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            # Not quoting the value: it is a secret, and a mistyped one is still mostly the token.
            raise ValueError("ALERT_WEBHOOK_URL must be an http:// or https:// URL")
        self._url = url
        self.format = checked_format(format)
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"WebhookNotifier(format={self.format!r}, url=***)"

    def send(self, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self._url,
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json", "User-Agent": "rag-etl-alerts"},
            method="POST",
        )
        try:
            # The timeout bounds the connect and every read, so a receiver that accepts and never
            # answers costs at most timeout_s per attempt.
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read(65536)
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"receiver answered HTTP {exc.code}") from None
        except TimeoutError:
            raise DeliveryError(f"receiver did not answer within {self.timeout_s:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise DeliveryError(f"receiver did not answer within {self.timeout_s:g} s") from None
            detail = (
                reason.strerror if isinstance(reason, OSError) and reason.strerror else type(reason).__name__
            )
            raise DeliveryError(redact(f"cannot reach the receiver: {detail}", [self._url])) from None
        except OSError as exc:
            raise DeliveryError(
                redact(f"connection failed: {exc.strerror or type(exc).__name__}", [self._url])
            ) from None

    def secret(self) -> str:
        """For callers that must redact it from text they did not write."""
        return self._url


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per tick, the backoff between them, and a deadline for the whole tick."""

    attempts: int = 3
    backoff_s: float = 0.5  # doubled after each failed attempt
    max_backoff_s: float = 4.0
    tick_budget_s: float = 30.0  # stop sending (leave the rest pending) once a tick has spent this
    max_total_attempts: int = 12  # over all ticks; then the alert is marked failed


@dataclass
class DeliveryReport:
    claimed: int = 0  # new alerts this tick (not seen before)
    sent: list[str] = field(default_factory=list)  # dedup keys delivered this tick
    pending: list[str] = field(default_factory=list)  # to retry on a later tick
    failed: list[str] = field(default_factory=list)  # given up
    errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{len(self.sent)} sent, {len(self.pending)} pending, {len(self.failed)} given up"
            f" ({self.claimed} new)"
        )


def claim(conn: sa.Connection, alerts: Sequence[Alert], fmt: str) -> int:
    """Record alerts not seen before as pending; return how many were new. Commits."""
    new = 0
    for alert in alerts:
        row = conn.execute(
            query("alerts/claim_alert"),
            {
                "dedup_key": alert.dedup_key,
                "kind": alert.kind,
                "severity": alert.severity,
                "day": alert.day,
                "metric": alert.metric,
                "value": alert.value,
                "threshold": alert.threshold,
                "job_name": alert.job_name,
                "run_id": alert.run_id,
                "link": alert.link,
                "payload": json.dumps(payload(alert, fmt)),
            },
        ).first()
        new += row is not None
    conn.commit()
    return new


def _attempt(
    notifier: Notifier,
    body: dict[str, Any],
    policy: RetryPolicy,
    deadline: float,
    sleep: Callable[[float], None],
) -> tuple[bool, int, str | None]:
    """Up to `policy.attempts` tries with exponential backoff, none started after the deadline."""
    wait = policy.backoff_s
    error = None
    tries = 0
    for i in range(policy.attempts):
        if time.monotonic() >= deadline:
            break
        tries += 1
        try:
            notifier.send(body)
            return True, tries, None
        except DeliveryError as exc:
            error = str(exc)
        if i + 1 < policy.attempts and time.monotonic() + wait < deadline:
            sleep(wait)
            wait = min(wait * 2, policy.max_backoff_s)
    return False, tries, error


def deliver_pending(
    conn: sa.Connection,
    notifier: Notifier,
    *,
    policy: RetryPolicy = RetryPolicy(),
    log: Callable[[str], None] = lambda _msg: None,
    sleep: Callable[[float], None] = time.sleep,
    limit: int = 200,
) -> DeliveryReport:
    """Send every pending alert, oldest first, recording each outcome as it happens (committed).

    When one alert exhausts its attempts the receiver is taken to be down: the rest wait for the next
    tick instead of each spending its own retries and timeouts.
    """
    report = DeliveryReport()
    deadline = time.monotonic() + policy.tick_budget_s
    rows = conn.execute(query("alerts/select_pending_alerts"), {"limit": limit}).mappings().all()
    conn.commit()
    receiver_down = False
    for row in rows:
        key = row["dedup_key"]
        if receiver_down or time.monotonic() >= deadline:
            report.pending.append(key)
            continue
        ok, tries, error = _attempt(notifier, row["payload"], policy, deadline, sleep)
        total = row["attempts"] + tries
        if ok:
            status = "sent"
            report.sent.append(key)
        elif total >= policy.max_total_attempts:
            status = "failed"
            report.failed.append(key)
        else:
            status = "pending"
            report.pending.append(key)
        if error:
            report.errors.append(f"{key}: {error}")
            log(f"alert {key}: delivery failed after {tries} attempt(s): {error}; {status}")
        conn.execute(
            query("alerts/record_alert_delivery"),
            {"id": row["id"], "status": status, "attempts": tries, "last_error": error if not ok else None},
        )
        conn.commit()
        receiver_down = not ok
    return report


def raise_alerts(
    conn: sa.Connection,
    notifier: Notifier,
    alerts: Sequence[Alert],
    *,
    policy: RetryPolicy = RetryPolicy(),
    log: Callable[[str], None] = lambda _msg: None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """Claim the alerts (duplicates of earlier ones are dropped) and deliver whatever is pending."""
    claimed = claim(conn, alerts, notifier.format)
    report = deliver_pending(conn, notifier, policy=policy, log=log, sleep=sleep)
    report.claimed = claimed
    return report
