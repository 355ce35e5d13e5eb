"""Provenance rules, as pure functions: which terms a document gets. When it expires is the database's
rule (provenance.expires_at and is_expired() in sql/migrations), the one the sweep runs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from zoneinfo import ZoneInfo

from pipelines.lib.timezone import BUSINESS_TIMEZONE

# The wall clock of dates in frontmatter; also the zone of provenance.expires_at's anniversaries
# (sql/migrations/0003_provenance_retention.sql).
RETENTION_TIMEZONE = BUSINESS_TIMEZONE
MAX_RETENTION_YEARS = 1000
# How far after the current time an acquired_at may lie: the author's clock, or a date written on the far side
# of the date line, may run ahead of ours; a later one is a mistake (a typo in the year, a placeholder).
MAX_CLOCK_SKEW = dt.timedelta(days=1)
WILDCARD_SOURCE = "*"

# Frontmatter keys read for provenance; `license` and `licence` are accepted because authors write both.
LICENSE_KEYS = ("license_type", "license", "licence")
DEFAULTS_FIELDS = ("retention_years", "license_type", "rights_holder", "acquisition_method", "content_type")


class ProvenanceError(ValueError):
    """A provenance value that cannot be used; the message names the field and the value."""


@dataclass(frozen=True)
class ProvenanceDefaults:
    """Terms for the documents of one source whose frontmatter does not state them."""

    retention_years: int | None = None
    license_type: str | None = None
    rights_holder: str | None = None
    acquisition_method: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class ProvenanceRecord:
    source: str
    source_key: str
    content_type: str
    source_uri: str
    license_type: str | None
    acquisition_method: str
    rights_holder: str | None
    retention_years: int | None
    acquired_at: dt.datetime | None  # None: when the document entered the database

    def as_row(self) -> dict:
        # A shallow dict: dataclasses.asdict deep-copies, which dominated unchanged re-runs.
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["acquired_at"] = self.acquired_at.isoformat() if self.acquired_at else None
        return row


def parse_retention_years(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    # bool is an int subclass; `retention_years: yes` is a mistake, not one year.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProvenanceError(
            f"{where}: retention_years must be a whole number of years or null, got {value!r}"
        )
    if not 0 <= value <= MAX_RETENTION_YEARS:
        raise ProvenanceError(
            f"{where}: retention_years must be between 0 and {MAX_RETENTION_YEARS}, got {value}"
        )
    return value


def parse_acquired_at(
    value: object, tz: str = RETENTION_TIMEZONE, now: dt.datetime | None = None
) -> dt.datetime | None:
    """A frontmatter date or timestamp; dates and naive timestamps are read on the `tz` wall clock. One more
    than MAX_CLOCK_SKEW after `now` (default: the current time) is refused."""
    parsed = _acquired_at(value, tz)
    if parsed is not None:
        latest = (now or dt.datetime.now(dt.UTC)) + MAX_CLOCK_SKEW
        if parsed > latest:
            raise ProvenanceError(
                f"frontmatter: acquired_at {value!s} is in the future (later than"
                f" {latest.astimezone(ZoneInfo(tz)):%Y-%m-%d %H:%M %Z}, now plus {MAX_CLOCK_SKEW.days} day of"
                " clock skew); a document cannot have been acquired yet"
            )
    return parsed


def _acquired_at(value: object, tz: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime.combine(value, dt.time())
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ProvenanceError(
                f"frontmatter: acquired_at {value!r} is not an ISO 8601 date or timestamp"
            ) from None
    else:
        raise ProvenanceError(f"frontmatter: acquired_at {value!r} is not an ISO 8601 date or timestamp")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=ZoneInfo(tz))


def _optional_text(value: object, field_name: str, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise ProvenanceError(f"{where}: {field_name} must be text, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def parse_retention_defaults(raw: str | None) -> dict[str, ProvenanceDefaults]:
    """`RETENTION_DEFAULTS`: a JSON object from source name (`local`, `table:sessions`, or `*` for any
    other source) to an object of retention_years, license_type, rights_holder, acquisition_method,
    content_type."""
    if raw is None or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"RETENTION_DEFAULTS is not valid JSON: {exc.msg} at position {exc.pos}") from None
    # ValueError for every shape problem: it is a malformed setting, and callers catch one type.
    if not isinstance(data, dict):
        raise ValueError("RETENTION_DEFAULTS must be a JSON object keyed by source name")
    out = {}
    for source, terms in data.items():
        where = f"RETENTION_DEFAULTS[{source!r}]"
        if not isinstance(terms, dict):
            raise ValueError(f"{where} must be an object")
        unknown = sorted(set(terms) - set(DEFAULTS_FIELDS))
        if unknown:
            raise ValueError(
                f"{where} has unknown field(s) {', '.join(unknown)}; allowed: {', '.join(DEFAULTS_FIELDS)}"
            )
        try:
            out[source] = ProvenanceDefaults(
                retention_years=parse_retention_years(terms.get("retention_years"), where),
                **{f: _optional_text(terms.get(f), f, where) for f in DEFAULTS_FIELDS[1:]},
            )
        except ProvenanceError as exc:
            raise ValueError(str(exc)) from None
    return out


def defaults_for(source: str, defaults: Mapping[str, ProvenanceDefaults]) -> ProvenanceDefaults:
    return defaults.get(source) or defaults.get(WILDCARD_SOURCE) or ProvenanceDefaults()


def builtin_terms(source: str) -> tuple[str, str]:
    """(content_type, acquisition_method) when neither frontmatter nor configuration says."""
    if source.startswith("table:"):
        return "table_row", "database_sync"
    return "markdown", "file_import"


def resolve_provenance(
    source: str,
    source_key: str,
    frontmatter: Mapping[str, object],
    defaults: Mapping[str, ProvenanceDefaults],
) -> ProvenanceRecord:
    """Frontmatter first, then the source's configured defaults, then built-ins. A frontmatter key that is
    present wins even when null: `retention_years: null` keeps a document forever under a finite default."""
    where = "frontmatter"
    base = defaults_for(source, defaults)
    content_type, method = builtin_terms(source)

    def pick(field_name: str, *keys: str):
        for key in keys or (field_name,):
            if key in frontmatter:
                return _optional_text(frontmatter[key], field_name, where)
        return getattr(base, field_name)

    retention = (
        parse_retention_years(frontmatter["retention_years"], where)
        if "retention_years" in frontmatter
        else base.retention_years
    )
    return ProvenanceRecord(
        source=source,
        source_key=source_key,
        content_type=pick("content_type") or content_type,
        source_uri=_optional_text(frontmatter.get("source_uri"), "source_uri", where)
        or f"{source}:{source_key}",
        license_type=pick("license_type", *LICENSE_KEYS),
        acquisition_method=pick("acquisition_method") or method,
        rights_holder=pick("rights_holder"),
        retention_years=retention,
        acquired_at=parse_acquired_at(frontmatter.get("acquired_at")),
    )
