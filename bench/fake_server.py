"""The zero-latency fake embeddings server in a process of its own, so that serving vectors does not share
the interpreter (and its lock) with the pipeline being measured."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def fake_openai_process() -> Iterator[str]:
    """Yields the server's base URL; the server stops when the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def main() -> None:
    from testing.fake_openai import FakeOpenAI

    with FakeOpenAI() as fake:
        print(fake.base_url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


if __name__ == "__main__":
    main()
