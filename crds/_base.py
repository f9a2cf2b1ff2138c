"""Building blocks shared by every kind: the model base, CEL rule helpers, common field types.

Each schema rule lives twice on purpose: as an OpenAPI/CEL rule that the apiserver enforces (the
generator copies it into the CRD) and as a pydantic check for Python consumers. The table of invalid
objects in tests/crds runs against both, so the two cannot drift apart silently.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, model_validator
from pydantic.alias_generators import to_camel

GROUP = "balancing.elf.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"

# Bounds on lists and strings: they keep the apiserver's CEL cost estimate finite and objects sane.
MAX_PORTS = 64
MAX_ADDRESSES = 256
MAX_CONDITIONS = 16
MAX_SELECTOR_TERMS = 32
MAX_SELECTOR_LABELS = 64
MAX_SELECTOR_VALUES = 64

CelRule = dict[str, str]


def rule(
    expression: str,
    message: str | None = None,
    *,
    message_expression: str | None = None,
    field_path: str | None = None,
    reason: str | None = None,
) -> CelRule:
    """One `x-kubernetes-validations` entry. The message must name the field it is about."""
    entry: CelRule = {"rule": expression}
    if message is not None:
        entry["message"] = message
    if message_expression is not None:
        entry["messageExpression"] = message_expression
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def cel_quote(text: str) -> str:
    """A CEL single-quoted string literal of `text` (regular expressions need their backslashes doubled)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def validations(*rules: CelRule) -> dict[str, Any]:
    """json_schema_extra that attaches CEL rules to a model or field schema."""
    return {"x-kubernetes-validations": list(rules)}


def immutable(field: str) -> CelRule:
    return rule(
        "self == oldSelf",
        f"{field} is immutable: delete the object and create it again to change {field}",
    )


class ApiModel(BaseModel):
    """Base of every spec/status part: camelCase on the wire, snake_case in Python, no unknown fields."""

    # strict: like the apiserver, refuse "yes" for a boolean and "80" for an integer.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True)

    def to_api(self) -> dict[str, Any]:
        """The JSON-ready dict the apiserver expects (camelCase, unset fields omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- strings -----------------------------------------------------------------------------------------

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
PORT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def _matches(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise ValueError(f"{what} {value!r} must match {pattern}")
        return value

    return AfterValidator(check)


DnsLabel = Annotated[
    str,
    Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN),
    _matches(DNS_LABEL_PATTERN, "name"),
]
Dns1035Label = Annotated[
    str,
    Field(min_length=1, max_length=63, pattern=DNS1035_LABEL_PATTERN),
    _matches(DNS1035_LABEL_PATTERN, "name"),
]
DnsSubdomain = Annotated[
    str,
    Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN),
    _matches(DNS_SUBDOMAIN_PATTERN, "name"),
]
PortName = Annotated[
    str,
    Field(min_length=1, max_length=15, pattern=PORT_NAME_PATTERN),
    _matches(PORT_NAME_PATTERN, "port name"),
]

Protocol = Literal["TCP", "UDP"]


# --- IPv4 addresses and CIDRs --------------------------------------------------------------------------


def check_ipv4(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None
    if address.is_unspecified:
        raise ValueError(f"{value!r} is the unspecified address")
    return value


def _check_ipv4_cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 CIDR such as 10.0.0.0/24") from None
    if "/" not in value or str(network) != value:
        raise ValueError(f"{value!r} is not a canonical IPv4 CIDR: write {network}")
    return value


IPV4_RULE = rule(
    "isIP(self) && ip(self).family() == 4 && !ip(self).isUnspecified()",
    message_expression="'must be an IPv4 address such as 10.0.0.1, not \"' + self + '\"'",
)
IPV4_CIDR_RULE = rule(
    "isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self) == cidr(self).masked()",
    message_expression="'must be a canonical IPv4 CIDR such as 10.0.0.0/24, not \"' + self + '\"'",
)

IPv4 = Annotated[
    str,
    Field(max_length=15, json_schema_extra=validations(IPV4_RULE)),
    AfterValidator(check_ipv4),
]
IPv4CIDR = Annotated[
    str,
    Field(max_length=18, json_schema_extra=validations(IPV4_CIDR_RULE)),
    AfterValidator(_check_ipv4_cidr),
]


# --- label selectors (metav1.LabelSelector) ------------------------------------------------------------


def _check_label_map(labels: dict[str, str] | None) -> dict[str, str] | None:
    for key, value in (labels or {}).items():
        if len(key) > 317 or not re.match(LABEL_KEY_PATTERN, key):
            raise ValueError(f"label key {key!r} is not a valid label key")
        if not re.match(LABEL_VALUE_PATTERN, value):
            raise ValueError(f"label value {value!r} of key {key!r} is not a valid label value")
    return labels


LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]


class LabelSelectorRequirement(ApiModel):
    """One term of a label selector: key, operator and values, as in Kubernetes."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                "self.operator in ['Exists', 'DoesNotExist'] || (has(self.values) && size(self.values) > 0)",
                "values must be non-empty when operator is In or NotIn",
                field_path=".values",
            ),
            rule(
                "self.operator in ['In', 'NotIn'] || !has(self.values) || size(self.values) == 0",
                "values must be empty when operator is Exists or DoesNotExist",
                field_path=".values",
            ),
        )
    )

    key: Annotated[
        str,
        Field(min_length=1, max_length=317, pattern=LABEL_KEY_PATTERN),
        _matches(LABEL_KEY_PATTERN, "label key"),
    ]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: Annotated[list[LabelValue], Field(max_length=MAX_SELECTOR_VALUES)] | None = None

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        has_values = bool(self.values)
        if self.operator in ("In", "NotIn") and not has_values:
            raise ValueError("values must be non-empty when operator is In or NotIn")
        if self.operator in ("Exists", "DoesNotExist") and has_values:
            raise ValueError("values must be empty when operator is Exists or DoesNotExist")
        return self


LABEL_MAP_RULE = rule(
    f"self.all(k, k.size() <= 317 && k.matches({cel_quote(LABEL_KEY_PATTERN)}))",
    "every key must be a label key: an optional DNS-subdomain prefix and '/', then up to 63 letters,"
    " digits, '-', '_' or '.', starting and ending with a letter or digit",
)


class LabelSelector(ApiModel):
    """A Kubernetes label selector: matchLabels and matchExpressions, ANDed."""

    match_labels: (
        Annotated[
            dict[str, LabelValue],
            Field(max_length=MAX_SELECTOR_LABELS, json_schema_extra=validations(LABEL_MAP_RULE)),
            AfterValidator(_check_label_map),
        ]
        | None
    ) = None
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=MAX_SELECTOR_TERMS)] | None = None

    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether a set of labels satisfies this selector (Kubernetes semantics)."""
        for key, value in (self.match_labels or {}).items():
            if labels.get(key) != value:
                return False
        for term in self.match_expressions or []:
            present = term.key in labels
            if term.operator == "Exists" and not present:
                return False
            if term.operator == "DoesNotExist" and present:
                return False
            if term.operator == "In" and (not present or labels[term.key] not in (term.values or [])):
                return False
            if term.operator == "NotIn" and present and labels[term.key] in (term.values or []):
                return False
        return True


NON_EMPTY_SELECTOR_RULE = rule(
    "(has(self.matchLabels) && size(self.matchLabels) > 0)"
    " || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",
    "selector must not be empty: set matchLabels or matchExpressions (an empty selector would select every pod)",
)


def _check_selector_not_empty(selector: LabelSelector) -> LabelSelector:
    if selector.is_empty():
        raise ValueError(
            "selector must not be empty: set matchLabels or matchExpressions (an empty selector would select every pod)"
        )
    return selector


PodSelector = Annotated[
    LabelSelector,
    Field(json_schema_extra=validations(NON_EMPTY_SELECTOR_RULE)),
    AfterValidator(_check_selector_not_empty),
]


# --- status conditions (metav1.Condition) --------------------------------------------------------------

CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


def _rfc3339(moment: datetime) -> str:
    text = moment.isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


# RFC 3339 text on the wire (metav1.Time), a datetime in Python.
Timestamp = Annotated[datetime, Field(strict=False), PlainSerializer(_rfc3339, return_type=str, when_used="json")]


class Condition(ApiModel):
    """The standard metav1.Condition shape."""

    type: Annotated[str, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    status: Literal["True", "False", "Unknown"]
    observed_generation: Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})] | None = None
    last_transition_time: Timestamp
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    message: Annotated[str, Field(max_length=32768)]


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=MAX_CONDITIONS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


def find_condition(conditions: list[Condition] | None, condition_type: str) -> Condition | None:
    for condition in conditions or []:
        if condition.type == condition_type:
            return condition
    return None


# --- object metadata and the top-level object ----------------------------------------------------------


class ObjectMeta(BaseModel):
    """The parts of metav1.ObjectMeta that consumers read; everything else is kept as-is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generation: int | None = None
    resource_version: str | None = None
    uid: str | None = None


class PrinterColumn(BaseModel):
    """An additionalPrinterColumns entry of the CRD."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0


class KubeObject(ApiModel):
    """A top-level object of group balancing.elf.io. Subclasses declare spec/status and CRD metadata."""

    model_config = ConfigDict(extra="forbid")

    # CRD metadata, read by the generator.
    kind_name: ClassVar[str]
    plural: ClassVar[str]
    scope: ClassVar[Literal["Cluster", "Namespaced"]]
    short_names: ClassVar[tuple[str, ...]] = ()
    categories: ClassVar[tuple[str, ...]] = ()
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = ()
    root_rules: ClassVar[tuple[CelRule, ...]] = ()  # CEL rules on the whole object (see metadata.name)
    name_max_length: ClassVar[int | None] = None

    api_version: Literal["balancing.elf.io/v1beta1"] = "balancing.elf.io/v1beta1"
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @classmethod
    def singular(cls) -> str:
        return cls.kind_name.lower()

    @classmethod
    def crd_name(cls) -> str:
        return f"{cls.plural}.{GROUP}"
