"""Where alerts go, as a Dagster resource: the webhook (a secret), its body format and the UI's address."""

from __future__ import annotations

from pipelines.alerts import RetryPolicy, WebhookNotifier
from pipelines.lib.alerts import DEFAULT_UI_URL
from resources.fieldwise import FieldwiseConfigResource


class AlertsResource(FieldwiseConfigResource):
    """Leave `webhook_url` unset to send nothing (the default): alerts are then neither sent nor recorded."""

    webhook_url: str | None = None
    format: str = "slack"
    ui_url: str = DEFAULT_UI_URL
    timeout_s: float = 5.0
    attempts: int = 3
    backoff_s: float = 0.5
    tick_budget_s: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url)

    def notifier(self) -> WebhookNotifier:
        if not self.webhook_url:
            raise ValueError("ALERT_WEBHOOK_URL is not set: alerts have nowhere to go")
        return WebhookNotifier(self.webhook_url, self.format, self.timeout_s)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.attempts, backoff_s=self.backoff_s, tick_budget_s=self.tick_budget_s)
