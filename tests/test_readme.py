"""README and docs/ are a contract: every command in their ```bash blocks runs against the demo and shows
what the `<!-- expect: regex -->` lines after the block say. A command that cannot run here is left out by
a rule below that says why, never silently."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# README first: its first command, `make run`, sets up the demo the docs' commands run against.
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_BYTES = 10 * 1024

# (command pattern, why it is not run here)
NOT_RUN = [
    (r"^make test\b", "the test suite itself"),
    (r"^make ui\b", "a long-running server (webserver and daemon); the timeline check is in test_demo.py"),
    (r"^make bench\b", "benchmarks run for minutes and print ratios, not demo output"),
    (
        r"^make stop\b",
        "stops the checkout's own embedded server, which a developer's `make ui` may be using;"
        " test_demo.py stops a server of its own",
    ),
    (r"^make clean-db\b", "deletes the checkout's .data/ and .dagster_home/"),
    (
        r"^make prod(-stop)?$",
        "starts (stops) the three long-running deployment processes; test_deploy.py starts them through the same"
        " function and submits runs to them",
    ),
    (
        r"^docker build\b",
        "no Docker daemon on the test machines; test_deploy_config.py checks the Dockerfile's install and commands",
    ),
    (
        r"docker compose\b",
        "no Docker daemon on the test machines; test_deploy_config.py parses compose.yaml and checks its commands",
    ),
    (
        r"^ALERT_WEBHOOK_URL=\"<your",
        "needs your own webhook; test_demo.py runs it against a receiver on 127.0.0.1 and checks what arrives",
    ),
]


@dataclass
class Block:
    line: int
    commands: list[str]
    expect: list[str] = field(default_factory=list)


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for m in re.finditer(
        r"^```bash\n(.*?)^```\n((?:[ \t]*\n)?(?:<!-- expect: .*? -->\n)*)", text, re.M | re.S
    ):
        commands = [re.sub(r"\s+#\s.*$", "", line).strip() for line in m.group(1).splitlines()]
        blocks.append(
            Block(
                line=text.count("\n", 0, m.start()) + 1,
                commands=[c for c in commands if c],
                expect=re.findall(r"<!-- expect: (.*?) -->", m.group(2)),
            )
        )
    return blocks


def not_run_reason(command: str) -> str | None:
    return next((why for pattern, why in NOT_RUN if re.search(pattern, command)), None)


def page_blocks() -> list[tuple[Path, Block]]:
    return [(page, block) for page in PAGES for block in readme_blocks(page.read_text())]


def where(page: Path, block: Block) -> str:
    return f"{page.relative_to(ROOT)} line {block.line}"


def test_blocks_are_found_and_every_command_is_run_or_excused():
    blocks = page_blocks()
    assert len(blocks) >= 8
    assert len(blocks) == sum(page.read_text().count("```bash") for page in PAGES)
    for page, block in blocks:
        runnable = [c for c in block.commands if not_run_reason(c) is None]
        # A block that runs something says what its output must show.
        assert not runnable or block.expect, f"{where(page, block)}: {runnable} without <!-- expect -->"
    used = {p for p, _ in NOT_RUN if any(re.search(p, c) for _, b in blocks for c in b.commands)}
    assert used == {p for p, _ in NOT_RUN}, "a rule for a command no page has any more"


def test_readme_is_short_and_every_local_link_resolves():
    assert len(README.read_bytes()) <= README_MAX_BYTES
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def _shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def demo_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """A fresh database and DAGSTER_HOME for the demo; the checkout's own state is not touched."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "EMBEDDING_", "PYTHONWARNINGS"))
    }
    env.update(
        DATABASE_URL=database_url,
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        # The tests run inside the installed .venv: make must not reinstall it.
        MAKEFLAGS="-o .venv/.installed",
    )
    return env


def test_readme_and_docs_commands_run_against_the_demo(demo_env: dict[str, str]):
    ran = []
    for page, block in page_blocks():
        output = ""
        for command in block.commands:
            if not_run_reason(command):
                continue
            result = _shell(command, demo_env)
            assert result.returncode == 0, f"{where(page, block)}: {command}\n{result.stdout}{result.stderr}"
            output += result.stdout + result.stderr
            ran.append(command)
        for pattern in block.expect:
            assert re.search(pattern, output, re.M), f"{where(page, block)}: no /{pattern}/ in\n{output}"
        if output:
            # Dagster's superseded-CLI and beta warnings are filtered where we invoke the tools.
            assert "Warning:" not in output, output
    assert ran[0] == "make run" and len(ran) >= 4

    # README: a second `make run` embeds nothing.
    again = _shell("make run", demo_env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 embedded by this run in 0 API request(s)" in " ".join(README.read_text().split())
    assert "0 embedded by this run in 0 API request(s)" in again.stdout
