"""Numbers and switches from the environment, refused by name when they are not what a setting needs."""

from __future__ import annotations

import math
import os
from typing import Any


def env_number(
    name: str,
    kind: type[int] | type[float],
    default: Any = None,
    *,
    minimum: float | None = None,
    positive: bool = False,
) -> Any:
    """The variable parsed as `kind`, or `default` when unset (an explicit 0 is kept, unlike `or`).
    Refused by name: a value that does not parse, is not finite (nan, inf), is below `minimum`, or is not
    above 0 when `positive`."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    what = "an integer" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be {what}, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, got {raw!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be greater than 0, got {raw!r}")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_flag(name: str, default: bool = False) -> bool:
    """The variable as a switch (1/true/yes/on or 0/false/no/off, any case), or `default` when unset or
    empty; anything else is refused by name rather than read as either."""
    raw = (os.environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE | _FALSE:
        return raw in _TRUE
    raise ValueError(f"{name} must be one of 1, true, yes, on, 0, false, no, off; got {os.environ[name]!r}")
