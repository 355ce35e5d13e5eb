"""Retention sweeps against real Postgres: expiry edges, legal holds, audit, interruption, concurrency,
no resurrection through ingestion, and the Dagster asset with its check."""

import calendar
import datetime as dt
import random
import threading
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.retention import retention_sweep
from pipelines.lib.provenance import ProvenanceDefaults
from pipelines.locks import Lock
from pipelines.retention import count_expired_unprotected, sweep_expired
from pipelines.sources import sync_documents
from resources.sources import ContentSourcesResource

JST = ZoneInfo("Asia/Tokyo")
UTC = dt.UTC
US = dt.timedelta(microseconds=1)


def add_years(moment: dt.datetime, years: int) -> dt.datetime:
    """The expected expiry, computed apart from the database: `years` calendar years later on the Tokyo wall
    clock, 29 February becoming 28 February in a common year."""
    local = moment.astimezone(JST).replace(tzinfo=None)
    year = local.year + years
    day = min(local.day, calendar.monthrange(year, local.month)[1])
    return local.replace(year=year, day=day).replace(tzinfo=JST)


# A fixed "now" for the sweeps, far from any leap day; acquisitions are placed relative to it.
NOW = dt.datetime(2031, 6, 15, 12, 0, tzinfo=UTC)
MODEL = "test-model"


@pytest.fixture
def db(postgres):
    with postgres.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO embedding_models (name, provider, model, dimensions, status)"
                " VALUES (:m, 'local', :m, 3, 'active')"
            ),
            {"m": MODEL},
        )
    return postgres


def add_doc(conn, key, acquired_at, retention_years, *, hold=False, chunks=2, source="local"):
    """A document with provenance, `chunks` chunks and one embedding per chunk; returns its id."""
    content = f"content of {key}"
    doc_id = conn.execute(
        sa.text(
            "INSERT INTO source_documents (source, source_key, title, content, content_sha256, acquired_at)"
            " VALUES (:s, :k, :k, :c, md5(:c), :a) RETURNING id"
        ),
        {"s": source, "k": key, "c": content, "a": acquired_at},
    ).scalar_one()
    conn.execute(
        sa.text(
            "INSERT INTO provenance (content_id, content_type, source_uri, acquisition_method, hash_sha256,"
            " retention_years, legal_hold, acquired_at)"
            " SELECT id, 'markdown', 'test:' || source_key, 'test', content_sha256, :r, :h, acquired_at"
            " FROM source_documents WHERE id = :id"
        ),
        {"id": doc_id, "r": retention_years, "h": hold},
    )
    for i in range(chunks):
        chunk_id = conn.execute(
            sa.text(
                "INSERT INTO document_chunks (document_id, chunk_index, content, content_sha256, char_start,"
                " char_end, token_count) VALUES (:d, :i, 'x', md5(:d || '-' || :i), 0, 1, 1) RETURNING id"
            ),
            {"d": doc_id, "i": i},
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO chunk_embeddings (chunk_id, model, embedding, content_sha256, token_count)"
                " VALUES (:c, :m, '[1,2,3]', 'h', 1)"
            ),
            {"c": chunk_id, "m": MODEL},
        )
    return doc_id


# The readers end their transaction: a sweep refuses a connection with one open.
def keys(conn, sql="SELECT source_key FROM source_documents"):
    found = set(conn.execute(sa.text(sql)).scalars())
    conn.rollback()
    return found


def audit(conn, dry_run=False):
    rows = conn.execute(
        sa.text(
            "SELECT source_key, chunks_deleted, embeddings_deleted, retention_years, expired_at, deleted_at"
            " FROM retention_audit WHERE dry_run = :d ORDER BY id"
        ),
        {"d": dry_run},
    ).all()
    conn.rollback()
    return rows


def count(conn, table):
    found = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    conn.rollback()
    return found


def test_exact_instant_of_expiry(db):
    # Five calendar years before NOW on the Tokyo wall clock, written out independently of the code under test.
    base = NOW.astimezone(JST).replace(year=NOW.astimezone(JST).year - 5)
    with db.begin() as conn:
        add_doc(conn, "expires-at-now", base, 5)
        add_doc(conn, "expired-1us-ago", base - US, 5)
        add_doc(conn, "expires-in-1us", base + US, 5)
    with db.connect() as conn:
        early = sweep_expired(conn, as_of=NOW - US)
        assert early.documents == 1 and keys(conn) == {"expires-at-now", "expires-in-1us"}
        result = sweep_expired(conn, as_of=NOW)
        assert result.documents == 1 and keys(conn) == {"expires-in-1us"}
        assert sweep_expired(conn, as_of=NOW + US).documents == 1
        assert [r.source_key for r in audit(conn)] == ["expired-1us-ago", "expires-at-now", "expires-in-1us"]


def test_acquired_on_29_february(db):
    with db.begin() as conn:
        add_doc(conn, "leap-1y", dt.datetime(2024, 2, 29, 10, 0, tzinfo=JST), 1)
        add_doc(conn, "leap-4y", dt.datetime(2024, 2, 29, 10, 0, tzinfo=JST), 4)
        # 00:30 on 29 Feb in Tokyo is 28 Feb in UTC: the Tokyo date decides.
        add_doc(conn, "leap-early-1y", dt.datetime(2024, 2, 29, 0, 30, tzinfo=JST), 1)
    with db.connect() as conn:
        conn.execute(sa.text("SET TIME ZONE 'UTC'"))
        conn.commit()
        assert sweep_expired(conn, as_of=dt.datetime(2025, 2, 28, 0, 30, tzinfo=JST) - US).documents == 0
        assert sweep_expired(conn, as_of=dt.datetime(2025, 2, 28, 0, 30, tzinfo=JST)).documents == 1
        assert keys(conn) == {"leap-1y", "leap-4y"}
        assert sweep_expired(conn, as_of=dt.datetime(2025, 2, 28, 10, 0, tzinfo=JST) - US).documents == 0
        assert sweep_expired(conn, as_of=dt.datetime(2025, 2, 28, 10, 0, tzinfo=JST)).documents == 1
        assert sweep_expired(conn, as_of=dt.datetime(2028, 2, 29, 10, 0, tzinfo=JST) - US).documents == 0
        assert sweep_expired(conn, as_of=dt.datetime(2028, 2, 29, 10, 0, tzinfo=JST)).documents == 1
        expired_at = {r.source_key: r.expired_at for r in audit(conn)}
    assert expired_at == {
        "leap-early-1y": dt.datetime(2025, 2, 28, 0, 30, tzinfo=JST),
        "leap-1y": dt.datetime(2025, 2, 28, 10, 0, tzinfo=JST),
        "leap-4y": dt.datetime(2028, 2, 29, 10, 0, tzinfo=JST),
    }


def test_database_expiry_matches_the_python_rule_whatever_the_session_time_zone(db):
    rng = random.Random(4)
    cases = [(dt.datetime(2024, 2, 29, h, 30, tzinfo=JST), y) for h in (0, 8, 9, 23) for y in (1, 3, 4, 100)]
    cases += [
        (
            dt.datetime(2000, 1, 1, tzinfo=UTC)
            + dt.timedelta(seconds=rng.randrange(40 * 365 * 86400), microseconds=rng.randrange(10**6)),
            rng.randrange(0, 60),
        )
        for _ in range(200)
    ]
    with db.begin() as conn:
        conn.execute(sa.text("SET LOCAL TIME ZONE 'America/New_York'"))
        ids = [add_doc(conn, f"d{i}", a, y, chunks=0) for i, (a, y) in enumerate(cases)]
        stored = dict(conn.execute(sa.text("SELECT content_id, expires_at FROM provenance")).all())
    assert [stored[i] for i in ids] == [add_years(a, y) for a, y in cases]


def test_retention_zero_null_retention_and_legal_hold(db):
    with db.begin() as conn:
        add_doc(conn, "zero", NOW, 0)
        add_doc(conn, "forever", dt.datetime(1950, 1, 1, tzinfo=UTC), None)
        add_doc(conn, "held", dt.datetime(2000, 1, 1, tzinfo=UTC), 1, hold=True)
    with db.connect() as conn:
        assert sweep_expired(conn, as_of=NOW - US).documents == 0
        result = sweep_expired(conn, as_of=NOW)
        assert result.documents == 1 and result.held_by_legal_hold == 1
        far = dt.datetime(2999, 1, 1, tzinfo=UTC)
        kept = sweep_expired(conn, as_of=far)
        assert kept.documents == 0 and kept.held_by_legal_hold == 1
        assert keys(conn) == {"forever", "held"}
        assert count_expired_unprotected(conn, far) == 0

        conn.execute(sa.text("UPDATE provenance SET legal_hold = false"))
        conn.commit()
        lifted = sweep_expired(conn, as_of=NOW)
        assert lifted.documents == 1 and lifted.held_by_legal_hold == 0
        assert keys(conn) == {"forever"}
        assert [r.source_key for r in audit(conn)] == ["zero", "held"]


def test_cascade_counts_audit_and_tombstones(db):
    with db.begin() as conn:
        add_doc(conn, "a", dt.datetime(2001, 1, 1, tzinfo=UTC), 5, chunks=3)
        add_doc(conn, "b", dt.datetime(2002, 1, 1, tzinfo=UTC), 5, chunks=0)
        add_doc(conn, "keep", dt.datetime(2002, 1, 1, tzinfo=UTC), None, chunks=4)
        conn.execute(
            sa.text(
                "INSERT INTO embedding_models (name, provider, model, dimensions) VALUES ('other', 'local', 'other', 2);"
                " INSERT INTO chunk_embeddings (chunk_id, model, embedding, content_sha256, token_count)"
                " SELECT c.id, 'other', '[1,1]', 'h', 1 FROM document_chunks c"
                " JOIN source_documents d ON d.id = c.document_id WHERE d.source_key = 'a' AND c.chunk_index = 0"
            )
        )
    with db.connect() as conn:
        result = sweep_expired(conn, as_of=NOW, run_id="run-1")
        assert (result.documents, result.chunks, result.embeddings) == (2, 3, 4)
        assert [
            (r.source_key, r.chunks_deleted, r.embeddings_deleted, r.retention_years) for r in audit(conn)
        ] == [
            ("a", 3, 4, 5),
            ("b", 0, 0, 5),
        ]
        assert (
            count(conn, "document_chunks"),
            count(conn, "chunk_embeddings"),
            count(conn, "provenance"),
        ) == (4, 4, 1)
        tombs = conn.execute(
            sa.text("SELECT source, source_key, content_sha256 FROM retention_tombstones ORDER BY 2")
        ).all()
        assert tombs == [("local", "a", _md5("content of a")), ("local", "b", _md5("content of b"))]
        run_ids = set(conn.execute(sa.text("SELECT run_id FROM retention_audit")).scalars())
        assert run_ids == {"run-1"}


def _md5(text):
    import hashlib

    return hashlib.md5(text.encode()).hexdigest()


def test_dry_run_reports_and_deletes_nothing(db):
    with db.begin() as conn:
        for i in range(5):
            add_doc(conn, f"old{i}", dt.datetime(2001, 1, 1 + i, tzinfo=UTC), 3, chunks=2)
        add_doc(conn, "new", NOW, 3)
    with db.connect() as conn:
        dry = sweep_expired(conn, as_of=NOW, dry_run=True, batch_size=2)
        assert (dry.documents, dry.chunks, dry.embeddings, dry.batches) == (5, 10, 10, 3)
        assert len(keys(conn)) == 6 and count(conn, "chunk_embeddings") == 12
        assert count(conn, "retention_tombstones") == 0 and audit(conn) == []
        would = audit(conn, dry_run=True)
        assert [r.source_key for r in would] == [f"old{i}" for i in range(5)]
        assert all(r.deleted_at is None for r in would)
        real = sweep_expired(conn, as_of=NOW)
        assert [r.source_key for r in audit(conn)] == [f"old{i}" for i in range(5)]
        assert (real.documents, real.chunks, real.embeddings) == (5, 10, 10)


def test_expiring_in_the_next_30_days_soonest_first(db):
    with db.begin() as conn:
        for key, days in [("in-20d", 20), ("in-3d", 3), ("in-29d", 29), ("in-31d", 31)]:
            add_doc(conn, key, NOW + dt.timedelta(days=days) - dt.timedelta(days=365 * 2), 2, chunks=0)
        add_doc(
            conn,
            "held-in-2d",
            NOW + dt.timedelta(days=2) - dt.timedelta(days=365 * 2),
            2,
            hold=True,
            chunks=0,
        )
    with db.connect() as conn:
        # 365 * 2 days is 2 calendar years here: no 29 February between 2029-06 and 2031-07.
        result = sweep_expired(conn, as_of=NOW)
    assert result.documents == 0 and result.expiring_count == 3
    assert [i.source_key for i in result.expiring] == ["in-3d", "in-20d", "in-29d"]


def test_interrupted_sweep_keeps_committed_batches_consistent_and_the_rest_untouched(db):
    n, batch = 30, 7
    with db.begin() as conn:
        for i in range(n):
            add_doc(
                conn, f"doc-{i:02d}", dt.datetime(2001, 1, 1, tzinfo=UTC) + dt.timedelta(hours=i), 5, chunks=2
            )
        # The 17th document to go (batch 3) makes its batch fail halfway through the delete.
        conn.execute(
            sa.text(
                "CREATE FUNCTION fail_doc_16() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " IF OLD.source_key = 'doc-16' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN OLD; END $$;"
                " CREATE TRIGGER fail_doc_16 BEFORE DELETE ON source_documents"
                " FOR EACH ROW EXECUTE FUNCTION fail_doc_16()"
            )
        )
    with db.connect() as conn:
        with pytest.raises(sa.exc.DBAPIError, match="injected failure"):
            sweep_expired(conn, as_of=NOW, batch_size=batch)
        gone = {f"doc-{i:02d}" for i in range(14)}
        assert keys(conn) == {f"doc-{i:02d}" for i in range(n)} - gone
        assert {r.source_key for r in audit(conn)} == gone
        assert keys(conn, "SELECT source_key FROM retention_tombstones") == gone
        assert all((r.chunks_deleted, r.embeddings_deleted) == (2, 2) for r in audit(conn))
        # Everything not yet swept still has its chunks, embeddings and provenance.
        assert (count(conn, "document_chunks"), count(conn, "chunk_embeddings")) == (32, 32)
        assert count(conn, "provenance") == 16

        conn.execute(sa.text("DROP TRIGGER fail_doc_16 ON source_documents"))
        conn.commit()
        rest = sweep_expired(conn, as_of=NOW, batch_size=batch)
        assert rest.documents == 16 and keys(conn) == set()
        rows = audit(conn)
        assert len(rows) == n and len({r.source_key for r in rows}) == n


def test_batches_commit_without_waiting_for_the_flush_and_the_sweep_returns_with_all_of_them_flushed(db):
    with db.begin() as conn:
        for i in range(7):
            add_doc(conn, f"old{i}", dt.datetime(2001, 1, 1 + i, tzinfo=UTC), 3)
    seen = []

    def between_batches(_result):
        # Between two batch transactions: the session's own setting, and how far its WAL reached.
        seen.append(
            conn.execute(
                sa.text("SELECT current_setting('synchronous_commit'), pg_current_wal_insert_lsn()")
            ).one()
        )
        conn.rollback()

    with db.connect() as conn:
        # A setting of the caller's own, which the sweep must hand back.
        conn.execute(sa.text("SET synchronous_commit = remote_write"))
        conn.commit()
        result = sweep_expired(conn, as_of=NOW, batch_size=2, on_batch=between_batches)
        flushed = conn.execute(
            sa.text("SELECT current_setting('synchronous_commit'), pg_current_wal_flush_lsn() >= :lsn"),
            {"lsn": max(lsn for _, lsn in seen)},
        ).one()
        conn.rollback()
    assert result.documents == 7 and result.batches == len(seen) == 4
    assert {mode for mode, _ in seen} == {"off"}
    # Back to the caller's mode, and every batch's commit record is on disk once the sweep has returned.
    assert tuple(flushed) == ("remote_write", True)


def test_a_failed_batch_hands_the_callers_commit_mode_back(db):
    with db.begin() as conn:
        add_doc(conn, "old", dt.datetime(2001, 1, 1, tzinfo=UTC), 3)
        conn.execute(
            sa.text(
                "CREATE FUNCTION fail_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " RAISE EXCEPTION 'injected failure'; END $$;"
                " CREATE TRIGGER fail_delete BEFORE DELETE ON source_documents"
                " FOR EACH ROW EXECUTE FUNCTION fail_delete()"
            )
        )
    with db.connect() as conn:
        with pytest.raises(sa.exc.DBAPIError, match="injected failure"):
            sweep_expired(conn, as_of=NOW)
        assert conn.execute(sa.text("SHOW synchronous_commit")).scalar_one() == "on"
        conn.rollback()
        assert keys(conn) == {"old"} and audit(conn) == []


def test_two_sweeps_started_together_delete_each_item_once(db, database_url):
    from resources.postgres import PostgresResource

    n = 150
    with db.begin() as conn:
        for i in range(n):
            add_doc(
                conn,
                f"doc-{i:03d}",
                dt.datetime(2001, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=i),
                5,
                chunks=1,
            )
    barrier = threading.Barrier(2)
    results, errors = [], []

    def sweep():
        try:
            with PostgresResource(database_url=database_url).connect() as conn:
                barrier.wait()
                results.append(sweep_expired(conn, as_of=NOW, batch_size=4))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(r.documents for r in results) == n
    with db.connect() as conn:
        assert keys(conn) == set()
        rows = conn.execute(sa.text("SELECT count(*), count(DISTINCT content_id) FROM retention_audit")).one()
        assert tuple(rows) == (n, n)
        by_sweep = conn.execute(
            sa.text("SELECT sweep_id::text, count(*) FROM retention_audit GROUP BY 1")
        ).all()
    assert {s: c for s, c in by_sweep} == {r.sweep_id: r.documents for r in results if r.documents}


def test_sweep_waits_for_the_advisory_lock(db, database_url):
    from resources.postgres import PostgresResource

    with db.begin() as conn:
        add_doc(conn, "old", dt.datetime(2001, 1, 1, tzinfo=UTC), 1)
    done = threading.Event()

    def sweep():
        with PostgresResource(database_url=database_url).connect() as conn:
            sweep_expired(conn, as_of=NOW)
        done.set()

    with db.connect() as holder:
        holder.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(Lock.RETENTION)})
        worker = threading.Thread(target=sweep)
        worker.start()
        assert not done.wait(0.5)
        with db.connect() as conn:
            assert keys(conn) == {"old"}
        holder.commit()
        worker.join(30)
    assert done.is_set()
    with db.connect() as conn:
        assert keys(conn) == set()


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_ingestion_writes_provenance_from_frontmatter_and_defaults(db, tmp_path):
    root = tmp_path / "content"
    write(
        root,
        "terms.md",
        "---\nretention_years: 2\nlicense: CC-BY-4.0\nrights_holder: Acme\n"
        "acquired_at: 2019-04-01\nsource_uri: https://example.com/terms\n---\n# Terms\n\nBody.\n",
    )
    write(root, "plain.md", "# Plain\n\nBody.\n")
    write(root, "forever.md", "---\nretention_years: null\n---\n# Forever\n\nBody.\n")
    write(root, "bad.md", "---\nretention_years: soon\n---\n# Bad\n\nBody.\n")
    sources = ContentSourcesResource(content_dir=str(root))
    defaults = {"local": ProvenanceDefaults(retention_years=7, license_type="proprietary")}
    with db.connect() as conn:
        stats = sync_documents(conn.engine, sources.content_path, (), defaults)
        rows = {
            r.source_key: r
            for r in conn.execute(
                sa.text(
                    "SELECT d.source_key, p.* , d.acquired_at AS doc_acquired_at, d.content_sha256 AS doc_sha"
                    " FROM provenance p JOIN source_documents d ON d.id = p.content_id"
                )
            )
        }
    assert [(k, "retention_years" in r) for _, k, r in stats.errors] == [("bad.md", True)]
    assert set(rows) == {"terms.md", "plain.md", "forever.md"}
    terms, plain = rows["terms.md"], rows["plain.md"]
    assert (terms.retention_years, terms.license_type, terms.rights_holder) == (2, "CC-BY-4.0", "Acme")
    assert terms.source_uri == "https://example.com/terms"
    assert terms.acquired_at == dt.datetime(2019, 4, 1, tzinfo=JST)
    assert terms.expires_at == dt.datetime(2021, 4, 1, tzinfo=JST)
    assert (plain.retention_years, plain.license_type, plain.acquisition_method) == (
        7,
        "proprietary",
        "file_import",
    )
    assert plain.source_uri == "local:plain.md" and plain.acquired_at == plain.doc_acquired_at
    assert plain.hash_sha256 == plain.doc_sha
    assert rows["forever.md"].retention_years is None


def test_reingest_refreshes_defaults_and_keeps_governance_columns(db, tmp_path):
    root = tmp_path / "content"
    write(root, "a.md", "# A\n\nBody.\n")
    sources = ContentSourcesResource(content_dir=str(root))
    with db.connect() as conn:
        sync_documents(conn.engine, sources.content_path, (), {})
        conn.execute(sa.text("UPDATE provenance SET legal_hold = true, permission_flag = true"))
        conn.commit()
        stats = sync_documents(
            conn.engine, sources.content_path, (), {"*": ProvenanceDefaults(retention_years=3)}
        )
        row = conn.execute(
            sa.text("SELECT retention_years, legal_hold, permission_flag FROM provenance")
        ).one()
    assert stats.unchanged == 1
    assert tuple(row) == (3, True, True)


def test_unchanged_reingest_writes_provenance_only_where_the_stored_terms_differ(db, tmp_path):
    """The unchanged path compares the stored terms in Python and skips the upsert when they match; a row
    someone changed or removed is still put right, for terms from frontmatter and from the defaults alike."""
    root = tmp_path / "content"
    write(
        root,
        "terms.md",
        "---\nlicense: CC-BY-4.0\nrights_holder: Acme\nacquired_at: 2019-04-01\n---\n# Terms\n\nBody.\n",
    )
    write(root, "plain.md", "# Plain\n\nBody.\n")
    sources = ContentSourcesResource(content_dir=str(root))
    defaults = {"local": ProvenanceDefaults(retention_years=7, license_type="proprietary")}
    upserts: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        if "INSERT INTO provenance" in statement:
            upserts.append(statement)

    def terms(conn) -> dict:
        return {
            r.source_key: tuple(r[1:])
            for r in conn.execute(
                sa.text(
                    "SELECT d.source_key, p.license_type, p.rights_holder, p.retention_years, p.acquired_at,"
                    " p.acquired_at = d.acquired_at AS from_document"
                    " FROM provenance p JOIN source_documents d ON d.id = p.content_id"
                )
            )
        }

    engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.connect() as conn:
            sync_documents(engine, sources.content_path, (), defaults)
            first = terms(conn)
            conn.commit()
            assert len(upserts) == 1  # the first ingest writes both rows in one statement
            upserts.clear()
            again = sync_documents(engine, sources.content_path, (), defaults)
            assert (again.unchanged, upserts) == (2, [])
            assert terms(conn) == first

            conn.execute(sa.text("UPDATE provenance SET rights_holder = 'Someone else', retention_years = 1"))
            conn.execute(
                sa.text(
                    "DELETE FROM provenance WHERE content_id ="
                    " (SELECT id FROM source_documents WHERE source_key = 'plain.md')"
                )
            )
            conn.commit()
            repaired = sync_documents(engine, sources.content_path, (), defaults)
            assert (repaired.unchanged, len(upserts)) == (2, 1)
            assert terms(conn) == first
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert first["terms.md"] == ("CC-BY-4.0", "Acme", 7, dt.datetime(2019, 4, 1, tzinfo=JST), False)
    assert first["plain.md"][:3] == ("proprietary", None, 7) and first["plain.md"][4] is True


def test_swept_content_is_not_ingested_again_but_new_content_at_the_same_path_is(db, tmp_path):
    root = tmp_path / "content"
    old = "---\nretention_years: 1\nacquired_at: 2015-01-01\n---\n# Old\n\nLicensed text.\n"
    write(root, "licensed.md", old)
    write(root, "table-like.md", "# Kept\n\nBody.\n")
    sources = ContentSourcesResource(content_dir=str(root))
    with db.connect() as conn:
        first = sync_documents(conn.engine, sources.content_path, (), {})
        assert first.inserted_or_updated == 2
        assert sweep_expired(conn).documents == 1

        again = sync_documents(conn.engine, sources.content_path, (), {})
        assert (again.skipped_expired, again.inserted_or_updated, again.unchanged) == (1, 0, 1)
        assert keys(conn) == {"table-like.md"}
        # A frontmatter-only edit (a title, even a longer retention) keeps the body, and with it the hash:
        # still the swept content.
        write(root, "licensed.md", old.replace("retention_years: 1", "retention_years: 50\ntitle: Renamed"))
        assert sync_documents(conn.engine, sources.content_path, (), {}).skipped_expired == 1
        assert keys(conn) == {"table-like.md"}

        write(root, "licensed.md", "---\nretention_years: 1\n---\n# New\n\nA new edition.\n")
        fresh = sync_documents(conn.engine, sources.content_path, (), {})
        assert (fresh.skipped_expired, fresh.inserted_or_updated) == (0, 1)
        assert keys(conn) == {"table-like.md", "licensed.md"}
        assert sweep_expired(conn).documents == 0


def test_asset_dry_run_then_sweep_with_check(db):
    with db.begin() as conn:
        add_doc(conn, "old", dt.datetime(2001, 1, 1, tzinfo=UTC), 1, chunks=2)
        add_doc(
            conn,
            "soon",
            dt.datetime.now(UTC) + dt.timedelta(days=5) - dt.timedelta(days=366 * 3),
            3,
            chunks=0,
        )
        add_doc(conn, "held", dt.datetime(2001, 1, 1, tzinfo=UTC), 1, hold=True)

    def run(dry_run):
        result = dg.materialize(
            [retention_sweep],
            resources={"postgres": db},
            run_config={"ops": {"retention_sweep": {"config": {"dry_run": dry_run, "batch_size": 10}}}},
        )
        assert result.success
        meta = result.asset_materializations_for_node("retention_sweep")[0].metadata
        check = result.get_asset_check_evaluations()[0]
        return {k: v.value for k, v in meta.items()}, check

    meta, check = run(True)
    assert (meta["dry_run"], meta["deleted"], meta["would_delete"], meta["would_delete_chunks"]) == (
        True,
        0,
        1,
        2,
    )
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert meta["held_by_legal_hold"] == 1 and meta["expiring_next_30_days"] == 1
    assert "`soon`" in meta["expiring_soonest"]

    meta, check = run(False)
    assert (meta["deleted"], meta["chunks_deleted"], meta["embeddings_deleted"]) == (1, 2, 2)
    assert check.passed and check.metadata["expired_unprotected_remaining"].value == 0
    with db.connect() as conn:
        assert keys(conn) == {"soon", "held"}
