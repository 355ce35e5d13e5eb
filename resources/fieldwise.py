"""Resources built from the environment whose run config overrides them field by field.

Dagster makes the values a resource is constructed with the default of its whole config: run config that
sets one field (a launchpad edit of `max_batch_inputs`) replaces all of them, and every other field falls
back to its class default, so the run would quietly embed with a provider, model or database the operator
did not choose. Here each constructed value is the default of its own field instead, nested settings too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._config import Field, Shape
from dagster._config.pythonic_config.conversion_utils import _apply_defaults_to_schema_field
from dagster._core.definitions.definition_config_schema import DefinitionConfigSchema


def _fieldwise(field: Field, values: Mapping[str, Any]) -> Field:
    shape = field.config_type
    fields = {}
    for name, inner in shape.fields.items():  # type: ignore[attr-defined]
        if name not in values:
            fields[name] = inner
        elif isinstance(inner.config_type, Shape) and isinstance(values[name], Mapping):
            fields[name] = _fieldwise(inner, values[name])
        else:
            fields[name] = Field(
                inner.config_type,
                default_value=values[name],
                is_required=False,
                description=inner.description,
            )
    return Field(
        Shape(fields, description=shape.description), is_required=False, description=field.description
    )


class FieldwiseConfigResource(dg.ConfigurableResource):
    """A resource whose constructed values are defaults field by field (see the module's docstring)."""

    def __init__(self, **data: Any):
        super().__init__(**data)
        state = self._state__internal__
        # Each value the default of its own field, and (as Dagster does) all of them the default of the whole
        # config, which is what a run without resource config resolves its environment variables from.
        values = state.resolved_config_dict
        schema = DefinitionConfigSchema(
            _apply_defaults_to_schema_field(_fieldwise(state.schema, values), values)
        )
        self._state__internal__ = state._replace(config_schema=schema)
