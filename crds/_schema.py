"""Turn a pydantic model's JSON schema into a Kubernetes structural OpenAPI v3 schema.

Structural means: no $ref, no anyOf/oneOf for Optional, a type on every node, no nulls. Optional
fields become simply "not required"; CEL rules and list/map markers pass through unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

Schema = dict[str, Any]

# Keys we keep, in the order they are written (the order makes the YAML diff-friendly and stable).
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "items",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "properties",
    "additionalProperties",
    "required",
    "x-kubernetes-validations",
)
_DROPPED = {"title", "$defs", "$ref", "anyOf", "allOf", "const"}
# pydantic writes a bound on a validator-wrapped type (crds._base.Int) under its own name.
_RENAMED = {"ge": "minimum", "le": "maximum"}


class SchemaError(ValueError):
    """The model uses a construct that has no structural-schema equivalent."""


def structural_schema(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.get("$defs", {}), model.__name__)


def _merge(base: Schema, overlay: Schema) -> Schema:
    """Field-level keys (description, rules, defaults) laid over a referenced type's schema."""
    merged = dict(base)
    for key, value in overlay.items():
        if key == "x-kubernetes-validations":
            merged[key] = [*base.get(key, []), *value]
        else:
            merged[key] = value
    return merged


def _resolve(node: Schema, defs: dict[str, Schema], where: str) -> Schema:
    """Inline $ref / allOf[$ref] and collapse Optional (anyOf [X, null]) into X."""
    siblings = {key: value for key, value in node.items() if key not in ("$ref", "allOf", "anyOf")}
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _merge(_resolve(defs[name], defs, where), siblings)
    if "allOf" in node:
        if len(node["allOf"]) != 1:
            raise SchemaError(f"{where}: allOf with several schemas is not supported")
        return _merge(_resolve(node["allOf"][0], defs, where), siblings)
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise SchemaError(f"{where}: unions other than Optional[X] are not structural")
        if siblings.get("default", "missing") is None:
            del siblings["default"]
        return _merge(_resolve(options[0], defs, where), siblings)
    return node


def _convert(node: Schema, defs: dict[str, Schema], where: str) -> Schema:
    node = _resolve(node, defs, where)
    node = {_RENAMED.get(key, key): value for key, value in node.items()}
    if "const" in node and "enum" not in node:
        node = {**node, "enum": [node["const"]]}
    if "type" not in node:
        raise SchemaError(f"{where}: every schema node needs a type")
    out: Schema = {}
    for key in _KEY_ORDER:
        if key not in node:
            continue
        value = node[key]
        if key == "properties":
            if not value:
                continue  # the apiserver drops an empty `properties`: keep stored and applied CRDs equal
            value = {name: _convert(sub, defs, f"{where}.{name}") for name, sub in value.items()}
        elif key == "items":
            value = _convert(value, defs, f"{where}[]")
        elif key == "description":
            value = " ".join(value.split())
        elif key == "additionalProperties":
            if value is False or value is True:
                continue  # pruning already drops unknown fields; extra="forbid" needs no marker
            value = _convert(value, defs, f"{where}{{}}")
        out[key] = value
    unknown = set(node) - set(_KEY_ORDER) - _DROPPED
    if unknown:
        raise SchemaError(f"{where}: unsupported schema keys {sorted(unknown)}")
    return out
