"""Read YAML the way `kubectl apply -f` does, so that a file means the same to kubectl and to us.

kubectl turns YAML into JSON with sigs.k8s.io/yaml, which resolves plain scalars as go-yaml v2 does.
That is YAML 1.1 for booleans (`y`, `n`, `on`, `off`, `yes`, `no` are booleans) and Go's
strconv for numbers (`0755` is octal, `080` is the float 80, `0x1F`, `0b101`, `1_000` are numbers),
while timestamps, sexagesimals (`12:30`) and dates stay strings. Map keys become strings (`y:` is the
key "true"). kubectl then decodes the JSON again, so an integral float below 1e21 arrives as an
integer. Checked against kubectl v1.35 (`kubectl label --local -o json`); see tests/crds/test_yaml.py.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from decimal import Decimal
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

PLAIN_TAG = "!balancing.elf.io/plain"  # an untagged, unquoted scalar: resolved by _resolve_plain
_STD = "tag:yaml.org,2002:"

_BOOLEANS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_NULLS = ("", "~", "null", "Null", "NULL")
_SPECIAL_FLOATS = {
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_INT = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|0[0-7]*|[1-9][0-9]*)")
_INT64 = 2**63
_UINT64 = 2**64


class KubectlYamlError(ValueError):
    """YAML that kubectl would refuse, with a one-line reason."""


def _go_parse_int(text: str) -> int | None:
    """strconv.ParseInt/ParseUint(text, 0, 64) on text whose underscores go-yaml already removed."""
    if not _GO_INT.fullmatch(text):
        return None
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    lowered = digits.lower()
    if lowered.startswith(("0x", "0b", "0o")):
        value = int(lowered[2:], {"x": 16, "b": 2, "o": 8}[lowered[1]])
    elif len(digits) > 1 and digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    if sign < 0:
        return -value if value <= _INT64 else None
    if value < _INT64 or (value < _UINT64 and text[0] != "+"):  # ParseUint takes no sign
        return value
    return None


def _resolve_plain(text: str) -> Any:
    """go-yaml v2's resolve() for an untagged plain scalar."""
    if text in _BOOLEANS:
        return _BOOLEANS[text]
    if text in _NULLS:
        return None
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    if text[0] == ".":
        return _go_float(text) if _GO_FLOAT.fullmatch(text) else text
    if text[0] not in "+-0123456789":
        return text
    plain = text.replace("_", "")
    number = _go_parse_int(plain)
    if number is not None:
        return number
    if _GO_FLOAT.fullmatch(plain):
        return _go_float(plain)
    return text


def _go_float(text: str) -> float | str:
    value = float(text)
    return text if math.isinf(value) else value  # strconv.ParseFloat refuses an overflow: the text stays


def _as_json(value: Any) -> Any:
    """What kubectl sends after its YAML -> JSON -> object round trip."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise KubectlYamlError(f"unsupported value {value} (JSON has no NaN or infinity)")
        # Go prints an integral float below 1e21 in its shortest digits without a fraction (1.0000000000000002e17
        # as 100000000000000020); kubectl reads that back as an integer when it fits an int64.
        if value.is_integer() and abs(value) < 1e21:
            printed = int(Decimal(repr(value)))
            return printed if -_INT64 <= printed < _INT64 else value
        return value
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        return float(value)
    if isinstance(value, list):
        return [_as_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_json(item) for key, item in value.items()}
    return value


def _key_string(key: Any) -> str:
    """sigs.k8s.io/yaml's conversion of a map key to a JSON object key."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        return _go_format_float32(key)
    raise KubectlYamlError(f"unsupported map key {key!r}")


def _float32(value: float) -> float:
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


def _go_format_float32(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 32), which sigs.k8s.io/yaml uses for a float map key."""
    single = _float32(value)
    if math.isnan(single):
        return ".nan"
    if math.isinf(single):
        return ".inf" if single > 0 else "-.inf"
    if single == 0:
        return "-0" if math.copysign(1, single) < 0 else "0"
    for precision in range(1, 10):  # the shortest digits that read back as the same float32
        scientific = f"{single:.{precision - 1}e}"
        if _float32(float(scientific)) == single:
            break
    mantissa, exponent_text = scientific.split("e")
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    exponent = int(exponent_text)
    if exponent < -4 or exponent >= 6:  # Go's %g switches to an exponent at 1e+06 for the shortest form
        fraction = f".{digits[1:]}" if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{fraction}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if exponent < 0:
        return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
    whole, fraction = digits[: exponent + 1].ljust(exponent + 1, "0"), digits[exponent + 1 :]
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"


class _KubectlLoader(yaml.SafeLoader):
    """PyYAML's parser with go-yaml v2's scalar resolution (see the module docstring)."""

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            return f"{_STD}merge" if value == "<<" else PLAIN_TAG
        return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]

    def construct_plain(self, node: ScalarNode) -> Any:
        return _resolve_plain(node.value)

    def construct_tagged_scalar(self, node: Node) -> Any:
        tag = node.tag.removeprefix(_STD)
        if not isinstance(node, ScalarNode):
            raise KubectlYamlError(f"line {node.start_mark.line + 1}: !!{tag} needs a scalar")
        text = node.value
        if tag == "str":
            return text
        if tag == "binary":
            try:
                return base64.b64decode(text, validate=False).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise KubectlYamlError(f"!!binary value {text!r} is not base64 of UTF-8 text") from None
        value: Any = _resolve_plain(text)
        if tag == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kind = {"bool": bool, "int": int, "float": float, "null": type(None)}[tag]
        if type(value) is not kind:
            raise KubectlYamlError(f"cannot decode {text!r} as a !!{tag}")
        return value

    def construct_unknown(self, node: Node) -> Any:
        """go-yaml v2 ignores a tag it does not know: the node is read as plain data."""
        if isinstance(node, ScalarNode):
            return node.value
        if isinstance(node, SequenceNode):
            return self.construct_sequence(node, deep=True)
        if isinstance(node, MappingNode):
            return self.construct_kube_mapping(node)
        raise KubectlYamlError(f"unsupported YAML node {type(node).__name__}")

    def construct_kube_mapping(self, node: Node) -> dict[str, Any]:
        """A mapping as go-yaml v2 builds it: in document order, the last duplicate key winning, and a
        merge key (`<<: *base`) laid in where it stands (earlier maps of a merged list take precedence)."""
        if not isinstance(node, MappingNode):
            raise KubectlYamlError(f"line {node.start_mark.line + 1}: expected a mapping")
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_STD}merge":
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in reversed(sources):
                    if not isinstance(source, MappingNode):
                        raise KubectlYamlError("map merge requires a map or a sequence of maps as the value")
                    mapping.update(self.construct_kube_mapping(source))
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                raise KubectlYamlError(f"unsupported map key of type {type(key).__name__}")
            mapping[_key_string(key)] = self.construct_object(value_node, deep=True)
        return mapping


_KubectlLoader.add_constructor(PLAIN_TAG, _KubectlLoader.construct_plain)
for _tag in ("str", "binary", "bool", "int", "float", "null"):
    _KubectlLoader.add_constructor(f"{_STD}{_tag}", _KubectlLoader.construct_tagged_scalar)
_KubectlLoader.add_constructor(f"{_STD}map", _KubectlLoader.construct_kube_mapping)
for _tag in ("timestamp", "set", "omap", "pairs", "value"):
    _KubectlLoader.add_constructor(f"{_STD}{_tag}", _KubectlLoader.construct_unknown)
_KubectlLoader.add_constructor(None, _KubectlLoader.construct_unknown)


def _one_line(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "malformed YAML"
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return f"{where}{problem}"
    return " ".join(str(error).split())


def load_documents(text: str) -> list[Any]:
    """The JSON-ready documents of a multi-document YAML text, as kubectl sends them (empty ones dropped).

    Raises KubectlYamlError with a one-line message for anything kubectl would refuse to read.
    """
    try:
        documents = list(yaml.load_all(text, Loader=_KubectlLoader))
    except yaml.YAMLError as error:
        raise KubectlYamlError(f"malformed YAML: {_one_line(error)}") from None
    except RecursionError:
        raise KubectlYamlError("malformed YAML: nested too deeply") from None
    try:
        return [_as_json(document) for document in documents if document is not None]
    except RecursionError:
        raise KubectlYamlError("malformed YAML: nested too deeply") from None
