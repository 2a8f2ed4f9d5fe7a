"""plan_bids: the day's bids per product and MTU, and the vehicles behind each.

1. Check each market: zone, auction, gate closure (fixed, or per MTU), prices, MTU length.
2. Per vehicle, market, MTU and quarter of the MTU: the kW it can hold (the forecast's figure
   for the endurance, departure, OEM cap, node of an order) and its P90 credit under the
   correlated model. The TSO counts a bundle quarter by quarter, and so does the plan.
3. Cluster the vehicles; build the cluster model; solve it with HiGHS (greedy if no solution
   in time).
4. Disaggregate: each vehicle of a cluster gives the cluster's share of its held kW. Verify
   every bundle's P90 in each quarter with the full copula model; if one falls short, tighten
   that bid's haircut in that quarter and re-solve (a few passes), then cut what is still
   short to the step below.
5. Price each bid at the bundle's cost (marginal) or best pay-as-bid offer; what is left out
   is reported with its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from time import perf_counter

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from flexfleet.bidding import greedy, highs_model
from flexfleet.bidding.availability import QUARTER, Availability, MtuAvailability
from flexfleet.bidding.cluster_model import Allocation, ClusterModel
from flexfleet.bidding.clusters import cluster_vehicles
from flexfleet.bidding.models import (Bid, BiddingInputError, BiddingProblem, BidPlan, Dropped, Market,
                                      ObjectiveParts, SolveOptions)
from flexfleet.bidding.p90 import bundle_p90_kw, credit_factor, p90_level, shortfall_probability
from flexfleet.bidding.pricing import OfferTerms, offer_terms, terms_at
from flexfleet.domain.time import delivery_day_bounds
from flexfleet.domain.zones import BiddingZone
from flexfleet.forecast.flexibility import held_key
from flexfleet.forecast.portfolio import Calibration
from flexfleet.markets.catalogue import FixedGateClosure
from flexfleet.markets.rules import check_bid, gate_closure, round_to_step

# Without a calibration from the forecaster the fleet is assumed this correlated: never the
# independent sum, whose quantiles are far too narrow.
FALLBACK_RHO = 0.05
MIN_OBLIGATION_KW = 0.01     # smaller obligations are left out of a bundle
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class _Line:
    """A market that passed its checks, with what the plan needs of it."""

    market: Market
    auction: str
    open_mtu: np.ndarray        # (T,) gate still open
    prices: np.ndarray          # (scenarios, T)
    weights: np.ndarray         # (scenarios,)
    rho: float
    level: float                # model level of the P90 (recalibrated 1 - confidence)
    confidence: float


@dataclass(frozen=True)
class _Vehicles:
    """Per vehicle (V), line (M), MTU (T) and quarter of the MTU (Q)."""

    held: np.ndarray            # (V, M, T) kW in the car's best quarter: a share s of it is its obligation
    held_q: np.ndarray          # (V, M, T, Q) kW held given plugged in
    p: np.ndarray               # (V, M, T, Q) probability plugged in
    credit: np.ndarray          # (V, M, T, Q) P90 credit factor
    wear: np.ndarray            # (V, M) EUR per MW h of expected activation
    one_way: np.ndarray         # (V,) the pair cannot discharge
    power: np.ndarray           # (V, T, 2) pair kW per side


def plan_bids(problem: BiddingProblem, options: SolveOptions = SolveOptions()) -> BidPlan:
    """The day's bids; never raises for a market situation, only for malformed input."""
    started = perf_counter()
    dropped: list[Dropped] = []
    notes: list[str] = []
    mtus = list(problem.prices.mtu_starts)
    _check_day(problem, mtus)
    minutes = _mtu_minutes(mtus, problem.markets)
    lines = _open_lines(problem, mtus, minutes, dropped, notes)
    if not lines:
        return _plan((), dropped, notes, started, "empty", 0, _NOTHING)
    view = _availability(problem, mtus, minutes, notes)
    vehicles = _vehicle_lines(problem, lines, view)
    labels = _cluster(problem, lines, vehicles, options)
    if (labels < 0).all():
        for ln in lines:
            dropped.append(Dropped(ln.market.product.id, ln.market.key, None,
                                   "no vehicle can hold it: none is forecast plugged in with the capability, "
                                   "SoC, endurance and departure it needs"))
        return _plan((), dropped, notes, started, "empty", 0, _NOTHING)
    static = _cluster_arrays(problem, lines, vehicles, labels, minutes)
    model, allocation, checks, pool = _passes(problem, lines, vehicles, labels, static, minutes, options, started)
    if options.method == "per_mtu" and (model.oem > 0).any():
        notes.append("OEM caps: each day cap was split over the MTUs by the day's LP relaxation")
    bids, parts = _bids(problem, lines, vehicles, allocation, checks, minutes, dropped)
    _explain(lines, mtus, pool, allocation, bids, view, dropped)
    status = allocation.status if bids else f"{allocation.status}, no bid"
    return _plan(tuple(bids), dropped, notes, started, status, static.capacity_kw.shape[0], parts)


HAIRCUT_MARGIN = 0.9995     # aim the linear P90 a little low: bundles land at its edge


def _passes(problem: BiddingProblem, lines: list[_Line], vehicles: _Vehicles, labels: np.ndarray, static: _Static,
            minutes: int, options: SolveOptions, started: float) -> tuple[ClusterModel, Allocation, dict, _Pool]:
    """Solve, top up, verify every bundle; while a bundle falls short of its volume (or the
    bundles' costs move an offer), tighten that bid's haircut, re-price, and solve again, as
    long as another pass fits in the time limit. The last pass is cut to its verified P90."""
    pool = _pool(lines, vehicles)
    haircut, offers = pool.haircut * HAIRCUT_MARGIN, pool.offers
    for _ in range(max(1, options.max_passes)):
        began = perf_counter()
        model = _model(lines, static, pool, haircut, offers, minutes)
        planned = _solve(model, options, started)
        allocation = greedy.top_up(model, planned)
        checks = _verify(lines, vehicles, labels, allocation, planned)
        short = {mt: c for mt, c in checks.items() if c.p90_kw < allocation.volume_mw[mt] * 1000 - 1e-6}
        new_offers = _bundle_offers(lines, pool, offers, checks)
        out_of_time = 2 * perf_counter() - began - started > options.time_limit_s
        if (not short and _same_offers(offers, new_offers)) or out_of_time:
            break
        for (m, t), c in short.items():
            low = c.p90_q_kw < allocation.volume_mw[m, t] * 1000 - 1e-6
            haircut[m, t, low] = np.minimum(haircut[m, t, low], c.p90_q_kw[low] / np.maximum(c.credit_q_kw[low], 1e-9)) \
                * HAIRCUT_MARGIN
        offers = new_offers
    return model, allocation, checks, pool


def bundle_backing(problem: BiddingProblem, bid: Bid) -> tuple[np.ndarray, np.ndarray]:
    """(p, kw), each (the bid's cars, quarters of its MTU): each car's plug-in probability and the
    kW it backs there, its obligation's share of what it holds in that quarter, recomputed from
    the problem as the planner saw it. For checking a plan out of sample."""
    mtus = list(problem.prices.mtu_starts)
    minutes = _mtu_minutes(mtus, problem.markets)
    market = next(m for m in problem.markets if m.key == bid.market_key)
    rho, level, _ = _confidence(problem, market)
    line = _Line(market, bid.auction, np.ones(len(mtus), dtype=bool), np.zeros((1, len(mtus))), np.ones(1),
                 rho, level, float(market.product.confidence_quantile.value))
    v = _vehicle_lines(problem, [line], _availability(problem, mtus, minutes, []))
    rows = pd.Index(problem.fleet.vehicle_ids).get_indexer(pd.Index(bid.vehicles))
    t = mtus.index(bid.mtu_start)
    held_q = v.held_q[rows, 0, t]
    share = np.asarray(bid.obligations_kw) / np.maximum(v.held[rows, 0, t], 1e-12)
    return v.p[rows, 0, t], share[:, None] * held_q


# --- 1. markets ------------------------------------------------------------------------------------

def _check_day(problem: BiddingProblem, mtus: list[datetime]) -> None:
    try:
        zone = BiddingZone.parse(problem.zone)
    except Exception as exc:
        raise BiddingInputError(f"zone: {exc}") from None
    start, end = delivery_day_bounds(problem.day, zone.timezone)
    outside = [t for t in mtus if not start <= t < end]
    if outside:
        raise BiddingInputError(f"prices.mtu_starts: {outside[0].isoformat()} is not in delivery day {problem.day}")


def _mtu_minutes(mtus: list[datetime], markets: tuple[Market, ...]) -> int:
    if len(mtus) >= 2:
        gaps = {int((b - a).total_seconds() // 60) for a, b in zip(mtus, mtus[1:])}
        if len(gaps) == 1:
            return gaps.pop()
        # A day with a gap (a closed hour) keeps its grid: the smallest step between MTUs.
        return min(gaps)
    return markets[0].product.mtu_minutes.value if markets else 60


def _open_lines(problem: BiddingProblem, mtus: list[datetime], minutes: int,
                dropped: list[Dropped], notes: list[str]) -> list[_Line]:
    lines = []
    for market in problem.markets:
        product = market.product

        def drop(reason: str, market: Market = market) -> None:
            dropped.append(Dropped(market.product.id, market.key, None, reason))

        if problem.zone not in product.zones.value:
            drop(f"{product.id} is not traded in {problem.zone}")
            continue
        if product.mtu_minutes.value != minutes:
            drop(f"{product.id} has {product.mtu_minutes.value}-minute MTUs; the prices have {minutes}")
            continue
        prices = problem.prices.row(market.key)
        if prices is None:
            drop(f"no price scenarios for {market.key}")
            continue
        names = [a.name for a in product.auctions]
        auction = market.auction or (problem.auction if problem.auction in names else
                                     names[0] if len(names) == 1 else None)
        if auction not in names:
            drop(f"{product.id} has no auction {market.auction or problem.auction!r} (has {names})")
            continue
        open_mtu = _gate_open(problem, market, auction, mtus)
        if not open_mtu.any():
            closes = gate_closure(product, auction, problem.day, mtus[-1] if mtus else None)
            drop(f"gate closure of {auction} passed at {closes.isoformat()} (now {problem.now.isoformat()})")
            continue
        for t in np.flatnonzero(~open_mtu):
            dropped.append(Dropped(product.id, market.key, mtus[t], f"gate closure of {auction} for this MTU passed"))
        rho, level, note = _confidence(problem, market)
        if note:
            notes.append(note)
        lines.append(_Line(market, auction, open_mtu, prices, problem.prices.weights, rho, level,
                           float(product.confidence_quantile.value)))
    return lines


def _gate_open(problem: BiddingProblem, market: Market, auction: str, mtus: list[datetime]) -> np.ndarray:
    product = market.product
    if isinstance(product.auction(auction).gate_closure.value, FixedGateClosure):
        return np.full(len(mtus), problem.now < gate_closure(product, auction, problem.day))
    return np.array([problem.now < gate_closure(product, auction, problem.day, t) for t in mtus], dtype=bool)


def _confidence(problem: BiddingProblem, market: Market) -> tuple[float, float, str]:
    d, e = market.direction, int(round(market.endurance_min))
    for key in (held_key(d, e), held_key(d, 20), d):
        if key in problem.calibrations:
            cal = problem.calibrations[key]
            break
    else:
        cal = Calibration(rho=FALLBACK_RHO)
        key = None
    confidence = float(market.product.confidence_quantile.value)
    note = "" if key else f"{market.key}: no calibration for {d}; assumed rho {FALLBACK_RHO}"
    return cal.rho, p90_level(cal, confidence), note


# --- 2. vehicles -----------------------------------------------------------------------------------

def _availability(problem: BiddingProblem, mtus: list[datetime], minutes: int, notes: list[str]) -> MtuAvailability:
    quarters = pd.DatetimeIndex([pd.Timestamp(t) + i * QUARTER for t in mtus for i in range(max(1, minutes // 15))])
    source = problem.vehicles
    if isinstance(source, pd.DataFrame):
        source = Availability.from_vehicle_rows(source, quarters)
    elif not isinstance(source, Availability):
        raise BiddingInputError("vehicles: must be FleetForecast.vehicles rows or an Availability")
    missing = len(set(problem.fleet.vehicle_ids) - set(source.vehicle_ids))
    if missing:
        notes.append(f"{missing} vehicle(s) of the fleet have no forecast rows and back nothing")
    return source.aligned(problem.fleet.vehicle_ids).per_mtu(mtus, minutes)


def _vehicle_lines(problem: BiddingProblem, lines: list[_Line], view: MtuAvailability) -> _Vehicles:
    fleet = problem.fleet
    power = np.stack([view.power_kw("up"), view.power_kw("down")], axis=2)
    one_way = ~(power[:, :, 0] > 0).any(axis=1)
    held, p, credit, wear = [], [], [], []
    for ln in lines:
        mk = ln.market
        two_way = view.held_kw(mk.direction, mk.endurance_min, fleet.oem_cap_kwh)
        kw = np.where(one_way[:, None, None],
                      view.held_kw(mk.direction, mk.one_way_endurance_min, fleet.oem_cap_kwh), two_way)
        other = 1 if mk.direction == "up" else 0
        if mk.opposite_share > 0:   # a reservoir must also hold 0.2 C the other way
            kw = np.where((one_way[:, None] | (power[:, :, other] > 0))[..., None], kw, 0.0)
        if mk.grid_node is not None:
            kw = np.where((fleet.grid_node == mk.grid_node)[:, None, None], kw, 0.0)
        kw = np.where((ln.open_mtu & view.covered)[None, :, None], kw, 0.0)
        prob = view.probability(mk.direction)
        held.append(kw)
        p.append(prob)
        credit.append(credit_factor(prob, ln.rho, ln.level))
        wear.append(mk.activation_mwh_per_mw_h * 1000 * fleet.wear_eur_per_kwh)
    held_q = np.stack(held, axis=1)
    return _Vehicles(held_q.max(axis=3), held_q, np.stack(p, axis=1), np.stack(credit, axis=1),
                     np.stack(wear, axis=1), one_way, power)


# --- 3. clusters and the model ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Static:
    """Cluster arrays that do not change between passes."""

    capacity_kw: np.ndarray
    credit_kw: np.ndarray
    wear: np.ndarray
    power: np.ndarray
    oem: np.ndarray
    opposite: np.ndarray
    node_of: np.ndarray
    node_limit_kw: np.ndarray


def _constrained_nodes(problem: BiddingProblem, lines: list[_Line]) -> list[str]:
    nodes = [n.grid_node for n in problem.node_limits]
    return nodes + sorted({ln.market.grid_node for ln in lines if ln.market.grid_node} - set(nodes))


def _cluster(problem: BiddingProblem, lines: list[_Line], v: _Vehicles, options: SolveOptions) -> np.ndarray:
    fleet = problem.fleet
    nodes = set(_constrained_nodes(problem, lines))
    keys = [(node if node in nodes else "", bool(ow), str(chem), bool(not math.isnan(cap)))
            for node, ow, chem, cap in zip(fleet.grid_node, v.one_way, fleet.chemistry, fleet.oem_cap_kwh)]
    profile = (v.held_q * v.credit).reshape(len(keys), -1)
    return cluster_vehicles(keys, profile, profile.max(axis=1, initial=0.0) > 0, options.max_clusters, options.seed)


def _segment_max(values: np.ndarray, labels: np.ndarray, clusters: int) -> np.ndarray:
    active = np.flatnonzero(labels >= 0)
    order = active[np.argsort(labels[active], kind="stable")]
    starts = np.searchsorted(labels[order], np.arange(clusters))
    return np.maximum.reduceat(values[order], starts, axis=0)


def _cluster_arrays(problem: BiddingProblem, lines: list[_Line], v: _Vehicles, labels: np.ndarray,
                    minutes: int) -> _Static:
    fleet = problem.fleet
    V, M, T = v.held.shape
    C = int(labels.max()) + 1
    active = labels >= 0
    members = csr_matrix((np.ones(active.sum()), (labels[active], np.flatnonzero(active))), shape=(C, V))
    capacity = (members @ v.held.reshape(V, -1)).reshape(C, M, T)
    weighted = v.held_q * v.credit
    credit = (members @ weighted.reshape(V, -1)).reshape((C,) + weighted.shape[1:])
    weight = weighted.sum(axis=(2, 3))                                                # (V, M)
    wear = (members @ (v.wear * weight)) / np.maximum(members @ weight, 1e-12)
    direction = np.array([0 if ln.market.direction == "up" else 1 for ln in lines])
    opposite_m = np.array([ln.market.opposite_share for ln in lines])
    opposite_v = np.where(v.one_way[:, None], 0.0, opposite_m[None, :])               # (V, M)
    power = np.zeros((V, M, T, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        for m in range(M):
            own, other = direction[m], 1 - direction[m]
            power[:, m, :, own] = np.where(v.held[:, m] > 0, v.held[:, m] / v.power[:, :, own], 0.0)
            power[:, m, :, other] = np.where(v.held[:, m] > 0,
                                             opposite_v[:, m, None] * v.held[:, m] / v.power[:, :, other], 0.0)
    power = np.nan_to_num(power, nan=0.0, posinf=0.0)
    hours = minutes / 60
    cap = fleet.oem_cap_kwh
    energy = np.array([ln.market.activation_mwh_per_mw_h * hours if d == 0 else 0.0
                       for ln, d in zip(lines, direction)])                         # kWh per kW
    with np.errstate(divide="ignore", invalid="ignore"):
        oem = np.where((cap > 0)[:, None, None], v.held * energy[None, :, None] / cap[:, None, None], 0.0)
    oem = np.nan_to_num(oem, nan=0.0, posinf=0.0)
    nodes = _constrained_nodes(problem, lines)
    limited = {n.grid_node: n for n in problem.node_limits}
    node_index = {n: i for i, n in enumerate(nodes)}
    uniq, at = np.unique(labels, return_index=True)
    first = at[uniq >= 0]                                                            # a member of each cluster
    node_of = np.array([node_index.get(str(fleet.grid_node[i]), -1) for i in first])
    node_limit = np.full((len(nodes), T, 2), np.inf)
    for i, n in enumerate(nodes):
        if n in limited:
            node_limit[i, :, 0], node_limit[i, :, 1] = limited[n].kw("up"), limited[n].kw("down")
    return _Static(capacity, credit, wear, _segment_max(power, labels, C), _segment_max(oem, labels, C),
                   opposite_v[first], node_of, node_limit)


@dataclass
class _Pool:
    """Per line and MTU, what every vehicle that could back the bid would support together."""

    haircut: np.ndarray         # (M, T, Q) full-model P90 over linear credit, per quarter
    p90_mw: np.ndarray          # (M, T) in the MTU's lowest quarter
    best_mw: np.ndarray         # (M, T) the volume worth most, penalties counted (0: none)
    penalty: np.ndarray         # (M, T) expected penalty per MW h at that volume
    offers: list[list[OfferTerms]]


def _pool(lines: list[_Line], v: _Vehicles) -> _Pool:
    """Haircut, planning penalty and first offers from the whole pool. The optimiser's rows are
    linear, so it sees the penalty as a rate: the one at the volume the pool's own value curve
    peaks at, which is also the most a bid may offer (a subset of the pool peaks lower)."""
    M, T, Q = v.held_q.shape[1:]
    pool = _Pool(np.ones((M, T, Q)), np.zeros((M, T)), np.zeros((M, T)), np.zeros((M, T)), [])
    for m, ln in enumerate(lines):
        row = []
        for t in range(T):
            kw = v.held_q[:, m, t]
            idx = np.flatnonzero(kw.max(axis=1) > 0)
            weighted = kw[idx] * v.credit[idx, m, t]
            linear, weight = weighted.sum(axis=0), weighted.sum(axis=1)
            wear = float(weight @ v.wear[idx, m] / weight.sum()) if weight.sum() > 0 else 0.0
            terms = offer_terms(ln.prices[:, t], ln.weights, wear + _penalty(ln), ln.market.pricing)
            if linear.min() > 0:
                p90 = _quarter_p90(ln, v.p[idx, m, t], kw[idx])
                pool.haircut[m, t] = np.minimum(1.0, p90 / linear)
                pool.p90_mw[m, t] = p90.min() / 1000
                most = round_to_step(ln.market.product, Decimal(repr(float(pool.p90_mw[m, t]))))
                best = _best_volume(ln, t, wear, v.p[idx, m, t], kw[idx], _candidates(ln, most))
                if best[0] is not None:
                    pool.best_mw[m, t] = float(best[0])
                    pool.penalty[m, t] = _penalty(ln, best[1])
                    terms = offer_terms(ln.prices[:, t], ln.weights, wear + pool.penalty[m, t], ln.market.pricing)
            row.append(terms)
        pool.offers.append(row)
    return pool


def _quarter_p90(ln: _Line, p: np.ndarray, kw: np.ndarray) -> np.ndarray:
    """(Q,) the bundle's P90 kW in each quarter; p and kw are (cars, Q)."""
    return np.array([bundle_p90_kw(p[:, q], kw[:, q], ln.rho, ln.level) for q in range(kw.shape[1])])


def _penalty(ln: _Line, shortfall: float | None = None) -> float:
    """Expected penalty per MW h when accepted (at the confidence's bound unless given)."""
    return (1 - ln.confidence if shortfall is None else shortfall) * ln.market.penalty_eur_per_mw_h


def _model(lines: list[_Line], static: _Static, pool: _Pool, haircut: np.ndarray,
           offers: list[list[OfferTerms]], minutes: int) -> ClusterModel:
    revenue = np.array([[o.revenue_eur_per_mw_h for o in row] for row in offers])
    acceptance = np.array([[o.acceptance for o in row] for row in offers])
    cap = np.array([ln.market.max_mw if ln.market.max_mw is not None else np.inf for ln in lines])
    return ClusterModel(
        hours=minutes / 60,
        direction=np.array([0 if ln.market.direction == "up" else 1 for ln in lines]),
        opposite=static.opposite,
        min_mw=np.array([float(ln.market.product.min_bid_mw.value) for ln in lines]),
        step_mw=np.array([float(ln.market.product.bid_step_mw.value) for ln in lines]),
        vmax_mw=np.minimum(cap[:, None], pool.best_mw), revenue=revenue, acceptance=acceptance, haircut=haircut,
        capacity_kw=static.capacity_kw, credit_kw=static.credit_kw,
        cost=static.wear[:, :, None] + pool.penalty[None], power=static.power,
        node_of=static.node_of, node_limit_kw=static.node_limit_kw, oem=static.oem)


def _solve(model: ClusterModel, options: SolveOptions, started: float) -> Allocation:
    left = options.time_limit_s - (perf_counter() - started)
    if options.solver == "highs" and left > 0:
        found = highs_model.solve(model, left, options.mip_rel_gap, options.method)
        if found is not None:
            return found
    fallback = greedy.solve(model)
    status = "greedy" if options.solver == "greedy" else "greedy_fallback"
    return Allocation(fallback.share, fallback.volume_mw, status, fallback.objective)


# --- 4. bundles ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Check:
    """One bid's bundle under the full model."""

    vehicles: np.ndarray        # indices
    obligations_kw: np.ndarray
    kw_q: np.ndarray            # (cars, Q) what each car backs in each quarter
    p90_q_kw: np.ndarray        # (Q,)
    credit_q_kw: np.ndarray     # (Q,) linear credit of the bundle (no haircut)
    wear: float                 # credit-weighted EUR per MW h

    @property
    def p90_kw(self) -> float:
        return float(self.p90_q_kw.min())


def _verify(lines: list[_Line], v: _Vehicles, labels: np.ndarray, allocation: Allocation,
            planned: Allocation) -> dict:
    """Each bid's bundle under the full model. Wear is priced on the planned backing: spare
    cars are dispatched only when the planned ones are not there."""
    checks = {}
    safe = np.maximum(labels, 0)
    for m, t in np.argwhere(allocation.volume_mw > 0):
        ln = lines[m]
        share = np.where(labels >= 0, allocation.share[safe, m, t], 0.0)
        idx = np.flatnonzero(share * v.held[:, m, t] >= MIN_OBLIGATION_KW)
        x = share[idx, None] * v.held_q[idx, m, t]
        base = np.where(labels >= 0, planned.share[safe, m, t], 0.0) * (v.held_q[:, m, t] * v.credit[:, m, t]).sum(axis=1)
        wear = float(base @ v.wear[:, m] / base.sum()) if base.sum() > 0 else 0.0
        checks[(int(m), int(t))] = _Check(idx, share[idx] * v.held[idx, m, t], x,
                                          _quarter_p90(ln, v.p[idx, m, t], x),
                                          (x * v.credit[idx, m, t]).sum(axis=0), wear)
    return checks


def _bundle_offers(lines: list[_Line], pool: _Pool, offers: list[list[OfferTerms]], checks: dict
                   ) -> list[list[OfferTerms]]:
    out = [list(row) for row in offers]
    for (m, t), c in checks.items():
        ln = lines[m]
        out[m][t] = offer_terms(ln.prices[:, t], ln.weights, c.wear + pool.penalty[m, t], ln.market.pricing)
    return out


def _same_offers(a: list[list[OfferTerms]], b: list[list[OfferTerms]]) -> bool:
    return all(abs(x.acceptance - y.acceptance) < 1e-9 and abs(x.revenue_eur_per_mw_h - y.revenue_eur_per_mw_h) < 1e-6
               for ra, rb in zip(a, b) for x, y in zip(ra, rb))


# --- 5. bids ---------------------------------------------------------------------------------------

def _bids(problem: BiddingProblem, lines: list[_Line], v: _Vehicles, allocation: Allocation, checks: dict,
          minutes: int, dropped: list[Dropped]) -> tuple[list[Bid], ObjectiveParts]:
    mtus = problem.prices.mtu_starts
    hours = Decimal(minutes) / Decimal(60)
    ids = problem.fleet.vehicle_ids
    bids, total = [], [Decimal(0)] * 3
    for (m, t), c in sorted(checks.items()):
        ln, product = lines[m], lines[m].market.product
        most = round_to_step(product, min(Decimal(str(allocation.volume_mw[m, t])),
                                          Decimal(repr(float(c.p90_kw) / 1000))))
        if most < product.min_bid_mw.value:
            dropped.append(Dropped(product.id, ln.market.key, mtus[t],
                                   f"the bundle's P90 after verification, {c.p90_kw:.1f} kW, is below the "
                                   f"{product.min_bid_mw.value} MW minimum"))
            continue
        volume, shortfall, terms = _best_volume(ln, t, c.wear, v.p[c.vehicles, m, t], c.kw_q, _candidates(ln, most))
        if volume is None:
            dropped.append(Dropped(product.id, ln.market.key, mtus[t],
                                   "the expected penalty of falling short outweighs the revenue at every volume"))
            continue
        broken = check_bid(product, volume, zone=problem.zone)
        if broken:      # cannot happen by construction; never submit a bid the market rejects
            dropped.append(Dropped(product.id, ln.market.key, mtus[t], "; ".join(b.message for b in broken)))
            continue
        money = _money(volume * hours, terms, c.wear, _penalty(ln, shortfall))
        total = [a + b for a, b in zip(total, money)]
        order = np.argsort([ids[i] for i in c.vehicles], kind="stable")
        bids.append(Bid(
            product_id=product.id, auction=ln.auction, mtu_start=mtus[t], volume_mw=volume,
            price_eur_per_mw_h=Decimal(repr(terms.offer_eur_per_mw_h)).quantize(_CENT),
            vehicles=tuple(ids[c.vehicles[i]] for i in order),
            obligations_kw=tuple(math.floor(float(c.obligations_kw[i]) * 1e6) / 1e6 for i in order),
            expected_value_eur=money[0] - money[1] - money[2], p90_kw_backing=round(c.p90_kw, 3),
            shortfall_probability=round(shortfall, 6), direction=ln.market.direction, market_key=ln.market.key,
            grid_node=ln.market.grid_node))
    return bids, ObjectiveParts(*total)


_VOLUME_CANDIDATES = 64


def _candidates(ln: _Line, most: Decimal) -> list[Decimal]:
    """Volumes from `most` down to the minimum bid in steps (at most _VOLUME_CANDIDATES, evenly)."""
    product = ln.market.product
    step, low = product.bid_step_mw.value, product.min_bid_mw.value
    if most < low:
        return []
    n = int((most - low) / step) + 1
    stride = -(-n // _VOLUME_CANDIDATES)
    return [most - i * step for i in range(0, n, stride)]


def _best_volume(ln: _Line, t: int, wear: float, p: np.ndarray, kw: np.ndarray, volumes: list[Decimal]
                 ) -> tuple[Decimal | None, float, OfferTerms]:
    """The volume with the highest expected value: below its P90 a bundle falls short less
    often, which pays when the penalty is dear. Each volume is offered at its own cost (wear
    plus expected penalty), rounded up to the cent. p and kw are (cars, Q); the shortfall
    counted is the likeliest quarter's (a lower bound of falling short in any quarter)."""
    best: tuple[Decimal | None, float, OfferTerms] = (None, 0.0, OfferTerms(0.0, 0.0, 0.0))
    if not volumes:
        return best
    volumes_kw = np.array([float(x) * 1000 for x in volumes])
    shortfalls = np.max([np.atleast_1d(shortfall_probability(p[:, q], kw[:, q], ln.rho, volumes_kw))
                         for q in range(kw.shape[1])], axis=0)
    best_value = 0.0
    for volume, shortfall in zip(volumes, shortfalls):
        cost = wear + _penalty(ln, float(shortfall))
        proposed = offer_terms(ln.prices[:, t], ln.weights, cost, ln.market.pricing)
        price = Decimal(repr(float(proposed.offer_eur_per_mw_h))).quantize(_CENT, rounding=ROUND_CEILING)
        terms = terms_at(ln.prices[:, t], ln.weights, float(price), ln.market.pricing)
        value = float(volume) * terms.margin(cost)
        if value > best_value + 1e-9:
            best, best_value = (volume, float(shortfall), terms), value
    return best


def _money(mw_h: Decimal, terms: OfferTerms, wear: float, penalty: float) -> tuple[Decimal, Decimal, Decimal]:
    """Expected revenue, wear and penalty (EUR) of `mw_h` MW h offered on these terms."""
    def eur(x: float) -> Decimal:
        return (mw_h * Decimal(repr(float(x)))).quantize(_CENT)
    return eur(terms.revenue_eur_per_mw_h), eur(terms.acceptance * wear), eur(terms.acceptance * penalty)


def _explain(lines: list[_Line], mtus: list[datetime], pool: _Pool, allocation: Allocation,
             bids: list[Bid], view: MtuAvailability, dropped: list[Dropped]) -> None:
    """A reason for every open MTU of every line without a bid."""
    done = {(b.market_key, b.mtu_start) for b in bids} | {(d.market_key, d.mtu_start) for d in dropped}
    for m, ln in enumerate(lines):
        for t, start in enumerate(mtus):
            if ln.open_mtu[t] and (ln.market.key, start) not in done:
                reason = _reason(ln, pool, allocation, view, m, t)
                dropped.append(Dropped(ln.market.product.id, ln.market.key, start, reason))


def _reason(ln: _Line, pool: _Pool, allocation: Allocation, view: MtuAvailability, m: int, t: int) -> str:
    product = ln.market.product
    if not view.covered[t]:
        return "the forecast does not cover this MTU"
    if pool.p90_mw[m, t] <= 0:
        where = f" at node {ln.market.grid_node}" if ln.market.grid_node else ""
        return (f"no vehicle{where} can hold it: none is forecast plugged in with the capability, SoC, "
                f"endurance and departure it needs")
    if pool.p90_mw[m, t] < float(product.min_bid_mw.value):
        return (f"the P90 of every vehicle that could back it, {pool.p90_mw[m, t] * 1000:.1f} kW, is below the "
                f"{product.min_bid_mw.value} MW minimum bid")
    if pool.offers[m][t].acceptance <= 0:
        return "no price scenario pays the offer (wear and expected penalty)"
    if pool.best_mw[m, t] <= 0:
        return "the expected penalty of falling short outweighs the revenue at every volume"
    if allocation.volume_mw[m, t] <= 0:
        return ("not chosen: its vehicles earn more in other bids, or shared limits (node, OEM cap, pair kW) "
                "leave less than the minimum")
    return "dropped after verification"


_NOTHING = ObjectiveParts(Decimal(0), Decimal(0), Decimal(0))


def _plan(bids: tuple[Bid, ...], dropped: list[Dropped], notes: list[str], started: float, status: str,
          clusters: int, parts: ObjectiveParts) -> BidPlan:
    return BidPlan(bids, parts, perf_counter() - started, status, tuple(dropped), clusters, tuple(notes))
