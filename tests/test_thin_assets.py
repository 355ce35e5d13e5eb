"""`assets/` is the thin Dagster face of each stage: no function there over 40 lines (decorators apart);
orchestration lives in `pipelines/`, where it is testable without Dagster."""

import ast
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"
LIMIT = 40


def test_no_function_in_assets_is_over_40_lines():
    long = []
    for path in sorted(ASSETS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > LIMIT:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert len(list(ASSETS.glob("*.py"))) >= 8
    assert not long, f"over {LIMIT} lines: {long}"
