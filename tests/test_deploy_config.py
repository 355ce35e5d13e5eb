"""What can be checked here of the container and Kubernetes files without Docker or a cluster: they
parse, Dagster accepts the instance configs, and the containers run the commands `make prod` runs
(those are exercised as real processes in tests/test_deploy.py)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from dagster._core.instance.config import dagster_instance_config

from location import deploy
from location.definitions import defs

ROOT = Path(__file__).resolve().parents[1]
SECRET_NAMES = re.compile(r"(PASSWORD|API_KEY|SECRET|TOKEN)", re.IGNORECASE)


def _instance_config(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql+psycopg2://u@127.0.0.1:5432/dagster")
    (tmp_path / "dagster.yaml").write_text(text)
    config, _ = dagster_instance_config(str(tmp_path))
    return dict(config)


def test_production_instance_config_is_accepted_by_dagster(tmp_path, monkeypatch) -> None:
    config = _instance_config(tmp_path, deploy.render_instance(), monkeypatch)
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_monitoring"]["enabled"] is True
    assert config["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert config["telemetry"] == {"enabled": False}
    assert config["concurrency"]["pools"] == {"default_limit": 1, "granularity": "run"}


def test_local_instance_config_monitors_runs(tmp_path, monkeypatch) -> None:
    config = _instance_config(tmp_path, (ROOT / "deploy" / "dagster.local.yaml").read_text(), monkeypatch)
    assert config["run_monitoring"]["enabled"] is True


def test_the_pools_the_instance_limits_are_named_on_the_assets() -> None:
    pools = {
        key.to_user_string(): a.node_def.pool
        for a in defs.resolve_asset_graph().assets_defs
        if a.is_executable and a.node_def.pool
        for key in a.keys
    }
    assert pools == {
        "retention_sweep": "retention",
        "reembedding": "reembedding",
        "embedding_model_switch": "reembedding",
        "rag_metrics_history": "rag_metrics",
    }


def test_compose_runs_the_make_prod_commands() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    expected = deploy.commands("0.0.0.0", 4266, 3000, "deploy/workspace.prod.yaml")
    assert {name: services[name]["command"] for name in expected} == expected
    assert services["postgres"]["image"] == "pgvector/pgvector:pg17"
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name
        # Secrets are files under /run/secrets (compose `secrets:`), never environment, which
        # `docker inspect` shows; URLs name the user only (the password reaches libpq via pgpass).
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAMES.search(key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), f"{name}.{key}"
            if "@" in str(value):
                assert sa.make_url(str(value)).password is None, f"{name}.{key} carries a password"
        assert set(service.get("secrets") or []) <= set(compose["secrets"]), name
    assert all(set(secret) == {"file"} for secret in compose["secrets"].values())


def test_dockerfile_one_non_root_image_without_secrets() -> None:
    text = (ROOT / "Dockerfile").read_text()
    # The public base image by default; `make deploy-check` passes a stand-in built on this machine.
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert not [
        line for line in text.splitlines() if line.startswith(("ENV", "ARG")) and SECRET_NAMES.search(line)
    ]
    cmd = yaml.safe_load(re.search(r"^CMD (.+)$", text, re.MULTILINE).group(1))
    assert cmd == deploy.commands("0.0.0.0", 4266, 3000)["code-server"]


def test_helm_values_run_each_run_in_its_own_pod_from_the_image() -> None:
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    (user_code,) = values["dagster-user-deployments"]["deployments"]
    code_server = deploy.commands("0.0.0.0", user_code["port"], 3000)["code-server"]
    assert user_code["codeServerArgs"] == code_server[code_server.index("-m") :]
    assert values["postgresql"]["enabled"] is False and values["global"]["postgresqlSecretName"]
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]["resources"]
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("dagster-k8s") for dep in extras["k8s"])


def test_make_prod_uses_the_launcher() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipes = {
        target: shlex.split(re.search(rf"^{target}:.*\n\t(.+)$", makefile, re.MULTILINE).group(1))[-2:]
        for target in ("prod", "prod-stop")
    }
    assert recipes == {
        "prod": ["location.deploy", "start"],
        "prod-stop": ["location.deploy", "stop"],
    }
