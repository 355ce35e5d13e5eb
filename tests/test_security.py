"""Roles, grants and row-level security on real Postgres: every grant tried as the role itself, allowed
and refused; the pipeline as a non-superuser schema owner; the read-only schema check; docs/security.md's setup."""

import contextlib
import datetime as dt
import itertools
import os
import re
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.chunks import document_chunks
from assets.embeddings import chunk_embeddings
from assets.metrics import ai_dialogue_log, rag_metrics_history
from assets.retention import retention_sweep
from assets.sources import source_documents
from location import migrate_cli
from pipelines import migrations
from pipelines.db import get_engine, prepare_schema
from pipelines.metrics import refresh_rag_metrics
from resources.embedders import EmbedderResource
from resources.postgres import PostgresResource
from resources.sources import ContentSourcesResource
from tests.test_metrics import insert, jst, row

APP, ANALYST = "rag_app", "rag_analyst"
DENIED = "42501"  # insufficient_privilege: missing grants and row-level security violations alike
APP_READS = {
    "active_chunk_embeddings",
    "document_chunks",
    "source_documents",
    "ai_dialogue_log",
    "schema_migrations",
}
ANALYST_READS = {"rag_metrics_history", "provenance", "retention_audit", "erasure_audit", "schema_migrations"}
SECURITY_DOC = Path(__file__).resolve().parents[1] / "docs" / "security.md"
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_names)}"


@contextlib.contextmanager
def as_role(engine: sa.Engine, role: str, user_id: str | None = None):
    """A transaction run with `role`'s privileges (SET LOCAL ROLE), rolled back at the end."""
    with engine.connect() as conn:
        conn.exec_driver_sql(f'SET LOCAL ROLE "{role}"')
        if user_id is not None:
            conn.execute(sa.text("SELECT set_config('app.user_id', :u, true)"), {"u": user_id})
        try:
            yield conn
        finally:
            conn.rollback()


def attempt(conn: sa.Connection, statement: str, params: dict | None = None) -> str | None:
    """None when the statement ran, else its SQLSTATE; inside a savepoint so the transaction goes on."""
    savepoint = conn.begin_nested()
    try:
        conn.execute(sa.text(statement), params or {})
    except sa.exc.DBAPIError as exc:
        savepoint.rollback()
        return exc.orig.sqlstate
    savepoint.rollback()
    return None


def relations(engine: sa.Engine, kinds: str = "rvpm") -> dict[str, str]:
    """Every table and view of the schema (name → first column), including ones added after this test."""
    with engine.connect() as conn:
        return dict(
            conn.execute(
                sa.text(
                    "SELECT c.relname, (SELECT attname FROM pg_attribute WHERE attrelid = c.oid AND attnum = 1)"
                    " FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
                    " AND c.relkind = ANY(:kinds)"
                ),
                {"kinds": list(kinds)},
            ).all()
        )


@pytest.fixture
def seeded(postgres: PostgresResource) -> sa.Engine:
    """An active, a retired and a building model with a vector each, provenance, audits, a metrics day and
    dialogue rows of users A and B."""
    engine = postgres.engine
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO embedding_models (name, provider, model, dimensions, status) VALUES"
            " ('m-active', 'local', 'm-active', 3, 'active'), ('m-retired', 'local', 'm-retired', 3, 'retired'),"
            " ('m-building', 'local', 'm-building', 3, 'building');"
            "INSERT INTO source_documents (id, source, source_key, content, content_sha256)"
            " VALUES (1, 'files', 'a.md', 'Alpha', 'h1');"
            "INSERT INTO document_chunks (id, document_id, chunk_index, content, content_sha256, char_start,"
            " char_end, token_count) VALUES (10, 1, 0, 'Alpha', 'h1', 0, 5, 2);"
            "INSERT INTO chunk_embeddings (chunk_id, model, embedding, content_sha256, token_count) VALUES"
            " (10, 'm-active', '[1,0,0]', 'h1', 2), (10, 'm-retired', '[0,1,0]', 'h1', 2),"
            " (10, 'm-building', '[0,0,1]', 'h1', 2);"
            "INSERT INTO provenance (content_id, content_type, source_uri, acquisition_method, hash_sha256,"
            " acquired_at) VALUES (1, 'text/markdown', 'file://a.md', 'upload', 'h1', now());"
            "INSERT INTO erasure_audit (erasure_id, rows_deleted) VALUES (gen_random_uuid(), 0);"
        )
    insert(
        postgres,
        [
            row(jst("2025-06-10", 9), user_id="A", query="A's question"),
            row(jst("2025-06-10", 10), user_id="A", query="A's second question"),
            row(jst("2025-06-10", 11), user_id="B", query="B's question"),
        ],
    )
    with engine.begin() as conn:
        day = dt.datetime(2025, 6, 10, tzinfo=jst("2025-06-10").tzinfo)
        refresh_rag_metrics(conn, day, day + dt.timedelta(days=1))
    return engine


# ---------------------------------------------------------------- grants


@pytest.mark.parametrize(("role", "readable"), [(APP, APP_READS), (ANALYST, ANALYST_READS)])
def test_each_role_reads_exactly_its_relations(seeded, role, readable):
    names = relations(seeded)
    assert readable <= set(names)
    with as_role(seeded, role, user_id="A") as conn:
        outcome = {name: attempt(conn, f'SELECT * FROM "{name}" LIMIT 1') for name in names}
    assert {n for n, state in outcome.items() if state is None} == readable
    assert {state for n, state in outcome.items() if n not in readable} == {DENIED}


@pytest.mark.parametrize("role", [APP, ANALYST])
def test_no_role_updates_or_deletes_anything_and_only_the_app_inserts_dialogue(seeded, role):
    tables = relations(seeded, kinds="rp")
    with as_role(seeded, role, user_id="A") as conn:
        for name, column in tables.items():
            assert attempt(conn, f'DELETE FROM "{name}" WHERE false') == DENIED, name
            assert attempt(conn, f'UPDATE "{name}" SET "{column}" = "{column}" WHERE false') == DENIED, name
            if role == APP and name == "ai_dialogue_log":
                # past the privilege and row-level checks, stopped by NOT NULL on query
                assert attempt(conn, "INSERT INTO ai_dialogue_log (user_id) VALUES ('A')") == "23502"
            else:
                assert attempt(conn, f'INSERT INTO "{name}" DEFAULT VALUES') == DENIED, name


def test_app_sees_only_the_active_models_vectors(seeded):
    with as_role(seeded, APP) as conn:
        got = conn.execute(
            sa.text(
                "SELECT model, chunk_id FROM active_chunk_embeddings"
                " ORDER BY embedding <=> CAST('[0,1,0]' AS vector) LIMIT 5"
            )
        ).all()
        assert got == [("m-active", 10)]
        assert attempt(conn, "SELECT embedding FROM chunk_embeddings WHERE model = 'm-retired'") == DENIED
        assert attempt(conn, "SELECT * FROM embedding_models") == DENIED
    with seeded.connect() as conn:  # the owner still sees all three
        assert conn.execute(sa.text("SELECT count(*) FROM chunk_embeddings")).scalar() == 3


def test_app_cannot_read_provenance_or_audits(seeded):
    with as_role(seeded, APP, user_id="A") as conn:
        for table in ("provenance", "retention_audit", "erasure_audit", "rag_metrics_history"):
            assert attempt(conn, f"SELECT count(*) FROM {table}") == DENIED, table


# ---------------------------------------------------------------- row-level security


def test_each_user_sees_only_their_own_dialogue(seeded):
    queries = "SELECT query FROM ai_dialogue_log ORDER BY created_at"
    with as_role(seeded, APP, user_id="A") as conn:
        assert conn.execute(sa.text(queries)).scalars().all() == ["A's question", "A's second question"]
        assert conn.execute(sa.text("SELECT count(*) FROM ai_dialogue_log WHERE user_id = 'B'")).scalar() == 0
    with as_role(seeded, APP, user_id="B") as conn:
        assert conn.execute(sa.text(queries)).scalars().all() == ["B's question"]
    with as_role(seeded, APP) as conn:  # the application forgot to name the user: nothing
        assert conn.execute(sa.text("SELECT count(*) FROM ai_dialogue_log")).scalar() == 0


def test_user_inserts_only_their_own_rows_and_never_deletes(seeded):
    new = "INSERT INTO ai_dialogue_log (user_id, query) VALUES (:u, 'new') RETURNING id"
    with as_role(seeded, APP, user_id="A") as conn:
        assert attempt(conn, new, {"u": "B"}) == DENIED
        new_id = conn.execute(sa.text(new), {"u": "A"}).scalar()
        assert conn.execute(sa.text("SELECT count(*) FROM ai_dialogue_log")).scalar() == 3
        assert attempt(conn, "DELETE FROM ai_dialogue_log WHERE id = :i", {"i": new_id}) == DENIED
        assert (
            attempt(conn, "UPDATE ai_dialogue_log SET user_feedback = 1 WHERE id = :i", {"i": new_id})
            == DENIED
        )
        conn.commit()
    with as_role(seeded, APP, user_id="B") as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM ai_dialogue_log WHERE id = :i"), {"i": new_id}
            ).scalar()
            == 0
        )
    with as_role(seeded, APP) as conn:
        assert attempt(conn, new, {"u": "A"}) == DENIED


def test_analyst_sees_aggregates_not_rows(seeded):
    with as_role(seeded, ANALYST) as conn:
        assert attempt(conn, "SELECT count(*) FROM ai_dialogue_log") == DENIED
        day = conn.execute(sa.text("SELECT total_queries, unique_users FROM rag_metrics_history")).one()
        assert tuple(day) == (3, 2)
        assert conn.execute(sa.text("SELECT count(*) FROM provenance")).scalar() == 1


# ---------------------------------------------------------------- non-superuser owner, migrations


def owner_database(pg_server_url: str, *, createrole: bool = False) -> str:
    """A login role without superuser (optionally CREATEROLE) owning a new database that has `vector`:
    what docs/security.md's managed-Postgres setup produces. Returns the role's URL."""
    role, name = unique("owner"), unique("db")
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        extra = " CREATEROLE" if createrole else ""
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD 'owner-pw'{extra}")
        conn.exec_driver_sql(f"CREATE DATABASE {name} OWNER {role}")
    admin.dispose()
    in_db = sa.make_url(pg_server_url).set(database=name)
    admin = sa.create_engine(in_db, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE EXTENSION vector")
    admin.dispose()
    return in_db.set(username=role, password="owner-pw").render_as_string(hide_password=False)


def superuser_url(url: str, pg_server_url: str) -> str:
    server = sa.make_url(pg_server_url)
    return (
        sa.make_url(url)
        .set(username=server.username, password=server.password)
        .render_as_string(hide_password=False)
    )


def test_pipeline_runs_as_a_non_superuser_schema_owner(pg_server_url, tmp_path):
    url = owner_database(pg_server_url)
    postgres = PostgresResource(database_url=url)
    with postgres.connect() as conn:  # migrated on first use: the role owns the database
        assert (
            conn.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar()
            is False
        )
        assert conn.execute(sa.text("SELECT count(*) FROM schema_migrations")).scalar() == len(
            migrations.discover()
        )
    (tmp_path / "a.md").write_text("# A\n\nAlpha beta gamma.\n")
    resources = {
        "postgres": postgres,
        "content_sources": ContentSourcesResource(content_dir=str(tmp_path)),
        "embedder": EmbedderResource(provider="local"),
    }
    ingest = dg.materialize(
        [source_documents, document_chunks, chunk_embeddings, retention_sweep], resources=resources
    )
    assert ingest.success
    insert(postgres, [row(jst("2025-06-10", 9), user_id="A"), row(jst("2025-06-10", 10), user_id="B")])
    metrics = dg.materialize(
        [ai_dialogue_log, rag_metrics_history], partition_key="2025-06-10", resources=resources
    )
    assert metrics.success
    with postgres.connect() as conn:
        # the owner is not subject to row-level security: both users are counted
        assert tuple(
            conn.execute(sa.text("SELECT total_queries, unique_users FROM rag_metrics_history")).one()
        ) == (2, 2)
        assert conn.execute(sa.text("SELECT count(*) FROM active_chunk_embeddings")).scalar() == 1
    # the roles existed in the cluster, so the owner could grant to them without CREATEROLE
    admin = sa.create_engine(superuser_url(url, pg_server_url), poolclass=sa.pool.NullPool)
    with as_role(admin, APP, user_id="A") as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM active_chunk_embeddings")).scalar() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM ai_dialogue_log")).scalar() == 1
        assert attempt(conn, "SELECT * FROM chunk_embeddings") == DENIED
    admin.dispose()


def _notices(engine: sa.Engine) -> list[str]:
    seen: list[str] = []
    sa.event.listen(
        engine,
        "connect",
        lambda dbapi, _rec: dbapi.add_notice_handler(lambda d: seen.append(d.message_primary)),
    )
    return seen


def test_owner_without_createrole_migrates_and_skips_missing_roles_with_a_notice(pg_server_url):
    engine = sa.create_engine(owner_database(pg_server_url), poolclass=sa.pool.NullPool)
    notices = _notices(engine)
    app, analyst = unique("custom_app"), unique("custom_analyst")
    applied = migrations.apply_migrations(engine, settings={"rag.app_role": app, "rag.analyst_role": analyst})
    assert applied == [m.name for m in migrations.discover()]
    assert any(app in n and "CREATEROLE" in n for n in notices)
    assert any(analyst in n for n in notices)
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM pg_roles WHERE rolname IN (:a, :b)"), {"a": app, "b": analyst}
            ).scalar()
            == 0
        )
    engine.dispose()


def test_owner_with_createrole_creates_the_configured_roles(pg_server_url):
    url = owner_database(pg_server_url, createrole=True)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    app, analyst = unique("custom_app"), unique("custom_analyst")
    migrations.apply_migrations(engine, settings={"rag.app_role": app, "rag.analyst_role": analyst})
    with engine.connect() as conn:
        created = conn.execute(
            sa.text("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN (:a, :b) ORDER BY 1"),
            {"a": app, "b": analyst},
        ).all()
    assert sorted(created) == sorted([(app, False), (analyst, False)])
    engine.dispose()
    admin = sa.create_engine(superuser_url(url, pg_server_url), poolclass=sa.pool.NullPool)
    with as_role(admin, app) as conn:
        assert attempt(conn, "SELECT * FROM active_chunk_embeddings") is None
        assert attempt(conn, "SELECT * FROM provenance") == DENIED
    with as_role(admin, analyst) as conn:
        assert attempt(conn, "SELECT * FROM provenance") is None
        assert attempt(conn, "SELECT * FROM ai_dialogue_log") == DENIED
    admin.dispose()


def _member_url(pg_server_url: str, database_url: str, group: str) -> str:
    login = unique("login")
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {login} LOGIN PASSWORD 'pw' IN ROLE {group}")
    admin.dispose()
    return sa.make_url(database_url).set(username=login, password="pw").render_as_string(hide_password=False)


def test_role_without_ddl_rights_checks_the_schema_read_only(pg_server_url, database_url, monkeypatch):
    monkeypatch.delenv("MIGRATE_ON_START", raising=False)
    url = _member_url(pg_server_url, database_url, APP)
    engine = get_engine(url)  # up to date: the check passes without touching the schema
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT set_config('app.user_id', 'A', true)"))
        assert conn.execute(sa.text("SELECT count(*) FROM ai_dialogue_log")).scalar() == 0
    engine.dispose()

    last = migrations.discover()[-1].name
    owner = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with owner.begin() as conn:
        conn.execute(sa.text("DELETE FROM schema_migrations WHERE name = :n"), {"n": last})
        at = conn.execute(sa.text("SELECT max(name) FROM schema_migrations")).scalar()[:4]
    member = sa.create_engine(url, poolclass=sa.pool.NullPool)
    message = f"database schema is at {at}, this code needs {last[:4]} (missing: {last}): run `make migrate`"
    with pytest.raises(migrations.SchemaBehindError, match=re.escape(message)):
        prepare_schema(member, "auto")
    # `never`: even the owner only checks
    with pytest.raises(migrations.SchemaBehindError, match="make migrate"):
        prepare_schema(owner, "never")
    with owner.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM schema_migrations WHERE name = :n"), {"n": last}
            ).scalar()
            == 0
        )
    member.dispose()
    owner.dispose()


def test_unknown_migrate_on_start_is_refused(monkeypatch):
    from location.resources import build_resources

    monkeypatch.setenv("MIGRATE_ON_START", "sometimes")
    with pytest.raises(ValueError, match=r"MIGRATE_ON_START.*sometimes"):
        build_resources()


def test_migrate_cli_applies_then_checks(pg_server_url, monkeypatch, capsys):
    url = owner_database(pg_server_url)
    monkeypatch.setenv("DATABASE_URL", url)
    assert migrate_cli.main(["--check"]) == 1
    assert "no schema yet" in capsys.readouterr().out
    assert migrate_cli.main([]) == 0
    out = capsys.readouterr().out
    assert migrations.discover()[-1].name in out and "owner-pw" not in out
    assert migrate_cli.main([]) == 0
    assert "nothing (up to date)" in capsys.readouterr().out
    assert migrate_cli.main(["--check"]) == 0


# ---------------------------------------------------------------- README


def readme_sql_blocks() -> list[str]:
    section = SECURITY_DOC.read_text()
    return re.findall(r"```sql\n(.*?)```", section, flags=re.S)


def test_readme_setup_statements_work_as_written(pg_server_url, monkeypatch):
    """docs/security.md's one-time setup, run as its administrator would (names made unique: roles are cluster-wide),
    then `make migrate` as the pipeline role and the application and analyst logins at work."""
    app_block, server_block, database_block = readme_sql_blocks()
    renames = {
        name: unique(name)
        for name in ("rag_pipeline", "rag_app_login", "rag_analyst_login", "rag_app", "rag_analyst", "rag")
    }

    def rename(sql: str) -> str:
        return re.sub(
            r"\b(rag_pipeline|rag_app_login|rag_analyst_login|rag_app|rag_analyst|rag)\b",
            lambda m: renames[m.group(1)],
            sql,
        )

    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        for statement in rename(server_block).split(";\n"):  # one by one, as psql sends them
            if statement.strip():
                conn.exec_driver_sql(statement)
    admin.dispose()
    db_url = sa.make_url(pg_server_url).set(database=renames["rag"])
    admin = sa.create_engine(db_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(rename(database_block))
    admin.dispose()

    def url_of(role: str) -> str:
        return db_url.set(username=renames[role], password="x").render_as_string(hide_password=False)

    monkeypatch.setenv("DATABASE_URL", url_of("rag_pipeline"))
    monkeypatch.setenv("APP_ROLE", renames["rag_app"])
    monkeypatch.setenv("ANALYST_ROLE", renames["rag_analyst"])
    assert migrate_cli.main([]) == 0
    app = sa.create_engine(url_of("rag_app_login"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with app.connect() as conn:
        for _ in range(2):  # the application's example, as written, twice
            conn.exec_driver_sql(app_block)
        # the rows were written as that user, and outside a transaction naming them nobody sees them
        assert conn.execute(sa.text("SELECT count(*) FROM ai_dialogue_log")).scalar() == 0
        conn.exec_driver_sql("BEGIN; SET LOCAL app.user_id = 'demo-user-0001'")
        assert conn.execute(sa.text("SELECT count(*) FROM ai_dialogue_log")).scalar() == 2
        conn.exec_driver_sql("SET LOCAL app.user_id = 'someone-else'")
        assert conn.execute(sa.text("SELECT count(*) FROM ai_dialogue_log")).scalar() == 0
        assert attempt(conn, "SELECT * FROM provenance") == DENIED
        conn.exec_driver_sql("ROLLBACK")
    app.dispose()
    analyst = sa.create_engine(url_of("rag_analyst_login"), poolclass=sa.pool.NullPool)
    with analyst.connect() as conn:
        assert attempt(conn, "SELECT * FROM rag_metrics_history") is None
        assert attempt(conn, "SELECT * FROM ai_dialogue_log") == DENIED
    analyst.dispose()
