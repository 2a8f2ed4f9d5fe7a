"""Market simulator: capacity clearing rules, DSO order matching, grid frequency and activation."""

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexfleet.markets import default_catalogue
from flexfleet.markets.clearing import (
    CapacityBid, CapacityPricing, FlexOffer, FlexOrder, FlexOrderType, FrequencyEvent,
    FrequencyModel, SupplyStep, activated_energy, activation_share, clear_auction,
    clear_capacity_auction, draw_frequency_events, generate_frequency, match_flex_orders,
    synthetic_supply,
)

CAT = default_catalogue()
D_UP = CAT.by_id("FCR-D-up/SE_DK2")
D_DOWN = CAT.by_id("FCR-D-down/SE_DK2")
FCR_N = CAT.by_id("FCR-N/SE_DK2")
T0 = datetime(2025, 1, 6, tzinfo=UTC)


def steps(*pairs: tuple[str, str]) -> list[SupplyStep]:
    return [SupplyStep(D(p), D(v)) for p, v in pairs]


# ----------------------------------------------------------------------------- capacity auction


def test_marginal_price_is_the_last_accepted_bids_price() -> None:
    others = steps(("5", "10"), ("8", "10"), ("12", "10"))
    r = clear_auction(D("25"), others, [CapacityBid("ours", D("5"), D("7"))])
    # merit order 5 (10 MW), ours 7 (5 MW), 8 (10 MW) covers 25 MW exactly: 12 never reached
    assert r.clearing_price == D("8")
    assert r.outcome("ours").status == "accepted"
    assert r.outcome("ours").price_paid == D("8")  # paid the marginal price, not its own 7
    assert r.accepted_mw == D("25") and r.shortfall_mw == 0

    alone = clear_auction(D("25"), others, [])
    assert alone.clearing_price == D("12") and alone.others_accepted_mw == D("25")


def test_our_bid_above_the_clearing_price_is_rejected() -> None:
    r = clear_auction(D("15"), steps(("5", "10"), ("9", "10")), [CapacityBid("dear", D("3"), D("20"))])
    assert r.clearing_price == D("9")
    out = r.outcome("dear")
    assert out.status == "out_of_merit" and out.accepted_mw == 0 and out.price_paid is None
    assert out.revenue_per_h == 0


def test_indivisible_bid_is_skipped_not_cut_and_dearer_bids_fill_the_rest() -> None:
    others = steps(("5", "10"), ("9", "10"))
    r = clear_auction(D("12"), others, [CapacityBid("block", D("5"), D("6"), indivisible=True)])
    assert r.outcome("block").status == "block_too_large"
    assert r.outcome("block").accepted_mw == 0
    assert r.clearing_price == D("9") and r.accepted_mw == D("12")

    cut = clear_auction(D("12"), others, [CapacityBid("soft", D("5"), D("6"), indivisible=False)])
    assert cut.outcome("soft").status == "partial" and cut.outcome("soft").accepted_mw == D("2")
    assert cut.clearing_price == D("6")


def test_unmet_demand_gives_the_right_shortfall() -> None:
    r = clear_auction(D("50"), steps(("5", "20")), [CapacityBid("a", D("10"), D("30"))])
    assert r.accepted_mw == D("30") and r.shortfall_mw == D("20")
    assert r.clearing_price == D("30")  # the TSO had to take the dearest offer too
    assert r.outcome("a").price_paid == D("30")

    nothing = clear_auction(D("50"), [], [])
    assert nothing.clearing_price is None and nothing.shortfall_mw == D("50")


def test_pay_as_bid_pays_each_bid_its_own_price() -> None:
    ours = [CapacityBid("cheap", D("2"), D("3")), CapacityBid("mid", D("2"), D("6"))]
    r = clear_auction(D("10"), steps(("1", "4"), ("8", "10")), ours, pricing="pay_as_bid")
    assert r.pricing is CapacityPricing.PAY_AS_BID
    assert r.outcome("cheap").price_paid == D("3")
    assert r.outcome("mid").price_paid == D("6")
    assert r.clearing_price == D("8")  # still reported: the dearest accepted offer
    assert r.our_revenue_per_h == D("2") * 3 + D("2") * 6


def test_ties_go_to_other_bidders_first_then_by_bid_id() -> None:
    others = steps(("5", "8"))
    ours = [CapacityBid("b", D("1"), D("5")), CapacityBid("a", D("1"), D("5"))]
    r = clear_auction(D("9"), others, ours)
    assert r.outcome("a").accepted_mw == 1 and r.outcome("b").accepted_mw == 0
    assert clear_auction(D("9"), others, list(reversed(ours))) == r


def test_product_rules_force_whole_bids_and_refuse_invalid_volumes() -> None:
    others = steps(("1", "10"), ("4", "100"))
    ours = [CapacityBid("ok", D("0.3"), D("2"), indivisible=False),
            CapacityBid("small", D("0.05"), D("2")),
            CapacityBid("step", D("0.25"), D("2"))]
    r = clear_capacity_auction(D_UP, D("10.2"), others, ours)
    assert r.outcome("ok").status == "block_too_large"  # whole bids only: 0.3 > 0.2 MW left
    assert r.outcome("small").status == "invalid" and "minimum" in r.outcome("small").reason
    assert r.outcome("step").status == "invalid" and "step" in r.outcome("step").reason
    assert [b.bid_id for b in r.bids] == ["ok", "small", "step"]
    local = clear_capacity_auction(CAT.by_id("local-flex/NODES"), D("1"), [],
                                   [CapacityBid("x", D("0.5"), D("7"))])
    assert local.pricing is CapacityPricing.PAY_AS_BID
    with pytest.raises(ValueError, match="no capacity auction"):
        clear_capacity_auction(CAT.by_id("mFRR-energy/SE"), D("1"), [], [])


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(ValueError, match="bid x volume_mw"):
        CapacityBid("x", D("0"), D("1"))
    with pytest.raises(ValueError, match="bid x price"):
        CapacityBid("x", D("1"), "cheap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="demand_mw"):
        clear_auction(D("-1"), [], [])
    with pytest.raises(ValueError, match="duplicates"):
        clear_auction(D("1"), [], [CapacityBid("x", D("1"), D("1")), CapacityBid("x", D("1"), D("2"))])


def test_synthetic_supply_reproduces_the_price_and_small_bids_do_not_move_it() -> None:
    for price, demand in [("12.5", "600"), ("0", "580"), ("57.3", "248")]:
        supply = synthetic_supply(D(price), D(demand), np.random.default_rng(1))
        alone = clear_auction(D(demand), supply, [])
        assert alone.clearing_price == D(price) and alone.shortfall_mw == 0
        with_us = clear_auction(D(demand), supply, [CapacityBid("us", D("5"), D(price) - 1)])
        if D(price) > 0:
            assert with_us.clearing_price == D(price)
            assert with_us.outcome("us").price_paid == D(price)


volumes = st.integers(1, 500).map(lambda k: D(k) / 10)
prices = st.integers(0, 10_000).map(lambda k: D(k) / 100)


@st.composite
def auctions(draw):  # type: ignore[no-untyped-def]
    others = draw(st.lists(st.builds(SupplyStep, prices, volumes, st.booleans()), max_size=8))
    n = draw(st.integers(0, 6))
    ours = [CapacityBid(f"b{i}", draw(volumes), draw(prices), draw(st.booleans())) for i in range(n)]
    demand = draw(st.integers(0, 2000).map(lambda k: D(k) / 10))
    pricing = draw(st.sampled_from(["marginal", "pay_as_bid"]))
    step = draw(st.sampled_from([None, D("0.1")]))
    return demand, others, ours, pricing, step


@settings(max_examples=300, deadline=None)
@given(auctions(), st.randoms())
def test_clearing_invariants(case, rnd: random.Random) -> None:  # type: ignore[no-untyped-def]
    demand, others, ours, pricing, step = case
    r = clear_auction(demand, others, ours, pricing=pricing, step_mw=step)
    assert 0 <= r.accepted_mw <= demand
    assert r.accepted_mw + r.shortfall_mw == demand
    assert r.our_accepted_mw + r.others_accepted_mw == r.accepted_mw
    by_id = {b.bid_id: b for b in ours}
    for out in r.bids:
        bid = by_id[out.bid_id]
        assert 0 <= out.accepted_mw <= bid.volume_mw
        if bid.indivisible:
            assert out.accepted_mw in (0, bid.volume_mw)
        if out.accepted_mw > 0:
            assert r.clearing_price is not None and bid.price <= r.clearing_price
            assert out.price_paid == (r.clearing_price if pricing == "marginal" else bid.price)
        else:
            assert out.price_paid is None
        if r.clearing_price is not None and bid.price > r.clearing_price:
            assert out.accepted_mw == 0
    if r.shortfall_mw > 0:  # nothing that could have helped was left out
        for out in r.bids:
            assert out.status in ("accepted", "block_too_large") or (
                step is not None and out.status in ("partial", "out_of_merit"))
    shuffled = list(ours)
    rnd.shuffle(shuffled)
    assert clear_auction(demand, others, shuffled, pricing=pricing, step_mw=step) == r


# -------------------------------------------------------------------------- local flexibility


def order(oid: str = "o1", node: str = "N1", mw: str = "0.3", max_price: str = "3000",
          kind: FlexOrderType = FlexOrderType.SHORT_FLEX, hours: tuple[int, int] = (16, 18)) -> FlexOrder:
    return FlexOrder(oid, node, T0 + timedelta(hours=hours[0]), T0 + timedelta(hours=hours[1]),
                     D(mw), D(max_price), kind)


def offer(oid: str, price: str, mw: str = "0.2", node: str = "N1", hours: tuple[int, int] = (15, 20),
          kind: FlexOrderType = FlexOrderType.SHORT_FLEX, indivisible: bool = False) -> FlexOffer:
    return FlexOffer(oid, node, T0 + timedelta(hours=hours[0]), T0 + timedelta(hours=hours[1]),
                     D(mw), D(price), kind, indivisible=indivisible)


def test_dso_order_is_filled_cheapest_first_and_each_offer_paid_its_own_price() -> None:
    m = match_flex_orders([order()], [offer("dear", "2500"), offer("cheap", "900"), offer("over", "3500")])
    assert [(t.offer_id, t.quantity_mw, t.price) for t in m.trades] == [
        ("cheap", D("0.2"), D("900")), ("dear", D("0.1"), D("2500"))]
    assert m.unmet_mw == {}
    assert m.trades[0].value == D("0.2") * 2 * 900  # MW x 2 h x SEK/MWh


def test_dso_offers_must_match_node_window_type_and_cap() -> None:
    offers = [offer("other-node", "100", node="N2"), offer("late", "100", hours=(17, 20)),
              offer("longflex", "100", kind=FlexOrderType.LONG_FLEX), offer("block", "100", mw="0.5",
                                                                          indivisible=True)]
    m = match_flex_orders([order()], offers)
    assert m.trades == () and m.unmet_mw == {"o1": D("0.3")}
    capped = match_flex_orders([order(max_price="20000")], [offer("x", "12000")], price_cap_per_mwh=10000)
    assert capped.trades == ()


def test_an_offer_is_not_sold_twice_at_the_same_time() -> None:
    orders = [order("a", mw="0.15"), order("b", mw="0.15", hours=(17, 19)), order("c", mw="0.2", hours=(19, 20))]
    m = match_flex_orders(orders, [offer("x", "100", mw="0.2")])
    sold = {t.order_id: t.quantity_mw for t in m.trades}
    assert sold == {"a": D("0.15"), "b": D("0.05"), "c": D("0.2")}  # c does not overlap a or b
    assert m.unmet_mw == {"b": D("0.10")}


# ------------------------------------------------------------------------------ grid frequency


def test_frequency_in_normal_operation_has_the_nordic_spread() -> None:
    for seed in range(4):
        tr = generate_frequency(T0, seed=seed, events=[])
        assert len(tr) == 86_400
        assert 0.035 <= tr.hz.std() <= 0.055, tr.hz.std()
        assert abs(tr.hz.mean() - 50.0) < 0.02
        inside = ((tr.hz >= 49.9) & (tr.hz <= 50.1)).mean()
        assert 0.95 < inside < 0.995  # mostly inside the normal band, but not always
    a = generate_frequency(T0, seed=7)
    assert np.array_equal(a.hz, generate_frequency(T0, seed=7).hz)
    assert not np.array_equal(a.hz, generate_frequency(T0, seed=8).hz)


def test_disturbances_push_fcr_d_to_full_activation() -> None:
    trip = FrequencyEvent(T0 + timedelta(hours=10), extreme_hz=49.42, time_to_extreme_s=5, recovery_s=200)
    surge = FrequencyEvent(T0 + timedelta(hours=20), extreme_hz=50.58, time_to_extreme_s=5, recovery_s=200)
    tr = generate_frequency(T0, seed=1, events=[trip, surge], model=FrequencyModel(std_hz=0.01))
    up = activation_share(tr, D_UP.activation.value)
    down = activation_share(tr, D_DOWN.activation.value)
    at = lambda h, s=0: int(h * 3600 + s)  # noqa: E731
    assert up[at(10, 5)] == pytest.approx(1.0) and up[: at(10)].max() < 0.05
    assert down[at(20, 5)] == pytest.approx(1.0) and down[: at(20)].max() < 0.05
    assert up[at(10, 1200)] < 0.05  # recovered within minutes
    energy = activated_energy(tr, D_UP.activation.value)
    assert len(energy.mtu_starts) == 24 and energy.forward_mwh_per_mw.argmax() == 10
    assert energy.forward_mwh_per_mw[10] > 0.01  # minutes at partial activation after the trip
    assert energy.forward_mwh_per_mw[10] > 20 * np.median(energy.forward_mwh_per_mw)
    assert tr.event_mask().sum() > 0


def test_drawn_events_come_a_few_a_week_in_the_stated_ranges() -> None:
    rng = np.random.default_rng(3)
    events = draw_frequency_events(T0, 52 * 7 * 86400, rng)
    under = [e for e in events if e.direction == "under"]
    over = [e for e in events if e.direction == "over"]
    assert 2.0 < len(under) / 52 < 4.0 and 0.2 < len(over) / 52 < 1.5
    assert all(49.4 <= e.extreme_hz <= 49.8 for e in under)
    assert all(50.2 <= e.extreme_hz <= 50.5 for e in over)


def test_activation_share_matches_the_catalogue_curve_and_energy_is_plausible() -> None:
    hz = np.array([49.3, 49.5, 49.7, 49.9, 49.95, 50.0, 50.05, 50.1, 50.3, 50.6])
    for product in (D_UP, D_DOWN, FCR_N):
        act = product.activation.value
        expected = [float(act.share_at(D(str(f)))) for f in hz]
        assert activation_share(hz, act) == pytest.approx(expected)
    tr = generate_frequency(T0, seed=2, events=[])
    n = activated_energy(tr, FCR_N.activation.value)
    assert 0.2 < n.expected_mwh_per_mw_h < 0.5  # FCR-N works all the time
    assert n.reverse_mwh_per_mw.sum() > 0
    d = activated_energy(tr, D_UP.activation.value)
    assert d.expected_mwh_per_mw_h < 0.01  # FCR-D barely moves without disturbances
    quarter = activated_energy(tr, FCR_N.activation.value, mtu_minutes=15)
    assert len(quarter.mtu_starts) == 96
    assert quarter.expected_mwh_per_mw_h == pytest.approx(n.expected_mwh_per_mw_h)


# --------------------------------------------------------------------------- the service shell


def test_simulated_market_clears_bids_against_the_realised_prices() -> None:
    from services.simulator import market

    day = date(2025, 3, 11)
    real = market.realised_prices(day)
    assert real.source_days == (day,)
    prices = real.price("FCR-D-up/SE_DK2")[0]
    h = int(np.argmax(prices))
    mtu = real.mtu_starts[h]
    res = market.simulate_clearing({("FCR-D-up/SE_DK2", mtu): [
        CapacityBid("under", D("1.0"), D(str(round(float(prices[h]) / 2, 2)))),
        CapacityBid("over", D("1.0"), D(str(round(float(prices[h]) * 3 + 1, 2))))]})
    r = res[("FCR-D-up/SE_DK2", mtu)]
    assert r.clearing_price == D(str(prices[h])).quantize(D("0.01"))
    assert r.outcome("under").price_paid == r.clearing_price
    assert r.outcome("over").accepted_mw == 0
    alone = market.simulate_clearing({("FCR-D-up/SE_DK2", mtu): []})[("FCR-D-up/SE_DK2", mtu)]
    assert alone.clearing_price == r.clearing_price and alone.shortfall_mw == 0  # same market each time
    with pytest.raises(ValueError, match="start of a 60-minute MTU"):
        market.simulate_clearing({("FCR-D-up/SE_DK2", mtu + timedelta(minutes=15)): []})


def test_frequency_day_and_dso_orders_follow_the_calendar() -> None:
    from services.simulator import market

    assert len(market.frequency_day(date(2025, 10, 26))) == 25 * 3600  # the autumn DST day
    nodes = [f"SE3-N{i:04d}" for i in range(200)]
    winter = market.dso_orders(date(2025, 1, 15), nodes, seed=1)
    summer = market.dso_orders(date(2025, 7, 15), nodes, seed=1)
    assert len(winter) > 4 * max(len(summer), 1)
    assert winter == market.dso_orders(date(2025, 1, 15), list(reversed(nodes)), seed=1)
    evening = [o for o in winter if 15 <= o.start.astimezone(market.ZoneInfo(market.MARKET_TZ)).hour <= 18]
    assert len(evening) > len(winter) / 2
    assert all(o.currency == "SEK" and o.max_price <= 10_000 for o in winter)
