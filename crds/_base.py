"""Building blocks shared by every kind: the model base, CEL rule helpers, common field types.

Each schema rule lives twice on purpose: as an OpenAPI/CEL rule that the apiserver enforces (the
generator copies it into the CRD) and as a pydantic check for Python consumers. The table of invalid
objects in tests/crds runs against both, so the two cannot drift apart silently.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import ExtraValues

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


def quoted_message(message: str) -> str:
    """A CEL messageExpression: `message, not "VALUE"` (the value of a string field)."""
    return cel_quote(f'{message}, not "') + " + self + " + cel_quote('"')


def validations(*rules: CelRule) -> dict[str, Any]:
    """json_schema_extra that attaches CEL rules to a model or field schema."""
    return {"x-kubernetes-validations": list(rules)}


def immutable(field: str) -> CelRule:
    return rule(
        "self == oldSelf",
        f"{field} is immutable: delete the object and create it again to change {field}",
    )


class ApiModel(BaseModel):
    """Base of every spec/status part: camelCase on the wire, snake_case in Python, no unknown fields.

    Validation follows the apiserver, so that the models and the CRD accept exactly the same documents:
    - strict types: "yes" is not a boolean and "80" is not an integer;
    - documents are read by their wire (camelCase) names only: `model_validate` refuses `service_name`,
      while Python code may still construct models with snake_case keyword arguments;
    - an explicit null on a field means the field is absent (the apiserver prunes it, then defaults it).
    """

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=True, extra="forbid", strict=True
    )

    @classmethod
    def model_validate(
        cls,
        obj: Any,
        *,
        strict: bool | None = None,
        extra: ExtraValues | None = None,
        from_attributes: bool | None = None,
        context: Any | None = None,
        by_alias: bool | None = None,
        by_name: bool | None = None,
    ) -> Self:
        """Validate a wire document: by alias only, unless by_name=True is asked for."""
        return super().model_validate(
            obj,
            strict=strict,
            extra=extra,
            from_attributes=from_attributes,
            context=context,
            by_alias=by_alias,
            by_name=False if by_name is None else by_name,
        )

    @classmethod
    def model_validate_json(
        cls,
        json_data: str | bytes | bytearray,
        *,
        strict: bool | None = None,
        extra: ExtraValues | None = None,
        context: Any | None = None,
        by_alias: bool | None = None,
        by_name: bool | None = None,
    ) -> Self:
        """Validate a wire document given as JSON text: by alias only, as model_validate."""
        return super().model_validate_json(
            json_data,
            strict=strict,
            extra=extra,
            context=context,
            by_alias=by_alias,
            by_name=False if by_name is None else by_name,
        )

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        if not isinstance(data, dict) or None not in data.values():
            return data
        wire_names = {field.alias or name for name, field in cls.model_fields.items()}
        return {key: value for key, value in data.items() if value is not None or key not in wire_names}

    def to_api(self) -> dict[str, Any]:
        """The JSON-ready dict the apiserver expects (camelCase, unset fields omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- integers ------------------------------------------------------------------------------------------

# JSON has one number type. The apiserver takes an integral float (5.0) for an integer field when it is
# within +-(2^53 - 1), the range where a float64 is exact, and any integer literal that fits an int64.
MAX_EXACT_FLOAT_INTEGER = 2**53 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _integral_float_to_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_FLOAT_INTEGER:
        return int(value)
    return value


def _check_int64(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"must be a 64-bit integer, from {INT64_MIN} to {INT64_MAX}")
    return value


# Every integer of the API: strict (no booleans, no strings), integral floats taken, int64 bounds.
Int = Annotated[int, BeforeValidator(_integral_float_to_int), AfterValidator(_check_int64)]


# --- strings -----------------------------------------------------------------------------------------
# Patterns are matched whole (re.fullmatch): with re.match, "web\n" would pass a pattern ending in "$".

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
# Kubernetes' IsValidPortName (IANA_SVC_NAME): 1-15 of [-a-z0-9], at least one letter, no "--", no
# "-" at either end. One regular expression, without look-arounds (RE2): the digit-only words, then the
# word with the first letter, then any further words.
PORT_NAME_PATTERN = r"^([0-9]+-)*[0-9]*[a-z][a-z0-9]*(-[a-z0-9]+)*$"
PORT_NAME_MESSAGE = (
    "must be a port name (IANA_SVC_NAME): up to 15 lowercase letters, digits and '-', with at least one"
    " letter, no '--' and no '-' at either end"
)


def full_match(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _matches(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{what} {value!r} must match {pattern}")
        return value

    return AfterValidator(check)


def _check_port_name(value: str) -> str:
    if not (1 <= len(value) <= 15 and full_match(PORT_NAME_PATTERN, value)):
        raise ValueError(f"{PORT_NAME_MESSAGE}, not {value!r}")
    return value


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
    Field(
        max_length=15,
        json_schema_extra=validations(
            rule(
                f"self.matches({cel_quote(PORT_NAME_PATTERN)})",
                message_expression=quoted_message(PORT_NAME_MESSAGE),
            )
        ),
    ),
    AfterValidator(_check_port_name),
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

# Kubernetes' IsQualifiedName: an optional DNS-subdomain prefix of at most 253 characters and "/",
# then a name of at most 63. The pattern bounds the name; the prefix bound is checked on its own.
LABEL_KEY_MAX_LENGTH = 253 + 1 + 63
LABEL_KEY_MESSAGE = (
    "must be a label key: an optional DNS-subdomain prefix of at most 253 characters and '/', then up to 63"
    " letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
)


def label_key_cel(key: str) -> str:
    """CEL test of a label key. The pattern allows one '/' at most, so indexOf('/') is the prefix length."""
    return f"{key}.matches({cel_quote(LABEL_KEY_PATTERN)}) && {key}.indexOf('/') <= 253"


def is_label_key(key: str) -> bool:
    return len(key) <= LABEL_KEY_MAX_LENGTH and full_match(LABEL_KEY_PATTERN, key) and key.find("/") <= 253


def _check_label_key(key: str) -> str:
    if not is_label_key(key):
        raise ValueError(f"{LABEL_KEY_MESSAGE}, not {key!r}")
    return key


def _check_label_map(labels: dict[str, str] | None) -> dict[str, str] | None:
    for key, value in (labels or {}).items():
        if not is_label_key(key):
            raise ValueError(f"every key {LABEL_KEY_MESSAGE}, not {key!r}")
        if not full_match(LABEL_VALUE_PATTERN, value):
            raise ValueError(f"label value {value!r} of key {key!r} is not a valid label value")
    return labels


LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
LabelKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=LABEL_KEY_MAX_LENGTH,
        json_schema_extra=validations(
            rule(label_key_cel("self"), message_expression=quoted_message(LABEL_KEY_MESSAGE))
        ),
    ),
    AfterValidator(_check_label_key),
]


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

    key: LabelKey
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
    f"self.all(k, k.size() <= {LABEL_KEY_MAX_LENGTH} && {label_key_cel('k')})", f"every key {LABEL_KEY_MESSAGE}"
)


# A map of labels (keys and values checked as Kubernetes does).
LabelMap = Annotated[
    dict[str, LabelValue],
    Field(max_length=MAX_SELECTOR_LABELS, json_schema_extra=validations(LABEL_MAP_RULE)),
    AfterValidator(_check_label_map),
]


class LabelSelector(ApiModel):
    """A Kubernetes label selector: matchLabels and matchExpressions, ANDed."""

    match_labels: LabelMap | None = None
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=MAX_SELECTOR_TERMS)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_labels_are_absent(cls, data: Any) -> Any:
        """The apiserver prunes a null matchLabels value as it prunes a null field."""
        labels = data.get("matchLabels") if isinstance(data, dict) else None
        if isinstance(labels, dict) and None in labels.values():
            return {**data, "matchLabels": {key: value for key, value in labels.items() if value is not None}}
        return data

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


# --- lists keyed like the apiserver's list-maps and sets -------------------------------------------------


def list_map(*keys: str) -> dict[str, Any]:
    """Schema markers of a list-map: the apiserver refuses two items with the same keys."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


LIST_SET: dict[str, Any] = {"x-kubernetes-list-type": "set"}


def unique_by(*fields: str) -> AfterValidator:
    """The Python half of a list-map (wire field names given) or a set (none): no key appears twice.

    Keys are compared as the apiserver sees them, on the wire form, so a defaulted protocol counts.
    """

    def key_of(item: Any) -> tuple[Hashable, str]:
        if not fields:
            return item, repr(item)
        wire = item.to_api() if isinstance(item, ApiModel) else item
        values = tuple(wire.get(field) for field in fields)
        return values, ", ".join(f"{field} {value!r}" for field, value in zip(fields, values, strict=True))

    def check(items: list[Any]) -> list[Any]:
        seen: set[Hashable] = set()
        for item in items:
            key, described = key_of(item)
            if key in seen:
                raise ValueError(f"duplicate entry {described}: each may appear only once")
            seen.add(key)
        return items

    return AfterValidator(check)


# --- status conditions (metav1.Condition) --------------------------------------------------------------

CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


# metav1.Time: RFC 3339 with a zone (Go's time.RFC3339, which also reads a fraction of a second). The
# apiserver's date-time format checks that the date exists and that the time is at most 23:59:59; the
# pattern adds what that check lets through and Go (or Python) could not read back: no 'T' or zone,
# lowercase letters, a zone offset of 24 hours or more, year 0000, and text after the zone.
TIMESTAMP_PATTERN = (
    r"^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-([0-9]{2})-([0-9]{2})"
    r"T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?(Z|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))$"
)
TIMESTAMP_MESSAGE = "must be an RFC 3339 time with a zone, such as 2026-01-01T00:00:00Z"


def _parse_rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{TIMESTAMP_MESSAGE}: a datetime needs a tzinfo")
        return value
    if not isinstance(value, str):
        return value  # the strict datetime check refuses it with the type named
    found = re.fullmatch(TIMESTAMP_PATTERN, value)
    if found is None:
        raise ValueError(f"{TIMESTAMP_MESSAGE}, not {value!r}")
    year, month, day, hour, minute, second, fraction, zone, sign, zone_hours, zone_minutes = found.groups()
    offset = timedelta(0)
    if zone != "Z":
        offset = timedelta(hours=int(zone_hours), minutes=int(zone_minutes)) * (-1 if sign == "-" else 1)
    microseconds = int((fraction or ".0")[1:7].ljust(6, "0"))
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            microseconds,
            tzinfo=UTC if zone == "Z" else timezone(offset),
        )
    except ValueError:
        raise ValueError(f"{TIMESTAMP_MESSAGE}, not {value!r} (no such date or time)") from None


def _rfc3339(moment: datetime) -> str:
    text = moment.isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


# RFC 3339 text on the wire (metav1.Time), an aware datetime in Python. The CEL rule is there for what
# the apiserver's date-time format lets through: kube-apiserver v1.35 stores a list ([] or [1]) in a
# `type: string, format: date-time` field. CEL reads such a field as a timestamp and fails on a list.
TIMESTAMP_RULE = rule("self >= timestamp('0001-01-01T00:00:00Z')", TIMESTAMP_MESSAGE)
Timestamp = Annotated[
    datetime,
    Field(json_schema_extra={"pattern": TIMESTAMP_PATTERN, "maxLength": 35, **validations(TIMESTAMP_RULE)}),
    BeforeValidator(_parse_rfc3339),
    PlainSerializer(_rfc3339, return_type=str, when_used="json"),
]


ObservedGeneration = Annotated[Int, Field(ge=0, json_schema_extra={"format": "int64"})]


class Condition(ApiModel):
    """The standard metav1.Condition shape."""

    type: Annotated[str, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    status: Literal["True", "False", "Unknown"]
    observed_generation: ObservedGeneration | None = None
    last_transition_time: Timestamp
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    message: Annotated[str, Field(max_length=32768)]


Conditions = Annotated[
    list[Condition], Field(max_length=MAX_CONDITIONS, json_schema_extra=list_map("type")), unique_by("type")
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


def condition_column(condition: str = "Ready", priority: int = 0) -> PrinterColumn:
    """A printer column with the status of one condition (Ready, Valid, Conflict...)."""
    return PrinterColumn(
        name=condition,
        json_path=f'.status.conditions[?(@.type=="{condition}")].status',
        description=f"Status of the {condition} condition",
        priority=priority,
    )


AGE_COLUMN = PrinterColumn(name="Age", json_path=".metadata.creationTimestamp", type="date")


class KubeObject(ApiModel):
    """A top-level API object. Subclasses declare spec/status and CRD metadata.

    Our kinds are balancing.elf.io/v1beta1; the MCS kinds (crds.mcs) set `group` and `versions`.
    Every version a kind serves has the same schema (conversion None); the first is stored.
    """

    model_config = ConfigDict(extra="forbid")

    # CRD metadata, read by the generator.
    group: ClassVar[str] = GROUP
    versions: ClassVar[tuple[str, ...]] = (VERSION,)
    kind_name: ClassVar[str]
    plural: ClassVar[str]
    scope: ClassVar[Literal["Cluster", "Namespaced"]]
    short_names: ClassVar[tuple[str, ...]] = ()
    categories: ClassVar[tuple[str, ...]] = ()
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = ()
    root_rules: ClassVar[tuple[CelRule, ...]] = ()  # CEL rules on the whole object (see metadata.name)
    name_max_length: ClassVar[int | None] = None
    spec_required: ClassVar[bool] = True
    crd_annotations: ClassVar[tuple[tuple[str, str], ...]] = ()  # metadata.annotations of the CRD

    api_version: str = API_VERSION
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @field_validator("api_version")
    @classmethod
    def _served_version(cls, value: str) -> str:
        if value not in cls.api_versions():
            raise ValueError(f"must be {' or '.join(cls.api_versions())}, not {value!r}")
        return value

    @classmethod
    def api_versions(cls) -> tuple[str, ...]:
        return tuple(f"{cls.group}/{version}" for version in cls.versions)

    @classmethod
    def singular(cls) -> str:
        return cls.kind_name.lower()

    @classmethod
    def crd_name(cls) -> str:
        return f"{cls.plural}.{cls.group}"
