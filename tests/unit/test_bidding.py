"""The bidding optimiser on hand-checked cases: minimum bids, products competing for the same
cars, departures within the endurance, OEM caps, grid-node limits split over a node's cars,
FCR-D up and down on one battery, gate closure, bad input; the Pyomo and highspy formulations
of the cluster model reach the same optimum; the greedy fallback is feasible."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from flexfleet.bidding import (BiddingInputError, BiddingProblem, Fleet, Market, NodeLimit, PriceScenarios,
                               SolveOptions, bundle_backing, bundle_p90_kw, plan_bids, sampled_shortfall_rate, shortfall_probability)
from flexfleet.bidding import greedy, highs_model, pyomo_model
from flexfleet.bidding.availability import Availability
from flexfleet.bidding.cluster_model import ClusterModel, violations
from flexfleet.bidding.synthetic import flat_prices, synthetic_problem, uniform_availability
from flexfleet.domain.time import mtus_of_delivery_day
from flexfleet.forecast.portfolio import Calibration, portfolio_quantiles
from flexfleet.markets import check_bid, default_catalogue

DAY = date(2026, 12, 1)
ZONE = "SE3"
QUARTERS = pd.DatetimeIndex(mtus_of_delivery_day(DAY, ZONE))
HOURS = [t.to_pydatetime() for t in QUARTERS[::4]]
NOW = datetime(2026, 11, 28, tzinfo=UTC)            # before every gate closure of the day
CATALOGUE = default_catalogue()
UP, DOWN = CATALOGUE.product("FCR-D-up", ZONE), CATALOGUE.product("FCR-D-down", ZONE)
FLEX = CATALOGUE.product("local-flex", ZONE)
CALM = {k: Calibration(rho=0.0) for k in ("up_20min", "down_20min", "up_60min", "down_60min")}


def ids(n: int, prefix: str = "ev") -> tuple[str, ...]:
    return tuple(f"{prefix}-{i:03d}" for i in range(n))


def fleet(vehicle_ids, node="N1", wear=0.0, cap=np.nan) -> Fleet:
    n = len(vehicle_ids)
    nodes = np.broadcast_to(np.asarray(node, dtype=object), (n,))
    return Fleet(tuple(vehicle_ids), nodes, np.full(n, "NMC", dtype=object), np.full(n, wear),
                 np.broadcast_to(np.asarray(cap, dtype=float), (n,)))


def problem(markets, availability, fleet_, prices, *, hours=1, node_limits=(), now=NOW, calibrations=CALM):
    if isinstance(prices, dict):
        prices = flat_prices(prices, HOURS[:hours])
    return BiddingProblem(DAY, ZONE, "D-1 first", now, tuple(markets), prices, fleet_, availability,
                          calibrations, tuple(node_limits))


def hourly(vehicle_ids, hours=1, **values) -> Availability:
    return uniform_availability(vehicle_ids, QUARTERS[: 4 * hours], **values)


def by_key(plan):
    return {(b.market_key, b.mtu_start): b for b in plan.bids}


# --- hand-checked cases -----------------------------------------------------------------------

def test_a_fleet_too_small_for_the_minimum_gets_no_bid_and_a_reason():
    cars = ids(5)                                    # 5 x 10 kW = 50 kW < 0.1 MW
    plan = plan_bids(problem([Market(UP)], hourly(cars), fleet(cars), {UP.id: 40.0}))
    assert plan.bids == ()
    assert any("below the 0.1 MW minimum" in d.reason for d in plan.dropped), plan.dropped


def test_a_fleet_at_the_minimum_gets_one_bid_backed_by_all_of_it():
    cars = ids(11)                                   # 110 kW certain: 0.1 MW (step 0.1)
    plan = plan_bids(problem([Market(UP)], hourly(cars), fleet(cars), {UP.id: 40.0}))
    (bid,) = plan.bids
    assert bid.volume_mw == Decimal("0.1") and bid.mtu_start == HOURS[0] and bid.auction == "D-1 first"
    assert not check_bid(UP, bid.volume_mw)
    assert set(bid.vehicles) == set(cars) and bid.p90_kw_backing >= 100
    assert bid.price_eur_per_mw_h == Decimal("0.00")        # no wear, no penalty: offer at 0
    assert bid.expected_value_eur == Decimal("4.00")        # 0.1 MW x 1 h x 40 EUR
    assert plan.objective.value_eur == Decimal("4.00") and plan.solver_status == "optimal"


@pytest.mark.parametrize("fcr_price, flex_price, winner", [(50.0, 5.0, "fcr"), (5.0, 500.0, "flex")])
def test_two_products_compete_for_the_same_cars_and_the_better_paid_wins(fcr_price, flex_price, winner):
    # 11 cars x 10 kW at node N0: FCR-D up (20 min) 110 kW -> 0.1 MW takes 10/11 of each car's
    # energy; the local order (60 min) gets 10/3 kW a car, 36.7 kW -> 0.03 MW, taking 9/11.
    # Either one leaves too little for the other's minimum.
    cars = ids(11)
    flex = Market(FLEX, direction="up", grid_node="N0", endurance_min=60.0)
    plan = plan_bids(problem([Market(UP), flex], hourly(cars), fleet(cars, node="N0"),
                             {UP.id: fcr_price, flex.key: flex_price}))
    bids = by_key(plan)
    if winner == "fcr":
        assert set(bids) == {(UP.id, HOURS[0])} and bids[(UP.id, HOURS[0])].volume_mw == Decimal("0.1")
    else:
        assert set(bids) == {(flex.key, HOURS[0])} and bids[(flex.key, HOURS[0])].volume_mw == Decimal("0.03")
        assert bids[(flex.key, HOURS[0])].grid_node == "N0"
    loser = flex.key if winner == "fcr" else UP.id
    assert any(d.market_key == loser and "not chosen" in d.reason for d in plan.dropped)


def test_a_vehicle_leaving_within_an_extrapolated_endurance_backs_nothing():
    # Only 20-minute figures: those already hold each car's departure (ev-000 leaves 15 minutes
    # into the hour, so the forecast gives it 0 kW); the order's 60 minutes are extrapolated
    # from them, and only cars whose P10 departure is an hour away keep their share.
    cars = ids(12)
    departure = np.full(12, 600.0)
    departure[0] = 15.0
    departure[1] = 45.0                              # holds 20 min, but not the order's 60
    up_kw = np.where(departure >= 20, 10.0, 0.0)
    flex = Market(FLEX, direction="up", grid_node="N1", endurance_min=60.0)
    availability = hourly(cars, up_kw=up_kw, departure_min=departure)
    plan = plan_bids(problem([Market(UP)], availability, fleet(cars), {UP.id: 40.0}))
    (bid,) = plan.bids
    assert "ev-000" not in bid.vehicles and "ev-001" in bid.vehicles
    plan = plan_bids(problem([flex], availability, fleet(cars), {flex.key: 40.0}))
    (bid,) = plan.bids
    assert not {"ev-000", "ev-001"} & set(bid.vehicles)


def test_the_forecast_s_own_held_kw_is_not_cut_again_at_the_p10_departure():
    # The 60-minute figure is the forecast's, in the car's median state: its P10 departure
    # (45 minutes) is uncertainty the calibrations already carry, so the car backs the order.
    quarters = QUARTERS[:4]
    one = np.ones((1, 4))
    own = Availability(("v",), quarters, one, one, 10 * one, 10 * one, 10 * one, 10 * one, 45 * one,
                       up_60_kw=8 * one, down_60_kw=8 * one)
    view = own.per_mtu([quarters[0].to_pydatetime()], 60)
    assert view.held_kw("up", 60)[0, 0].max() == 8
    assert view.held_kw("up", 90)[0, 0].max() == 0         # beyond the forecast: the P10 departure decides


def test_a_one_way_car_must_hold_fcr_d_down_for_two_hours():
    # V1G (no discharge): the limited-energy-reservoir rule asks 2 h of full activation, so
    # 20-minute kW count a sixth, and a car leaving within 2 h backs nothing.
    cars = ids(66)
    departure = np.where(np.arange(66) < 61, 600.0, 90.0)
    plan = plan_bids(problem([Market(DOWN)], hourly(cars, power_up_kw=0.0, up_kw=0.0, departure_min=departure),
                             fleet(cars), {DOWN.id: 20.0}))
    (bid,) = plan.bids
    assert bid.volume_mw == Decimal("0.1")           # 61 x 10/6 kW = 101.7 kW
    assert max(bid.obligations_kw) <= 10 / 6 + 1e-9 and len(bid.vehicles) == 61


def test_the_oem_cap_binds_one_activation():
    # 2 kWh of OEM cap left: one 20-minute activation allows 6 kW, not the 10 the pair could.
    cars = ids(21)
    capped = plan_bids(problem([Market(UP)], hourly(cars), fleet(cars, cap=2.0), {UP.id: 40.0}))
    free = plan_bids(problem([Market(UP)], hourly(cars), fleet(cars), {UP.id: 40.0}))
    assert capped.bids[0].volume_mw == Decimal("0.1") and free.bids[0].volume_mw == Decimal("0.2")
    assert max(capped.bids[0].obligations_kw) <= 6.0 + 1e-9


def test_the_oem_cap_binds_over_the_day():
    # 4 hours, 0.1 MWh expected activation per MW h: a car with 2 kWh left may commit 20 kW h
    # over the day (6 kW an hour by one activation), so 5 kW an hour: 101 cars -> 0.5 MW an hour.
    cars = ids(101)
    market = Market(UP, activation_mwh_per_mw_h=0.1)
    plan = plan_bids(problem([market], hourly(cars, hours=4), fleet(cars, cap=2.0), {UP.id: 40.0}, hours=4))
    per_car = {c: 0.0 for c in cars}
    for b in plan.bids:
        for car, kw in zip(b.vehicles, b.obligations_kw):
            per_car[car] += kw * 0.1 * 1.0           # expected kWh it may discharge
    assert max(per_car.values()) <= 2.0 + 1e-6
    assert sum(b.volume_mw for b in plan.bids) == Decimal("2.0")    # 4 h x 0.5 MW: the cap, not the kW
    assert any("OEM" in n for n in plan.notes)


def test_a_grid_node_limit_is_split_across_its_vehicles_not_applied_to_each():
    # 30 cars x 10 kW behind node N1 limited to 250 kW of export: 0.2 MW, not 0.3 (each car's
    # own 10 kW is far below 250, so a per-car limit would allow everything).
    cars = ids(30)
    limit = NodeLimit("N1", max_export_kw=250.0)
    plan = plan_bids(problem([Market(UP)], hourly(cars), fleet(cars), {UP.id: 40.0}, node_limits=[limit]))
    (bid,) = plan.bids
    assert bid.volume_mw == Decimal("0.2")
    assert sum(bid.obligations_kw) <= 250.0 + 1e-6
    # cars behind another node are not limited by N1
    other = ids(30, "ok")
    both = fleet(cars + other, node=np.array(["N1"] * 30 + ["N2"] * 30, dtype=object))
    plan = plan_bids(problem([Market(UP)], hourly(cars + other), both, {UP.id: 40.0}, node_limits=[limit]))
    (bid,) = plan.bids
    assert bid.volume_mw == Decimal("0.5")
    assert sum(kw for car, kw in zip(bid.vehicles, bid.obligations_kw) if car.startswith("ev")) <= 250 + 1e-6


def test_fcr_d_up_and_down_share_one_battery():
    # Each V2G car: 10 kW each way. Selling C_up needs 0.2 C_up of charge room and C_down needs
    # 0.2 C_down of discharge: x_up + 0.2 x_down <= 10 and x_down + 0.2 x_up <= 10, so at most
    # 10 / 1.2 = 8.33 kW each way: 25 cars -> 208 kW -> 0.2 MW up and 0.2 MW down.
    cars = ids(25)
    plan = plan_bids(problem([Market(UP), Market(DOWN)], hourly(cars), fleet(cars), {UP.id: 40.0, DOWN.id: 40.0}))
    bids = by_key(plan)
    up, down = bids[(UP.id, HOURS[0])], bids[(DOWN.id, HOURS[0])]
    assert up.volume_mw == down.volume_mw == Decimal("0.2")
    x_up, x_down = dict(zip(up.vehicles, up.obligations_kw)), dict(zip(down.vehicles, down.obligations_kw))
    for car in cars:
        assert x_up.get(car, 0) + 0.2 * x_down.get(car, 0) <= 10 + 1e-6
        assert x_down.get(car, 0) + 0.2 * x_up.get(car, 0) <= 10 + 1e-6


def test_a_closed_gate_gives_an_empty_plan_with_the_reason():
    cars = ids(20)
    late = datetime(2026, 11, 30, 12, tzinfo=UTC)        # after 00:30 on D-1 (the first auction)
    plan = plan_bids(problem([Market(UP)], hourly(cars), fleet(cars), {UP.id: 40.0}, now=late))
    assert plan.bids == () and plan.solver_status == "empty"
    assert "gate closure" in plan.dropped[0].reason


def test_local_flexibility_closes_per_mtu():
    cars = ids(40)
    flex = Market(FLEX, direction="up", grid_node="N1", endurance_min=60.0, auction="continuous")
    now = HOURS[2] - timedelta(minutes=90)              # 2 h before MTU 3 has passed for MTUs 0-2
    plan = plan_bids(problem([flex], hourly(cars, hours=4), fleet(cars), {flex.key: 40.0}, hours=4, now=now))
    assert sorted(b.mtu_start for b in plan.bids) == [HOURS[3]]
    assert sum("gate closure" in d.reason for d in plan.dropped) == 3


def test_nobody_plugged_in_gives_reasons_not_silence():
    cars = ids(10)
    plan = plan_bids(problem([Market(UP), Market(DOWN)], hourly(cars, p=0.0), fleet(cars),
                             {UP.id: 40.0, DOWN.id: 40.0}))
    assert plan.bids == () and {d.market_key for d in plan.dropped} == {UP.id, DOWN.id}
    assert all("no vehicle can hold it" in d.reason for d in plan.dropped)


def test_uncertain_cars_bid_their_p90_not_their_expectation():
    # 40 cars x 10 kW, each plugged in with p = 0.8, correlated (rho 0.1): expectation 320 kW,
    # but the bid must be what the bundle holds with 90 % probability.
    cars = ids(40)
    cal = {"up_20min": Calibration(rho=0.1)}
    plan = plan_bids(problem([Market(UP)], hourly(cars, p=0.8), fleet(cars), {UP.id: 40.0}, calibrations=cal))
    (bid,) = plan.bids
    q10 = portfolio_quantiles(np.full((40, 1), 0.8), np.full((40, 1), 10.0), 0.1, (0.1,))[0, 0]
    assert float(bid.volume_mw) * 1000 <= q10 < 320
    assert bid.shortfall_probability <= 0.1


def test_penalties_make_the_bid_smaller_than_its_p90():
    cars = ids(40)
    cal = {"up_20min": Calibration(rho=0.1)}
    cheap = plan_bids(problem([Market(UP)], hourly(cars, p=0.8), fleet(cars), {UP.id: 40.0}, calibrations=cal))
    dear = plan_bids(problem([Market(UP, penalty_eur_per_mw_h=2000.0)], hourly(cars, p=0.8), fleet(cars),
                             {UP.id: 40.0}, calibrations=cal))
    assert dear.bids[0].volume_mw < cheap.bids[0].volume_mw
    assert dear.bids[0].shortfall_probability < cheap.bids[0].shortfall_probability
    assert dear.bids[0].expected_value_eur > 0


def test_the_offer_is_the_marginal_cost_and_revenue_counts_only_cleared_scenarios():
    # wear 0.05 EUR/kWh x 20 kWh expected activation per MW h = 1 EUR/MW/h (no penalty).
    cars = ids(11)
    prices = PriceScenarios((UP.id,), (HOURS[0],), np.array([[[0.5]], [[3.0]], [[5.0]]]), np.array([0.5, 0.25, 0.25]))
    plan = plan_bids(problem([Market(UP, activation_mwh_per_mw_h=0.02)], hourly(cars), fleet(cars, wear=0.05),
                             prices))
    (bid,) = plan.bids
    assert bid.price_eur_per_mw_h == Decimal("1.00")
    # revenue: 0.1 MW x (0.25 x 3 + 0.25 x 5) = 0.2; wear: 0.1 x 0.5 accepted x 1 = 0.05
    assert plan.objective.revenue_eur == Decimal("0.20") and plan.objective.wear_eur == Decimal("0.05")


def test_price_scenarios_from_another_source_are_taken_by_their_fields():
    cars = ids(11)
    other = SimpleNamespace(product_ids=(UP.id,), mtu_starts=(HOURS[0],), prices=np.array([[[40.0]]]),
                            weights=np.array([1.0]), regime="2024")
    plan = plan_bids(problem([Market(UP)], hourly(cars), fleet(cars), other))
    assert plan.bids[0].expected_value_eur == Decimal("4.00")


def test_bad_input_is_refused_with_the_field():
    cars = ids(3)
    with pytest.raises(BiddingInputError, match="prices.mtu_starts"):
        plan_bids(problem([Market(UP)], hourly(cars), fleet(cars),
                          flat_prices({UP.id: 1.0}, [HOURS[0] - timedelta(days=1)])))
    with pytest.raises(BiddingInputError, match="direction"):
        Market(FLEX)
    with pytest.raises(BiddingInputError, match="symmetric"):
        Market(CATALOGUE.product("FCR-N", ZONE), direction="up")
    with pytest.raises(BiddingInputError, match="weights"):
        PriceScenarios((UP.id,), (HOURS[0],), np.ones((2, 1, 1)), np.array([0.5, 0.6]))


def test_forecast_rows_are_read_by_the_contract():
    """FleetForecast.vehicles rows (hand-made here) give the same plan as the arrays."""
    cars = ids(12)
    quarters = QUARTERS[:4]
    rows = pd.DataFrame({
        "vehicle_id": np.repeat(cars, 4), "target_start": np.tile(quarters, 12),
        "p_up": 1.0, "p_down": 1.0, "capacity_up_kw": 10.0, "capacity_down_kw": 10.0,
        "soc_p10": 50.0, "soc_p50": 60.0, "soc_p90": 70.0, "up_20_kw": 10.0, "down_20_kw": 10.0,
        "departure_p10_at": np.tile(quarters, 12) + pd.Timedelta(hours=5)})
    leaves = rows["vehicle_id"] == "ev-000"      # within 20 minutes: the forecast holds nothing for it
    rows.loc[leaves, "departure_p10_at"] = rows["target_start"] + pd.Timedelta(minutes=10)
    rows.loc[leaves, "up_20_kw"] = 0.0
    plan = plan_bids(problem([Market(UP)], rows, fleet(cars), {UP.id: 40.0}))
    (bid,) = plan.bids
    assert bid.volume_mw == Decimal("0.1") and "ev-000" not in bid.vehicles


def test_bundle_p90_is_conservative_for_a_handful_of_cars():
    # One car, p = 0.85: P(>= 10 kW) is 0.85 < 0.9, so it backs nothing at P90 (the normal
    # shape alone would promise several kW).
    assert bundle_p90_kw(np.array([0.85]), np.array([10.0]), 0.0, 0.1) == 0.0
    assert bundle_p90_kw(np.array([0.95]), np.array([10.0]), 0.0, 0.1) <= 10.0
    assert shortfall_probability(np.array([0.85]), np.array([10.0]), 0.0, 10.0) >= 0.15 - 1e-9


def test_the_sampled_joint_shortfall_rate_stays_within_the_p90():
    """Out of sample: drawing whole MTUs (four quarters, each car one latent draw), the bundle
    holds its volume in every quarter at least about 90 % of the time."""
    pr = synthetic_problem(300, seed=3, rho=0.05)
    plan = plan_bids(pr, SolveOptions(max_clusters=60))
    assert plan.bids
    for bid in plan.bids[:6]:
        p, kw = bundle_backing(pr, bid)
        rate = sampled_shortfall_rate(p, kw, 0.05, float(bid.volume_mw) * 1000, samples=1500, seed=11)
        assert rate <= bid.shortfall_probability + 0.03


# --- the cluster model: two formulations, one optimum -------------------------------------------

def random_cluster_model(seed: int, C=6, M=3, T=3, Q=4, oem=False) -> ClusterModel:
    """Markets: FCR-D up, FCR-D down (0.2 C the other way for two-way clusters), an up order."""
    rng = np.random.default_rng(seed)
    capacity = rng.uniform(0, 80, (C, M, T)) * (rng.random((C, M, T)) < 0.8)
    two_way = rng.random((C, 1)) < 0.7
    return ClusterModel(
        hours=1.0, direction=np.array([0, 1, 0]), opposite=np.where(two_way, 0.2, 0.0) * np.array([1.0, 1.0, 0.0]),
        min_mw=np.array([0.1, 0.1, 0.01]), step_mw=np.array([0.1, 0.1, 0.01]),
        vmax_mw=np.minimum(rng.uniform(0.05, 0.4, (M, T)), capacity.sum(axis=0) / 1000),
        revenue=rng.uniform(0, 60, (M, T)), acceptance=rng.uniform(0.3, 1.0, (M, T)),
        haircut=rng.uniform(0.7, 1.0, (M, T, Q)), capacity_kw=capacity,
        credit_kw=capacity[..., None] * rng.uniform(0.3, 1.0, (C, M, T, Q)), cost=rng.uniform(0, 20, (C, M, T)),
        power=rng.uniform(0, 0.9, (C, M, T, 2)) * (capacity[..., None] > 0), node_of=rng.integers(-1, 2, C),
        node_limit_kw=rng.uniform(20, 120, (2, T, 2)),
        oem=rng.uniform(0, 0.4, (C, M, T)) * (rng.random((C, 1, 1)) < 0.5) if oem else np.zeros((C, M, T)))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("oem", [False, True])
def test_pyomo_and_highspy_reach_the_same_optimum(seed, oem):
    model = random_cluster_model(seed, oem=oem)
    reference = pyomo_model.solve(model)
    direct = highs_model.solve(model, 30.0, 1e-9, method="monolithic")
    assert direct.status == "optimal" and reference.status == "optimal" and direct.volume_mw.sum() > 0
    assert direct.objective == pytest.approx(reference.objective, rel=1e-6, abs=1e-6)
    assert not violations(model, direct.share, direct.volume_mw)
    per_mtu = highs_model.solve(model, 30.0, 1e-9)
    assert not violations(model, per_mtu.share, per_mtu.volume_mw)
    if not oem:   # without OEM caps the MTUs are independent: solving each alone is exact
        assert per_mtu.objective == pytest.approx(reference.objective, rel=1e-6, abs=1e-6)
    else:
        assert per_mtu.objective <= reference.objective + 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_greedy_is_feasible_and_never_beats_the_optimum(seed):
    model = random_cluster_model(seed, oem=True)
    fallback = greedy.solve(model)
    assert not violations(model, fallback.share, fallback.volume_mw)
    assert fallback.objective <= highs_model.solve(model, 30.0, 1e-9, method="monolithic").objective + 1e-6
    topped = greedy.top_up(model, fallback)
    assert not [v for v in violations(model, topped.share, topped.volume_mw) if not v.startswith("p90")]
    assert (topped.share >= fallback.share - 1e-12).all()


def test_no_time_left_falls_back_to_a_feasible_greedy_plan():
    pr = synthetic_problem(150, seed=2)
    plan = plan_bids(pr, SolveOptions(time_limit_s=0.0, max_clusters=40))
    assert plan.solver_status == "greedy_fallback" and plan.bids
    for b in plan.bids:
        product = CATALOGUE.by_id(b.product_id)
        assert not check_bid(product, b.volume_mw) and b.p90_kw_backing >= float(b.volume_mw) * 1000


def test_fcr_d_and_a_local_order_share_the_cars_of_a_node():
    # 30 cars at N0: the order takes 0.02 MW (of 100 kW it could get), FCR-D up the rest.
    # Per car, the 20-minute and the 60-minute energy together stay within one battery.
    cars = ids(30)
    flex = Market(FLEX, direction="up", grid_node="N0", endurance_min=60.0, max_mw=0.02)
    plan = plan_bids(problem([Market(UP), flex], hourly(cars), fleet(cars, node="N0"),
                             {UP.id: 40.0, flex.key: 40.0}))
    bids = by_key(plan)
    fcr, order = bids[(UP.id, HOURS[0])], bids[(flex.key, HOURS[0])]
    assert order.volume_mw == Decimal("0.02") and fcr.volume_mw == Decimal("0.2")
    x_fcr, x_flex = dict(zip(fcr.vehicles, fcr.obligations_kw)), dict(zip(order.vehicles, order.obligations_kw))
    for car in cars:
        assert x_fcr.get(car, 0) / 10 + x_flex.get(car, 0) / (10 / 3) <= 1 + 1e-6


def test_longer_endurances_use_the_forecast_s_own_held_kw_and_scale_only_without_it():
    quarters = pd.date_range("2026-12-01", periods=4, freq="15min", tz="UTC")
    one = np.ones((1, 4))
    base = dict(vehicle_ids=("v",), quarter_starts=quarters, p_up=one, p_down=one, capacity_up_kw=11 * one,
                capacity_down_kw=11 * one, up_20_kw=11 * one, down_20_kw=11 * one, departure_min=600 * one)
    own = Availability(**base, up_60_kw=11 * one, down_60_kw=11 * one, up_120_kw=6 * one, down_120_kw=11 * one)
    view = own.per_mtu([quarters[0].to_pydatetime()], 60)
    assert view.held_kw("up", 60)[0, 0].max() == 11            # power-limited: held an hour as well
    assert view.held_kw("up", 90)[0, 0].max() == 6             # the 120-minute figure covers 90 minutes
    assert view.held_kw("up", 240)[0, 0].max() == 3            # beyond the forecast: energy-limited scaling
    scaled = Availability(**base).per_mtu([quarters[0].to_pydatetime()], 60)
    assert scaled.held_kw("down", 60)[0, 0].max() == pytest.approx(11 / 3)
