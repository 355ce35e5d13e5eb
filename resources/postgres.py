"""The project's database as a Dagster resource; connections and the embedded server are in
`pipelines.db`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from pydantic import PrivateAttr

from pipelines.db import DEFAULT_DATA_DIR, embedded_server_url, get_engine, mask_url, normalise_url
from pipelines.hnsw import (
    DEFAULT_BUILD_WORKERS,
    DEFAULT_HNSW_MIN_ROWS,
    DEFAULT_INDEX_KIND,
    DEFAULT_MAINTENANCE_WORK_MEM,
)
from pipelines.lib.deletion_safety import DEFAULT_DELETED_VECTOR_GRACE_DAYS
from pipelines.migrations import DEFAULT_SETTINGS
from pipelines.models import DEFAULT_RETIRED_GRACE_DAYS
from resources.fieldwise import FieldwiseConfigResource


class PostgresResource(FieldwiseConfigResource):
    """The project's database. Leave `database_url` unset to use the embedded server under `.data/`."""

    database_url: str | None = None
    data_dir: str = str(DEFAULT_DATA_DIR)
    # Storage policy of the vectors: how long a retired model's vectors stay (for an instant switch back)
    # and the memory an HNSW build may use.
    retired_grace_days: float = DEFAULT_RETIRED_GRACE_DAYS
    # How long the vectors of deleted chunks stay reusable (0: not kept), so re-added content is free.
    deleted_vector_grace_days: float = DEFAULT_DELETED_VECTOR_GRACE_DAYS
    hnsw_maintenance_work_mem: str = DEFAULT_MAINTENANCE_WORK_MEM
    # Below this many vectors a model gets no HNSW index (search is exact), and a build's parallel workers.
    hnsw_min_rows: int = DEFAULT_HNSW_MIN_ROWS
    hnsw_build_workers: int = DEFAULT_BUILD_WORKERS
    # Which index the vectors get (pipelines.lib.vector_index.INDEX_KINDS); a change rebuilds beside the old.
    vector_index_kind: str = DEFAULT_INDEX_KIND
    # `auto`: migrate on first use when this role owns the schema, else check the version; `never`: check.
    migrate_on_start: str = "auto"
    # The roles the security migration creates and grants to.
    app_role: str = DEFAULT_SETTINGS["rag.app_role"]
    analyst_role: str = DEFAULT_SETTINGS["rag.analyst_role"]

    _url: str | None = PrivateAttr(default=None)

    @property
    def url(self) -> str:
        if self._url is None:
            raw = self.database_url or os.environ.get("DATABASE_URL") or embedded_server_url(self.data_dir)
            self._url = normalise_url(raw)
        return self._url

    @property
    def display_url(self) -> str:
        return mask_url(self.url)

    @property
    def engine(self) -> sa.Engine:
        return get_engine(
            self.url,
            migrate=self.migrate_on_start,
            settings={"rag.app_role": self.app_role, "rag.analyst_role": self.analyst_role},
        )

    def hnsw_options(self) -> dict[str, Any]:
        """The index build's settings, as keyword arguments of `ensure_hnsw_index` and `build_model`."""
        return {
            "maintenance_work_mem": self.hnsw_maintenance_work_mem,
            "min_rows": self.hnsw_min_rows,
            "workers": self.hnsw_build_workers,
            "kind": self.vector_index_kind,
        }

    @contextlib.contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A connection inside one transaction: committed on success, rolled back on error."""
        with self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A connection whose transactions the caller commits batch by batch."""
        with self.engine.connect() as conn:
            yield conn
