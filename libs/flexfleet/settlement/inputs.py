"""What one month's settlement consumes, as plain typed records (no database types).

- `Month`: the calendar month of a zone (owners and markets count local days), in UTC MTUs.
- `ObligationMtu`: one obligation in one market MTU: market (product id), currency, accepted
  MW x price x duration = market revenue, the vehicles' committed kW, and the penalties
  delivery verification's shortfall led to, each with its cause.
- `VehicleMtu`: one vehicle in one 15-minute MTU: plugged in, controllable, energy, broken promises.
- `SocTrace`: a vehicle's SoC over the month, priced by the battery model for wear pay.
- `CapUsage`: how much of a contract's annual cap earlier months used.
- `VehicleMtus`: the same as `VehicleMtu` records, as numpy columns: a large fleet's month.

`obligation_mtu` builds an ObligationMtu from a stored obligation and the `Delivery` that
`flexfleet.dispatch.verification` produced for the MTU (read through a Protocol, so this module
needs neither pandas nor the verification code).
"""

from __future__ import annotations

import hashlib
import math
import re
from functools import reduce
from operator import attrgetter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Protocol

import numpy as np

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import ID_PATTERN, Chemistry, Currency
from flexfleet.domain.time import MTU, delivery_day_bounds, is_mtu_start, require_aware, to_utc
from flexfleet.dispatch import ObligationLike
from flexfleet.settlement.money import EXACT, currency, decimal, exact, rate_day

_CAUSE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_EXACT_ADD = EXACT.add
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


@dataclass(frozen=True, eq=False, repr=False)
class SocTrace:
    """A vehicle's SoC (fractions 0..1) every `dt_s` seconds from `start`, for wear pay.

    `reference_soc`, when given, is the trace the car would have had without the platform (its
    own charging, its trips) over the same times: wear pay is then only the difference in
    cycling (`flexfleet.settlement.wear_pay`). Without it the whole cycling of the trace is paid.
    The pack value is per kWh of capacity in `pack_value_currency`, dated by the caller
    (flexfleet.battery.pack_value). The samples are kept as read-only float64 arrays: a fleet's
    month is tens of thousands of traces of 2,976 samples.
    """

    vehicle_id: str
    start: datetime
    dt_s: float
    soc: Sequence[float] | np.ndarray
    chemistry: Chemistry
    battery_kwh: Decimal
    pack_value_per_kwh: Decimal
    pack_value_currency: Currency
    temps_c: float | tuple[float, ...] = 20.0
    reference_soc: Sequence[float] | np.ndarray | None = None

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

    def _fractions(self, values: object, name: str) -> np.ndarray:
        if not isinstance(values, (Sequence, np.ndarray)) or len(values) < 2:
            raise DomainError(f"soc_traces.{name}", f"vehicle {self.vehicle_id}: needs at least two samples")
        try:
            out = np.array(values, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            out = np.array([np.nan])
        if out.size != len(values) or not (np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1):
            raise DomainError(f"soc_traces.{name}", f"vehicle {self.vehicle_id}: must be fractions in [0, 1]")
        out.flags.writeable = False
        return out

    def _key(self) -> tuple:
        arrays = tuple(None if a is None else hashlib.sha256(a.tobytes()).hexdigest()
                       for a in (self.soc, self.reference_soc))
        return (self.vehicle_id, self.start, self.dt_s, len(self.soc), arrays, self.chemistry, self.battery_kwh,
                self.pack_value_per_kwh, self.pack_value_currency, self.temps_c)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SocTrace) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        """Names the samples by count and hash, so equal traces print (and digest) the same."""
        return f"SocTrace{self._key()!r}"

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


# ------------------------------------------------------------------------ columnar vehicle MTUs


def _column(value: object, name: str, n: int | None, kinds: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.dtype.kind not in kinds:
        raise DomainError(f"vehicle_mtus.{name}", f"must be a 1-d array of {'booleans' if kinds == 'b' else 'integers'}"
                                                  f"; got {arr.dtype} with shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise DomainError(f"vehicle_mtus.{name}", f"has {len(arr)} rows, not {n} like vehicle")
    return arr


def _places(d: Decimal) -> int:
    return max(0, -d.as_tuple().exponent)  # type: ignore[operator]


@dataclass(frozen=True, eq=False)
class VehicleMtus:
    """Many vehicle MTUs as numpy columns, one row per vehicle and MTU: what a month of a large
    fleet is given as (a `VehicleMtu` costs ~20 us and settling it per record ~30 us; a fleet
    month is ~150 M rows).

    Rows mean what `VehicleMtu` fields mean. `vehicle` indexes `vehicle_ids`; `mtu` counts
    15-minute MTUs from `origin`. Energies are integers of 10**-kwh_places kWh (3: Wh) and the
    price paid for charging of 10**-price_places per kWh, valid where `has_price`: exact, so the
    month's sums are exact before anything is priced. Integer columns may be any integer dtype
    (int32 Wh and uint8 counts keep 150 M rows in ~4 GB); sums are taken in int64.
    """

    vehicle_ids: tuple[str, ...]
    origin: datetime
    vehicle: np.ndarray
    mtu: np.ndarray
    plugged_in: np.ndarray
    controllable: np.ndarray | None = None          # None: every plugged-in row is controllable
    discharged: np.ndarray | None = None            # None: all zero (the same for the columns below)
    charged: np.ndarray | None = None
    platform_charged: np.ndarray | None = None
    charging_price: np.ndarray | None = None
    has_price: np.ndarray | None = None             # None: every row has a price when charging_price is given
    broken_departures: np.ndarray | None = None
    broken_min_soc: np.ndarray | None = None
    kwh_places: int = 3
    price_places: int = 4

    def __post_init__(self) -> None:
        ids = tuple(self.vehicle_ids)
        for i, v in enumerate(ids):
            _id(v, f"vehicle_mtus.vehicle_ids[{i}]")
        if len(set(ids)) != len(ids):
            raise DomainError("vehicle_mtus.vehicle_ids", "a vehicle id appears twice")
        object.__setattr__(self, "vehicle_ids", ids)
        object.__setattr__(self, "origin", _mtu(self.origin, "vehicle_mtus.origin"))
        vehicle = _column(self.vehicle, "vehicle", None, "iu")
        n = len(vehicle)
        if n and (vehicle.min() < 0 or vehicle.max() >= len(ids)):
            raise DomainError("vehicle_mtus.vehicle", f"must index vehicle_ids (0..{len(ids) - 1})")
        object.__setattr__(self, "vehicle", vehicle)
        object.__setattr__(self, "mtu", _column(self.mtu, "mtu", n, "iu"))
        plugged = _column(self.plugged_in, "plugged_in", n, "b")
        object.__setattr__(self, "plugged_in", plugged)
        ctrl = plugged if self.controllable is None else _column(self.controllable, "controllable", n, "b")
        object.__setattr__(self, "controllable", ctrl & plugged)   # an unplugged car cannot be controlled
        for name in ("discharged", "charged", "platform_charged", "broken_departures", "broken_min_soc"):
            arr = getattr(self, name)
            if arr is not None:
                arr = _column(arr, name, n, "iu")
                if arr.dtype.kind == "i" and n and arr.min() < 0:
                    raise DomainError(f"vehicle_mtus.{name}", f"must not be negative (row {int(np.argmin(arr))})")
                object.__setattr__(self, name, arr)
        if (self.platform_charged is None) != (self.charged is None) and self.platform_charged is not None:
            raise DomainError("vehicle_mtus.platform_charged", "needs charged as well")
        if self.platform_charged is not None:
            charged = self.charged.astype(np.int64)  # type: ignore[union-attr]
            over = np.flatnonzero(self.platform_charged.astype(np.int64) > charged)
            if len(over):
                raise DomainError("vehicle_mtus.platform_charged", f"row {int(over[0])}: exceeds charged")
        if self.charging_price is not None:
            object.__setattr__(self, "charging_price", _column(self.charging_price, "charging_price", n, "iu"))
            has = np.ones(n, bool) if self.has_price is None else _column(self.has_price, "has_price", n, "b")
            object.__setattr__(self, "has_price", has)
        elif self.has_price is not None:
            raise DomainError("vehicle_mtus.has_price", "needs charging_price")
        for name in ("kwh_places", "price_places"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 9:
                raise DomainError(f"vehicle_mtus.{name}", f"must be an int of 0..9 decimal places; got {v!r}")

    def __len__(self) -> int:
        return len(self.vehicle)

    def kwh_scale(self) -> Decimal:
        return Decimal(1).scaleb(-self.kwh_places)

    @classmethod
    def from_records(cls, records: Sequence[VehicleMtu], origin: datetime) -> VehicleMtus:
        """The columns of `records` (in their order, so row i is records[i]), MTUs counted from
        `origin`; decimal places as many as the records need, so nothing is rounded."""
        recs = list(records)
        for i, r in enumerate(recs):
            if not isinstance(r, VehicleMtu):
                raise DomainError(f"vehicle_mtus[{i}]", f"must be a VehicleMtu; got {type(r).__name__}")
        origin = _mtu(origin, "vehicle_mtus.origin")
        fields = attrgetter("vehicle_id", "mtu", "plugged_in", "controllable", "discharged_kwh", "charged_kwh",
                            "platform_charged_kwh", "charging_price_per_kwh", "broken_departures", "broken_min_soc")
        (vids, mtus, plugged, ctrl, dis, ch, pl, price, dep, low) = (
            tuple(zip(*map(fields, recs))) if recs else ((),) * 10)
        ids = sorted(set(vids))
        index = {v: i for i, v in enumerate(ids)}
        at = {m: (m - origin) // MTU for m in set(mtus)}
        (dis, ch, pl), kp = _exact_ints((dis, ch, pl), 3)
        (prices,), pp = _exact_ints((price,), 4)
        return cls(
            tuple(ids), origin,
            vehicle=np.fromiter((index[v] for v in vids), np.int32, len(vids)),
            mtu=np.fromiter((at[m] for m in mtus), np.int64, len(mtus)),
            plugged_in=np.array(plugged, dtype=bool), controllable=np.array(ctrl, dtype=bool),
            discharged=dis, charged=ch, platform_charged=pl,
            charging_price=prices, has_price=np.fromiter((x is not None for x in price), bool, len(price)),
            broken_departures=np.array(dep, dtype=np.int64), broken_min_soc=np.array(low, dtype=np.int64),
            kwh_places=kp, price_places=pp)


def _ints(values: Sequence[Decimal | None], places: int) -> np.ndarray:
    """Decimals (None: 0) as integers of 10**-places, truncated towards zero."""
    return np.array([int(d.scaleb(places)) if d else 0 for d in values], dtype=np.int64)


def _exact_ints(columns: Sequence[Sequence[Decimal | None]], places: int) -> tuple[list[np.ndarray], int]:
    """Decimal columns as integers of 10**-places: `places`, or more if a value has more decimals
    (at most 9: an energy or a price per kWh finer than that is not a measurement). Checked in
    bulk: int() truncates towards zero, so the sum of |values| equals the sum of the |integers|
    exactly when nothing was cut."""
    out = [_ints(col, places) for col in columns]
    whole = reduce(_EXACT_ADD, (abs(d) for col in columns for d in col if d), Decimal(0))
    if Decimal(sum(int(np.abs(a).sum()) for a in out)).scaleb(-places) == whole:
        return out, places
    needed = max([places] + [_places(d) for col in columns for d in col if d])
    if needed > 9:
        raise DomainError("vehicle_mtus", "energies and prices may have at most 9 decimals")
    return [_ints(col, needed) for col in columns], needed
