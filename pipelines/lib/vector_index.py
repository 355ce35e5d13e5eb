"""Per-model vector index definitions, model-name handling and recall arithmetic. Pure functions, no database.

Every model shares `chunk_embeddings.embedding` (an untyped `vector`), so each model gets a partial
expression index: the cast gives the index the fixed dimension it needs and the predicate keeps the other
models' rows (of other dimensions) out of it. Queries must repeat the exact expression and predicate
for the planner to pick the index, so both come from here (`index_plan`, `index_key_sql`, `query_key_sql`):
the build, the search, the recall check and applications' SQL all follow the one definition.

Three kinds, chosen by `VECTOR_INDEX_KIND` (docs/scaling.md has the measurements behind the default):
- `hnsw_bq`: HNSW over `binary_quantize(embedding)::bit(d)` with Hamming distance. One bit per
  dimension makes the graph's vectors 32× smaller than the stored ones, so the build is many times faster
  and fits in memory at a million vectors; the search fetches `rerank_factor` × k candidates through it and
  re-ranks them by exact cosine distance on the stored full-precision vectors.
- `hnsw_halfvec` (default): HNSW over `halfvec` casts, re-ranked the same way.
- `ivfflat_halfvec`: IVFFlat over `halfvec` casts, re-ranked the same way.
Every kind's index has a name of its own, so that a switch builds the new one beside the old.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

# pgvector's HNSW limits: `vector` up to 2,000 dimensions, `halfvec` up to 4,000.
VECTOR_MAX_INDEX_DIMS = 2000
HALFVEC_MAX_INDEX_DIMS = 4000
# pgvector's storage limit for any vector column.
MAX_DIMENSIONS = 16000

# Model ids seen in the wild: `text-embedding-3-small@512`, `BAAI/bge-m3`, `nomic-embed-text:v1.5`.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")
_INDEX_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PG_MEMORY = re.compile(r"^\s*(\d{1,9})\s*(kB|MB|GB|TB)?\s*$")
_MEMORY_UNITS_KB = {None: 1, "kB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}


# pgvector's HNSW limit for `bit`.
BIT_MAX_INDEX_DIMS = 64000


class IndexConfigError(ValueError):
    pass


@dataclass(frozen=True)
class IndexKind:
    """One way of indexing a model's vectors: the access method, what it is built over, its distance."""

    name: str
    method: str  # `hnsw` | `ivfflat`
    type_name: str  # what the index holds: `halfvec` | `bit`
    opclass: str
    operator: str  # the distance operator its opclass serves
    # Candidates fetched through the index per result wanted, re-ranked exactly on the full vectors.
    rerank_factor: int
    max_dims: int
    name_tag: str  # in the index's name, so that each kind's index of a model is told apart


INDEX_KINDS: dict[str, IndexKind] = {
    # Hamming distance on one bit per dimension ranks coarsely: more candidates, all re-ranked exactly.
    "hnsw_bq": IndexKind(
        "hnsw_bq", "hnsw", "bit", "bit_hamming_ops", "<~>", 20, BIT_MAX_INDEX_DIMS, "hnswbq"
    ),
    # halfvec's rounding (~1e-3 relative) only reorders near-ties, which four times k candidates hold.
    "hnsw_halfvec": IndexKind(
        "hnsw_halfvec", "hnsw", "halfvec", "halfvec_cosine_ops", "<=>", 4, HALFVEC_MAX_INDEX_DIMS, "hnsw"
    ),
    "ivfflat_halfvec": IndexKind(
        "ivfflat_halfvec", "ivfflat", "halfvec", "halfvec_cosine_ops", "<=>", 4, 2000, "ivfflat"
    ),
}
# `auto`, the default: halfvec HNSW while its graph fits in the build's memory ceiling (HNSW_MAINTENANCE_WORK_MEM,
# 2 GB by default: 335,544 vectors of 1,536 dimensions by hnsw_graph_kb), IVFFlat on halfvec beyond. Measured on
# corpus-shaped 1,536-d vectors (docs/scaling.md#choosing-the-index): at 100,000 the graph fits and HNSW answers
# fastest; at a million it spilled out of memory and took 1,532 s to build with recall@10 0.81, where IVFFlat
# built in 167 s (9.2x faster) with recall@10 1.000 and a p95 1.75x HNSW's. Binary quantization is never chosen
# by itself: at a million vectors its re-ranked candidates held 0.78 of the true top 10.
AUTO_INDEX_KIND = "auto"
DEFAULT_INDEX_KIND = AUTO_INDEX_KIND
AUTO_IN_MEMORY, AUTO_BEYOND_MEMORY = "hnsw_halfvec", "ivfflat_halfvec"


def validate_index_kind(value: str) -> str:
    if value != AUTO_INDEX_KIND and value not in INDEX_KINDS:
        raise IndexConfigError(
            f"VECTOR_INDEX_KIND must be {AUTO_INDEX_KIND} or one of {', '.join(INDEX_KINDS)}, got {value!r}"
        )
    return value


def resolve_index_kind(
    kind: str,
    dimensions: int,
    rows: int | None = None,
    ceiling: str | None = None,
    current: str | None = None,
) -> str:
    """The concrete kind `kind` means for a model of `dimensions` with `rows` vectors, built within the memory
    `ceiling`; `current` is the kind of the model's finished index, if any. `auto` without a row count (naming
    indexes, planning an exact search) means halfvec HNSW. Once built, an IVFFlat index stays until the HNSW
    graph would fit in half the ceiling, so that a model near the limit is not rebuilt back and forth."""
    if validate_index_kind(kind) != AUTO_INDEX_KIND:
        return kind
    if rows is None or ceiling is None or dimensions > INDEX_KINDS[AUTO_BEYOND_MEMORY].max_dims:
        return AUTO_IN_MEMORY
    limit_kb = memory_kb(ceiling)
    need_kb = hnsw_graph_kb(dimensions, rows)
    if current == AUTO_BEYOND_MEMORY:
        return AUTO_BEYOND_MEMORY if need_kb > limit_kb // 2 else AUTO_IN_MEMORY
    return AUTO_BEYOND_MEMORY if need_kb > limit_kb else AUTO_IN_MEMORY


@dataclass(frozen=True)
class IndexPlan:
    """How one model's vectors are indexed and queried with one index kind."""

    model: str
    dimensions: int
    index_name: str
    vector_type: str  # what the index is built over: `halfvec(1536)`, `bit(1536)`
    opclass: str
    indexable: bool  # False above the kind's dimension limit: exact search only
    # The index of the same model built by earlier releases (over `vector(d)` up to 2,000 dimensions), dropped
    # once the halfvec one is built; None when the name did not change.
    legacy_index_name: str | None = None
    kind: str = "hnsw_halfvec"  # a concrete kind, never `auto`

    @property
    def spec(self) -> IndexKind:
        return INDEX_KINDS[self.kind]

    @property
    def type_name(self) -> str:
        """`halfvec`: the index's type without its dimension."""
        return self.vector_type.partition("(")[0]

    @property
    def sibling_index_names(self) -> tuple[str, ...]:
        """The model's indexes of the other kinds and of earlier releases: dropped once this one is valid."""
        others = [index_name_for(self.model, self.dimensions, k) for k in INDEX_KINDS if k != self.kind]
        return tuple(n for n in [*others, self.legacy_index_name] if n and n != self.index_name)

    @property
    def exact_type(self) -> str:
        """`vector(1536)`: the stored full-precision vectors' type, which the exact re-rank compares."""
        return f"vector({self.dimensions})"

    @property
    def column_expr(self) -> str:
        return f"(embedding::{self.vector_type})"


def validate_model_name(name: str) -> str:
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise IndexConfigError(
            f"embedding model name {name!r} is not usable: letters, digits and . _ : / @ + - only, at most 200"
        )
    return name


def validate_dimensions(dimensions: int) -> int:
    if (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not 1 <= dimensions <= MAX_DIMENSIONS
    ):
        raise IndexConfigError(
            f"embedding dimensions must be an integer in 1..{MAX_DIMENSIONS}, got {dimensions!r}"
        )
    return dimensions


def quote_literal(value: str) -> str:
    """A SQL string literal, for DDL where parameters cannot be bound (index predicates)."""
    if "\x00" in value:
        raise IndexConfigError("a SQL literal cannot contain NUL")
    # standard_conforming_strings is on (the default since 9.1), so only quotes need doubling; the E''
    # form is never produced, so a backslash stays an ordinary character.
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    if not _INDEX_IDENT.match(name):
        raise IndexConfigError(f"{name!r} is not a plain lower-case identifier")
    return f'"{name}"'


def index_name_for(model: str, dimensions: int, kind: str = DEFAULT_INDEX_KIND) -> str:
    """A stable identifier derived from the model and the kind: model names hold characters identifiers
    cannot. Above 2,000 dimensions the halfvec HNSW index was always a halfvec one and keeps its name; below,
    it is named apart from the `vector` one earlier releases built, so that neither is mistaken for the
    other. The other kinds carry their tag in the name."""
    spec = INDEX_KINDS[resolve_index_kind(kind, dimensions)]
    salt = "" if dimensions > VECTOR_MAX_INDEX_DIMS else "\x00halfvec"
    digest = hashlib.sha256(f"{model}\x00{dimensions}{salt}".encode()).hexdigest()[:8]
    return f"chunk_embeddings_{spec.name_tag}_{digest}"


def _legacy_index_name(model: str, dimensions: int) -> str | None:
    if dimensions > VECTOR_MAX_INDEX_DIMS:
        return None
    digest = hashlib.sha256(f"{model}\x00{dimensions}".encode()).hexdigest()[:8]
    return f"chunk_embeddings_hnsw_{digest}"


def index_plan(model: str, dimensions: int, kind: str = DEFAULT_INDEX_KIND) -> IndexPlan:
    validate_model_name(model)
    validate_dimensions(dimensions)
    kind = resolve_index_kind(kind, dimensions)
    spec = INDEX_KINDS[kind]
    return IndexPlan(
        model=model,
        dimensions=dimensions,
        index_name=index_name_for(model, dimensions, kind),
        vector_type=f"{spec.type_name}({dimensions})",
        opclass=spec.opclass,
        indexable=dimensions <= spec.max_dims,
        legacy_index_name=_legacy_index_name(model, dimensions),
        kind=kind,
    )


def _typed(type_name: str, dimensions: int) -> sql.Composed:
    return sql.SQL("{}({})").format(sql.Identifier(type_name), sql.Literal(dimensions))


def index_key_sql(plan: IndexPlan, column: sql.Composable) -> sql.Composed:
    """The indexed expression over `column` (the `embedding` column, optionally qualified): the index's
    definition and every query through it must spell it alike."""
    if plan.type_name == "bit":
        return sql.SQL("binary_quantize({})::{}").format(column, _typed("bit", plan.dimensions))
    return sql.SQL("{}::{}").format(column, _typed(plan.type_name, plan.dimensions))


def query_key_sql(plan: IndexPlan, query: sql.Composable) -> sql.Composed:
    """The query vector (`query`, a bound full-precision vector) brought to the index's type."""
    full = sql.SQL("CAST({} AS {})").format(query, _typed("vector", plan.dimensions))
    if plan.type_name == "bit":
        return sql.SQL("binary_quantize({})::{}").format(full, _typed("bit", plan.dimensions))
    return sql.SQL("CAST({} AS {})").format(query, _typed(plan.type_name, plan.dimensions))


def exact_key_sql(plan: IndexPlan, column: sql.Composable) -> sql.Composed:
    """The stored vectors at full precision: what the exact re-rank compares."""
    return sql.SQL("{}::{}").format(column, _typed("vector", plan.dimensions))


# Candidates fetched through the halfvec HNSW index per result wanted (the other kinds': `IndexKind.rerank_factor`).
RERANK_FACTOR = INDEX_KINDS["hnsw_halfvec"].rerank_factor
# hnsw.ef_search's ceiling: an index scan returns at most this many candidates.
MAX_CANDIDATES = 1000
# Below this many vectors a model gets no HNSW index and search is exact: the build is saved while a full scan
# is about as fast as the index. Measured on 2 shared cores (`make bench` prints the crossover table), 1,536-d:
# at 1,000 vectors the exact scan was as fast as the index or faster, from 2,000 the index wins, and at 5,000
# the exact scan took 1.7-2.7x the index's p95.
DEFAULT_HNSW_MIN_ROWS = 2000


# Parallel maintenance workers an index build may use besides its leader (pgvector builds HNSW in parallel
# since 0.6). The vectors live out of line, so the table's own pages are few and Postgres would plan no
# worker for them: the build session also lowers min_parallel_table_scan_size.
DEFAULT_BUILD_WORKERS = 2
MAX_BUILD_WORKERS = 64


def validate_build_workers(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BUILD_WORKERS:
        raise IndexConfigError(
            f"HNSW_BUILD_WORKERS must be a whole number in 0..{MAX_BUILD_WORKERS}, got {value!r}"
        )
    return value


def candidates_for(k: int, kind: str) -> int:
    """How many rows the index scan hands to the exact re-rank for a top-k search."""
    return min(MAX_CANDIDATES, max(k, k * INDEX_KINDS[kind].rerank_factor))


def ivfflat_lists(rows: int) -> int:
    """IVFFlat's list count for `rows` vectors, pgvector's advice: rows / 1000 up to a million, √rows above."""
    return max(1, rows // 1000 if rows <= 1_000_000 else int(rows**0.5))


def ivfflat_probes(lists: int) -> int:
    """Lists probed per query: pgvector's advice of √lists up to 10 probed lists, then 1 % of the lists. At a
    million corpus-shaped vectors (1,000 lists) 10 probed lists found the whole true top 10 at a p95 of 32 ms,
    where √lists (32) took 89 ms for the same recall (docs/scaling.md#choosing-the-index). The retrieval
    contract computes the same (migration 0019, ivfflat_probes_for)."""
    return max(1, min(lists, max(-(-lists // 100), min(10, round(lists**0.5)))))


def validate_min_rows(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise IndexConfigError(f"HNSW_MIN_ROWS must be a whole number of vectors, 0 or more, got {value!r}")
    return value


def should_build_index(plan: IndexPlan, rows: int, min_rows: int) -> bool:
    """Whether `rows` vectors of the model are worth an HNSW index: it fits HNSW's limits and holds at least
    `min_rows` vectors (0 always builds)."""
    return plan.indexable and rows >= validate_min_rows(min_rows)


def memory_kb(value: str) -> int:
    """A `maintenance_work_mem` value in kB (validated)."""
    return int(validate_pg_memory(value)[: -len("kB")])


def validate_pg_memory(value: str) -> str:
    """A `maintenance_work_mem` value such as `512MB`; refused when outside Postgres' accepted range."""
    m = _PG_MEMORY.match(value or "")
    if not m:
        raise IndexConfigError(f"HNSW_MAINTENANCE_WORK_MEM {value!r} must look like 512MB, 2GB or 65536kB")
    kb = int(m.group(1)) * _MEMORY_UNITS_KB[m.group(2)]
    if not 1024 <= kb <= 2**31 - 1:
        raise IndexConfigError(f"HNSW_MAINTENANCE_WORK_MEM {value!r} must be between 1MB and 2TB")
    return f"{kb}kB"


# What an HNSW build holds in memory per vector besides the vector itself: the neighbour lists (m = 16, so
# 32 links on layer 0) and the element's header, rounded up; measured ~8 KB per 1,536-d `vector` in all.
HNSW_GRAPH_BYTES_PER_ELEMENT = 2048
MIN_BUILD_MEMORY_KB = 64 * 1024


# IVFFlat's k-means runs over a sample of 50 vectors per list, at least 10,000.
IVFFLAT_SAMPLE_PER_LIST = 50
IVFFLAT_MIN_SAMPLE = 10_000


def _value_bytes(plan: IndexPlan) -> int:
    if plan.type_name == "bit":
        return (plan.dimensions + 7) // 8
    return plan.dimensions * (2 if plan.type_name == "halfvec" else 4)


def _hnsw_need_kb(value_bytes: int, rows: int) -> int:
    """What an HNSW build over `rows` indexed values of `value_bytes` holds in memory, plus a quarter."""
    return rows * (value_bytes + HNSW_GRAPH_BYTES_PER_ELEMENT) * 5 // 4 // 1024


def hnsw_graph_kb(dimensions: int, rows: int) -> int:
    """What a halfvec HNSW build over `rows` vectors of `dimensions` holds in memory, plus a quarter."""
    return _hnsw_need_kb(dimensions * 2, rows)


def ivfflat_build_bytes(plan: IndexPlan, rows: int) -> int:
    """What pgvector's IVFFlat build allocates before it reads a row, and refuses to start without: its sample
    (50 vectors a list, never under 10,000), the k-means lower bounds (a float per sample and list), the
    centres and their pairwise distances. At a million 1,536-d vectors (985 lists) that is ~360 MB, what
    pgvector 0.8 asked for."""
    lists = ivfflat_lists(rows)
    sample = max(lists * IVFFLAT_SAMPLE_PER_LIST, IVFFLAT_MIN_SAMPLE)
    return sample * (_value_bytes(plan) + 8 + 4 * lists) + lists * plan.dimensions * 4 * 2 + lists * lists * 4


def hnsw_build_memory_kb(plan: IndexPlan, rows: int, ceiling: str) -> int:
    """`maintenance_work_mem` (kB) for building `plan`'s index over `rows` vectors: for HNSW the whole graph
    plus a quarter, so that the build never spills (a graph that outgrows the memory slows the build
    sharply); for IVFFlat its k-means sample; never above `ceiling`, the operator's limit, nor below 64 MB."""
    if plan.spec.method == "ivfflat":
        need_kb = ivfflat_build_bytes(plan, rows) * 5 // 4 // 1024
    else:
        need_kb = _hnsw_need_kb(_value_bytes(plan), rows)
    return min(memory_kb(ceiling), max(MIN_BUILD_MEMORY_KB, need_kb))


def split_model_name(name: str) -> tuple[str, int | None]:
    """`text-embedding-3-large@1024` → (`text-embedding-3-large`, 1024); a native-size name → (name, None)."""
    base, sep, dims = name.rpartition("@")
    if sep and base and dims.isdigit():
        return base, int(dims)
    return name, None


def recall_at_k(
    approximate: Sequence[tuple[object, float]],
    exact: Sequence[tuple[object, float]],
    k: int,
    tolerance: float = 1e-6,
) -> float:
    """Share of the true top k that the approximate search found; both are rankings of (id, distance).

    A returned row also counts when its distance ties the k-th true one: identical texts have identical
    vectors, and which of several equidistant rows fills the last places is arbitrary for both searches.
    """
    if k < 1:
        raise ValueError("k must be positive")
    truth = list(exact)[:k]
    if not truth:
        return 1.0
    true_ids = {i for i, _ in truth}
    kth = truth[-1][1]
    hits = sum(1 for i, d in list(approximate)[:k] if i in true_ids or d <= kth + tolerance)
    return min(1.0, hits / len(truth))
