"""The fake embeddings server in a process of its own, so that serving vectors does not share the
interpreter (and its lock) with the pipeline being measured. Zero latency and no limits unless given."""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

INPUTS = "inputs"  # a line on the server's stdin: it answers with the texts embedded so far
LIMITS = "limits"  # ... with its rate-limit counters (JSON)
WAIT = "wait"  # `wait N`: ... with the seconds until its limits would admit a request of N tokens


@dataclass(frozen=True)
class FakeServerProcess:
    base_url: str
    proc: subprocess.Popen[str]

    def _ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def inputs_sent(self) -> int:
        """Embedding inputs the server has answered so far, whoever sent them."""
        return int(self._ask(INPUTS))

    def limit_counts(self) -> dict[str, int]:
        """`rate_limited`: requests answered 429 for a limit; `tokens_admitted`: tokens the limits let through;
        `requests`: HTTP requests received."""
        return json.loads(self._ask(LIMITS))

    def seconds_until(self, tokens: int) -> float:
        """The provider's view: how long from now until a request of `tokens` would be admitted."""
        return float(self._ask(f"{WAIT} {tokens}"))


@contextlib.contextmanager
def fake_openai_process(
    latency_s: float = 0.0, requests_per_minute: float | None = None, tokens_per_minute: float | None = None
) -> Iterator[FakeServerProcess]:
    """Yields the running server; it stops when the block ends."""
    args = [sys.executable, "-m", "bench.fake_server", "--latency", str(latency_s)]
    if requests_per_minute:
        args += ["--rpm", str(requests_per_minute)]
    if tokens_per_minute:
        args += ["--tpm", str(tokens_per_minute)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield FakeServerProcess(proc.stdout.readline().strip(), proc)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def main() -> None:
    from testing.fake_openai import FakeOpenAI

    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rpm", type=float, default=None)
    parser.add_argument("--tpm", type=float, default=None)
    opts = parser.parse_args()
    with FakeOpenAI(latency_s=opts.latency, requests_per_minute=opts.rpm, tokens_per_minute=opts.tpm) as fake:
        print(fake.base_url, flush=True)
        for line in sys.stdin:  # until the parent closes our stdin
            words = line.split()
            if words == [INPUTS]:
                with fake.lock:
                    print(len(fake.texts_embedded), flush=True)
            elif words == [LIMITS]:
                with fake.lock:
                    counts = {
                        "rate_limited": fake.rate_limited,
                        "tokens_admitted": fake.tokens_admitted,
                        "requests": fake.request_count,
                    }
                print(json.dumps(counts), flush=True)
            elif len(words) == 2 and words[0] == WAIT:
                print(fake.seconds_until(int(words[1])), flush=True)


if __name__ == "__main__":
    main()
