import pytest
import sqlalchemy as sa

from pipelines import migrations
from pipelines.db import mask_url, normalise_url


def test_migrations_are_recorded_and_idempotent(engine):
    names = [m.name for m in migrations.discover()]
    with engine.connect() as conn:
        recorded = conn.execute(sa.text("SELECT name FROM schema_migrations ORDER BY name")).scalars().all()
    assert recorded == names
    assert migrations.apply_migrations(engine) == []


def test_changed_applied_migration_is_an_error(engine, tmp_path):
    for m in migrations.discover():
        (tmp_path / m.name).write_text(m.sql)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    with pytest.raises(migrations.MigrationError, match=first.name):
        migrations.apply_migrations(engine, tmp_path)


def test_new_migration_is_applied_in_order(engine, tmp_path):
    for m in migrations.discover():
        (tmp_path / m.name).write_text(m.sql)
    (tmp_path / "9998_extra_table.sql").write_text("CREATE TABLE extra_a (id int);")
    (tmp_path / "9999_extra_column.sql").write_text("ALTER TABLE extra_a ADD COLUMN b int;")
    assert migrations.apply_migrations(engine, tmp_path) == ["9998_extra_table.sql", "9999_extra_column.sql"]
    with engine.connect() as conn:
        cols = (
            conn.execute(
                sa.text(
                    "SELECT column_name FROM information_schema.columns WHERE table_name='extra_a' ORDER BY 1"
                )
            )
            .scalars()
            .all()
        )
    assert cols == ["b", "id"]


def test_failed_migration_rolls_back_whole_file(engine, tmp_path):
    for m in migrations.discover():
        (tmp_path / m.name).write_text(m.sql)
    (tmp_path / "9999_broken.sql").write_text("CREATE TABLE half_done (id int); SELECT 1/0;")
    with pytest.raises(sa.exc.DBAPIError):
        migrations.apply_migrations(engine, tmp_path)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('half_done')")).scalar() is None
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM schema_migrations WHERE name='9999_broken.sql'")
            ).scalar()
            == 0
        )


def test_badly_named_migration_is_rejected(tmp_path):
    (tmp_path / "1_x.sql").write_text("SELECT 1")
    with pytest.raises(migrations.MigrationError, match=r"1_x\.sql"):
        migrations.discover(tmp_path)


def test_password_is_masked():
    url = normalise_url("postgres://alice:s3cret@db.example.com:5432/rag")
    assert url.startswith("postgresql+psycopg://")
    shown = mask_url(url)
    assert "s3cret" not in shown and "alice" in shown and "***" in shown
