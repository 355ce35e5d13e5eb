"""When a changed embedding model configuration should launch the re-embedding job. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SensorDecision:
    launch: bool
    cursor: str | None
    reason: str


def model_change_decision(configured: str, active: str | None, cursor: str | None) -> SensorDecision:
    """Launch once per change of the configured model away from the active one.

    The cursor holds the configured model the sensor last acted on. It is also moved when the
    configuration matches the active model again, so that changing back to a model launched before
    (A → B → A → B) launches again.
    """
    if active is None:
        return SensorDecision(
            False, cursor, "no active embedding model yet: the ingestion job registers the first one"
        )
    if configured == active:
        return SensorDecision(False, configured, f"the configured model {configured} is the active one")
    if cursor == configured:
        return SensorDecision(False, cursor, f"re-embedding for {configured} was already launched")
    return SensorDecision(
        True, configured, f"the configured model {configured} differs from the active {active}"
    )
