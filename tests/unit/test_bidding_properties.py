"""Properties of every plan, for random fleets, prices and product rules: no bid breaks a
product rule, no vehicle is asked for more than it can hold (endurance, departure, pair kW with
0.2 C the other way, OEM cap, its share of a node's limit), and every bundle's P90 covers its
bid. The hand-independent checks below recompute each car's limits from the inputs."""

from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexfleet.bidding import (BiddingProblem, Fleet, Market, NodeLimit, PriceScenarios, SolveOptions,
                               bundle_p90_kw, plan_bids, shortfall_probability)
from flexfleet.bidding.synthetic import uniform_availability
from flexfleet.domain.time import mtus_of_delivery_day
from flexfleet.forecast.portfolio import Calibration, portfolio_quantiles
from flexfleet.markets import check_bid, default_catalogue

DAY = date(2026, 12, 1)
QUARTERS = pd.DatetimeIndex(mtus_of_delivery_day(DAY, "SE3"))
NOW = datetime(2026, 11, 28, tzinfo=UTC)
CATALOGUE = default_catalogue()
STEPS = ("0.01", "0.02", "0.05", "0.1")
TOL = 1e-6


def with_rules(product, min_mw: Decimal, step_mw: Decimal):
    return product.model_copy(update={"min_bid_mw": product.min_bid_mw.model_copy(update={"value": min_mw}),
                                      "bid_step_mw": product.bid_step_mw.model_copy(update={"value": step_mw})})


@st.composite
def rules(draw, steps=STEPS):
    step = Decimal(draw(st.sampled_from(steps)))
    minimum = draw(st.sampled_from([step, 2 * step, 3 * step, Decimal("0.03"), Decimal("0.05")]))
    return minimum, step


@st.composite
def days(draw):
    n = draw(st.integers(1, 60))
    hours = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    q = 4 * hours
    p = np.clip(rng.choice([0.0, 0.7, 0.95, 1.0, 1.0], (n, 1)) + rng.uniform(-0.15, 0.05, (n, q)), 0, 1)
    power_up = rng.choice([0.0, 3.7, 7.4, 11.0], n)
    power_down = rng.choice([3.7, 7.4, 11.0], n)
    start = rng.choice([np.nan, 10.0, 30.0, 90.0, 150.0, 600.0, 600.0, 600.0], n)
    departure = start[:, None] - 15.0 * np.arange(q)[None, :]
    availability = uniform_availability(
        tuple(f"v{i}" for i in range(n)), QUARTERS[:q], p=p, power_up_kw=power_up, power_down_kw=power_down,
        up_kw=power_up * rng.uniform(0, 1.1, n), down_kw=power_down * rng.uniform(0, 1.1, n), departure_min=departure)
    fleet = Fleet(availability.vehicle_ids, rng.choice(["N0", "N1"], n, p=[0.7, 0.3]).astype(object),
                  rng.choice(["NMC", "LFP"], n).astype(object), rng.uniform(0, 0.05, n),
                  rng.choice([np.nan, 0.0, 0.5, 2.0, 10.0], n))
    up = with_rules(CATALOGUE.product("FCR-D-up", "SE3"), *draw(rules()))
    down = with_rules(CATALOGUE.product("FCR-D-down", "SE3"), *draw(rules()))
    flex = with_rules(CATALOGUE.product("local-flex", "SE3"), *draw(rules(("0.001", "0.005", "0.01"))))
    markets = (Market(up, activation_mwh_per_mw_h=float(rng.uniform(0, 0.2)),
                      penalty_eur_per_mw_h=float(rng.uniform(0, 100))),
               Market(down, activation_mwh_per_mw_h=float(rng.uniform(0, 0.2))),
               Market(flex, direction="up", grid_node="N0", endurance_min=60.0, max_mw=float(rng.uniform(0.01, 0.2)),
                      activation_mwh_per_mw_h=float(rng.uniform(0, 0.2))))
    scenarios = int(rng.integers(1, 4))
    prices = PriceScenarios(tuple(m.key for m in markets), tuple(t.to_pydatetime() for t in QUARTERS[:q:4]),
                            rng.uniform(0, 100, (scenarios, 3, hours)), np.full(scenarios, 1 / scenarios))
    limits = (NodeLimit("N0", max_export_kw=float(rng.uniform(0, 250))),
              NodeLimit("N1", max_import_kw=float(rng.uniform(0, 120))))
    rho = float(rng.choice([0.0, 0.05, 0.2]))
    calibrations = {k: Calibration(rho=rho) for k in ("up_20min", "down_20min", "up_60min")}
    return BiddingProblem(DAY, "SE3", "D-1 first", NOW, markets, prices, fleet, availability, calibrations, limits)


def held_kw(pr: BiddingProblem, market: Market, v: int, hour: int) -> float:
    """What car v holds for `market` in the best quarter of `hour`: its obligation is a share
    of that (and it backs the same share of what it holds in each quarter)."""
    return float(held_quarters(pr, market, v, hour).max())


def held_quarters(pr: BiddingProblem, market: Market, v: int, hour: int) -> np.ndarray:
    """What car v holds for `market` in each quarter of `hour`, recomputed from the inputs."""
    a, q = pr.vehicles, slice(4 * hour, 4 * hour + 4)
    two_way = a.capacity_up_kw[v].max() > 0
    endurance = market.endurance_min if two_way else market.one_way_endurance_min
    other_power = (a.capacity_down_kw if market.direction == "up" else a.capacity_up_kw)[v, q]
    if market.opposite_share and two_way and other_power.min() <= 0:     # cannot hold 0.2 C the other way
        return 0.0
    base = (a.up_20_kw if market.direction == "up" else a.down_20_kw)[v, q]
    power = (a.capacity_up_kw if market.direction == "up" else a.capacity_down_kw)[v, q]
    dep = a.departure_min[v, q]
    # The 20-minute figures hold the departure; an extrapolated endurance also needs the P10 one.
    stays = np.where(np.isnan(dep), endurance <= 20, endurance <= 20 or np.nan_to_num(dep, nan=0) >= endurance)
    kw = np.where(stays, np.minimum(base * min(1, 20 / endurance), power), 0.0)
    cap = pr.fleet.oem_cap_kwh[v]
    if market.direction == "up" and not np.isnan(cap):
        kw = np.minimum(kw, cap / (endurance / 60))
    if market.grid_node is not None and pr.fleet.grid_node[v] != market.grid_node:
        kw = 0.0 * kw
    return kw


def obligations(pr, plan):
    """{(market, hour): {vehicle index: kW}}"""
    index = {vid: i for i, vid in enumerate(pr.fleet.vehicle_ids)}
    hours = list(pr.prices.mtu_starts)
    markets = {m.key: m for m in pr.markets}
    out = {}
    for b in plan.bids:
        cars = {index[v]: kw for v, kw in zip(b.vehicles, b.obligations_kw)}
        out[(markets[b.market_key], hours.index(b.mtu_start))] = cars
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(days())
def test_plans_keep_every_rule_and_every_hard_constraint(pr):
    plan = plan_bids(pr, SolveOptions(max_clusters=12))
    assert plan.bids or plan.dropped                         # never empty without a reason
    products = {m.key: m.product for m in pr.markets}
    for b in plan.bids:
        assert not check_bid(products[b.market_key], b.volume_mw, zone="SE3"), b
        assert b.vehicles and len(b.vehicles) == len(b.obligations_kw)
        assert b.price_eur_per_mw_h >= 0

    obl = obligations(pr, plan)
    n, hours = len(pr.fleet.vehicle_ids), len(pr.prices.mtu_starts)
    a = pr.vehicles
    for v in range(n):
        two_way = a.capacity_up_kw[v].max() > 0
        cap = pr.fleet.oem_cap_kwh[v]
        day_energy = 0.0
        for t in range(hours):
            q = slice(4 * t, 4 * t + 4)
            load = {"up": 0.0, "down": 0.0}          # kW on each side of the pair
            energy = {"up": 0.0, "down": 0.0}        # share of the car's endurance energy used
            activation_kwh = 0.0                      # one full activation of every up obligation
            for (market, hour), cars in obl.items():
                x = cars.get(v, 0.0)
                if hour != t or x == 0:
                    continue
                held = held_kw(pr, market, v, t)
                assert x <= held + TOL, (market.key, v, t, x, held)           # endurance, departure, OEM
                energy[market.direction] += x / held
                load[market.direction] += x
                if market.opposite_share and two_way:
                    other = "down" if market.direction == "up" else "up"
                    load[other] += market.opposite_share * x
                if market.direction == "up":
                    activation_kwh += x * market.endurance_min / 60
                    day_energy += x * market.activation_mwh_per_mw_h
            assert energy["up"] <= 1 + TOL and energy["down"] <= 1 + TOL
            assert load["up"] <= a.capacity_up_kw[v, q].min() + TOL
            assert load["down"] <= a.capacity_down_kw[v, q].min() + TOL
            if not np.isnan(cap):
                assert activation_kwh <= cap + TOL
        if not np.isnan(cap):
            assert day_energy <= cap + TOL

    for limit in pr.node_limits:                          # the node's limit, split over its cars
        at = np.flatnonzero(pr.fleet.grid_node == limit.grid_node)
        for t in range(hours):
            side = {"up": 0.0, "down": 0.0}
            for (market, hour), cars in obl.items():
                if hour != t:
                    continue
                for v in at:
                    x = cars.get(v, 0.0)
                    side[market.direction] += x
                    if market.opposite_share and a.capacity_up_kw[v].max() > 0:
                        side["down" if market.direction == "up" else "up"] += market.opposite_share * x
            assert side["up"] <= limit.max_export_kw + TOL and side["down"] <= limit.max_import_kw + TOL


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(days())
def test_every_bundle_holds_its_volume_with_p90(pr):
    plan = plan_bids(pr, SolveOptions(max_clusters=12))
    index = {vid: i for i, vid in enumerate(pr.fleet.vehicle_ids)}
    hours = list(pr.prices.mtu_starts)
    rho = pr.calibrations["up_20min"].rho
    a = pr.vehicles
    markets = {m.key: m for m in pr.markets}
    for b in plan.bids:
        t = hours.index(b.mtu_start)
        rows = [index[v] for v in b.vehicles]
        volume_kw = float(b.volume_mw) * 1000
        held = np.array([held_quarters(pr, markets[b.market_key], v, t) for v in rows])       # (cars, 4)
        kw_q = np.array(b.obligations_kw)[:, None] * held / held.max(axis=1, keepdims=True)
        shortfalls = []
        for q in range(4):                   # the TSO counts the bundle in every quarter
            p = (a.p_up if b.direction == "up" else a.p_down)[rows, 4 * t + q]
            assert bundle_p90_kw(p, kw_q[:, q], rho, 0.1) >= volume_kw - TOL
            assert portfolio_quantiles(p[:, None], kw_q[:, q, None], rho, (0.1,))[0, 0] >= volume_kw - TOL
            shortfalls.append(shortfall_probability(p, kw_q[:, q], rho, volume_kw))
        assert max(shortfalls) <= 0.1 + TOL
        assert abs(max(shortfalls) - b.shortfall_probability) < 1e-5
