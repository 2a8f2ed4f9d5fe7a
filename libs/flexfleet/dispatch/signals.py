"""Obligations to OpenADR 3.0.1 signals, and back.

An obligation (one accepted bid: a product, an MTU window, a volume and the bundle of vehicles
behind it) becomes an `ObligationDispatch`: the kW each vehicle holds in each slot of the
window. The bundle is over-provisioned (the bidder backs each bid with its P90, so the cars'
kW add up to more than the volume); dispatch scales every car's share down alike so that the
assignment sums to the volume, and keeps the difference as room for re-dispatch.

One event per obligation and site VEN carries that site's part: targeted at the site's
VEN_NAME (which is what lets the VEN see it, see the VTN's targeting rules) with the
resources, one per charger/vehicle pair, listed in a RESOURCE_NAME target; per-resource values
are arrays in the order of that target's values. The payload types, and why they are what
they are, are in services/dispatcher/DISPATCH.md. `parse_event` turns an event back into the
same `SiteSignal` (and `SiteSignal.assignments()` into per-resource assignments), which is what
the VEN agent reads; `dispatch_from_signals` rebuilds the obligation's dispatch from its events,
which is what re-dispatch starts from.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, TypeAdapter, ValidationError

from flexfleet.dispatch import ObligationLike
from flexfleet.domain.errors import DomainError
from flexfleet.domain.time import to_utc
from flexfleet.markets.catalogue import FrequencyActivation, Product, ProductType
from flexfleet.openadr.models301 import Event, Program

# -- the vocabulary of the events (see services/dispatcher/DISPATCH.md) ---------------------------
VEN_NAME = "VEN_NAME"
RESOURCE_NAME = "RESOURCE_NAME"
DIRECTION = "FLEXFLEET_DIRECTION"                  # private: ["UP" | "DOWN" | "SYMMETRIC"]
FCR_CAPACITY = "FLEXFLEET_FCR_CAPACITY"            # private: kW per resource
FREQUENCY_CURVE = "FLEXFLEET_FREQUENCY_CURVE"      # private: [Hz, share, Hz, share, ...]
ENDURANCE = "FLEXFLEET_ENDURANCE"                  # private: ["PT20M"]
RESOURCE_SETPOINT = "FLEXFLEET_RESOURCE_SETPOINT"  # private: kW per resource
EXPORT_SETPOINT = "FLEXFLEET_EXPORT_SETPOINT"      # private: the site's export kW (up)
DISPATCH_SETPOINT = "DISPATCH_SETPOINT"            # enumerated: the site's consumption kW (down)
KW = "KW"
TOLERANCE_KW = 1e-6

_PRIORITY = {ProductType.FCR_D_UP: 1, ProductType.FCR_D_DOWN: 1, ProductType.FCR_N: 1,
             ProductType.MFRR_CAPACITY: 2, ProductType.MFRR_ENERGY: 2, ProductType.LOCAL_FLEX: 3}
_DATETIME = TypeAdapter(AwareDatetime)
_DURATION = TypeAdapter(timedelta)


class Direction(StrEnum):
    """UP: less consumption or more export (V2G discharge); DOWN: more consumption (charging);
    SYMMETRIC: both, following the frequency (FCR-N)."""

    UP = "UP"
    DOWN = "DOWN"
    SYMMETRIC = "SYMMETRIC"

    @property
    def ways(self) -> tuple[Direction, ...]:
        """The one-way directions this direction holds power in."""
        return (Direction.UP, Direction.DOWN) if self is Direction.SYMMETRIC else (self,)


class SignalKind(StrEnum):
    """FCR: a capacity the site holds and activates itself from the frequency; SETPOINT: a
    power the site must run at (mFRR, local flexibility)."""

    FCR = "FCR"
    SETPOINT = "SETPOINT"




# -- names --------------------------------------------------------------------------------------
def resource_name(charger_id: str, vehicle_id: str) -> str:
    """The OpenADR resource of a charger/vehicle pair. Registry ids have no "/", so it splits back."""
    for name, value in (("charger_id", charger_id), ("vehicle_id", vehicle_id)):
        if not isinstance(value, str) or not value or "/" in value:
            raise DomainError(name, f"must be a non-empty id without '/'; got {value!r}")
    return f"{charger_id}/{vehicle_id}"


def split_resource_name(name: str) -> tuple[str, str]:
    """(charger_id, vehicle_id) of a resource name."""
    charger_id, slash, vehicle_id = name.partition("/") if isinstance(name, str) else ("", "", "")
    if not slash or not charger_id or not vehicle_id or "/" in vehicle_id:
        raise DomainError("resourceName", f"must be '<charger_id>/<vehicle_id>'; got {name!r}")
    return charger_id, vehicle_id


def event_name(obligation_id: str, ven_name: str) -> str:
    """Unique within the product's program, so a rerun finds the event instead of adding one."""
    return f"{obligation_id}@{ven_name}"


def split_event_name(name: str) -> tuple[str, str]:
    obligation_id, at, ven = name.rpartition("@") if isinstance(name, str) else ("", "", "")
    if not at or not obligation_id or not ven:
        raise DomainError("eventName", f"must be '<obligation_id>@<venName>'; got {name!r}")
    return obligation_id, ven


@dataclass(frozen=True)
class Placement:
    """Where a vehicle of a bundle is dispatched: the charger it is expected on. One VEN per
    site, named by the site id; one resource per charger/vehicle pair."""

    vehicle_id: str
    charger_id: str
    site_id: str

    def __post_init__(self) -> None:
        resource_name(self.charger_id, self.vehicle_id)
        if not isinstance(self.site_id, str) or not self.site_id:
            raise DomainError("site_id", f"must be a non-empty id; got {self.site_id!r}")

    @property
    def ven_name(self) -> str:
        return self.site_id

    @property
    def resource_name(self) -> str:
        return resource_name(self.charger_id, self.vehicle_id)


# -- products -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProductSignal:
    """How one market product is signalled: what the catalogue says about its activation."""

    product_id: str
    product_type: str
    kind: SignalKind
    fixed_direction: Direction | None     # None: up or down, as each obligation says
    mtu: timedelta
    priority: int
    long_name: str
    curve: tuple[tuple[float, float], ...] = ()   # (Hz, share of capacity), + is up
    endurance: timedelta | None = None

    @classmethod
    def from_product(cls, product: Product) -> ProductSignal:
        """The catalogue's activation curve gives each point's share in the product's direction
        (FCR-N's is already signed); signals sign it, + up, so one curve reads the same way for
        every product: response kW = capacity kW x share."""
        activation = product.activation.value
        direction = {"up": Direction.UP, "down": Direction.DOWN, "symmetric": Direction.SYMMETRIC}.get(
            product.direction.value)
        curve: tuple[tuple[float, float], ...] = ()
        kind = SignalKind.SETPOINT
        if isinstance(activation, FrequencyActivation):
            kind = SignalKind.FCR
            sign = -1.0 if direction is Direction.DOWN else 1.0
            # + 0.0 turns -0.0 into 0.0, which JSON would otherwise carry as "-0.0"
            curve = tuple((float(hz), sign * float(share) + 0.0) for hz, share in sorted(activation.points))
            if direction is None:
                raise DomainError("direction", f"product {product.id}: a frequency product needs a fixed direction")
        endurance = product.endurance.value
        minutes = endurance.min_full_activation_minutes if endurance is not None else None
        zones = ", ".join(product.zones.value)
        long_name = f"{product.product_type.value}, {product.operator} ({zones})"
        return cls(product.id, product.product_type.value, kind, direction,
                   timedelta(minutes=product.mtu_minutes.value), _PRIORITY[product.product_type], long_name,
                   curve, timedelta(minutes=float(minutes)) if minutes is not None else None)

    def direction_of(self, obligation_direction: str) -> Direction:
        """The direction of an obligation of this product; a one-way product refuses the other."""
        try:
            asked = Direction(str(obligation_direction).upper())
        except ValueError:
            raise DomainError("direction", f"must be up or down; got {obligation_direction!r}") from None
        if self.fixed_direction is Direction.SYMMETRIC:
            return Direction.SYMMETRIC
        if self.fixed_direction is not None and asked is not self.fixed_direction:
            raise DomainError("direction", f"{self.product_id} is {self.fixed_direction.value.lower()} only; "
                                           f"got {obligation_direction!r}")
        if asked is Direction.SYMMETRIC:
            raise DomainError("direction", f"{self.product_id} is not symmetric; give up or down")
        return asked


def payload_descriptors(kind: SignalKind, direction: Direction | None = None) -> list[dict[str, Any]]:
    """The event payload descriptors of a kind (for a program: both setpoint directions)."""
    d = [(DIRECTION, None)]
    if kind is SignalKind.FCR:
        d += [(FCR_CAPACITY, KW), (FREQUENCY_CURVE, None), (ENDURANCE, None)]
    else:
        if direction in (None, Direction.DOWN):
            d.append((DISPATCH_SETPOINT, KW))
        if direction in (None, Direction.UP):
            d.append((EXPORT_SETPOINT, KW))
        d.append((RESOURCE_SETPOINT, KW))
    return [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": t, "units": u} for t, u in d]


def program_body(signal: ProductSignal, description_urls: Sequence[str] = ()) -> dict[str, Any]:
    """The program of one market product, named by the product id. Events are not binding:
    re-dispatch changes them."""
    body = {"programName": signal.product_id, "programLongName": signal.long_name,
            "programType": signal.product_type, "bindingEvents": False,
            "payloadDescriptors": payload_descriptors(signal.kind),
            "programDescriptions": [{"URL": u} for u in description_urls] or None}
    try:
        return Program.model_validate(body).body()
    except ValidationError as exc:
        raise DomainError("program", str(exc)) from None


# -- the dispatch of one obligation --------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """A stretch of the obligation's window and the kW each vehicle holds in it (only vehicles
    holding more than 0 are listed, so equal dispatches compare equal)."""

    start: datetime
    end: datetime
    kw: Mapping[str, float]

    @property
    def total_kw(self) -> float:
        return math.fsum(self.kw.values())


@dataclass(frozen=True)
class ObligationDispatch:
    """Who holds what, when, for one obligation. volume_kw minus a slot's total is kW no car
    holds: a risk operations must see (`uncovered`), never dropped."""

    obligation_id: str
    signal: ProductSignal
    direction: Direction
    volume_kw: float
    start: datetime
    end: datetime
    vehicles: tuple[str, ...]                 # the bundle
    held_kw: Mapping[str, float]              # each car's kW in the bundle (what it was bid to hold)
    placements: Mapping[str, Placement]       # the bundle's cars that have a site
    slots: tuple[Slot, ...]

    def kw_at(self, vehicle_id: str, at: datetime) -> float:
        for s in self.slots:
            if s.start <= at < s.end:
                return s.kw.get(vehicle_id, 0.0)
        return 0.0

    def uncovered(self) -> list[tuple[datetime, datetime, float]]:
        """(start, end, kW) where the cars hold less than the volume."""
        return [(s.start, s.end, self.volume_kw - s.total_kw) for s in self.slots
                if self.volume_kw - s.total_kw > TOLERANCE_KW * max(1.0, self.volume_kw)]

    @property
    def unplaced(self) -> tuple[str, ...]:
        """Vehicles holding kW somewhere with no site to send it to: re-dispatch them first."""
        return tuple(v for v in self.vehicles if v not in self.placements
                     and any(s.kw.get(v, 0.0) > 0 for s in self.slots))

    def mtu_index(self, at: datetime) -> int:
        return int((at - self.start) // self.signal.mtu)

    def normalised(self) -> ObligationDispatch:
        """Adjacent slots of one MTU with the same kW merged; intervals never span two MTUs."""
        merged: list[Slot] = []
        for s in self.slots:
            last = merged[-1] if merged else None
            if (last is not None and last.end == s.start and dict(last.kw) == dict(s.kw)
                    and self.mtu_index(last.start) == self.mtu_index(s.start)):
                merged[-1] = Slot(last.start, s.end, last.kw)
            else:
                merged.append(s)
        return self.with_slots(merged)

    def with_slots(self, slots: Iterable[Slot]) -> ObligationDispatch:
        return ObligationDispatch(self.obligation_id, self.signal, self.direction, self.volume_kw, self.start,
                                  self.end, self.vehicles, self.held_kw, self.placements, tuple(slots))


def _kw(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or not math.isfinite(float(value)):
        raise DomainError(name, f"must be a finite number of kW; got {value!r}")
    if float(value) < 0:
        raise DomainError(name, f"must be at least 0 kW; got {value!r}")
    return float(value)


def _bundle(obligation: ObligationLike) -> dict[str, float]:
    vehicles, kws = tuple(obligation.vehicles), tuple(obligation.kw)
    if len(vehicles) != len(kws):
        raise DomainError("kw", f"{len(kws)} values for {len(vehicles)} vehicles")
    if len(set(vehicles)) != len(vehicles):
        raise DomainError("vehicles", "a vehicle appears twice in the bundle")
    held = {v: _kw(k, f"kw[{v}]") for v, k in zip(vehicles, kws)}
    if math.fsum(held.values()) <= 0:
        raise DomainError("kw", f"the bundle of obligation {obligation.obligation_id} holds no kW")
    return held


def assign(obligation: ObligationLike, signal: ProductSignal,
           placements: Mapping[str, Placement] | None = None) -> ObligationDispatch:
    """Each car of the bundle holds its bundle kW scaled so the bundle sums to the volume: all
    cars alike, so each keeps the same share of room for re-dispatch. A bundle that holds less
    than the volume is assigned in full and the rest shows as uncovered."""
    if obligation.product_id != signal.product_id:
        raise DomainError("product_id", f"obligation is {obligation.product_id}, signal is {signal.product_id}")
    start, end = to_utc(obligation.mtu_start, "mtu_start"), to_utc(obligation.mtu_end, "mtu_end")
    if end <= start:
        raise DomainError("mtu_end", f"must be after mtu_start ({end.isoformat()} <= {start.isoformat()})")
    if (end - start) % signal.mtu:
        raise DomainError("mtu_end", f"the window {start.isoformat()}..{end.isoformat()} is not whole "
                                     f"{signal.mtu} MTUs of {signal.product_id}")
    volume_kw = _kw(obligation.volume_mw, "volume_mw") * 1000
    if volume_kw <= 0:
        raise DomainError("volume_mw", f"must be above 0; got {obligation.volume_mw!r}")
    held = _bundle(obligation)
    scale = min(1.0, volume_kw / math.fsum(held.values()))
    kw = {v: k * scale for v, k in held.items() if k * scale > 0}
    n = (end - start) // signal.mtu
    slots = tuple(Slot(start + i * signal.mtu, start + (i + 1) * signal.mtu, dict(kw)) for i in range(n))
    placed = {v: p for v, p in (placements or {}).items() if v in held}
    for v, p in placed.items():
        if p.vehicle_id != v:
            raise DomainError("placements", f"{v!r} is placed as vehicle {p.vehicle_id!r}")
    return ObligationDispatch(obligation.obligation_id, signal, signal.direction_of(obligation.direction),
                              volume_kw, start, end, tuple(sorted(held)), held, placed, slots)


# -- site signals (event content) ------------------------------------------------------------------
@dataclass(frozen=True)
class SiteInterval:
    start: datetime
    end: datetime
    kw: tuple[float, ...]          # in the order of SiteSignal.resources

    @property
    def total_kw(self) -> float:
        return math.fsum(self.kw)


@dataclass(frozen=True)
class ResourceAssignment:
    """What one charger/vehicle pair must do in one interval: for FCR hold `kw` and respond
    `kw x share(frequency)`, for a setpoint run at `kw` in the direction."""

    resource_name: str
    charger_id: str
    vehicle_id: str
    start: datetime
    end: datetime
    kind: SignalKind
    direction: Direction
    kw: float


@dataclass(frozen=True)
class SiteSignal:
    """One event's content: one obligation's part at one site VEN."""

    obligation_id: str
    ven_name: str
    kind: SignalKind
    direction: Direction
    priority: int | None
    resources: tuple[str, ...]
    intervals: tuple[SiteInterval, ...]
    curve: tuple[tuple[float, float], ...] = ()
    endurance: timedelta | None = None

    @property
    def event_name(self) -> str:
        return event_name(self.obligation_id, self.ven_name)

    @property
    def is_zero(self) -> bool:
        return all(k == 0 for i in self.intervals for k in i.kw)

    def assignments(self) -> list[ResourceAssignment]:
        out = []
        for i in self.intervals:
            for name, kw in zip(self.resources, i.kw):
                charger_id, vehicle_id = split_resource_name(name)
                out.append(ResourceAssignment(name, charger_id, vehicle_id, i.start, i.end, self.kind,
                                              self.direction, kw))
        return out

    def event_body(self, program_id: str) -> dict[str, Any]:
        """The OpenADR 3.0.1 event (a request body), checked against the spec's schema."""
        intervals = []
        for n, i in enumerate(self.intervals):
            payloads: list[dict[str, Any]] = [{"type": DIRECTION, "values": [self.direction.value]}]
            if self.kind is SignalKind.FCR:
                payloads.append({"type": FCR_CAPACITY, "values": list(i.kw)})
                payloads.append({"type": FREQUENCY_CURVE, "values": [x for point in self.curve for x in point]})
                if self.endurance is not None:
                    payloads.append({"type": ENDURANCE, "values": [_DURATION.dump_python(self.endurance, mode="json")]})
            else:
                total = DISPATCH_SETPOINT if self.direction is Direction.DOWN else EXPORT_SETPOINT
                payloads.append({"type": total, "values": [i.total_kw]})
                payloads.append({"type": RESOURCE_SETPOINT, "values": list(i.kw)})
            intervals.append({"id": n, "intervalPeriod": _period(i.start, i.end), "payloads": payloads})
        body = {"programID": program_id, "eventName": self.event_name, "priority": self.priority,
                "targets": [{"type": VEN_NAME, "values": [self.ven_name]},
                            {"type": RESOURCE_NAME, "values": list(self.resources)}],
                "payloadDescriptors": payload_descriptors(self.kind, self.direction),
                "intervalPeriod": _period(self.intervals[0].start, self.intervals[-1].end),
                "intervals": intervals}
        try:
            Event.model_validate(body)
        except ValidationError as exc:
            raise DomainError("event", str(exc)) from None
        return body


def _period(start: datetime, end: datetime) -> dict[str, str]:
    return {"start": start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "duration": _DURATION.dump_python(end - start, mode="json")}


def site_signals(dispatch: ObligationDispatch) -> list[SiteSignal]:
    """One signal per site VEN of the bundle's placed cars, every placed car listed (0 kW where
    it holds nothing). A site's intervals follow the dispatch's slots, merged where the site's
    values do not change inside an MTU. A car holding kW without a site is refused: move its
    share first (`redispatch`), or it would silently not be delivered."""
    if dispatch.unplaced:
        raise DomainError("placements", f"vehicle(s) {', '.join(dispatch.unplaced)} hold kW in obligation "
                                        f"{dispatch.obligation_id} but have no site; re-dispatch their share first")
    by_ven: dict[str, list[Placement]] = {}
    for p in dispatch.placements.values():
        by_ven.setdefault(p.ven_name, []).append(p)
    out = []
    for ven in sorted(by_ven):
        placed = sorted(by_ven[ven], key=lambda p: p.resource_name)
        intervals: list[SiteInterval] = []
        for s in dispatch.slots:
            kw = tuple(s.kw.get(p.vehicle_id, 0.0) for p in placed)
            last = intervals[-1] if intervals else None
            if (last is not None and last.kw == kw and last.end == s.start
                    and dispatch.mtu_index(last.start) == dispatch.mtu_index(s.start)):
                intervals[-1] = SiteInterval(last.start, s.end, kw)
            else:
                intervals.append(SiteInterval(s.start, s.end, kw))
        sig = dispatch.signal
        out.append(SiteSignal(dispatch.obligation_id, ven, sig.kind, dispatch.direction, sig.priority,
                              tuple(p.resource_name for p in placed), tuple(intervals), sig.curve, sig.endurance))
    return out


def dispatch_from_signals(obligation: ObligationLike, signal: ProductSignal,
                          signals: Iterable[SiteSignal]) -> ObligationDispatch:
    """The obligation's dispatch as its site events say it is: the inverse of `site_signals`
    (for the cars that have a site). Time not covered by a site's intervals counts as 0 kW."""
    base = assign(obligation, signal)
    placements: dict[str, Placement] = {}
    cuts = {base.start + i * signal.mtu for i in range(int((base.end - base.start) / signal.mtu) + 1)}
    signals = list(signals)
    for sig in signals:
        if sig.obligation_id != base.obligation_id:
            raise DomainError("eventName", f"event of obligation {sig.obligation_id}, not {base.obligation_id}")
        if sig.direction is not base.direction:
            raise DomainError(DIRECTION, f"event says {sig.direction.value}, obligation is {base.direction.value}")
        for name in sig.resources:
            charger_id, vehicle_id = split_resource_name(name)
            if vehicle_id not in base.held_kw:
                raise DomainError(RESOURCE_NAME, f"{vehicle_id} is not in the bundle of {base.obligation_id}")
            if vehicle_id in placements:
                raise DomainError(RESOURCE_NAME, f"{vehicle_id} is placed at two sites")
            placements[vehicle_id] = Placement(vehicle_id, charger_id, sig.ven_name)
        for i in sig.intervals:
            cuts.update(t for t in (i.start, i.end) if base.start < t < base.end)
    edges = sorted(cuts)
    slots = []
    for a, b in zip(edges, edges[1:]):
        kw: dict[str, float] = {}
        for sig in signals:
            for i in sig.intervals:
                if i.start <= a and b <= i.end:
                    for name, k in zip(sig.resources, i.kw):
                        if k > 0:
                            kw[split_resource_name(name)[1]] = k
        slots.append(Slot(a, b, kw))
    return ObligationDispatch(base.obligation_id, signal, base.direction, base.volume_kw, base.start, base.end,
                              base.vehicles, base.held_kw, placements, tuple(slots)).normalised()


# -- parsing an event ------------------------------------------------------------------------------
def parse_event(event: Mapping[str, Any] | Any) -> SiteSignal:
    """An event as the VTN serves it (its JSON body, or openadr3-client's event model) back into
    the signal it was made from. Anything that does not fit the format is refused with the
    member at fault, so a VEN never acts on half an instruction."""
    body = event.model_dump(by_alias=True, mode="json") if hasattr(event, "model_dump") else event
    if not isinstance(body, Mapping):
        raise DomainError("event", f"must be an object; got {type(body).__name__}")
    obligation_id, ven = split_event_name(body.get("eventName"))
    targets = {t.get("type"): t.get("values") for t in body.get("targets") or () if isinstance(t, Mapping)}
    if targets.get(VEN_NAME) != [ven]:
        raise DomainError("targets", f"must target VEN_NAME [{ven!r}] (from eventName); got {targets.get(VEN_NAME)!r}")
    resources = targets.get(RESOURCE_NAME)
    if not isinstance(resources, list) or not resources:
        raise DomainError("targets", "must list the resources in a RESOURCE_NAME target")
    if len(set(map(str, resources))) != len(resources):
        raise DomainError("targets", "a resource is listed twice in RESOURCE_NAME")
    for r in resources:
        split_resource_name(r)
    raw_intervals = body.get("intervals")
    if not isinstance(raw_intervals, list) or not raw_intervals:
        raise DomainError("intervals", "an event needs at least one interval")
    default = body.get("intervalPeriod")
    kinds, directions, curves, endurances, intervals = set(), set(), set(), set(), []
    for n, raw in enumerate(raw_intervals):
        where = f"intervals.{n}"
        start, end = _interval_period(raw.get("intervalPeriod") or default, where)
        payloads = _payloads(raw.get("payloads"), where)
        try:
            direction = Direction(_one(payloads, DIRECTION, where))
        except ValueError:
            raise DomainError(f"{where}.{DIRECTION}",
                              f"must be UP, DOWN or SYMMETRIC; got {payloads[DIRECTION]!r}") from None
        if FCR_CAPACITY in payloads:
            kind = SignalKind.FCR
            kw = _per_resource(payloads, FCR_CAPACITY, resources, where)
            flat = payloads.get(FREQUENCY_CURVE)
            if not isinstance(flat, list) or len(flat) < 4 or len(flat) % 2:
                raise DomainError(f"{where}.{FREQUENCY_CURVE}", "must be [Hz, share, Hz, share, ...] with 2+ points")
            numbers = [_number(x, f"{where}.{FREQUENCY_CURVE}") for x in flat]
            curves.add(tuple(zip(numbers[::2], numbers[1::2])))
            endurances.add(_duration(_one(payloads, ENDURANCE, where), f"{where}.{ENDURANCE}")
                           if ENDURANCE in payloads else None)
        elif RESOURCE_SETPOINT in payloads:
            kind = SignalKind.SETPOINT
            kw = _per_resource(payloads, RESOURCE_SETPOINT, resources, where)
            total_type = DISPATCH_SETPOINT if direction is Direction.DOWN else EXPORT_SETPOINT
            total = _number(_one(payloads, total_type, where), f"{where}.{total_type}")
            if abs(total - math.fsum(kw)) > TOLERANCE_KW * max(1.0, abs(total)):
                raise DomainError(f"{where}.{total_type}", f"{total} kW for the site differs from the sum of "
                                                           f"{RESOURCE_SETPOINT}, {math.fsum(kw)} kW")
            if direction is Direction.SYMMETRIC:
                raise DomainError(f"{where}.{DIRECTION}", "a setpoint is UP or DOWN")
        else:
            raise DomainError(f"{where}.payloads", f"needs {FCR_CAPACITY} or {RESOURCE_SETPOINT}")
        kinds.add(kind)
        directions.add(direction)
        intervals.append(SiteInterval(start, end, kw))
    for name, seen in (("kind", kinds), (DIRECTION, directions), (FREQUENCY_CURVE, curves), (ENDURANCE, endurances)):
        if len(seen) > 1:
            raise DomainError(f"intervals.{name}", "must be the same in every interval of an event")
    intervals.sort(key=lambda i: i.start)
    for a, b in zip(intervals, intervals[1:]):
        if b.start < a.end:
            raise DomainError("intervals", f"intervals overlap at {b.start.isoformat()}")
    priority = body.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise DomainError("priority", f"must be an integer; got {priority!r}")
    return SiteSignal(obligation_id, ven, kinds.pop(), directions.pop(), priority, tuple(resources),
                      tuple(intervals), curves.pop() if curves else (), endurances.pop() if endurances else None)


def parse_assignments(event: Mapping[str, Any] | Any) -> list[ResourceAssignment]:
    """Per resource and interval, what the site must do (for the VEN agent)."""
    return parse_event(event).assignments()


def frequency_share(curve: Sequence[tuple[float, float]], frequency_hz: float) -> float:
    """The share of capacity to deliver at a frequency, + up, linear between the curve's points
    and flat outside them."""
    pts = sorted(curve)
    if not pts:
        raise DomainError(FREQUENCY_CURVE, "is empty")
    if frequency_hz <= pts[0][0]:
        return pts[0][1]
    for (f0, s0), (f1, s1) in zip(pts, pts[1:]):
        if frequency_hz <= f1:
            return s0 + (s1 - s0) * (frequency_hz - f0) / (f1 - f0) if f1 > f0 else s1
    return pts[-1][1]


def _interval_period(period: Any, where: str) -> tuple[datetime, datetime]:
    if not isinstance(period, Mapping):
        raise DomainError(f"{where}.intervalPeriod", "is missing (and the event has none)")
    try:
        start = _DATETIME.validate_python(period.get("start")).astimezone(UTC)
    except ValidationError:
        raise DomainError(f"{where}.intervalPeriod.start", f"must be an RFC 3339 date-time with an offset; "
                                                           f"got {period.get('start')!r}") from None
    duration = _duration(period.get("duration"), f"{where}.intervalPeriod.duration")
    if duration <= timedelta(0):
        raise DomainError(f"{where}.intervalPeriod.duration", f"must be above 0; got {period.get('duration')!r}")
    return start, start + duration


def _duration(value: Any, where: str) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        if not isinstance(value, str):      # pydantic would read a bare number as seconds
            raise ValueError(value)
        return _DURATION.validate_python(value)
    except (ValidationError, ValueError):
        raise DomainError(where, f"must be an ISO 8601 duration such as PT1H; got {value!r}") from None


def _payloads(raw: Any, where: str) -> dict[str, list]:
    if not isinstance(raw, list) or not raw:
        raise DomainError(f"{where}.payloads", "must be a non-empty list")
    out: dict[str, list] = {}
    for p in raw:
        if not isinstance(p, Mapping) or not isinstance(p.get("values"), list):
            raise DomainError(f"{where}.payloads", f"each payload needs a type and a list of values; got {p!r}")
        if p.get("type") in out:
            raise DomainError(f"{where}.payloads", f"{p.get('type')} appears twice")
        out[p.get("type")] = p["values"]
    return out


def _one(payloads: Mapping[str, list], payload_type: str, where: str) -> Any:
    values = payloads.get(payload_type)
    if values is None:
        raise DomainError(f"{where}.payloads", f"{payload_type} is missing")
    if len(values) != 1:
        raise DomainError(f"{where}.{payload_type}", f"must have one value; got {len(values)}")
    return values[0]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DomainError(where, f"must be a finite number; got {value!r}")
    return float(value)


def _per_resource(payloads: Mapping[str, list], payload_type: str, resources: list, where: str) -> tuple[float, ...]:
    values = payloads[payload_type]
    if len(values) != len(resources):
        raise DomainError(f"{where}.{payload_type}", f"has {len(values)} values for {len(resources)} resources "
                                                     "(one per RESOURCE_NAME target value, in its order)")
    out = tuple(_number(v, f"{where}.{payload_type}") for v in values)
    if any(v < 0 for v in out):
        raise DomainError(f"{where}.{payload_type}", f"kW must be at least 0; got {list(values)}")
    return out


__all__ = [
    "DIRECTION", "DISPATCH_SETPOINT", "ENDURANCE", "EXPORT_SETPOINT", "FCR_CAPACITY", "FREQUENCY_CURVE",
    "RESOURCE_NAME", "RESOURCE_SETPOINT", "VEN_NAME", "Direction", "ObligationDispatch", "ObligationLike",
    "Placement", "ProductSignal", "ResourceAssignment", "SignalKind", "SiteInterval", "SiteSignal", "Slot",
    "assign", "dispatch_from_signals", "event_name", "frequency_share", "parse_assignments", "parse_event",
    "payload_descriptors", "program_body", "resource_name", "site_signals", "split_event_name",
    "split_resource_name",
]
