"""Bid backtest arithmetic: what the fleet really held, what each cleared bid delivered and
earned, and the two baselines (a rule-of-thumb bidder, and the availability a perfect
forecaster would have issued).

Delivery is strict, as the TSO measures it: a car counts in a quarter-hour only if it was
plugged in all of it, with the kW it could really hold for the product's endurance (its real
SoC, minimum SoC and departure; a car that cannot discharge, for the product's limited-energy
threshold, since it cannot manage its reservoir the other way); a bid is delivered in full only if its bundle held the
accepted volume in every quarter of the MTU. The dispatcher may move load inside the bundle
(a car that left early is replaced by another car of the same bundle), never outside it; a car
in several bids of one direction and MTU shares what it held in proportion to its obligations.

Pure: services/bidder/backtest.py simulates the fleet, issues the forecasts known at each gate
closure, plans, clears against the simulated market, and calls these.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

import numpy as np
import pandas as pd

from flexfleet.bidding.availability import Availability
from flexfleet.bidding.models import DIRECTIONS, Bid, Direction, Fleet, Market
from flexfleet.forecast.flexibility import ENDURANCES_MIN, VehicleLimits, fleet_soc, held_key, realised_endurance_kw
from flexfleet.forecast.grid import Grid

FULL = 0.999                    # plugged share that counts as the whole quarter
PROMISE = 0.9                   # the P90 rule: the volume is there in at least 90 % of MTUs
_MW = Decimal("0.001")


@dataclass(frozen=True)
class Realised:
    """As it turned out, per vehicle and quarter (V, Q): whether the car was plugged in all
    quarter long, and the kW it could then hold, as power (`power_kw`) and for each endurance
    (`held_kw` by `held_key`, e.g. "up_20min")."""

    vehicle_ids: tuple[str, ...]
    quarter_starts: pd.DatetimeIndex
    plugged: np.ndarray
    power_kw: Mapping[Direction, np.ndarray]
    held_kw: Mapping[str, np.ndarray]
    remaining_min: np.ndarray     # minutes from the quarter's start to plug-out (NaN: not plugged)

    def held(self, direction: Direction, endurance_min: float) -> np.ndarray:
        """(V, Q) kW held for the shortest recorded endurance of at least `endurance_min`."""
        have = [e for e in ENDURANCES_MIN if held_key(direction, e) in self.held_kw]
        longer = [e for e in have if e >= endurance_min]
        if not longer:
            raise ValueError(f"endurance_min: {endurance_min} is longer than any recorded ({have})")
        return self.held_kw[held_key(direction, longer[0])]

    def quarters(self, start: datetime, minutes: int) -> np.ndarray:
        """Indices of the quarters of the MTU [start, start + minutes); -1 where not covered."""
        wanted = pd.date_range(pd.Timestamp(start).tz_convert("UTC"), periods=max(1, minutes // 15), freq="15min")
        return self.quarter_starts.get_indexer(wanted)


def realised(grid: Grid, limits: VehicleLimits, endurances: Iterable[int] = ENDURANCES_MIN) -> Realised:
    """What the fleet could have held on `grid` (sessions as they happened)."""
    full = grid.plugged >= FULL
    fleet = fleet_soc(grid, grid.n_mtus)
    with np.errstate(invalid="ignore", divide="ignore"):
        power = {d: np.where(full, (grid.up_kw if d == "up" else grid.down_kw) / np.maximum(grid.plugged, FULL), 0.0)
                 for d in DIRECTIONS}
        held = {held_key(d, e): np.where(full, realised_endurance_kw(d, grid, limits, e, fleet), 0.0)
                for d in DIRECTIONS for e in endurances}
    return Realised(grid.vehicle_ids, grid.mtu_starts(), full, power, held,
                    np.where(full, grid.remaining * 15.0, np.nan))


def foresight_availability(real: Realised, quarters: pd.DatetimeIndex) -> Availability:
    """The forecast a perfect forecaster would issue for `quarters`: plugged in with certainty
    where the car was, holding exactly what it could, leaving exactly when it did."""
    idx = real.quarter_starts.get_indexer(pd.DatetimeIndex(quarters).tz_convert("UTC"))
    if (idx < 0).any():
        raise ValueError("quarters: outside the realised grid")
    p = real.plugged[:, idx].astype(np.float64)
    held = {f"{d}_{e}_kw": real.held_kw[held_key(d, e)][:, idx] for d in DIRECTIONS for e in ENDURANCES_MIN}
    return Availability(real.vehicle_ids, pd.DatetimeIndex(quarters).tz_convert("UTC"), p, p.copy(),
                        real.power_kw["up"][:, idx], real.power_kw["down"][:, idx],
                        departure_min=real.remaining_min[:, idx], **held)


@dataclass(frozen=True)
class Award:
    """What the market accepted of a bid, at what price (EUR/MW/h)."""

    bid: Bid
    accepted_mw: Decimal
    price_eur_per_mw_h: Decimal


@dataclass(frozen=True)
class Outcome:
    """One accepted bid as delivered, in EUR for the MTU. Revenue is the capacity payment for
    what was delivered (the TSO withholds the rest); the penalty is the surcharge on the
    shortfall; wear is the battery wear of the activations the delivered volume took."""

    product_id: str
    market_key: str
    direction: Direction
    mtu_start: datetime
    accepted_mw: float
    delivered_mw: float
    price_eur_per_mw_h: float
    revenue_eur: float
    penalty_eur: float
    wear_eur: float

    @property
    def full(self) -> bool:
        return self.delivered_mw >= self.accepted_mw - 1e-9

    @property
    def net_eur(self) -> float:
        return self.revenue_eur - self.penalty_eur - self.wear_eur


def deliver(awards: Sequence[Award], markets: Mapping[str, Market], fleet: Fleet, real: Realised,
            activation_mwh_per_mw_h: Mapping[str, float], surcharge_eur_per_mw_h: Mapping[str, float]) -> list[Outcome]:
    """Each accepted bid's delivery against what its bundle really held (see the module doc).

    activation_mwh_per_mw_h: the day's realised activation energy per MW h sold, by market key;
    surcharge_eur_per_mw_h: the penalty per MW h short on top of the withheld payment."""
    row = {v: i for i, v in enumerate(real.vehicle_ids)}
    wear_rate = dict(zip(fleet.vehicle_ids, fleet.wear_eur_per_kwh))
    # A car's obligations per (direction, MTU): its held kW is shared in proportion.
    shared: dict[tuple[str, datetime], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for a in awards:
        if a.accepted_mw > 0:
            for v, kw in zip(a.bid.vehicles, a.bid.obligations_kw):
                shared[(a.bid.direction, a.bid.mtu_start)][v] += kw
    out = []
    for a in awards:
        if a.accepted_mw <= 0:
            continue
        bid, market = a.bid, markets[a.bid.market_key]
        minutes = market.product.mtu_minutes.value
        hours = minutes / 60
        q = real.quarters(bid.mtu_start, minutes)
        rows = np.array([row.get(v, -1) for v in bid.vehicles])
        obligations = np.asarray(bid.obligations_kw, dtype=np.float64)
        total = np.array([shared[(bid.direction, bid.mtu_start)][v] for v in bid.vehicles])
        share = np.where(total > 0, obligations / np.maximum(total, 1e-12), 0.0)
        if (q < 0).any() or (rows < 0).any():
            held_kw = 0.0          # outside what was observed: nothing is proven delivered
        else:
            held = real.held(bid.direction, market.endurance_min)[np.ix_(rows, q)]
            # A car that cannot discharge cannot manage its reservoir: the product's LER
            # threshold applies to it (FCR-D: 2 hours), as the planner assumes.
            one_way = real.power_kw["up"][np.ix_(rows, q)].max(axis=1) == 0
            if market.one_way_endurance_min > market.endurance_min and one_way.any():
                longer = real.held(bid.direction, market.one_way_endurance_min)[np.ix_(rows, q)]
                held = np.where(one_way[:, None], longer, held)
            held_kw = float((held * share[:, None]).sum(axis=0).min())
        accepted = float(a.accepted_mw)
        delivered = min(accepted, held_kw / 1000)
        price = float(a.price_eur_per_mw_h)
        weights = obligations / max(obligations.sum(), 1e-12)
        wear_per_kwh = float(sum(w * wear_rate.get(v, 0.0) for v, w in zip(bid.vehicles, weights)))
        energy_kwh = delivered * hours * activation_mwh_per_mw_h.get(bid.market_key, 0.0) * 1000
        out.append(Outcome(bid.product_id, bid.market_key, bid.direction, bid.mtu_start, accepted, delivered, price,
                           revenue_eur=delivered * hours * price,
                           penalty_eur=(accepted - delivered) * hours * surcharge_eur_per_mw_h.get(bid.market_key, 0.0),
                           wear_eur=energy_kwh * wear_per_kwh))
    return out


def rule_of_thumb_bids(markets: Sequence[Market], real: Realised, mtu_starts: Sequence[datetime], known_until: datetime,
                       share: float, auction: str, lookback_days: int = 7) -> list[Bid]:
    """The plain bidder: for each MTU, offer `share` of the fleet's plugged-in power at the same
    time of day, averaged over the last `lookback_days` days known at gate closure, rounded down
    to the bid step, at price 0 (take the market price). The whole fleet backs every bid, each
    car in proportion to the power it had plugged in then."""
    if not 0 < share <= 1:
        raise ValueError(f"share: must be in (0, 1], got {share}")
    known_until = pd.Timestamp(known_until).tz_convert("UTC")
    bids = []
    for market in markets:
        product = market.product
        minutes = product.mtu_minutes.value
        step, minimum = product.bid_step_mw.value, product.min_bid_mw.value
        power = real.power_kw[market.direction]
        for start in mtu_starts:
            past = [pd.Timestamp(start) - timedelta(days=d) for d in range(1, lookback_days + 1)]
            past = [t for t in past if t + timedelta(minutes=minutes) <= known_until]
            idx = [real.quarters(t, minutes) for t in past]
            idx = [i for i in idx if (i >= 0).all()]
            if not idx:
                continue
            per_car = np.mean([power[:, i].min(axis=1) for i in idx], axis=0)
            mw = (Decimal(str(share * float(per_car.sum()) / 1000)) / step).to_integral_value(ROUND_FLOOR) * step
            if mw < minimum or mw <= 0:
                continue
            backing = per_car > 0
            kw = per_car[backing] * float(mw) * 1000 / float(per_car[backing].sum())
            bids.append(Bid(product.id, auction, start, mw.quantize(_MW), Decimal(0),
                            tuple(np.asarray(real.vehicle_ids)[backing]), tuple(float(k) for k in kw),
                            Decimal(0), float(mw) * 1000, 0.0, market.direction, market.key, market.grid_node))
    return bids


@dataclass(frozen=True)
class Score:
    """A bidder's backtest in EUR: net value is revenue minus penalties minus wear."""

    revenue_eur: float
    penalty_eur: float
    wear_eur: float
    offered_mwh: float
    accepted_mwh: float
    delivered_mwh: float
    accepted_mtus: int
    full_mtus: int

    @property
    def net_eur(self) -> float:
        return self.revenue_eur - self.penalty_eur - self.wear_eur

    @property
    def full_share(self) -> float:
        """Share of accepted bids (one per product and MTU) delivered in full: the P90 promise."""
        return self.full_mtus / self.accepted_mtus if self.accepted_mtus else 1.0


def score(bids: Sequence[Bid], outcomes: Sequence[Outcome], markets: Mapping[str, Market]) -> Score:
    def mwh(mw: float, key: str) -> float:
        return mw * markets[key].product.mtu_minutes.value / 60

    return Score(sum(o.revenue_eur for o in outcomes), sum(o.penalty_eur for o in outcomes),
                 sum(o.wear_eur for o in outcomes), sum(mwh(float(b.volume_mw), b.market_key) for b in bids),
                 sum(mwh(o.accepted_mw, o.market_key) for o in outcomes),
                 sum(mwh(o.delivered_mw, o.market_key) for o in outcomes),
                 len(outcomes), sum(o.full for o in outcomes))
