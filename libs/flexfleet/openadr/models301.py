"""OpenADR 3.0.1 objects as typed models, written from the official OpenAPI document
(shared/specs/openadr3/3.0.1/openadr3.yaml), for the VTN's request and response bodies.

Field names are the spec's own (camelCase), so a body validates and serialises without aliases.
Members the spec does not know are ignored, as its schemas allow them. A member that is optional
but not nullable in the spec (id, intervalPeriod, duration, ...) is left out of the output when
unset, because `null` would break the spec's schema; nullable members are written as null.
openadr3-client's own models are not used: they are domain models with extra rules (an event
needs an interval, a report a resource) that a server must not impose.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

OBJECT_ID_PATTERN = r"^[a-zA-Z0-9_-]*$"
DURATION_PATTERN = (r"^(-?)P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?"
                    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
OBJECT_TYPES = ("PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE")
INT32 = 2**31


def storable(text: str) -> str:
    """PostgreSQL stores neither NUL characters nor lone surrogates: refuse them as bad input
    rather than fail on insert."""
    if "\x00" in text:
        raise ValueError("must not contain NUL (U+0000) characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return text


_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00-\x1f\x7f]*")


def absolute_uri(text: str) -> str:
    if not _URI.fullmatch(text):
        raise ValueError("must be an absolute URI (scheme:...)")
    return text


Text = Annotated[str, AfterValidator(storable)]
Name = Annotated[Text, StringConstraints(min_length=1, max_length=128)]


def _anchored(pattern: str) -> str:
    """The spec's pattern for Python's re (the duration needs its lookahead), with JSON Schema's
    meaning: `$` ends the text (re's also matches before a final newline) and `\\d` is an ASCII
    digit (re's is any Unicode digit)."""
    return "(?a)" + pattern.removesuffix("$") + r"\Z"


ObjectID = Annotated[str, StringConstraints(pattern=_anchored(OBJECT_ID_PATTERN), min_length=1, max_length=128)]
Duration = Annotated[str, StringConstraints(pattern=_anchored(DURATION_PATTERN))]
Uri = Annotated[Text, AfterValidator(absolute_uri)]


def _date_time_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


# Parsed from its text only (strict mode is off for it: JSON has no datetime type).
DateTime = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_date_time_text)]
Int32 = Annotated[int, Field(ge=-INT32, lt=INT32)]
ObjectType = Literal["PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE"]


class SpecModel(BaseModel):
    """Base of every spec object: see the module docstring for null handling. Strict: a JSON
    type other than the spec's (the string "5" for an integer) is bad input, not converted."""

    model_config = ConfigDict(extra="ignore", regex_engine="python-re", allow_inf_nan=False, strict=True)
    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    def body(self) -> dict[str, Any]:
        """The JSON body, as stored and as sent: members left out or null are omitted, except
        those the spec lets be null (NULLABLE), which are kept as null. pydantic omits the
        nulls; only the few models with nullable members are walked to put theirs back (a
        report of thousands of intervals would otherwise take a Python call per interval)."""
        data = self.model_dump(mode="json", exclude_none=True)
        _restore_nulls(self, data)
        return data


def _restore_nulls(model: SpecModel, data: dict[str, Any]) -> None:
    for name in model.NULLABLE:
        if name in type(model).model_fields and getattr(model, name) is None:
            data[name] = None
    for name in _fields_keeping_nulls(type(model)):
        value = getattr(model, name)
        for item, out in zip(value, data[name], strict=True) if isinstance(value, list) else ((value, data.get(name)),):
            if isinstance(item, SpecModel):
                _restore_nulls(item, out)


@functools.cache
def _fields_keeping_nulls(cls: type[SpecModel]) -> tuple[str, ...]:
    """The fields of `cls` whose models (or models inside them) have nullable members."""
    return tuple(name for name, f in cls.model_fields.items() if any(_keeps_nulls(m) for m in _models_in(f.annotation)))


@functools.cache
def _keeps_nulls(cls: type[SpecModel]) -> bool:
    return bool(cls.NULLABLE) or bool(_fields_keeping_nulls(cls))


def _models_in(annotation: Any) -> Iterator[type[SpecModel]]:
    if isinstance(annotation, type) and issubclass(annotation, SpecModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models_in(arg)


class Point(SpecModel):
    x: float
    y: float


class ValuesMap(SpecModel):
    type: Name
    values: list[bool | int | float | Text | Point]


class IntervalPeriod(SpecModel):
    start: DateTime
    duration: Duration | None = None
    randomizeStart: Duration | None = None


class Interval(SpecModel):
    id: Int32
    intervalPeriod: IntervalPeriod | None = None
    payloads: list[ValuesMap]


class EventPayloadDescriptor(SpecModel):
    NULLABLE = frozenset({"units", "currency"})
    objectType: Literal["EVENT_PAYLOAD_DESCRIPTOR"] | None = None
    payloadType: Name
    units: Text | None = None
    currency: Text | None = None


class ReportPayloadDescriptor(SpecModel):
    NULLABLE = frozenset({"readingType", "units", "accuracy", "confidence"})
    objectType: Literal["REPORT_PAYLOAD_DESCRIPTOR"] | None = None
    payloadType: Name
    readingType: Text | None = None
    units: Text | None = None
    accuracy: float | None = None
    confidence: Annotated[int, Field(ge=0, le=100)] | None = None


class ReportDescriptor(SpecModel):
    NULLABLE = frozenset({"readingType", "units", "targets"})
    payloadType: Name
    readingType: Text | None = None
    units: Text | None = None
    targets: list[ValuesMap] | None = None
    aggregate: bool | None = None
    startInterval: Int32 | None = None
    numIntervals: Int32 | None = None
    historical: bool | None = None
    frequency: Int32 | None = None
    repeat: Int32 | None = None


class ProgramDescription(SpecModel):
    URL: Uri


class ObjectBase(SpecModel):
    """Members the VTN provisions: whatever a client sends for them is replaced."""

    id: ObjectID | None = None
    createdDateTime: DateTime | None = None
    modificationDateTime: DateTime | None = None


class Program(ObjectBase):
    NULLABLE = frozenset({"programLongName", "retailerName", "retailerLongName", "programType", "country",
                          "principalSubdivision", "programDescriptions", "bindingEvents", "localPrice",
                          "payloadDescriptors", "targets"})
    objectType: Literal["PROGRAM"] | None = None
    programName: Name
    programLongName: Text | None = None
    retailerName: Text | None = None
    retailerLongName: Text | None = None
    programType: Text | None = None
    country: Text | None = None
    principalSubdivision: Text | None = None
    timeZoneOffset: Duration | None = None
    intervalPeriod: IntervalPeriod | None = None
    programDescriptions: list[ProgramDescription] | None = None
    bindingEvents: bool | None = None
    localPrice: bool | None = None
    payloadDescriptors: list[EventPayloadDescriptor | ReportPayloadDescriptor] | None = None
    targets: list[ValuesMap] | None = None


class Event(ObjectBase):
    NULLABLE = frozenset({"eventName", "priority", "targets", "reportDescriptors", "payloadDescriptors"})
    objectType: Literal["EVENT"] | None = None
    programID: ObjectID
    eventName: Text | None = None
    priority: Annotated[int, Field(ge=0)] | None = None
    targets: list[ValuesMap] | None = None
    reportDescriptors: list[ReportDescriptor] | None = None
    payloadDescriptors: list[EventPayloadDescriptor] | None = None
    intervalPeriod: IntervalPeriod | None = None
    intervals: list[Interval]


class ReportResource(SpecModel):
    resourceName: Name
    intervalPeriod: IntervalPeriod | None = None
    intervals: list[Interval]


class Report(ObjectBase):
    NULLABLE = frozenset({"reportName", "payloadDescriptors"})
    objectType: Literal["REPORT"] | None = None
    programID: ObjectID
    eventID: ObjectID
    clientName: Name
    reportName: Text | None = None
    payloadDescriptors: list[ReportPayloadDescriptor] | None = None
    resources: list[ReportResource]


# The spec's subscription operations are READ/CREATE/UPDATE/DELETE while its notification names
# the HTTP method (GET/POST/PUT/DELETE); openadr3-client 2.4.2 sends the latter in
# subscriptions too, so both are taken (and echoed as sent).
Operation = Literal["READ", "CREATE", "UPDATE", "DELETE", "GET", "POST", "PUT"]


class ObjectOperation(SpecModel):
    NULLABLE = frozenset({"bearerToken"})
    objects: list[ObjectType]
    operations: list[Operation]
    callbackUrl: Uri
    bearerToken: Text | None = None


class Subscription(ObjectBase):
    NULLABLE = frozenset({"targets"})
    objectType: Literal["SUBSCRIPTION"] | None = None
    clientName: Name
    programID: ObjectID
    objectOperations: list[ObjectOperation]
    targets: list[ValuesMap] | None = None


class Resource(ObjectBase):
    NULLABLE = frozenset({"attributes", "targets"})
    objectType: Literal["RESOURCE"] | None = None
    resourceName: Name
    venID: ObjectID | None = None
    attributes: list[ValuesMap] | None = None
    targets: list[ValuesMap] | None = None


class Ven(ObjectBase):
    NULLABLE = frozenset({"attributes", "targets", "resources"})
    objectType: Literal["VEN"] | None = None
    venName: Name
    attributes: list[ValuesMap] | None = None
    targets: list[ValuesMap] | None = None
    resources: list[Resource] | None = None


class Notification(SpecModel):
    NULLABLE = frozenset({"targets"})
    objectType: ObjectType
    operation: Literal["GET", "POST", "PUT", "DELETE"]
    object: dict[str, Any]
    targets: list[ValuesMap] | None = None


class Problem(SpecModel):
    """The spec's error body (Zalando's problem schema, after RFC 7807)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = Field(None, description="The request member at fault, when there is one.")


class ClientCredentialResponse(SpecModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    scope: str


class AuthError(SpecModel):
    error: Literal["invalid_request", "invalid_client", "invalid_grant", "invalid_scope", "unauthorized_client",
                   "unsupported_grant_type"]
    error_description: str | None = None
