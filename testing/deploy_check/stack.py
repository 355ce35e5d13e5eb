"""deploy/compose.yaml driven through compose with the check's override, and what the check asks of
the running stack: container health, the webserver's GraphQL, the two databases."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import yaml
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from pipelines.db import PROJECT_ROOT
from testing.deploy_check.docker import CheckFailed, Docker, _tail

COMPOSE_FILE = PROJECT_ROOT / "deploy" / "compose.yaml"
OVERRIDE = Path(__file__).resolve().parent / "compose.override.yaml"
SERVICES = ("postgres", "code-server", "webserver", "daemon")
# Host networking: the services' ports are the host's.
PORTS = {"postgres": 5432, "code-server": 4266, "webserver": 3000}
LOCATION_NAME = "rag_etl"


class Stack:
    def __init__(self, docker: Docker, project: str, env: dict[str, str], password: str, work: Path) -> None:
        self.docker = docker
        self.project = project
        # Removing a container's vfs copy of the image takes a while: compose's default 60 s is short.
        self.env = {**docker.env, "COMPOSE_HTTP_TIMEOUT": "600", **env}
        self.password = password
        self.command = [
            *docker.compose_command(),
            "-p",
            project,
            "-f",
            str(COMPOSE_FILE),
            "-f",
            str(OVERRIDE),
        ]
        self.command = [*self.command[:-4], "-f", str(self._effective(work / "compose.effective.yaml"))]

    def _effective(self, path: Path) -> Path:
        """compose.yaml merged with the override, minus the published ports of host-networked services:
        with host networking a port is the host's already, and docker-compose 1.29 refuses the two
        together where Docker itself would only ignore the ports (a list cannot be emptied by an
        override file in 1.29)."""
        config = yaml.safe_load(self.compose("config"))
        for service in config["services"].values():
            if service.get("network_mode") == "host":
                service.pop("ports", None)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def compose(self, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(
            [*self.command, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise CheckFailed(f"compose {' '.join(args)} failed:\n{_tail(result.stdout + result.stderr)}")
        return result.stdout + result.stderr

    def up(self) -> None:
        """compose up; when a service does not come up, its own last lines say why."""
        try:
            self.compose("up", "-d", "--no-build")
        except CheckFailed as failed:
            unhealthy = [
                s for s, cid in self.containers().items()
                if self.inspect(cid)["State"].get("Health", {}).get("Status") != "healthy"
            ]  # fmt: skip
            logs = "\n".join(f"--- {s} (last lines)\n{self.logs(s)}" for s in unhealthy)
            raise CheckFailed(f"{failed}\n{logs}") from failed

    def containers(self) -> dict[str, str]:
        """service → container id, of this project only."""
        listed = self.docker.run(
            "ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}",
            "--format", '{{.ID}} {{.Label "com.docker.compose.service"}}',
        ).stdout  # fmt: skip
        return {service: cid for cid, service in (line.split() for line in listed.splitlines())}

    def inspect(self, container: str) -> dict:
        return json.loads(self.docker.run("inspect", container).stdout)[0]

    def logs(self, service: str, lines: int = 30) -> str:
        """The service's last log lines, and its last health check's verdict (e.g. a timeout)."""
        cid = self.containers().get(service)
        if not cid:
            return f"(no {service} container)"
        out = self.docker.run("logs", "--tail", str(lines), cid, check=False)
        checks = self.inspect(cid)["State"].get("Health", {}).get("Log") or [{}]
        verdict = (
            f"last health check: exit {checks[-1].get('ExitCode')}: {checks[-1].get('Output', '').strip()}"
        )
        return (out.stdout + out.stderr).strip() + ("\n" + verdict if checks[-1] else "")

    def all_logs(self) -> str:
        return "\n".join(self.docker.run("logs", cid, check=False).stdout + self.docker.run(
            "logs", cid, check=False).stderr for cid in self.containers().values())  # fmt: skip

    def wait_healthy(self, timeout_s: float = 900) -> dict[str, float]:
        """Seconds until each service reported healthy; a service that exits or stays unhealthy fails
        the check with its last log lines."""
        start, healthy = time.monotonic(), dict[str, float]()
        while time.monotonic() - start < timeout_s:
            for service, cid in self.containers().items():
                state = self.inspect(cid)["State"]
                if state.get("Health", {}).get("Status") == "healthy":
                    healthy.setdefault(service, time.monotonic() - start)
                elif state["Status"] == "exited" or state.get("Restarting"):
                    raise CheckFailed(
                        f"{service} exited (code {state['ExitCode']}) instead of becoming healthy;"
                        f" its last lines:\n{self.logs(service)}"
                    )
            if len(healthy) == len(SERVICES):
                return healthy
            time.sleep(2)
        waiting = [s for s in SERVICES if s not in healthy]
        raise CheckFailed(
            f"not healthy after {timeout_s:.0f} s: {', '.join(waiting)}; last lines:\n"
            + "\n".join(f"--- {s}\n{self.logs(s)}" for s in waiting)
        )

    # The webserver's GraphQL API, as a client on the host uses it.
    def graphql(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=PORTS["webserver"])

    def launch(self, job: str) -> str:
        """The run id; a refusal fails the check with the webserver's message."""
        try:
            return self.graphql().submit_job_execution(
                job, repository_location_name=LOCATION_NAME, repository_name="__repository__"
            )
        except DagsterGraphQLClientError as error:
            raise CheckFailed(f"the webserver refused to launch {job}: {error}") from error

    def wait_run(self, run_id: str, timeout_s: float = 600) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.graphql().get_run_status(run_id).value
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return status
            time.sleep(2)
        raise CheckFailed(f"run {run_id} not finished after {timeout_s:.0f} s")

    def run_errors(self, run_id: str) -> str:
        """The error messages of a failed run (and their causes), from Dagster's event log in Postgres."""
        rows = self.sql(
            "dagster",
            "SELECT step_key, event FROM event_logs WHERE run_id = %s"
            " AND dagster_event_type IN ('STEP_FAILURE', 'RUN_FAILURE') ORDER BY id",
            run_id,
        )
        messages = []
        for step_key, event in rows:
            error = json.loads(event)["dagster_event"]["event_specific_data"].get("error")
            while error:
                messages.append(f"{step_key or 'run'}: {error['message'].strip()}")
                error = error.get("cause")
        return "\n".join(messages) or "(no error recorded in the event log)"

    def sql(self, database: str, query: str, *params: object) -> list[tuple]:
        with psycopg.connect(
            host="127.0.0.1", port=PORTS["postgres"], user="rag", password=self.password, dbname=database
        ) as conn:
            return conn.execute(query, params).fetchall()


def busy_ports() -> list[str]:
    """The stack's ports already taken on this host (host networking shares them)."""
    busy = []
    for service, port in PORTS.items():
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(f"{port} ({service})")
    return busy
