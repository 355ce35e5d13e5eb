"""The cold path users run: every `dagster job execute` and every run the daemon launches imports the code
location afresh, so loading it must not import what only some steps need (numpy, the OpenAI client, the
splitter and its tokenizers, pandas). Checked in a fresh interpreter, the way a run starts."""

import json
import subprocess
import sys

HEAVY = ("numpy", "openai", "pandas", "semantic_text_splitter", "tokenizers", "tiktoken", "pgvector")


def test_loading_the_code_location_imports_none_of_the_heavy_modules():
    code = (
        "import json, sys\n"
        "import location.definitions as d\n"
        "assert d.defs.resolve_job_def('ingestion_job') is not None\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_steps_still_import_them_when_they_run():
    # The lazily imported names resolve: a renamed module would otherwise only fail inside a run.
    code = (
        "import json, sys\n"
        "from pipelines.lib.chunking import _splitter\n"
        "from pipelines.db import _register_vector\n"
        "from pipelines.lib.vectors import as_matrix\n"
        "_splitter(100, 10)\n"
        "as_matrix([[1.0]])\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert {"numpy", "semantic_text_splitter"} <= set(json.loads(out.stdout.strip().splitlines()[-1]))
