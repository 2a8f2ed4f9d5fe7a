"""The market simulator's pure core: capacity auctions, DSO flexibility orders, grid frequency.

The bidder and its backtests need a market that answers like the real one: whole-bid clearing
with a marginal price (Nordic FCR in SE+DK2 since 1 Feb 2024), pay-as-bid for local
flexibility, and a grid frequency that activates the capacity sold. Nothing here does I/O;
services/simulator/market.py feeds it the shipped price scenarios.

Volumes and prices in auctions are Decimal (MW, EUR/MW/h): a bid rejected because 0.1 + 0.2 is
not a multiple of 0.1 MW is a real failure mode. Frequency traces are numpy float arrays: they
are measurements, 86,400 of them a day.

Capacity auction rule implemented (:func:`clear_auction`)
    1. Merit order: ascending price; at equal price the other bidders' steps come first (in
       the order given), then our bids by ``bid_id``. Ties thus go against us: a backtest
       should not earn money from a lucky tie-break it cannot count on.
    2. Walk the merit order filling the remaining demand. A bid that fits is accepted whole.
       A divisible bid that does not fit is accepted in part, rounded down to the bid step.
       An indivisible bid (block) that does not fit is skipped, and the walk continues with
       the next, dearer bids, which may still fit ("fill or skip"). This never procures more
       than the demand, at the cost of a skipped cheaper block now and then.
    3. The clearing price is the price of the last (dearest) accepted bid. Under marginal
       pricing every accepted MW is paid that price; under pay-as-bid each bid its own price.
    4. Demand that the bids cannot cover is reported as ``shortfall_mw``; nothing is invented.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from enum import StrEnum
from typing import Literal

import numpy as np

from flexfleet.markets.catalogue import FrequencyActivation, Product
from flexfleet.markets.rules import check_bid

ZERO = Decimal(0)

Number = Decimal | int | str | float


def _dec(value: Number, name: str) -> Decimal:
    """Decimal from a Decimal, int or numeric string (floats via str: 0.3 stays 0.3)."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a number, got a bool")
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{name}: {value!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{name}: {value!r} is not finite")
    return d


def _utc(ts: datetime, name: str) -> datetime:
    if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name}: must be a timezone-aware datetime, got {ts!r}")
    return ts.astimezone(UTC)


# --------------------------------------------------------------------------- capacity auction


class CapacityPricing(StrEnum):
    MARGINAL = "marginal"
    PAY_AS_BID = "pay_as_bid"


@dataclass(frozen=True, slots=True)
class SupplyStep:
    """Other bidders' offer at one price: an aggregate of many small bids, divisible by default."""

    price: Decimal  # EUR/MW/h
    volume_mw: Decimal
    indivisible: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "price", _dec(self.price, "price"))
        object.__setattr__(self, "volume_mw", _dec(self.volume_mw, "volume_mw"))
        if self.volume_mw <= 0:
            raise ValueError(f"volume_mw: {self.volume_mw} must be positive")


@dataclass(frozen=True, slots=True)
class CapacityBid:
    """One of our bids for one MTU: volume, price asked, and whether it may be cut."""

    bid_id: str
    volume_mw: Decimal
    price: Decimal  # EUR/MW/h
    indivisible: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.bid_id, str) or not self.bid_id:
            raise ValueError("bid_id: must be a non-empty string")
        object.__setattr__(self, "price", _dec(self.price, f"bid {self.bid_id} price"))
        object.__setattr__(self, "volume_mw", _dec(self.volume_mw, f"bid {self.bid_id} volume_mw"))
        if self.volume_mw <= 0:
            raise ValueError(f"bid {self.bid_id} volume_mw: {self.volume_mw} must be positive")


BidStatus = Literal["accepted", "partial", "out_of_merit", "block_too_large", "invalid"]


@dataclass(frozen=True, slots=True)
class BidOutcome:
    """What happened to one of our bids. ``price_paid`` is None when nothing was accepted."""

    bid_id: str
    offered_mw: Decimal
    price_asked: Decimal
    accepted_mw: Decimal
    price_paid: Decimal | None
    status: BidStatus
    reason: str = ""

    @property
    def revenue_per_h(self) -> Decimal:
        """EUR earned per hour of the MTU (capacity only)."""
        return self.accepted_mw * self.price_paid if self.price_paid is not None else ZERO


@dataclass(frozen=True, slots=True)
class ClearingResult:
    """One MTU's clearing: the price, what was procured, and each of our bids' fate."""

    pricing: CapacityPricing
    demand_mw: Decimal
    clearing_price: Decimal | None  # price of the last accepted bid; None if nothing accepted
    accepted_mw: Decimal  # total procured, all bidders
    others_accepted_mw: Decimal
    shortfall_mw: Decimal  # demand left uncovered
    bids: tuple[BidOutcome, ...]

    @property
    def our_accepted_mw(self) -> Decimal:
        return sum((b.accepted_mw for b in self.bids), ZERO)

    @property
    def our_revenue_per_h(self) -> Decimal:
        return sum((b.revenue_per_h for b in self.bids), ZERO)

    def outcome(self, bid_id: str) -> BidOutcome:
        for b in self.bids:
            if b.bid_id == bid_id:
                return b
        raise KeyError(bid_id)


def _floor_to(v: Decimal, step: Decimal | None) -> Decimal:
    if step is None:
        return v
    return (v / step).to_integral_value(rounding=ROUND_FLOOR) * step


def clear_auction(
    demand_mw: Number,
    others: Iterable[SupplyStep],
    ours: Iterable[CapacityBid],
    *,
    pricing: CapacityPricing | str = CapacityPricing.MARGINAL,
    step_mw: Number | None = None,
) -> ClearingResult:
    """Clear one MTU of a capacity auction by the rule in the module docstring."""
    demand = _dec(demand_mw, "demand_mw")
    if demand < 0:
        raise ValueError(f"demand_mw: {demand} must not be negative")
    rule = CapacityPricing(pricing)
    step = None if step_mw is None else _dec(step_mw, "step_mw")
    if step is not None and step <= 0:
        raise ValueError("step_mw: must be positive")
    our_bids = sorted(ours, key=lambda b: b.bid_id)
    ids = [b.bid_id for b in our_bids]
    if len(ids) != len(set(ids)):
        raise ValueError(f"bid_id: duplicates {sorted({i for i in ids if ids.count(i) > 1})}")

    # (price, 0 = others / 1 = ours, position, volume, indivisible)
    order: list[tuple[Decimal, int, int, Decimal, bool]] = [
        (s.price, 0, i, s.volume_mw, s.indivisible) for i, s in enumerate(others)
    ]
    order += [(b.price, 1, i, b.volume_mw, b.indivisible) for i, b in enumerate(our_bids)]
    order.sort(key=lambda e: (e[0], e[1], e[2]))

    remaining = demand
    accepted_ours: dict[int, tuple[Decimal, BidStatus]] = {}
    others_mw = ZERO
    last_price: Decimal | None = None
    for price, who, pos, volume, block in order:
        if remaining <= 0:
            take, status = ZERO, "out_of_merit"
        elif volume <= remaining:
            take, status = volume, "accepted"
        elif block:
            take, status = ZERO, "block_too_large"
        else:
            take = _floor_to(remaining, step)
            status = "partial" if take > 0 else "out_of_merit"
        if take > 0:
            remaining -= take
            last_price = price if last_price is None or price > last_price else last_price
            if who == 0:
                others_mw += take
        if who == 1:
            accepted_ours[pos] = (take, status)

    outcomes = []
    for pos, b in enumerate(our_bids):
        take, status = accepted_ours[pos]
        paid = None
        if take > 0:
            paid = last_price if rule is CapacityPricing.MARGINAL else b.price
        reason = {
            "out_of_merit": "demand was covered by cheaper (or equal-price, earlier) offers",
            "block_too_large": f"indivisible {b.volume_mw} MW would exceed the demand left",
        }.get(status, "")
        outcomes.append(BidOutcome(b.bid_id, b.volume_mw, b.price, take, paid, status, reason))
    accepted = demand - remaining
    return ClearingResult(
        pricing=rule,
        demand_mw=demand,
        clearing_price=last_price,
        accepted_mw=accepted,
        others_accepted_mw=others_mw,
        shortfall_mw=remaining,
        bids=tuple(outcomes),
    )


def clear_capacity_auction(
    product: Product,
    demand_mw: Number,
    others: Iterable[SupplyStep],
    ours: Iterable[CapacityBid],
) -> ClearingResult:
    """Clear with the product's own rules: its capacity pricing, its bid step, whole bids.

    On a product that clears bids whole our bids are treated as indivisible whatever they say
    (the TSO cannot honour a divisible bid there). Our bids that break the product's minimum or
    step are refused before clearing (status ``invalid``), as the TSO's system would.
    """
    pricing = product.pricing.value.capacity
    if pricing is None:
        raise ValueError(f"{product.id}: no capacity auction (pricing.capacity is empty)")
    valid: list[CapacityBid] = []
    invalid: list[BidOutcome] = []
    for b in ours:
        if product.indivisible.value and not b.indivisible:
            b = replace(b, indivisible=True)
        broken = [v for v in check_bid(product, b.volume_mw) if v.rule != "indivisible"]
        if broken:
            reason = "; ".join(v.message for v in broken)
            invalid.append(BidOutcome(b.bid_id, b.volume_mw, b.price, ZERO, None, "invalid", reason))
        else:
            valid.append(b)
    result = clear_auction(demand_mw, others, valid, pricing=pricing, step_mw=product.bid_step_mw.value)
    if not invalid:
        return result
    bids = tuple(sorted(result.bids + tuple(invalid), key=lambda o: o.bid_id))
    return replace(result, bids=bids)


def synthetic_supply(
    clearing_price: Number,
    demand_mw: Number,
    rng: np.random.Generator,
    *,
    marginal_headroom: float = 0.15,
) -> tuple[SupplyStep, ...]:
    """Other bidders' supply that, cleared alone against ``demand_mw``, sets ``clearing_price``.

    Turns a historical (price, demand) pair into a merit order a bid can be cleared against:
    85 % of the demand offered below the price, a marginal step at the price that leaves
    ``marginal_headroom`` x demand unused (so a small bidder undercutting it displaces volume
    without moving the price), and 40 % more offered above it, which a large bid can push the
    price into. Volumes are whole 0.1 MW.
    """
    p = _dec(clearing_price, "clearing_price")
    d = float(_dec(demand_mw, "demand_mw"))
    if d <= 0:
        return ()

    def mw(x: float) -> Decimal:
        return Decimal(str(max(round(x, 1), 0.1)))

    def eur(x: float) -> Decimal:
        return Decimal(str(round(max(x, 0.0), 2)))

    pf = float(p)
    steps: list[SupplyStep] = []
    shares = rng.dirichlet(np.full(6, 2.0)) * 0.85
    fractions = np.sort(rng.uniform(0.0, 1.0, 6)) ** 1.5
    steps += [SupplyStep(min(eur(pf * f), p), mw(d * s)) for f, s in zip(fractions, shares)]
    steps.append(SupplyStep(p, mw(d * (0.15 + marginal_headroom))))
    shares = rng.dirichlet(np.full(4, 2.0)) * 0.40
    ups = np.sort(rng.uniform(1.05, 3.0, 4))
    adds = np.sort(rng.uniform(0.5, 5.0, 4))
    steps += [SupplyStep(eur(pf * u + a), mw(d * s)) for u, a, s in zip(ups, adds, shares)]
    return tuple(steps)


# --------------------------------------------------------------------- local flexibility (NODES)


class FlexOrderType(StrEnum):
    SHORT_FLEX = "ShortFlex"  # activation: energy in the window, priced per MWh
    LONG_FLEX = "LongFlex"  # availability in the window, priced per MW and hour


class FlexPriceUnit(StrEnum):
    PER_MWH = "per_MWh"
    PER_MW_H = "per_MW_h"


_DEFAULT_UNIT = {FlexOrderType.SHORT_FLEX: FlexPriceUnit.PER_MWH, FlexOrderType.LONG_FLEX: FlexPriceUnit.PER_MW_H}


def _window(start: datetime, end: datetime, what: str) -> tuple[datetime, datetime]:
    s, e = _utc(start, f"{what} start"), _utc(end, f"{what} end")
    if e <= s:
        raise ValueError(f"{what}: end {e.isoformat()} must be after start {s.isoformat()}")
    return s, e


def _normalise_flex(obj: FlexOrder | FlexOffer, what: str, price_field: str) -> None:
    """The checks and conversions orders and offers share: window, order type, price unit,
    Decimal quantity and price, positive quantity."""
    s, e = _window(obj.start, obj.end, what)
    object.__setattr__(obj, "start", s)
    object.__setattr__(obj, "end", e)
    object.__setattr__(obj, "order_type", FlexOrderType(obj.order_type))
    object.__setattr__(obj, "price_unit", FlexPriceUnit(obj.price_unit or _DEFAULT_UNIT[obj.order_type]))
    object.__setattr__(obj, "quantity_mw", _dec(obj.quantity_mw, f"{what} quantity_mw"))
    object.__setattr__(obj, price_field, _dec(getattr(obj, price_field), f"{what} {price_field}"))
    if obj.quantity_mw <= 0:
        raise ValueError(f"{what} quantity_mw: must be positive")


@dataclass(frozen=True, slots=True)
class FlexOrder:
    """A DSO's buy order at a grid node: how many MW, when, and the most it pays."""

    order_id: str
    grid_node: str
    start: datetime
    end: datetime
    quantity_mw: Decimal
    max_price: Decimal
    order_type: FlexOrderType
    currency: str = "SEK"
    price_unit: FlexPriceUnit | None = None  # default: per MWh for ShortFlex, per MW,h for LongFlex

    def __post_init__(self) -> None:
        what = f"order {self.order_id}"
        _normalise_flex(self, what, "max_price")
        if self.max_price < 0:
            raise ValueError(f"{what} max_price: must not be negative")


@dataclass(frozen=True, slots=True)
class FlexOffer:
    """Our sell offer at a grid node: available MW over a window, at our asking price."""

    offer_id: str
    grid_node: str
    start: datetime
    end: datetime
    quantity_mw: Decimal
    price: Decimal
    order_type: FlexOrderType
    currency: str = "SEK"
    price_unit: FlexPriceUnit | None = None
    indivisible: bool = False

    def __post_init__(self) -> None:
        _normalise_flex(self, f"offer {self.offer_id}", "price")


@dataclass(frozen=True, slots=True)
class FlexTrade:
    """One offer matched (in whole or in part) to one order, paid the offer's own price."""

    order_id: str
    offer_id: str
    grid_node: str
    start: datetime
    end: datetime
    quantity_mw: Decimal
    price: Decimal
    price_unit: FlexPriceUnit
    currency: str

    @property
    def hours(self) -> Decimal:
        return Decimal((self.end - self.start).total_seconds()) / Decimal(3600)

    @property
    def value(self) -> Decimal:
        """Money for the trade: MW x hours x price (per MWh of full activation, or per MW,h)."""
        return self.quantity_mw * self.hours * self.price


@dataclass(frozen=True, slots=True)
class FlexMatching:
    trades: tuple[FlexTrade, ...]
    unmet_mw: dict[str, Decimal] = field(default_factory=dict)  # order_id -> MW not covered


def match_flex_orders(
    orders: Iterable[FlexOrder],
    offers: Iterable[FlexOffer],
    *,
    step_mw: Number = Decimal("0.01"),
    price_cap_per_mwh: Number | None = None,
) -> FlexMatching:
    """Match DSO orders with our offers, pay-as-bid (NODES-style).

    An offer can serve an order at the same grid node, of the same order type, currency and
    price unit, whose window covers the order's window, at a price at or under the order's
    maximum (and, for per-MWh prices, at or under ``price_cap_per_mwh``, the marketplace's
    cap, if given: sthlmflex caps ShortFlex at 10,000 SEK/MWh). Orders are served in
    order of start time then id; each takes the cheapest eligible offers first (ties by offer
    id). An offer's MW committed to one order are unavailable to any order overlapping it in
    time (summed, which is cautious when several overlap). Indivisible offers are used whole or
    not at all; partial use is rounded down to ``step_mw`` (NODES: 0.01 MW).
    """
    step = _dec(step_mw, "step_mw")
    cap = None if price_cap_per_mwh is None else _dec(price_cap_per_mwh, "price_cap_per_mwh")
    offer_list = sorted(offers, key=lambda o: (o.price, o.offer_id))
    used: dict[str, list[tuple[datetime, datetime, Decimal]]] = {o.offer_id: [] for o in offer_list}
    if len(used) != len(offer_list):
        raise ValueError("offer_id: duplicate offer ids")
    trades: list[FlexTrade] = []
    unmet: dict[str, Decimal] = {}
    for order in sorted(orders, key=lambda o: (o.start, o.order_id)):
        remaining = order.quantity_mw
        for offer in offer_list:
            if remaining <= 0:
                break
            if not (
                offer.grid_node == order.grid_node
                and offer.order_type == order.order_type
                and offer.currency == order.currency
                and offer.price_unit == order.price_unit
                and offer.start <= order.start
                and offer.end >= order.end
                and offer.price <= order.max_price
                and (cap is None or offer.price_unit != FlexPriceUnit.PER_MWH or offer.price <= cap)
            ):
                continue
            busy = sum((mw for s, e, mw in used[offer.offer_id] if s < order.end and e > order.start), ZERO)
            free = offer.quantity_mw - busy
            if offer.indivisible:
                take = offer.quantity_mw if busy == 0 and offer.quantity_mw <= remaining else ZERO
            else:
                take = _floor_to(min(free, remaining), step)
            if take <= 0:
                continue
            used[offer.offer_id].append((order.start, order.end, take))
            remaining -= take
            trades.append(
                FlexTrade(order.order_id, offer.offer_id, order.grid_node, order.start, order.end,
                          take, offer.price, order.price_unit, order.currency)  # type: ignore[arg-type]
            )
        if remaining > 0:
            unmet[order.order_id] = remaining
    return FlexMatching(tuple(trades), unmet)


# ------------------------------------------------------------------------------- grid frequency


@dataclass(frozen=True, slots=True)
class FrequencyModel:
    """Parameters of the synthetic Nordic frequency; defaults give a std of about 0.045 Hz.

    Normal operation is an Ornstein-Uhlenbeck process around 50 Hz (mean reversion by FCR-N and
    aFRR), plus a deviation at each hour change, when production schedules step faster than
    load follows. Disturbances (loss of a large unit: a fast drop, a partial rebound as FCR-D
    responds, then a return over minutes as mFRR replaces it) arrive as a Poisson process.

    Calibration: the Nordic normal band is 49.9-50.1 Hz and the system leaves it for some
    minutes a day; a std of 0.04-0.05 Hz puts about 2-3 % of normal-operation seconds outside
    it. Event rates and depths are assumptions of the right order (a few trips a week, nadirs
    of 49.4-49.8 Hz, since the dimensioning keeps a 1,450 MW loss above 49.0 Hz), not fitted
    to a measured year.
    """

    nominal_hz: float = 50.0
    std_hz: float = 0.043  # stationary std of the OU part
    correlation_s: float = 90.0  # OU mean-reversion time constant
    hour_shift_std_hz: float = 0.04  # deviation kicked in at each full hour
    hour_shift_decay_s: float = 300.0
    under_events_per_week: float = 3.0  # unit trips: FCR-D up
    over_events_per_week: float = 0.7  # load or export trips: FCR-D down
    under_nadir_hz: tuple[float, float] = (49.4, 49.8)
    over_peak_hz: tuple[float, float] = (50.2, 50.5)
    time_to_nadir_s: tuple[float, float] = (4.0, 10.0)
    recovery_s: tuple[float, float] = (120.0, 420.0)

    def __post_init__(self) -> None:
        for name in ("std_hz", "correlation_s", "hour_shift_decay_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be positive")
        for name in ("hour_shift_std_hz", "under_events_per_week", "over_events_per_week"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative")


@dataclass(frozen=True, slots=True)
class FrequencyEvent:
    """One disturbance: when it starts, the extreme frequency it reaches, and how it recovers."""

    start: datetime
    extreme_hz: float  # nadir (< 50) for a lost unit, peak (> 50) for lost load
    time_to_extreme_s: float = 6.0
    recovery_s: float = 240.0  # time constant of the return to normal after the rebound

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "event start"))
        if not 45.0 < self.extreme_hz < 55.0 or self.extreme_hz == 50.0:
            raise ValueError(f"extreme_hz: {self.extreme_hz} is not a plausible disturbance")
        if self.time_to_extreme_s <= 0 or self.recovery_s <= 0:
            raise ValueError("time_to_extreme_s and recovery_s must be positive")

    @property
    def direction(self) -> Literal["under", "over"]:
        return "under" if self.extreme_hz < 50.0 else "over"

    def deviation(self, t_s: np.ndarray, nominal_hz: float = 50.0) -> np.ndarray:
        """Deviation (Hz, signed) at seconds ``t_s`` after the event start; 0 before it."""
        depth = self.extreme_hz - nominal_hz
        tn = self.time_to_extreme_s
        out = np.zeros_like(t_s, dtype=float)
        fall = (t_s >= 0) & (t_s < tn)
        out[fall] = depth * (1 - np.exp(-3 * t_s[fall] / tn)) / (1 - math.exp(-3))
        after = t_s >= tn
        u = t_s[after] - tn
        settled = 0.5  # FCR-D holds about half the initial deviation once it has responded
        out[after] = depth * (settled + (1 - settled) * np.exp(-u / 8.0)) * np.exp(-u / self.recovery_s)
        return out


@dataclass(frozen=True, eq=False)
class FrequencyTrace:
    """Grid frequency (Hz) sampled every ``resolution_s`` seconds from ``start`` (UTC)."""

    start: datetime
    resolution_s: float
    hz: np.ndarray
    events: tuple[FrequencyEvent, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start, "start"))
        if self.resolution_s <= 0:
            raise ValueError("resolution_s: must be positive")

    def __len__(self) -> int:
        return int(self.hz.shape[0])

    @property
    def duration_s(self) -> float:
        return len(self) * self.resolution_s

    def seconds(self) -> np.ndarray:
        """Seconds since ``start`` of each sample."""
        return np.arange(len(self)) * self.resolution_s

    def event_mask(self, margin_s: float = 0.0) -> np.ndarray:
        """True for samples inside a disturbance (start to start + 5 recovery constants)."""
        t = self.seconds()
        mask = np.zeros(len(self), dtype=bool)
        for ev in self.events:
            t0 = (ev.start - self.start).total_seconds()
            mask |= (t >= t0 - margin_s) & (t < t0 + ev.time_to_extreme_s + 5 * ev.recovery_s + margin_s)
        return mask


def draw_frequency_events(
    start: datetime, duration_s: float, rng: np.random.Generator, model: FrequencyModel = FrequencyModel()
) -> tuple[FrequencyEvent, ...]:
    """Disturbances for a period: Poisson counts at the model's weekly rates, uniform times."""
    start = _utc(start, "start")
    weeks = duration_s / (7 * 86400)
    events: list[FrequencyEvent] = []
    for rate, (lo, hi) in ((model.under_events_per_week, model.under_nadir_hz),
                           (model.over_events_per_week, model.over_peak_hz)):
        for _ in range(rng.poisson(rate * weeks)):
            events.append(FrequencyEvent(
                start=start + timedelta(seconds=float(rng.uniform(0, duration_s))),
                extreme_hz=float(rng.uniform(lo, hi)),
                time_to_extreme_s=float(rng.uniform(*model.time_to_nadir_s)),
                recovery_s=float(rng.uniform(*model.recovery_s)),
            ))
    return tuple(sorted(events, key=lambda e: e.start))


def generate_frequency(
    start: datetime,
    *,
    duration_s: float = 86400.0,
    resolution_s: float = 1.0,
    seed: int | Sequence[int] = 0,
    model: FrequencyModel = FrequencyModel(),
    events: Sequence[FrequencyEvent] | None = None,
) -> FrequencyTrace:
    """A seeded frequency trace: normal operation plus disturbances.

    ``events=None`` draws disturbances at the model's rates; pass a list (possibly empty) to
    place them yourself, e.g. to test a bid against a known trip.
    """
    start = _utc(start, "start")
    if resolution_s <= 0 or duration_s <= 0:
        raise ValueError("resolution_s and duration_s must be positive")
    n = int(round(duration_s / resolution_s))
    rng = np.random.default_rng(seed)
    a = math.exp(-resolution_s / model.correlation_s)
    b = model.std_hz * math.sqrt(1 - a * a)
    eps = rng.standard_normal(n).tolist()
    x = float(rng.normal(0.0, model.std_hz))
    ou = [0.0] * n
    for i, e in enumerate(eps):  # an exact OU step; pure Python is fast enough for a day
        x = a * x + b * e
        ou[i] = x
    hz = model.nominal_hz + np.asarray(ou)

    t = np.arange(n) * resolution_s
    epoch_s = start.timestamp()
    first_hour = math.ceil(epoch_s / 3600) * 3600 - epoch_s
    hour_marks = np.arange(first_hour, n * resolution_s, 3600.0)
    kicks = rng.normal(0.0, model.hour_shift_std_hz, hour_marks.size)
    for h, k in zip(hour_marks, kicks):
        i0 = int(math.ceil(h / resolution_s))
        seg = t[i0:] - h
        span = seg < 6 * model.hour_shift_decay_s
        hz[i0:][span] += k * np.exp(-seg[span] / model.hour_shift_decay_s)

    if events is None:
        events = draw_frequency_events(start, n * resolution_s, rng, model)
    evs = tuple(sorted(events, key=lambda e: e.start))
    for ev in evs:
        hz += ev.deviation(t - (ev.start - start).total_seconds(), model.nominal_hz)
    return FrequencyTrace(start, resolution_s, hz, evs)


def activation_share(hz: np.ndarray | FrequencyTrace, activation: FrequencyActivation) -> np.ndarray:
    """Activated share of capacity per sample, by the product's curve (vectorised share_at).

    Static: the curve is applied to each sample as if the response were instantaneous. FCR
    ramps in seconds (FCR-N over minutes), so this slightly overstates the energy of short
    excursions, which errs on the side of caution when pricing battery wear.
    """
    values = hz.hz if isinstance(hz, FrequencyTrace) else np.asarray(hz, dtype=float)
    pts = sorted(activation.points)
    return np.interp(values, [float(f) for f, _ in pts], [float(s) for _, s in pts])


@dataclass(frozen=True, eq=False)
class ActivatedEnergy:
    """Energy activated per MW of capacity in each MTU of a trace.

    ``forward`` is energy in the product's direction (share > 0: up for FCR-D up and FCR-N,
    down for FCR-D down); ``reverse`` is the other way (share < 0, only FCR-N). Both are MWh
    per MW of capacity held; battery wear follows their sum (the throughput).
    """

    mtu_starts: tuple[datetime, ...]
    mtu_hours: float
    forward_mwh_per_mw: np.ndarray
    reverse_mwh_per_mw: np.ndarray

    @property
    def throughput_mwh_per_mw(self) -> np.ndarray:
        return self.forward_mwh_per_mw + self.reverse_mwh_per_mw

    @property
    def expected_mwh_per_mw_h(self) -> float:
        """Mean throughput per MW of capacity per hour held (MWh per MW h): the wear driver."""
        if not self.mtu_starts:
            return 0.0
        return float(self.throughput_mwh_per_mw.mean() / self.mtu_hours)


def activated_energy(
    trace: FrequencyTrace, activation: FrequencyActivation, *, mtu_minutes: int = 60
) -> ActivatedEnergy:
    """Activated energy per MW of capacity, per MTU of ``mtu_minutes`` (whole MTUs only)."""
    if mtu_minutes <= 0:
        raise ValueError("mtu_minutes: must be positive")
    share = activation_share(trace, activation)
    per = int(round(mtu_minutes * 60 / trace.resolution_s))
    if per == 0 or abs(per * trace.resolution_s - mtu_minutes * 60) > 1e-9:
        raise ValueError("mtu_minutes must be a whole number of samples")
    m = len(share) // per
    blocks = share[: m * per].reshape(m, per)
    dt_h = trace.resolution_s / 3600.0
    fwd = np.clip(blocks, 0, None).sum(axis=1) * dt_h
    rev = np.clip(-blocks, 0, None).sum(axis=1) * dt_h
    starts = tuple(trace.start + timedelta(minutes=mtu_minutes * i) for i in range(m))
    return ActivatedEnergy(starts, mtu_minutes / 60.0, fwd, rev)


def seed_for(seed: int, day: date, *salt: int) -> list[int]:
    """Seed material that differs per day and purpose but repeats for the same inputs."""
    return [int(seed), day.toordinal(), *map(int, salt)]
