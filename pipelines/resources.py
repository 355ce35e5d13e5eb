"""Resources built from the environment, for the code location and for `make run`."""

from __future__ import annotations

import os

import dagster as dg

from resources.postgres import PostgresResource


def _env(name: str):
    """`dg.EnvVar` for a variable that is set, so that secrets are resolved at run time and never stored."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "postgres": PostgresResource(database_url=_env("DATABASE_URL")),
    }
