"""OpenADR 3.1.0 objects as typed models, written from the official OpenAPI document
(shared/specs/openadr3/3.1.0/openadr3.yaml), and the mapping between 3.0.1 and 3.1.0 bodies.

3.1.0 splits each object into a request (what a client sends) and a response (the request with
the VTN's objectMetadata, and for reports, subscriptions, vens and resources the owner's
clientID). Targets are plain strings rather than valuesMaps, the program's descriptive members
became `attributes`, a ven or resource request comes in a business-logic form (with clientID
and targets) and a VEN form (without them), and notifications name CRUD operations. The style
is models301's: the spec's names, unknown members ignored, strict JSON types, non-nullable
optionals left out when unset; the building blocks that did not change are models301's.

The VTN keeps one store for both versions: an object is stored in the shape of the version
that wrote it and converted when the other version reads it (`view`). The conversion is
lossless where both versions can say the same thing and documented where they cannot
(services/dispatcher/vtn/README.md, "3.1.0").
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    WrapSerializer,
)

from flexfleet.openadr.models301 import (
    DURATION_PATTERN,
    DateTime,
    Duration,
    Int32,
    Name,
    ObjectID,
    ObjectType,
    SpecModel,
    Text,
    Uri,
    ValuesMap,
)
from flexfleet.openadr.notifications import Callback

V301, V310 = "3.0.1", "3.1.0"
TARGET = "TARGET"   # the 3.0.1 valuesMap type under which 3.1.0's untyped targets are shown
NOW_STARTS = ("0001-01-01", "0001-01-01T00:00:00")   # the User Guide's "now" (not RFC 3339)
NOW_START_301 = "0001-01-01T00:00:00Z"               # the same instant as a 3.0.1 date-time
CRUD = {"GET": "READ", "POST": "CREATE", "PUT": "UPDATE", "READ": "READ", "CREATE": "CREATE",
        "UPDATE": "UPDATE", "DELETE": "DELETE"}

Target = Name
ClientID = Name
LongUri = Annotated[Uri, StringConstraints(min_length=2, max_length=8000)]
_DATE_TIME: TypeAdapter[datetime] = TypeAdapter(DateTime)


def _start_value(value: Any) -> datetime | str:
    """An RFC 3339 date-time, or the User Guide's "now" (date only, or without offset), which
    the schema's date-time format does not allow; "now" is kept as sent."""
    if isinstance(value, str) and value in NOW_STARTS:
        return value
    try:
        return _DATE_TIME.validate_python(value)
    except ValidationError:
        raise ValueError(f"must be an RFC 3339 date-time with an offset, or {' or '.join(NOW_STARTS)}") from None


Start = Annotated[datetime | str, PlainValidator(_start_value),
                  WrapSerializer(lambda v, handler: v if isinstance(v, str) else handler(v)),
                  WithJsonSchema({"type": "string", "description": "RFC 3339 date-time, or 0001-01-01 for now"})]


# -- the schemas ---------------------------------------------------------------------------------
class IntervalPeriod(SpecModel):
    start: Start | None = None
    duration: Duration | None = None
    randomizeStart: Duration | None = None


class Interval(SpecModel):
    id: Int32
    intervalPeriod: IntervalPeriod | None = None
    payloads: list[ValuesMap]


class EventPayloadDescriptor(SpecModel):
    NULLABLE = frozenset({"units", "currency"})
    objectType: Literal["EVENT_PAYLOAD_DESCRIPTOR"]
    payloadType: Name
    units: Name | None = None
    currency: Text | None = None


class ReportPayloadDescriptor(SpecModel):
    NULLABLE = frozenset({"readingType", "units", "accuracy", "confidence"})
    objectType: Literal["REPORT_PAYLOAD_DESCRIPTOR"]
    payloadType: Name
    readingType: Name | None = None
    units: Name | None = None
    accuracy: float | None = None
    confidence: Annotated[int, Field(ge=0, le=100)] | None = None


class ReportDescriptor(SpecModel):
    NULLABLE = frozenset({"readingType", "units", "targets"})
    payloadType: Name
    readingType: Name | None = None
    units: Name | None = None
    targets: list[Target] | None = None
    aggregate: bool | None = None
    startInterval: Int32 | None = None
    numIntervals: Int32 | None = None
    historical: bool | None = None
    frequency: Int32 | None = None
    repeat: Int32 | None = None
    reportIntervals: Literal["INTERVALS", "SUB_INTERVALS", "OPEN_INTERVALS"] | None = None


class ProgramDescription(SpecModel):
    URL: LongUri


PayloadDescriptor = Annotated[EventPayloadDescriptor | ReportPayloadDescriptor, Field(discriminator="objectType")]


class ProgramRequest(SpecModel):
    NULLABLE = frozenset({"programDescriptions", "payloadDescriptors", "attributes", "targets"})
    programName: Name
    intervalPeriod: IntervalPeriod | None = None
    programDescriptions: list[ProgramDescription] | None = None
    payloadDescriptors: list[PayloadDescriptor] | None = None
    attributes: list[ValuesMap] | None = None
    targets: list[Target] | None = None


class EventRequest(SpecModel):
    NULLABLE = frozenset({"eventName", "priority", "targets", "reportDescriptors", "payloadDescriptors"})
    programID: ObjectID
    eventName: Text | None = None
    duration: Duration | None = None
    priority: Annotated[int, Field(ge=0)] | None = None
    targets: list[Target] | None = None
    reportDescriptors: list[ReportDescriptor] | None = None
    payloadDescriptors: list[EventPayloadDescriptor] | None = None
    intervalPeriod: IntervalPeriod | None = None
    intervals: list[Interval] | None = None


class ReportResource(SpecModel):
    resourceName: Name
    intervalPeriod: IntervalPeriod | None = None
    intervals: list[Interval]


class ReportRequest(SpecModel):
    NULLABLE = frozenset({"reportName", "payloadDescriptors"})
    eventID: ObjectID
    clientName: Name
    reportName: Text | None = None
    payloadDescriptors: list[ReportPayloadDescriptor] | None = None
    resources: list[ReportResource]


# The spec's operations are CRUD; openadr3-client 2.4.2 (oadr310 too) sends HTTP methods, and
# reads back what it sent, so both are taken and a subscription is echoed as written.
Operation = Literal["READ", "CREATE", "UPDATE", "DELETE", "GET", "POST", "PUT"]


class ObjectOperation(SpecModel):
    NULLABLE = frozenset({"bearerToken"})
    objects: list[ObjectType]
    operations: list[Operation]
    callbackUrl: LongUri
    bearerToken: Text | None = None


class SubscriptionRequest(SpecModel):
    NULLABLE = frozenset({"targets"})
    clientName: Name
    programID: ObjectID | None = None
    objectOperations: list[ObjectOperation]
    targets: list[Target] | None = None


class BlVenRequest(SpecModel):
    NULLABLE = frozenset({"targets", "attributes"})
    objectType: Literal["BL_VEN_REQUEST"]
    clientID: ClientID
    targets: list[Target] | None = None
    venName: Name
    attributes: list[ValuesMap] | None = None


class VenVenRequest(SpecModel):
    NULLABLE = frozenset({"attributes"})
    objectType: Literal["VEN_VEN_REQUEST"]
    venName: Name
    attributes: list[ValuesMap] | None = None


VenRequest = Annotated[BlVenRequest | VenVenRequest, Field(discriminator="objectType")]


class BlResourceRequest(SpecModel):
    NULLABLE = frozenset({"targets", "attributes"})
    objectType: Literal["BL_RESOURCE_REQUEST"]
    clientID: ClientID
    targets: list[Target] | None = None
    resourceName: Name
    venID: ObjectID
    attributes: list[ValuesMap] | None = None


class VenResourceRequest(SpecModel):
    NULLABLE = frozenset({"attributes"})
    objectType: Literal["VEN_RESOURCE_REQUEST"]
    resourceName: Name
    venID: ObjectID
    attributes: list[ValuesMap] | None = None


ResourceRequest = Annotated[BlResourceRequest | VenResourceRequest, Field(discriminator="objectType")]


class ObjectMetadata(SpecModel):
    id: ObjectID
    createdDateTime: DateTime
    modificationDateTime: DateTime
    objectType: ObjectType


class Program(ObjectMetadata, ProgramRequest):
    pass


class Event(ObjectMetadata, EventRequest):
    pass


class Report(ObjectMetadata, ReportRequest):
    clientID: ClientID


class Subscription(ObjectMetadata, SubscriptionRequest):
    clientID: ClientID


class Ven(ObjectMetadata):
    """objectMetadata and BlVenRequest, as the spec's allOf has it; objectType is VEN (the
    metadata's), since no value satisfies both halves."""

    NULLABLE = frozenset({"targets", "attributes"})
    clientID: ClientID
    targets: list[Target] | None = None
    venName: Name
    attributes: list[ValuesMap] | None = None


class Resource(ObjectMetadata):
    NULLABLE = frozenset({"targets", "attributes"})
    clientID: ClientID
    targets: list[Target] | None = None
    resourceName: Name
    venID: ObjectID
    attributes: list[ValuesMap] | None = None


class Notification(SpecModel):
    NULLABLE = frozenset({"targets"})
    objectType: ObjectType
    operation: Literal["CREATE", "READ", "UPDATE", "DELETE"]
    object: dict[str, Any]
    targets: list[Target] | None = None


class NotifiersResponse(SpecModel):
    """GET /notifiers: webhooks always; MQTT only where the VTN runs a broker."""

    WEBHOOK: bool = True


class AuthServerInfo(SpecModel):
    tokenURL: str


# -- targets ---------------------------------------------------------------------------------------
def target_texts(targets: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """3.0.1 valuesMap targets as 3.1.0 targets: each value as text, its type dropped (3.1.0
    removed target types), in order, once; values 3.1.0 cannot hold (points, "", longer than
    128 characters) are left out."""
    texts: dict[str, None] = {}
    for target in targets or ():
        for value in target.get("values", ()):
            if isinstance(value, Mapping):
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            if 1 <= len(text) <= 128:
                texts.setdefault(text)
    return list(texts)


def targets_as_301(targets: Sequence[str] | None) -> list[dict[str, Any]] | None:
    """3.1.0 targets as one 3.0.1 valuesMap of type TARGET (None stays None)."""
    if targets is None:
        return None
    return [{"type": TARGET, "values": list(targets)}] if targets else []


def hide_targets(view: dict[str, Any], shown: Iterable[str]) -> dict[str, Any]:
    """3.1.0 target hiding: a VEN sees only the targets it asked for and was granted."""
    if view.get("targets"):
        allowed = set(shown)
        view = {**view, "targets": [t for t in view["targets"] if t in allowed]}
    return view


# -- 3.0.1 -> 3.1.0 ----------------------------------------------------------------------------------
METADATA = ("id", "createdDateTime", "modificationDateTime", "objectType")
# The program members 3.0.1 had and 3.1.0 moved into attributes (enumerations/program-attributes).
PROGRAM_ATTRIBUTES = (("programLongName", "PROGRAM_LONG_NAME"), ("retailerName", "RETAILER_NAME"),
                      ("retailerLongName", "RETAILER_LONG_NAME"), ("programType", "PROGRAM_TYPE"),
                      ("country", "COUNTRY"), ("principalSubdivision", "PRINCIPAL_SUBDIVISION"),
                      ("bindingEvents", "BINDING_EVENTS"), ("localPrice", "LOCAL"))
_REPORT_ONLY = ("readingType", "accuracy", "confidence")


def _pick(body: Mapping[str, Any], members: Iterable[str], nullable: Iterable[str] = ()) -> dict[str, Any]:
    """The members present in body, with None kept only where the spec allows null."""
    keep_null = set(nullable)
    return {m: body[m] for m in members if m in body and (body[m] is not None or m in keep_null)}


def _nonempty(text: Any) -> Any:
    """3.1.0's units and readingType need a character; 3.0.1's may be empty."""
    return None if text == "" else text


def _descriptor_310(descriptor: Mapping[str, Any], default_type: str) -> dict[str, Any]:
    out = dict(descriptor)
    if not out.get("objectType"):
        report = default_type == "REPORT_PAYLOAD_DESCRIPTOR" or any(out.get(m) is not None for m in _REPORT_ONLY)
        out["objectType"] = "REPORT_PAYLOAD_DESCRIPTOR" if report else "EVENT_PAYLOAD_DESCRIPTOR"
    for member in ("units", "readingType"):
        if member in out:
            out[member] = _nonempty(out[member])
    return out


def _descriptors_310(descriptors: list | None, default_type: str) -> list | None:
    return None if descriptors is None else [_descriptor_310(d, default_type) for d in descriptors]


def _report_descriptor_310(descriptor: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: _nonempty(v) if k in ("units", "readingType") else v for k, v in descriptor.items()}
    out["targets"] = None if descriptor.get("targets") is None else target_texts(descriptor["targets"])
    return out


def _targets_310(body: Mapping[str, Any]) -> list[str] | None:
    return None if body.get("targets") is None else target_texts(body["targets"])


def _program_310(body: Mapping[str, Any], _: str | None) -> dict[str, Any]:
    out = _pick(body, (*METADATA, "programName", "intervalPeriod", "programDescriptions"), ["programDescriptions"])
    out["payloadDescriptors"] = _descriptors_310(body.get("payloadDescriptors"), "")
    attributes = [{"type": kind, "values": [body[member]]} for member, kind in PROGRAM_ATTRIBUTES
                  if body.get(member) is not None]
    out["attributes"] = attributes or None
    out["targets"] = _targets_310(body)
    return out


def _event_310(body: Mapping[str, Any], _: str | None) -> dict[str, Any]:
    out = _pick(body, (*METADATA, "programID", "eventName", "priority", "intervalPeriod", "intervals"),
                ["eventName", "priority"])
    out["targets"] = _targets_310(body)
    out["reportDescriptors"] = (None if body.get("reportDescriptors") is None
                                else [_report_descriptor_310(d) for d in body["reportDescriptors"]])
    out["payloadDescriptors"] = _descriptors_310(body.get("payloadDescriptors"), "EVENT_PAYLOAD_DESCRIPTOR")
    return out


def _report_310(body: Mapping[str, Any], client_id: str | None) -> dict[str, Any]:
    out = _pick(body, (*METADATA, "eventID", "clientName", "reportName", "resources"), ["reportName"])
    out["payloadDescriptors"] = _descriptors_310(body.get("payloadDescriptors"), "REPORT_PAYLOAD_DESCRIPTOR")
    out["clientID"] = client_id
    return out


def _subscription_310(body: Mapping[str, Any], client_id: str | None) -> dict[str, Any]:
    out = _pick(body, (*METADATA, "clientName", "programID"))
    out["objectOperations"] = [{**op, "operations": [CRUD[o] for o in op.get("operations", ())]}
                               for op in body.get("objectOperations", ())]
    out["targets"] = _targets_310(body)
    out["clientID"] = client_id
    return out


def _ven_310(body: Mapping[str, Any], client_id: str | None) -> dict[str, Any]:
    out = _pick(body, (*METADATA, "venName", "attributes"), ["attributes"])
    out["targets"] = _targets_310(body)
    out["clientID"] = client_id
    return out


def _resource_310(body: Mapping[str, Any], client_id: str | None) -> dict[str, Any]:
    out = _pick(body, (*METADATA, "resourceName", "venID", "attributes"), ["attributes"])
    out["targets"] = _targets_310(body)
    out["clientID"] = client_id
    return out


# -- 3.1.0 -> 3.0.1 ----------------------------------------------------------------------------------
def _period_301(period: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """3.0.1 needs a start: the "now" forms and a missing start (which 3.1.0 reads as "after
    the previous interval", as it does "now" for all but the first) become 0001-01-01T00:00:00Z."""
    if period is None:
        return None
    start = period.get("start")
    return {**period, "start": NOW_START_301 if start is None or start in NOW_STARTS else start}


def _intervals_301(intervals: list | None) -> list[dict[str, Any]]:
    out = []
    for interval in intervals or ():
        converted = dict(interval)
        if interval.get("intervalPeriod") is not None:
            converted["intervalPeriod"] = _period_301(interval["intervalPeriod"])
        out.append(converted)
    return out


def _with_period(out: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    if body.get("intervalPeriod") is not None:
        out["intervalPeriod"] = _period_301(body["intervalPeriod"])
    return out


def _program_301(body: Mapping[str, Any], _: str | None) -> dict[str, Any]:
    out = _pick(body, (*METADATA, "programName", "programDescriptions", "payloadDescriptors"),
                ["programDescriptions", "payloadDescriptors"])
    by_type = {a["type"]: a.get("values") or [] for a in reversed(body.get("attributes") or ())}
    for member, kind in PROGRAM_ATTRIBUTES:
        value = (by_type.get(kind) or [None])[0]
        out[member] = value if isinstance(value, bool if member in ("bindingEvents", "localPrice") else str) else None
    out["targets"] = targets_as_301(body.get("targets"))
    return _with_period(out, body)


def _event_301(body: Mapping[str, Any], _: str | None) -> dict[str, Any]:
    out = _pick(body, (*METADATA, "programID", "eventName", "priority", "payloadDescriptors"),
                ["eventName", "priority", "payloadDescriptors"])
    out["targets"] = targets_as_301(body.get("targets"))
    descriptors = body.get("reportDescriptors")
    out["reportDescriptors"] = None if descriptors is None else [
        {**{k: v for k, v in d.items() if k != "reportIntervals"}, "targets": targets_as_301(d.get("targets"))}
        for d in descriptors]
    out["intervals"] = _intervals_301(body.get("intervals"))
    return _with_period(out, body)


def _report_301(body: Mapping[str, Any], program_id: str | None) -> dict[str, Any]:
    out = _pick(body, (*METADATA, "eventID", "clientName", "reportName", "payloadDescriptors"),
                ["reportName", "payloadDescriptors"])
    out["programID"] = program_id
    out["resources"] = [_with_period({**r, "intervals": _intervals_301(r.get("intervals"))}, r)
                        for r in body.get("resources", ())]
    return out


def _subscription_301(body: Mapping[str, Any], _: str | None) -> dict[str, Any]:
    out = _pick(body, (*METADATA, "clientName", "programID"))
    out["objectOperations"] = [{**op, "operations": [CRUD[o] for o in op.get("operations", ())]}
                               for op in body.get("objectOperations", ())]
    out["targets"] = targets_as_301(body.get("targets"))
    return out


def _ven_301(body: Mapping[str, Any], _: str | None) -> dict[str, Any]:
    out = _pick(body, (*METADATA, "venName", "attributes"), ["attributes"])
    out["targets"] = targets_as_301(body.get("targets"))
    return out


def _resource_301(body: Mapping[str, Any], _: str | None) -> dict[str, Any]:
    out = _pick(body, (*METADATA, "resourceName", "venID", "attributes"), ["attributes"])
    out["targets"] = targets_as_301(body.get("targets"))
    return out


_TO_310 = {"PROGRAM": _program_310, "EVENT": _event_310, "REPORT": _report_310, "SUBSCRIPTION": _subscription_310,
           "VEN": _ven_310, "RESOURCE": _resource_310}
_TO_301 = {"PROGRAM": _program_301, "EVENT": _event_301, "REPORT": _report_301, "SUBSCRIPTION": _subscription_301,
           "VEN": _ven_301, "RESOURCE": _resource_301}


def view(object_type: str, body: Mapping[str, Any], stored_version: str, version: str, *,
         client_id: str | None = None, program_id: str | None = None) -> dict[str, Any]:
    """A stored body as `version` shows it. `client_id` is the owner's clientID, which 3.1.0
    shows on reports, subscriptions, vens and resources; `program_id` the program of a report,
    which 3.0.1 shows and 3.1.0 dropped."""
    if version == V310:
        out = dict(body) if stored_version == V310 else _TO_310[object_type](body, client_id)
        if object_type in ("REPORT", "SUBSCRIPTION", "VEN", "RESOURCE"):
            out["clientID"] = client_id
        return out
    if stored_version == V301:
        return dict(body)
    return _TO_301[object_type](body, program_id)


# -- timing ------------------------------------------------------------------------------------------
_DURATION = re.compile("(?a)" + DURATION_PATTERN.removesuffix("$") + r"\Z")


def add_duration(start: datetime, duration: str) -> datetime | None:
    """start + an ISO 8601 duration, years and months by the calendar; None when the end is
    beyond what a datetime holds (P9999Y, the User Guide's infinity)."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"not an ISO 8601 duration: {duration!r}")
    sign = -1 if match[1] else 1
    months = sign * (int(match[2] or 0) * 12 + int(match[3] or 0))
    days = int(match[4] or 0) * (7 if match[5] == "W" else 1)
    try:
        rest = timedelta(days=days, hours=int(match[6] or 0), minutes=int(match[7] or 0),
                         seconds=float(match[8] or 0))
        year, month = divmod(start.year * 12 + start.month - 1 + months, 12)
        shifted = start.replace(year=year, month=month + 1, day=min(start.day, calendar.monthrange(year, month + 1)[1]))
        return shifted + sign * rest
    except (ValueError, OverflowError):
        return None


def _start(period: Mapping[str, Any]) -> datetime | None:
    start = period.get("start")
    return None if start is None or start in NOW_STARTS else datetime.fromisoformat(start)


def event_end(event: Mapping[str, Any]) -> datetime | None:
    """When an event has transpired (3.1.0's `active` filter), or None when that cannot be
    known when it is written: a "now" or missing start, a zero duration (instantaneous or
    infinite, by payload), an end beyond year 9999 (P9999Y), no intervals nor period.
    Intervals without their own start follow the previous one; event.duration, where given,
    sets the span from the first start (User Guide 7.3-7.4)."""
    default = event.get("intervalPeriod") or {}
    intervals = event.get("intervals") or []
    first = intervals[0].get("intervalPeriod") or {} if intervals else {}
    first_start = _start(first) if first.get("start") not in (None, *NOW_STARTS) else _start(default)
    if event.get("duration"):
        return None if first_start is None else _finite_end(first_start, event["duration"])
    if not intervals:
        duration = default.get("duration")
        return None if first_start is None or duration is None else _finite_end(first_start, duration)
    end = previous = None
    for i, interval in enumerate(intervals):
        period = interval.get("intervalPeriod") or {}
        own = period.get("start") not in (None, *NOW_STARTS)
        start = _start(period) if own else (first_start if i == 0 else previous)
        duration = period.get("duration") or default.get("duration")
        if start is None or duration is None:
            return None
        previous = _finite_end(start, duration)
        if previous is None:
            return None
        end = previous if end is None else max(end, previous)
    return end


def _finite_end(start: datetime, duration: str) -> datetime | None:
    end = add_duration(start, duration)
    return None if end is None or end == start else end


# -- notifications -----------------------------------------------------------------------------------
def callbacks(subscription: Mapping[str, Any], object_type: str, operation: str, program_id: str | None,
              object_targets: Iterable[str]) -> list[Callback]:
    """The callbacks of one 3.1.0 subscription that a change calls, each once. As in 3.0.1
    (flexfleet.openadr.notifications), but a subscription without programID (3.1.0 made it
    optional) hears of every program, and targets compare as 3.1.0's untyped strings."""
    if program_id is not None and subscription.get("programID") not in (None, program_id):
        return []
    wanted, present = set(subscription.get("targets") or ()), set(object_targets)
    if wanted and present and not wanted & present:
        return []
    found: dict[tuple[str, str | None], Callback] = {}
    for op in subscription.get("objectOperations", ()):
        if object_type in op["objects"] and operation in {CRUD[o] for o in op["operations"]}:
            found.setdefault((op["callbackUrl"], op.get("bearerToken")),
                             Callback(op["callbackUrl"], op.get("bearerToken")))
    return list(found.values())


def notification(object_type: str, operation: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's 3.1.0 notification body (CRUD operation names)."""
    return {"objectType": object_type, "operation": operation, "object": dict(obj), "targets": obj.get("targets")}
