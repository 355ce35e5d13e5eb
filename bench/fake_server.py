"""The zero-latency fake embeddings server in a process of its own, so that serving vectors does not share
the interpreter (and its lock) with the pipeline being measured."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

INPUTS = "inputs"  # a line on the server's stdin: it answers with the texts embedded so far


@dataclass(frozen=True)
class FakeServerProcess:
    base_url: str
    proc: subprocess.Popen[str]

    def inputs_sent(self) -> int:
        """Embedding inputs the server has answered so far, whoever sent them."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(INPUTS + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())


@contextlib.contextmanager
def fake_openai_process(topics: int = 0) -> Iterator[FakeServerProcess]:
    """Yields the running server (its vectors around `topics` centres, uniform with 0); it stops when the
    block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_server", str(topics)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield FakeServerProcess(proc.stdout.readline().strip(), proc)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def main() -> None:
    from testing.fake_openai import FakeOpenAI

    with FakeOpenAI() as fake:
        fake.topics = int(sys.argv[1]) if len(sys.argv) > 1 else 0
        fake.keep_texts = False
        print(fake.base_url, flush=True)
        for line in sys.stdin:  # until the parent closes our stdin
            if line.strip() == INPUTS:
                with fake.lock:
                    print(fake.inputs_answered, flush=True)


if __name__ == "__main__":
    main()
