"""deploy/helm/values.yaml against the official Dagster chart's own values.schema.json (vendored in
deploy/helm/schema/, origin and version in its README), so that a key or value the chart does not
take fails here and not in a user's cluster."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "deploy" / "helm" / "schema" / "values.schema.json"
VALUES = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
# Newer than the vendored schema (see its README): the chart reads it, this schema does not list it.
NEWER_THAN_SCHEMA = {"concurrency"}


def _chart_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def _without_required(node: object, in_then: bool = False) -> object:
    """Helm checks the schema against the chart's defaults merged with these values, and the defaults
    supply every required key; only the conditional requirements (`then`) depend on our values."""
    if isinstance(node, dict):
        return {
            key: _without_required(value, in_then or key == "then")
            for key, value in node.items()
            if key != "required" or in_then
        }
    if isinstance(node, list):
        return [_without_required(item, in_then) for item in node]
    return node


def _closed(node: object) -> object:
    """Every object whose keys the chart lists accepts no other key. The chart's schema leaves some
    open (the top level, a user deployment, `global`, `postgresql`): Helm then ignores a misspelled key
    silently, which is the mistake this test exists to catch."""
    if isinstance(node, dict):
        node = {key: _closed(value) for key, value in node.items()}
        if node.get("properties") and "additionalProperties" not in node and "$ref" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_closed(item) for item in node]
    return node


def _without_remote_refs(node: object) -> object:
    """The chart's definitions of Kubernetes objects (resources, env, probes) point at
    kubernetesjsonschema.dev, out of reach here: those are checked by the chart's own keywords beside
    the reference only (an object, a list, a map of strings)."""
    if isinstance(node, dict):
        return {
            key: _without_remote_refs(value)
            for key, value in node.items()
            if not (key == "$ref" and str(value).startswith("https://"))
        }
    if isinstance(node, list):
        return [_without_remote_refs(item) for item in node]
    return node


def _validator(schema: object) -> Draft7Validator:
    local = _without_remote_refs(schema)
    assert isinstance(local, dict)
    return Draft7Validator(local)


def _errors(values: dict) -> list[str]:
    schema = _closed(_without_required(_chart_schema()))
    assert isinstance(schema, dict)
    schema["properties"].update({key: {"type": "object"} for key in NEWER_THAN_SCHEMA})
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}"
        for e in _validator(schema).iter_errors(values)
    ]


def test_the_vendored_schema_is_the_charts_file_named_in_its_readme() -> None:
    readme = (SCHEMA_FILE.parent / "README.md").read_text()
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() in readme
    assert _chart_schema()["title"] == "DagsterHelmValues"
    assert not NEWER_THAN_SCHEMA & set(_chart_schema()["properties"])


def test_helm_values_are_accepted_by_the_charts_schema() -> None:
    assert _errors(VALUES) == []


def _with(path: tuple, new_key: str | None = None, value: object = None) -> dict:
    """VALUES with the key at `path` renamed to `new_key`, or its value replaced."""
    values = copy.deepcopy(VALUES)
    *parents, last = path
    node = values
    for part in parents:
        node = node[part]
    if new_key is None:
        node[last] = value
    else:
        node[new_key] = node.pop(last)
    return values


@pytest.mark.parametrize(
    ("path", "misspelled"),
    [
        (("dagsterDaemon",), "dagsterDeamon"),
        (("dagsterDaemon", "runMonitoring"), "runMonitorring"),
        (("dagster-user-deployments", "deployments", 0, "codeServerArgs"), "codeServerArg"),
        (("postgresql", "postgresqlScheme"), "postgresqlSchema"),
        (("runLauncher", "config", "k8sRunLauncher", "runK8sConfig"), "runK8SConfig"),
        (("global", "postgresqlSecretName"), "postgresSecretName"),
    ],
)
def test_a_misspelled_chart_key_fails(path: tuple, misspelled: str) -> None:
    errors = _errors(_with(path, misspelled))
    assert len(errors) == 1 and repr(misspelled) in errors[0], errors


def test_the_charts_own_schema_rejects_a_misspelled_key_where_it_is_closed() -> None:
    # No tightening of ours involved: the chart's file alone refuses this one.
    schema = _without_required(_chart_schema())
    assert isinstance(schema, dict)
    errors = list(_validator(schema).iter_errors(_with(("dagsterDaemon", "runRetries"), "runRetry")))
    assert [e.validator for e in errors] == ["additionalProperties"] and "runRetry" in errors[0].message


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        (("runLauncher", "type"), "K8sLauncher", "is not one of"),
        (("dagsterWebserver", "replicaCount"), "1", "is not of type 'integer'"),
        (("dagsterWebserver", "image", "pullPolicy"), "Sometimes", "is not one of"),
        (("telemetry", "enabled"), "no", "is not of type 'boolean'"),
    ],
)
def test_a_value_the_chart_does_not_take_fails(path: tuple, value: object, why: str) -> None:
    errors = _errors(_with(path, value=value))
    assert errors and why in errors[0], errors
