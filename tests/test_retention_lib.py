"""Retention rules: expiry arithmetic (the database's, the one the sweep runs), provenance precedence,
configuration parsing."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from pipelines.lib.provenance import (
    ProvenanceDefaults,
    ProvenanceError,
    parse_acquired_at,
    parse_retention_defaults,
    parse_retention_years,
    resolve_provenance,
)

JST = ZoneInfo("Asia/Tokyo")
UTC = dt.UTC
US = dt.timedelta(microseconds=1)


def _provenance_row(conn, acquired_at, retention_years, legal_hold, now):
    """(expires_at, is_expired at `now`) of one provenance row, computed by the database and rolled back."""
    with conn.begin() as tx:
        doc_id = conn.execute(
            sa.text(
                "INSERT INTO source_documents (source, source_key, content, content_sha256, acquired_at)"
                " VALUES ('test', 'a.md', 'x', md5('x'), :a) RETURNING id"
            ),
            {"a": acquired_at},
        ).scalar_one()
        row = conn.execute(
            sa.text(
                "INSERT INTO provenance (content_id, content_type, source_uri, acquisition_method, hash_sha256,"
                " retention_years, legal_hold, acquired_at)"
                " VALUES (:id, 'markdown', 'test:a.md', 'test', md5('x'), :r, :h, :a)"
                " RETURNING expires_at, is_expired(provenance, :now) AS expired"
            ),
            {"id": doc_id, "r": retention_years, "h": legal_hold, "a": acquired_at, "now": now},
        ).one()
        tx.rollback()
    return row


@pytest.fixture
def conn(postgres):
    with postgres.connect() as conn:
        # Neither UTC nor Tokyo: the rule must not depend on the session's zone.
        conn.execute(sa.text("SET TIME ZONE 'America/New_York'"))
        conn.commit()
        yield conn


def add_years(conn, moment: dt.datetime, years: int) -> dt.datetime:
    return _provenance_row(conn, moment, years, False, moment).expires_at


def expires_at(conn, acquired_at: dt.datetime, retention_years: int | None) -> dt.datetime | None:
    return _provenance_row(conn, acquired_at, retention_years, False, acquired_at).expires_at


def is_expired(conn, acquired_at, retention_years, legal_hold, now) -> bool:
    expired = _provenance_row(conn, acquired_at, retention_years, legal_hold, now).expired
    assert isinstance(expired, bool), f"is_expired must be true or false, got {expired!r}"
    return expired


def test_leap_day_becomes_28_february_in_a_common_year_and_stays_29_in_a_leap_year(conn):
    leap = dt.datetime(2024, 2, 29, 10, 0, tzinfo=JST)
    assert add_years(conn, leap, 1) == dt.datetime(2025, 2, 28, 10, 0, tzinfo=JST)
    assert add_years(conn, leap, 4) == dt.datetime(2028, 2, 29, 10, 0, tzinfo=JST)
    assert add_years(conn, leap, 100) == dt.datetime(2124, 2, 29, 10, 0, tzinfo=JST)
    assert add_years(conn, dt.datetime(2000, 2, 29, tzinfo=JST), 100) == dt.datetime(2100, 2, 28, tzinfo=JST)


def test_anniversary_is_taken_on_the_tokyo_calendar_not_utc(conn):
    # 00:30 on 29 Feb in Tokyo is still 28 Feb in UTC; the anniversary follows the Tokyo date.
    acquired = dt.datetime(2024, 2, 28, 15, 30, tzinfo=UTC)
    assert add_years(conn, acquired, 1) == dt.datetime(2025, 2, 28, 0, 30, tzinfo=JST)
    assert add_years(conn, acquired, 1).astimezone(UTC) == dt.datetime(2025, 2, 27, 15, 30, tzinfo=UTC)


def test_expired_from_the_exact_instant_on(conn):
    acquired = dt.datetime(2020, 6, 15, 9, 0, 0, 500, tzinfo=JST)
    end = dt.datetime(2025, 6, 15, 9, 0, 0, 500, tzinfo=JST)
    assert not is_expired(conn, acquired, 5, False, end - US)
    assert is_expired(conn, acquired, 5, False, end)
    assert is_expired(conn, acquired, 5, False, end + US)


def test_retention_zero_expires_on_acquisition_and_null_or_hold_never(conn):
    acquired = dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert is_expired(conn, acquired, 0, False, acquired)
    assert not is_expired(conn, acquired, 0, False, acquired - US)
    assert expires_at(conn, acquired, None) is None
    assert not is_expired(conn, acquired, None, False, dt.datetime(9999, 1, 1, tzinfo=UTC))
    assert not is_expired(conn, acquired, 0, True, dt.datetime(9999, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("value", [-1, 1001, 2.5, True, "five", [], {"y": 1}])
def test_bad_retention_years_are_refused_with_the_value(value):
    with pytest.raises(ProvenanceError, match="retention_years"):
        parse_retention_years(value, "frontmatter")


def test_retention_years_accepts_integers_digit_strings_and_null():
    assert parse_retention_years(7, "x") == 7
    assert parse_retention_years(" 3 ", "x") == 3
    assert parse_retention_years(0, "x") == 0
    assert parse_retention_years(None, "x") is None


def test_acquired_at_dates_and_naive_times_are_tokyo_wall_clock():
    assert parse_acquired_at("2019-04-01") == dt.datetime(2019, 4, 1, tzinfo=JST)
    assert parse_acquired_at("2019-04-01T08:00:00") == dt.datetime(2019, 4, 1, 8, tzinfo=JST)
    assert parse_acquired_at("2019-04-01T08:00:00+00:00") == dt.datetime(2019, 4, 1, 8, tzinfo=UTC)
    assert parse_acquired_at(dt.date(2019, 4, 1)) == dt.datetime(2019, 4, 1, tzinfo=JST)
    assert parse_acquired_at(None) is None
    with pytest.raises(ProvenanceError, match="acquired_at"):
        parse_acquired_at("last spring")


def test_frontmatter_beats_source_defaults_which_beat_the_wildcard_and_builtins():
    defaults = {
        "local": ProvenanceDefaults(retention_years=5, license_type="CC-BY-4.0", rights_holder="Acme"),
        "*": ProvenanceDefaults(retention_years=1, acquisition_method="api"),
    }
    plain = resolve_provenance("local", "a.md", {}, defaults)
    assert (plain.retention_years, plain.license_type, plain.rights_holder) == (5, "CC-BY-4.0", "Acme")
    assert (plain.acquisition_method, plain.content_type, plain.source_uri) == (
        "file_import",
        "markdown",
        "local:a.md",
    )
    assert plain.acquired_at is None

    fm = {
        "retention_years": 2,
        "licence": "MIT",
        "source_uri": "https://example.com/a",
        "acquired_at": "2019-04-01",
    }
    told = resolve_provenance("local", "a.md", fm, defaults)
    assert (told.retention_years, told.license_type, told.source_uri) == (2, "MIT", "https://example.com/a")
    assert told.rights_holder == "Acme"
    assert told.acquired_at == dt.datetime(2019, 4, 1, tzinfo=JST)

    row = resolve_provenance("table:sessions", "42", {"table": "sessions"}, defaults)
    assert (row.retention_years, row.acquisition_method, row.content_type) == (1, "api", "table_row")
    assert row.source_uri == "table:sessions:42"

    assert resolve_provenance("table:x", "1", {}, {}).retention_years is None


def test_explicit_null_retention_in_frontmatter_keeps_forever_despite_a_default():
    defaults = {"local": ProvenanceDefaults(retention_years=5)}
    assert resolve_provenance("local", "a.md", {"retention_years": None}, defaults).retention_years is None


def test_bad_frontmatter_terms_are_errors():
    with pytest.raises(ProvenanceError, match="retention_years"):
        resolve_provenance("local", "a.md", {"retention_years": "forever"}, {})
    with pytest.raises(ProvenanceError, match="license_type"):
        resolve_provenance("local", "a.md", {"license": ["MIT", "GPL"]}, {})


def test_retention_defaults_json():
    parsed = parse_retention_defaults(
        '{"local": {"retention_years": 3, "license_type": "CC-BY-4.0"}, "*": {"retention_years": null}}'
    )
    assert parsed["local"] == ProvenanceDefaults(retention_years=3, license_type="CC-BY-4.0")
    assert parsed["*"] == ProvenanceDefaults()
    assert parse_retention_defaults(None) == {} and parse_retention_defaults("  ") == {}


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{", "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"local": 5}', "must be an object"),
        ('{"local": {"retention": 5}}', "unknown field"),
        ('{"local": {"retention_years": -2}}', "between 0 and"),
    ],
)
def test_bad_retention_defaults_name_the_problem(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_retention_defaults(raw)
