"""The SQL layout: every statement in sql/queries/<stage>/<verb>_<object>.sql, every name the code asks
for present, identifier templates filled only with psycopg.sql objects."""

import re
from pathlib import Path

import pytest
from psycopg import sql

from pipelines.sql import QUERIES_DIR, STAGES, composed, load_sql

ROOT = Path(__file__).resolve().parent.parent
# query("x"), composed("x", ...) and load_sql("x") in the code; a name the code builds would not be seen.
_CALL = re.compile(r"""\b(?:query|composed|load_sql)\(\s*["']([^"']+)["']""")


def _referenced_names() -> dict[str, str]:
    found = {}
    for folder in ("pipelines", "assets", "resources", "demo", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for name in _CALL.findall(path.read_text(encoding="utf-8")):
                found[name] = str(path.relative_to(ROOT))
    return found


def test_every_query_file_sits_in_a_stage_folder_under_one_naming_scheme():
    files = sorted(p.relative_to(QUERIES_DIR) for p in QUERIES_DIR.rglob("*") if p.is_file())
    assert files
    bad = [str(f) for f in files if len(f.parts) != 2 or f.parts[0] not in STAGES or f.suffix != ".sql"]
    bad += [str(f) for f in files if not re.fullmatch(r"[a-z]+(_[a-z0-9]+)+", f.stem)]
    assert bad == []


def test_every_query_the_code_names_exists_and_every_file_is_used():
    referenced = _referenced_names()
    for name, where in referenced.items():
        assert load_sql(name).strip(), f"{where} asks for {name}, which is empty"
    on_disk = {str(p.relative_to(QUERIES_DIR).with_suffix("")) for p in QUERIES_DIR.rglob("*.sql")}
    assert on_disk - set(referenced) == set()


@pytest.mark.parametrize("name", ["copy_chunk_embeddings", "embeddings/../db/select_now", "nowhere/select_x"])
def test_a_name_outside_the_scheme_is_refused(name):
    with pytest.raises(ValueError, match="<stage>/<verb>_<object>"):
        load_sql(name)


def test_identifier_templates_take_psycopg_sql_objects_only():
    with pytest.raises(TypeError, match="index_name"):
        composed("hnsw/drop_index_concurrently", index_name='x"; DROP TABLE provenance; --')  # type: ignore[arg-type]
    statement = composed("hnsw/drop_index_concurrently", index_name=sql.Identifier('we"ird'))
    assert 'DROP INDEX CONCURRENTLY IF EXISTS "we""ird"' in statement.as_string(None)
