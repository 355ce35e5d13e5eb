"""The checks made on the built image and the running stack. Each raises CheckFailed naming what it
found; the numbers it relies on are printed as it goes."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from dagster_graphql import DagsterGraphQLClientError

from pipelines.db import PROJECT_ROOT
from testing.deploy_check.docker import CheckFailed
from testing.deploy_check.stack import Stack

Say = Callable[[str], None]
CONTENT = PROJECT_ROOT / "demo" / "content"


def check_image_hygiene(stack: Stack, image: str, work: Path, say: Say) -> None:
    """The pip settings and CA bundle given to the build as secrets are nowhere in the image: not in
    its history or config, not as files (looked at in the running code-server container: with vfs
    storage every extra container is a full copy of the image); and it does not run as root."""
    docker = stack.docker
    shown = docker.run("history", "--no-trunc", image).stdout + docker.run("image", "inspect", image).stdout
    conf = (work / "pip.conf").read_text().splitlines()[1:]
    cert_lines = _cert_lines()
    for line in [*conf, *cert_lines]:
        if line.strip() and line in shown:
            raise CheckFailed(f"a build secret is in {image}'s history or config: {line[:60]!r}")
    probe = (
        "test ! -e /etc/pip.conf || echo /etc/pip.conf;"
        " ls -A /run/secrets 2>/dev/null | grep -v -x -e postgres_password -e openai_api_key | sed 's|^|/run/secrets/|';"
        " test ! -e /app/deploy/secrets || echo /app/deploy/secrets; id -u"
    )
    out = docker.run("exec", stack.containers()["code-server"], "sh", "-c", probe).stdout.split()
    if out[:-1]:
        raise CheckFailed(f"{image} contains build or run secrets: {', '.join(out[:-1])}")
    if out[-1] == "0":
        raise CheckFailed(f"{image} runs as root")
    say(f"history and config free of {len(conf)} pip setting(s) and {len(cert_lines)} CA lines;"
        f" no pip.conf or stray secret file in the image; uid {out[-1]}")  # fmt: skip


def _cert_lines() -> list[str]:
    bundle = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
    if not Path(bundle).exists():
        return []
    lines = [line for line in Path(bundle).read_text().splitlines() if len(line) == 64]
    return lines[-3:]


def data_counts(stack: Stack) -> dict[str, int]:
    ((documents, chunks, vectors, dims),) = stack.sql(
        "rag",
        "SELECT (SELECT count(*) FROM source_documents), (SELECT count(*) FROM document_chunks),"
        " (SELECT count(*) FROM active_chunk_embeddings),"
        " (SELECT coalesce(min(vector_dims(embedding)), 0) FROM active_chunk_embeddings)",
    )
    ((runs,),) = stack.sql("dagster", "SELECT count(*) FROM runs")
    return {"documents": documents, "chunks": chunks, "vectors": vectors, "dimensions": dims, "runs": runs}


def run_ingestion(stack: Stack, say: Say, retry_launch_s: float = 0) -> str:
    started = time.monotonic()
    while True:
        try:
            run_id = stack.launch("ingestion_job")
            break
        except CheckFailed as refused:
            if time.monotonic() - started > retry_launch_s:
                raise
            say(f"{refused}; again in 5 s")
            time.sleep(5)
    say(f"launched ingestion_job: run {run_id}")
    status = stack.wait_run(run_id)
    if status != "SUCCESS":
        raise CheckFailed(f"ingestion_job run {run_id} ended {status}:\n{stack.run_errors(run_id)}")
    ((stored, events),) = stack.sql(
        "dagster",
        "SELECT r.status, (SELECT count(*) FROM event_logs e WHERE e.run_id = r.run_id"
        " AND e.dagster_event_type = 'ASSET_MATERIALIZATION') FROM runs r WHERE r.run_id = %s",
        run_id,
    )
    if stored != "SUCCESS" or not events:
        raise CheckFailed(
            f"run {run_id} in Dagster's Postgres storage: status {stored}, {events} materializations"
        )
    say(f"run {run_id}: SUCCESS; in Dagster's storage: status {stored}, {events} asset materializations")
    return run_id


def check_first_run(stack: Stack, say: Say) -> str:
    run_id = run_ingestion(stack, say)
    counts = data_counts(stack)
    expected = sum(1 for p in CONTENT.rglob("*") if p.suffix in (".md", ".markdown"))
    say(f"in the database: {counts}; markdown files in demo/content: {expected}")
    if counts["documents"] != expected:
        raise CheckFailed(f"{counts['documents']} documents ingested, {expected} files in demo/content")
    if not counts["chunks"] or counts["vectors"] != counts["chunks"] or counts["dimensions"] <= 0:
        raise CheckFailed(f"not every chunk has a vector of the active model: {counts}")
    return run_id


def check_crash_restart(stack: Stack, say: Say) -> None:
    """SIGKILL to the code server's process, as a crash would (`docker kill` counts as a manual stop,
    after which Docker does not restart a container)."""
    cid = stack.containers()["code-server"]
    state = stack.inspect(cid)
    restarts = state["RestartCount"]
    os.kill(state["State"]["Pid"], signal.SIGKILL)
    say(f"killed the code server's process (pid {state['State']['Pid']}) with SIGKILL")
    started = time.monotonic()
    while time.monotonic() - started < 240:
        now = stack.inspect(cid)
        if now["RestartCount"] > restarts and now["State"].get("Health", {}).get("Status") == "healthy":
            break
        time.sleep(2)
    else:
        raise CheckFailed(
            f"the code server did not come back healthy within 240 s:\n{stack.logs('code-server')}"
        )
    say(f"restarted by its restart policy ({now['HostConfig']['RestartPolicy']['Name']}), healthy again after"
        f" {time.monotonic() - started:.0f} s, restart count {now['RestartCount']}")  # fmt: skip
    _wait_location_loaded(stack, say)
    before = data_counts(stack)
    # The webserver reconnects to the new code-server process by itself; until it has, it may refuse.
    run_ingestion(stack, say, retry_launch_s=120)
    after = data_counts(stack)
    if {k: after[k] for k in ("documents", "chunks", "vectors")} != {
        k: before[k] for k in ("documents", "chunks", "vectors")
    }:
        raise CheckFailed(f"a second ingestion of unchanged content changed the data: {before} → {after}")


def _wait_location_loaded(stack: Stack, say: Say, timeout_s: float = 120) -> None:
    """The webserver notices the new code-server process by itself; until then a launch would be
    refused, so wait (bounded) for the location to load again."""
    started = time.monotonic()
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename } } } } }"
    while time.monotonic() - started < timeout_s:
        try:
            entries = stack.graphql()._execute(query)["workspaceOrError"]["locationEntries"]
        except DagsterGraphQLClientError:
            entries = []
        if entries and all(e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in entries):
            say(f"the webserver sees the code location loaded after {time.monotonic() - started:.0f} s")
            return
        time.sleep(2)
    raise CheckFailed(f"the webserver did not reload the code location within {timeout_s:.0f} s")


def check_down_up(stack: Stack, first_run: str, say: Say) -> None:
    before = data_counts(stack)
    stack.compose("down")
    if stack.containers():
        raise CheckFailed(f"containers left after compose down: {stack.containers()}")
    say("compose down: every container removed (volumes kept)")
    stack.up()
    healthy = stack.wait_healthy()
    say("compose up: healthy again: " + ", ".join(f"{s} after {t:.0f} s" for s, t in healthy.items()))
    after = data_counts(stack)
    status = stack.graphql().get_run_status(first_run).value
    say(f"after down/up: {after}; the first run ({first_run}) through GraphQL: {status}")
    # The daemon's sensors may have launched a run meanwhile: runs can only grow.
    kept = all(after[k] == before[k] for k in before if k != "runs") and after["runs"] >= before["runs"]
    if not kept or status != "SUCCESS":
        raise CheckFailed(f"data or run history lost across down/up: {before} → {after}, first run {status}")


def check_no_secret_shown(stack: Stack, tags: dict[str, str], say: Say) -> None:
    docker = stack.docker
    places: dict[str, str] = {}
    for service, cid in stack.containers().items():
        places[f"docker inspect {service}"] = docker.run("inspect", cid).stdout
        logs = docker.run("logs", cid, check=False)
        places[f"logs of {service}"] = logs.stdout + logs.stderr
    for image in tags.values():
        places[f"docker image inspect {image}"] = docker.run("image", "inspect", image).stdout
        places[f"docker history {image}"] = docker.run("history", "--no-trunc", image).stdout
    places["compose config"] = stack.compose("config")
    found = [where for where, text in places.items() if stack.password in text]
    if found:
        raise CheckFailed(f"the Postgres password is shown by: {', '.join(found)}")
    lines = sum(text.count("\n") for text in places.values())
    say(
        f"the password is in none of {len(places)} outputs ({lines} lines): {json.dumps(sorted(places))[:200]}…"
    )
