"""The production processes on one machine: `dagster code-server start` (gRPC), `dagster-webserver`
and `dagster-daemon run`, over Postgres run storage. `make prod` / `make prod-stop` call this; the
container image runs the same three commands (see `commands`), and the deployment test starts them
through `start`.

    python -m location.deploy start     # render DAGSTER_HOME/dagster.yaml, start the three, return
    python -m location.deploy stop      # stop what `start` started (pid files in DAGSTER_HOME)
    python -m location.deploy storage-url   # the `dagster` database in the embedded server
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
import yaml

from pipelines.db import PROJECT_ROOT, embedded_server_url

INSTANCE_TEMPLATE = PROJECT_ROOT / "deploy" / "dagster.yaml"
WORKSPACE = PROJECT_ROOT / "deploy" / "workspace.prod.yaml"
MODULE = "location.definitions"
LOCATION = "rag_etl"
STORAGE_DATABASE = "dagster"
PROCESSES = ("code-server", "daemon", "webserver")


def storage_url(database: str = STORAGE_DATABASE) -> str:
    """A database for Dagster's own storage in the embedded server, created on first use.

    Kept apart from the data database so that dropping or restoring one never touches the other.
    """
    server = sa.make_url(embedded_server_url())
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database})
            if exists.scalar() is None:
                conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    finally:
        admin.dispose()
    return storage_driver_url(server.set(database=database).render_as_string(hide_password=False))


def storage_driver_url(url: str) -> str:
    """The URL with the psycopg2 driver named. dagster-postgres speaks psycopg2 (its NOTIFY takes no
    bound parameters under psycopg 3), while SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def render_instance(overrides: Mapping | None = None) -> str:
    """deploy/dagster.yaml with `overrides` merged in (one level deep per top-level key)."""
    config = yaml.safe_load(INSTANCE_TEMPLATE.read_text())
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(config.get(key), Mapping):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return yaml.safe_dump(config, sort_keys=False)


def commands(
    host: str, grpc_port: int, web_port: int, workspace: Path | str = WORKSPACE
) -> dict[str, list[str]]:
    """The command line of each process, relative to the environment's bin directory; the container
    image and compose run exactly these (with host 0.0.0.0)."""
    code_server = ["dagster", "code-server", "start", "-h", host, "-p", str(grpc_port)]
    return {
        "code-server": [*code_server, "-m", MODULE, "--location-name", LOCATION],
        "daemon": ["dagster-daemon", "run", "-w", str(workspace)],
        "webserver": ["dagster-webserver", "-h", host, "-p", str(web_port), "-w", str(workspace)],
    }


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with code {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s")


def start(
    home: Path,
    env: Mapping[str, str],
    host: str = "127.0.0.1",
    grpc_port: int = 4266,
    web_port: int = 3000,
    log_dir: Path | None = None,
    timeout_s: float = 120,
) -> dict[str, subprocess.Popen]:
    """Start the code server, then the daemon and the webserver once the code server answers.

    `env` must hold DAGSTER_PG_URL; every process gets DAGSTER_HOME=`home` and the code server's
    address. Each process leads its own process group, so that `stop` also ends the run workers.
    """
    home.mkdir(parents=True, exist_ok=True)
    log_dir = log_dir or home / "process-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    full_env = {
        **env,
        "DAGSTER_PG_URL": storage_driver_url(env["DAGSTER_PG_URL"]),
        "DAGSTER_HOME": str(home),
        "DAGSTER_CODE_SERVER_HOST": host,
        "DAGSTER_CODE_SERVER_PORT": str(grpc_port),
    }
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, argv in commands(host, grpc_port, web_port).items():
            with open(log_dir / f"{name}.log", "ab") as log:
                procs[name] = subprocess.Popen(
                    [_bin(argv[0]), *argv[1:]],
                    env=full_env,
                    cwd=PROJECT_ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            (home / f"{name}.pid").write_text(str(procs[name].pid))
            if name == "code-server":
                wait_for_port(host, grpc_port, timeout_s, procs[name])
        wait_for_port(host, web_port, timeout_s, procs["webserver"])
    except BaseException:
        stop(home, procs)
        raise
    return procs


def stop(home: Path, procs: Mapping[str, subprocess.Popen] | None = None, timeout_s: float = 20) -> None:
    """SIGTERM each started process group, SIGKILL what is left after `timeout_s`."""
    pids = {}
    for name in PROCESSES:
        pid_file = home / f"{name}.pid"
        if procs and name in procs:
            pids[name] = procs[name].pid
        elif pid_file.exists():
            pids[name] = int(pid_file.read_text())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
        deadline = time.monotonic() + timeout_s
        while sig == signal.SIGTERM and time.monotonic() < deadline:
            for proc in (procs or {}).values():
                proc.poll()  # reap: a zombie leader would keep its group "alive"
            if not any(map(_alive, pids.values())):
                break
            time.sleep(0.2)
    for proc in (procs or {}).values():
        proc.wait(timeout=5)
    for name in pids:
        (home / f"{name}.pid").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m location.deploy")
    parser.add_argument("action", choices=["start", "stop", "storage-url"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=4266)
    parser.add_argument("--web-port", type=int, default=3000)
    args = parser.parse_args(argv)
    if args.action == "storage-url":
        print(storage_url())
        return
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_prod").resolve()
    if args.action == "stop":
        stop(home)
        print(f"stopped the processes of {home}")
        return
    env = dict(os.environ)
    if not env.get("DAGSTER_PG_URL"):
        env["DAGSTER_PG_URL"] = storage_url()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(render_instance())
    start(home, env, args.host, args.grpc_port, args.web_port)
    print(
        f"code server on {args.host}:{args.grpc_port}, webserver on http://{args.host}:{args.web_port},"
        f" daemon running; DAGSTER_HOME={home}, logs in {home / 'process-logs'}; stop with `make prod-stop`"
    )


if __name__ == "__main__":
    main()
