"""The Docker client and, when no daemon is reachable, a daemon of the check's own: vfs storage, no
bridge and no iptables (what this machine allows), everything under one temporary directory that is
removed with it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

# The daemon directories this process created: what `leftovers` looks for afterwards.
STARTED_ROOTS: list[Path] = []


class CheckFailed(Exception):
    """A step of the deployment check failed; the message names the cause."""

    said = False  # printed already, where it happened


def _client_binary() -> str:
    # Debian's docker.io client (20.10) builds with its built-in BuildKit; a newer client without the
    # buildx plugin (as /usr/local/bin/docker here) would fall back to the legacy builder, which has
    # no build secrets.
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    raise CheckFailed("no docker client: apt-get install docker.io")


class Docker:
    def __init__(self, host: str | None) -> None:
        self.binary = _client_binary()
        self.env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        if host:
            self.env["DOCKER_HOST"] = host
        self.env["DOCKER_BUILDKIT"] = "1"

    def run(
        self, *args: str, check: bool = True, timeout: float = 600, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args], env=self.env, capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and result.returncode != 0:
            raise CheckFailed(f"docker {' '.join(args[:3])} failed:\n{_tail(result.stdout + result.stderr)}")
        return result

    def reachable(self) -> bool:
        return self.run("info", check=False, timeout=30).returncode == 0

    def compose_command(self) -> list[str]:
        """`docker compose` (v2) where the plugin exists, else Debian's docker-compose 1.29."""
        if self.run("compose", "version", check=False, timeout=30).returncode == 0:
            return [self.binary, "compose"]
        if binary := shutil.which("docker-compose"):
            return [binary]
        raise CheckFailed("neither `docker compose` nor docker-compose: apt-get install docker-compose")


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _wait_for(what: str, condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise CheckFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")


@contextlib.contextmanager
def own_daemon(say) -> Iterator[str]:
    """A dockerd of our own; yields its DOCKER_HOST. On exit: the daemon (and the containerd it
    started) stopped, no mount left under its directory, the directory (every image layer) removed."""
    root = Path(tempfile.mkdtemp(prefix="rag-etl-docker-", dir="/tmp"))
    STARTED_ROOTS.append(root)
    socket = root / "docker.sock"
    log = (root / "dockerd.log").open("w")
    command: Sequence[str] = (
        "dockerd", "--storage-driver=vfs", "--iptables=false", "--bridge=none",
        f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}", f"--pidfile={root / 'dockerd.pid'}",
        "-H", f"unix://{socket}",
    )  # fmt: skip
    daemon = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        host = f"unix://{socket}"
        _wait_for(
            "the Docker daemon's socket", lambda: Docker(host).reachable() or daemon.poll() is not None, 60
        )
        if daemon.poll() is not None:
            raise CheckFailed(
                f"dockerd exited ({daemon.returncode}):\n{_tail((root / 'dockerd.log').read_text())}"
            )
        say(f"started dockerd (pid {daemon.pid}, vfs storage, data under {root})")
        yield host
    finally:
        _stop_daemon(daemon, root)
        log.close()
        say(f"stopped dockerd (pid {daemon.pid}) and removed {root}")


def _stop_daemon(daemon: subprocess.Popen, root: Path) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)
    # Anything still running from the daemon's exec root (containerd, shims) goes too.
    for pid in _pids_mentioning(str(root)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for mount in _mounts_under(root):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        raise CheckFailed(f"could not remove {root}")


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
    return pids


def _mounts_under(root: Path) -> list[str]:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return sorted((m for m in mounts if m.startswith(str(root))), reverse=True)


def leftovers() -> list[str]:
    """What a finished check must not leave: a process of its daemon, its directory, a mount in it."""
    found = []
    for root in STARTED_ROOTS:
        found += [f"process {pid}" for pid in _pids_mentioning(str(root))]
        found += [f"mount {m}" for m in _mounts_under(root)]
        found += [str(root)] if root.exists() else []
    return found
