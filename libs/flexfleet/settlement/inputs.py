"""What one month's settlement consumes, as plain typed records (no database types).

- `Month`: the calendar month of a zone (owners and markets count local days), in UTC MTUs.
- `ObligationMtu`: one obligation in one market MTU: market (product id), currency, accepted
  MW x price x duration = market revenue, the vehicles' committed kW, and the penalties
  delivery verification's shortfall led to, each with its cause.
- `VehicleMtu`: one vehicle in one 15-minute MTU: plugged in, controllable, energy, broken promises.
- `SocTrace`: a vehicle's SoC over the month, priced by the battery model for wear pay.
- `CapUsage`: how much of a contract's annual cap earlier months used.

`obligation_mtu` builds an ObligationMtu from a stored obligation and the `Delivery` that
`flexfleet.dispatch.verification` produced for the MTU (read through a Protocol, so this module
needs neither pandas nor the verification code).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Protocol

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import ID_PATTERN, Chemistry, Currency
from flexfleet.domain.time import MTU, delivery_day_bounds, is_mtu_start, require_aware, to_utc
from flexfleet.dispatch import ObligationLike
from flexfleet.settlement.money import currency, decimal, exact, rate_day

_CAUSE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SHORTFALL_Q = Decimal("0.000001")   # MWh: one Wh, well below a cent at any market price


def _id(value: object, field_name: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise DomainError(field_name, f"must be 1-64 characters of A-Z a-z 0-9 _ . : -; got {value!r}")
    return value


def _mtu(value: object, field_name: str) -> datetime:
    if type(value) is datetime and value.tzinfo is UTC and not (value.minute % 15 or value.second or value.microsecond):
        return value    # the common case, checked cheaply
    ts = require_aware(value, field_name)  # type: ignore[arg-type]
    if not is_mtu_start(ts, field_name):
        raise DomainError(field_name, f"must start a 15-minute MTU; got {ts.isoformat()}")
    return to_utc(ts, field_name)


@dataclass(frozen=True)
class Month:
    """A calendar month on the local clock of `zone` (a bidding zone or an IANA timezone)."""

    first_day: date
    zone: str
    start: datetime = field(init=False)
    end: datetime = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.first_day, datetime) or not isinstance(self.first_day, date) or self.first_day.day != 1:
            raise DomainError("month", f"must be the first day of a month; got {self.first_day!r}")
        nxt = (self.first_day.replace(day=28) + timedelta(days=4)).replace(day=1)
        object.__setattr__(self, "start", delivery_day_bounds(self.first_day, self.zone)[0])
        object.__setattr__(self, "end", delivery_day_bounds(nxt, self.zone)[0])

    @classmethod
    def parse(cls, text: str, zone: str) -> Month:
        """From "YYYY-MM"."""
        try:
            y, m = (int(x) for x in text.split("-"))
            return cls(date(y, m, 1), zone)
        except (ValueError, AttributeError):
            raise DomainError("month", f"must be YYYY-MM; got {text!r}") from None

    @property
    def label(self) -> str:
        return self.first_day.strftime("%Y-%m")

    @property
    def n_mtus(self) -> int:
        return (self.end - self.start) // MTU

    @property
    def rate_day(self) -> date:
        return rate_day(self.first_day)

    def contains(self, ts: datetime) -> bool:
        return self.start <= ts < self.end


@dataclass(frozen=True)
class Commitment:
    """A vehicle's committed kW in an obligation (from the obligation's bundle)."""

    vehicle_id: str
    kw: Decimal

    def __post_init__(self) -> None:
        _id(self.vehicle_id, "commitments.vehicle_id")
        kw = decimal(self.kw, "commitments.kw")
        if kw <= 0:
            raise DomainError("commitments.kw", f"must be positive; got {kw} for vehicle {self.vehicle_id}")
        object.__setattr__(self, "kw", kw)


class PenaltyKind(StrEnum):
    WITHHELD = "withheld"     # the capacity payment the market withholds for what was not delivered
    SURCHARGE = "surcharge"   # a fee per MWh short on top of it


@dataclass(frozen=True)
class Penalty:
    """Money the market keeps or charges for a shortfall: shortfall MWh x price per MWh."""

    cause: str
    kind: PenaltyKind
    shortfall_mwh: Decimal
    price_per_mwh: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.cause, str) or not _CAUSE.fullmatch(self.cause):
            raise DomainError("penalties.cause", f"must be a snake_case name; got {self.cause!r}")
        try:
            object.__setattr__(self, "kind", PenaltyKind(self.kind))
        except ValueError:
            raise DomainError("penalties.kind", f"must be withheld or surcharge; got {self.kind!r}") from None
        object.__setattr__(self, "shortfall_mwh", decimal(self.shortfall_mwh, "penalties.shortfall_mwh"))
        object.__setattr__(self, "price_per_mwh", decimal(self.price_per_mwh, "penalties.price_per_mwh"))

    @property
    def amount(self) -> Fraction:
        """Exact amount in major units of the obligation's currency."""
        return exact(self.shortfall_mwh) * exact(self.price_per_mwh)


@dataclass(frozen=True)
class ObligationMtu:
    """One obligation in one market MTU (an hour for FCR-D, a quarter for others)."""

    obligation_id: str
    product_id: str
    mtu_start: datetime
    mtu_end: datetime
    currency: Currency
    accepted_mw: Decimal
    price_per_mw_h: Decimal
    commitments: tuple[Commitment, ...]
    penalties: tuple[Penalty, ...] = ()

    def __post_init__(self) -> None:
        _id(self.obligation_id, "obligation_id")
        if not isinstance(self.product_id, str) or not self.product_id.strip() or "|" in self.product_id:
            raise DomainError("product_id", f"must be a non-empty product id without '|'; got {self.product_id!r}")
        object.__setattr__(self, "mtu_start", _mtu(self.mtu_start, "mtu_start"))
        object.__setattr__(self, "mtu_end", _mtu(self.mtu_end, "mtu_end"))
        if self.mtu_end <= self.mtu_start:
            raise DomainError("mtu_end", f"obligation {self.obligation_id}: must be after mtu_start")
        object.__setattr__(self, "currency", currency(self.currency))
        object.__setattr__(self, "accepted_mw", decimal(self.accepted_mw, "accepted_mw"))
        object.__setattr__(self, "price_per_mw_h", decimal(self.price_per_mw_h, "price_per_mw_h"))
        commitments = tuple(self.commitments)
        if not all(isinstance(c, Commitment) for c in commitments):
            raise DomainError("commitments", f"obligation {self.obligation_id}: must be Commitment records")
        vids = [c.vehicle_id for c in commitments]
        if len(set(vids)) != len(vids):
            raise DomainError("commitments", f"obligation {self.obligation_id} commits a vehicle twice")
        object.__setattr__(self, "commitments", commitments)
        penalties = tuple(self.penalties)
        if not all(isinstance(p, Penalty) for p in penalties):
            raise DomainError("penalties", f"obligation {self.obligation_id}: must be Penalty records")
        object.__setattr__(self, "penalties", penalties)

    @property
    def hours(self) -> Fraction:
        return Fraction(int((self.mtu_end - self.mtu_start).total_seconds()), 3600)

    @property
    def revenue(self) -> Fraction:
        """Exact market revenue in major units: accepted MW x price per MW h x hours."""
        return exact(self.accepted_mw) * exact(self.price_per_mw_h) * self.hours

    @property
    def committed_kw(self) -> Decimal:
        return sum((c.kw for c in self.commitments), Decimal(0))


@dataclass(frozen=True)
class VehicleMtu:
    """One vehicle in one 15-minute MTU. Energy in kWh (>= 0); `charging_price_per_kwh` is what
    the owner paid for charging in the MTU, in the contract's currency (for spot refunds)."""

    vehicle_id: str
    mtu: datetime
    plugged_in: bool
    controllable: bool = True
    discharged_kwh: Decimal = Decimal(0)
    charged_kwh: Decimal = Decimal(0)
    platform_charged_kwh: Decimal = Decimal(0)
    charging_price_per_kwh: Decimal | None = None
    broken_departures: int = 0
    broken_min_soc: int = 0

    def __post_init__(self) -> None:
        _id(self.vehicle_id, "vehicle_id")
        object.__setattr__(self, "mtu", _mtu(self.mtu, "mtu"))
        for name in ("plugged_in", "controllable"):
            if not isinstance(getattr(self, name), bool):
                raise DomainError(name, f"must be true or false; got {getattr(self, name)!r}")
        if self.controllable and not self.plugged_in:
            object.__setattr__(self, "controllable", False)   # an unplugged car cannot be controlled
        for name in ("discharged_kwh", "charged_kwh", "platform_charged_kwh"):
            object.__setattr__(self, name, decimal(getattr(self, name), name))
        if self.platform_charged_kwh > self.charged_kwh:
            raise DomainError("platform_charged_kwh",
                              f"vehicle {self.vehicle_id} at {self.mtu.isoformat()}: {self.platform_charged_kwh} "
                              f"exceeds charged_kwh {self.charged_kwh}")
        if self.charging_price_per_kwh is not None:
            # A negative spot price is real: refunding it takes money back, as the owner earned it.
            object.__setattr__(self, "charging_price_per_kwh",
                               decimal(self.charging_price_per_kwh, "charging_price_per_kwh", lo=None))
        for name in ("broken_departures", "broken_min_soc"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise DomainError(name, f"must be a count >= 0; got {v!r}")


@dataclass(frozen=True)
class SocTrace:
    """A vehicle's SoC (fractions 0..1) every `dt_s` seconds from `start`, for wear pay.

    `reference_soc`, when given, is the trace the car would have had without the platform (its
    own charging, its trips) over the same times: wear pay is then only the difference in
    cycling loss. Without it the whole cycling loss of the trace is paid (the battery model's
    split: calendar ageing happens on the driveway whatever we do, cycling is what we cause).
    The pack value is per kWh of capacity in `pack_value_currency`, dated by the caller
    (flexfleet.battery.pack_value).
    """

    vehicle_id: str
    start: datetime
    dt_s: float
    soc: tuple[float, ...]
    chemistry: Chemistry
    battery_kwh: Decimal
    pack_value_per_kwh: Decimal
    pack_value_currency: Currency
    temps_c: float | tuple[float, ...] = 20.0
    reference_soc: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _id(self.vehicle_id, "soc_traces.vehicle_id")
        object.__setattr__(self, "start", to_utc(self.start, "soc_traces.start"))
        if isinstance(self.dt_s, bool) or not isinstance(self.dt_s, (int, float)) or not math.isfinite(self.dt_s) \
                or self.dt_s <= 0:
            raise DomainError("soc_traces.dt_s", f"must be a positive number of seconds; got {self.dt_s!r}")
        object.__setattr__(self, "soc", self._fractions(self.soc, "soc"))
        if self.reference_soc is not None:
            ref = self._fractions(self.reference_soc, "reference_soc")
            if len(ref) != len(self.soc):
                raise DomainError("soc_traces.reference_soc", f"needs {len(self.soc)} samples like soc; got {len(ref)}")
            object.__setattr__(self, "reference_soc", ref)
        try:
            object.__setattr__(self, "chemistry", Chemistry(self.chemistry))
        except ValueError:
            raise DomainError("soc_traces.chemistry", f"must be NMC, LFP or NCA; got {self.chemistry!r}") from None
        kwh = decimal(self.battery_kwh, "soc_traces.battery_kwh")
        if kwh <= 0:
            raise DomainError("soc_traces.battery_kwh", f"must be positive; got {kwh}")
        object.__setattr__(self, "battery_kwh", kwh)
        value = decimal(self.pack_value_per_kwh, "soc_traces.pack_value_per_kwh")
        object.__setattr__(self, "pack_value_per_kwh", value)
        cur = currency(self.pack_value_currency, "soc_traces.pack_value_currency")
        object.__setattr__(self, "pack_value_currency", cur)
        if isinstance(self.temps_c, (int, float)) and not isinstance(self.temps_c, bool):
            ok = math.isfinite(self.temps_c)
        else:
            temps = tuple(self.temps_c) if isinstance(self.temps_c, Sequence) else ()
            ok = len(temps) == len(self.soc) and all(isinstance(t, (int, float)) and math.isfinite(t) for t in temps)
            object.__setattr__(self, "temps_c", temps)
        if not ok:
            raise DomainError("soc_traces.temps_c", "must be one finite temperature or one per SoC sample")

    def _fractions(self, values: object, name: str) -> tuple[float, ...]:
        if not isinstance(values, Sequence) or len(values) < 2:
            raise DomainError(f"soc_traces.{name}", f"vehicle {self.vehicle_id}: needs at least two samples")
        out = tuple(float(v) for v in values)
        if not all(math.isfinite(v) and 0 <= v <= 1 for v in out):
            raise DomainError(f"soc_traces.{name}", f"vehicle {self.vehicle_id}: must be fractions in [0, 1]")
        return out

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.dt_s * (len(self.soc) - 1))

    def sample_time(self, i: int) -> datetime:
        return self.start + timedelta(seconds=self.dt_s * i)


@dataclass(frozen=True)
class CapUsage:
    """Capped pay (contract currency, minor units) counted towards a contract's cap in `year`."""

    contract_id: str
    year: int
    counted: int

    def __post_init__(self) -> None:
        _id(self.contract_id, "cap_usage.contract_id")
        if isinstance(self.counted, bool) or not isinstance(self.counted, int) or self.counted < 0:
            raise DomainError("cap_usage.counted", f"must be minor units >= 0; got {self.counted!r}")


# ---------------------------------------------------------------- from delivery verification


class DeliveryLike(Protocol):
    """What settlement reads of flexfleet.dispatch.verification.Delivery."""

    obligation_id: str
    product_id: str
    mtu_start: datetime
    mtu_end: datetime
    kind: str
    shortfall_mwh: float
    capacity_share: float | None
    response_share: float | None


def shortfall_cause(delivery: DeliveryLike) -> str:
    """Why a delivery fell short, in verification's terms: the weaker of its two checks.

    frequency products: capacity_not_held (headroom below the volume in some quarter) or
    activation_response (an activation answered too little or too late); dso_order: energy_short.
    """
    if delivery.kind != "frequency":
        return "energy_short"
    cap = delivery.capacity_share if delivery.capacity_share is not None else 1.0
    if delivery.response_share is not None and delivery.response_share < cap:
        return "activation_response"
    return "capacity_not_held"


def obligation_mtu(obligation: ObligationLike, price_per_mw_h: Decimal, currency_code: Currency | str,
                   delivery: DeliveryLike | None = None, surcharge_per_mwh: Decimal = Decimal(0)) -> ObligationMtu:
    """The settlement record of one obligation in one MTU.

    Without a delivery, the obligation is taken as one MTU delivered in full. With one, its MTU
    is the delivery's, and its shortfall (MWh, rounded to the Wh) costs the withheld capacity
    payment (shortfall x price) and, when the market charges one, a surcharge per MWh.
    """
    start = delivery.mtu_start if delivery is not None else obligation.mtu_start
    end = delivery.mtu_end if delivery is not None else obligation.mtu_end
    if delivery is not None and delivery.obligation_id != obligation.obligation_id:
        raise DomainError("delivery", f"is for {delivery.obligation_id}, not {obligation.obligation_id}")
    commitments = tuple(Commitment(str(v), Decimal(repr(float(kw))))
                        for v, kw in zip(obligation.vehicles, obligation.kw))
    penalties: list[Penalty] = []
    if delivery is not None and delivery.shortfall_mwh > 0:
        short = Decimal(repr(float(delivery.shortfall_mwh))).quantize(_SHORTFALL_Q)
        cause = shortfall_cause(delivery)
        if short > 0:
            penalties.append(Penalty(cause, PenaltyKind.WITHHELD, short, price_per_mw_h))
            if Decimal(surcharge_per_mwh) > 0:
                penalties.append(Penalty(cause, PenaltyKind.SURCHARGE, short, surcharge_per_mwh))
    volume = obligation.volume_mw
    accepted = volume if isinstance(volume, Decimal) else Decimal(repr(float(volume)))
    return ObligationMtu(obligation.obligation_id, obligation.product_id, start.astimezone(UTC), end.astimezone(UTC),
                         currency(currency_code), accepted, price_per_mw_h, commitments, tuple(penalties))
