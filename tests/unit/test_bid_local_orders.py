"""DSO local-flexibility orders in the day's bids: an order becomes a market of its own at its
grid node, priced in EUR at a dated ECB rate inside its window only; the plan bids it with that
node's cars only and never above the order's quantity; clearing meets the bids pay-as-bid with
the day's orders, hour by hour; the bid files name the order."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from flexfleet.bidding import Bid, BiddingInputError, Fleet, SolveOptions, plan_bids
from flexfleet.bidding.synthetic import flat_prices, uniform_availability
from flexfleet.domain.time import mtus_of_delivery_day
from flexfleet.markets import default_catalogue
from flexfleet.markets.clearing import FlexOrder, FlexOrderType
from flexfleet.markets.exchange_rates import default_exchange_rates, parse_exchange_rates
from services.bidder.clearing import clear_simulated
from services.bidder.files import CSV_COLUMNS, write_bid_files
from services.bidder.problem import (LOCAL_SHORTFALL_SURCHARGE, LONG_FLEX_ACTIVATION_MWH_PER_MW_H,
                                     SHORT_FLEX_ACTIVATION_MWH_PER_MW_H, bidding_problem, day_markets, order_id_of,
                                     with_orders_explained)
from services.bidder.store import StoredBid, StoredPlan
from services.simulator.market import dso_orders

CATALOGUE = default_catalogue()
UP, DOWN = CATALOGUE.product("FCR-D-up", "SE3"), CATALOGUE.product("FCR-D-down", "SE3")
FLEX = CATALOGUE.product("local-flex", "SE3")
DAY = date(2026, 12, 1)                                        # a Tuesday in winter
HOURS = [t.to_pydatetime() for t in pd.DatetimeIndex(mtus_of_delivery_day(DAY, "SE3"))[::4]]
NOW = datetime(2026, 11, 29, tzinfo=UTC)                       # before every gate
RATES = parse_exchange_rates(json.dumps({
    "base": "EUR",
    "sources": {"ecb": {"title": "Euro foreign exchange reference rates", "issuer": "European Central Bank",
                        "version": "daily", "url": "https://www.ecb.europa.eu/"}},
    "rates": [{"currency": "SEK", "date": "2026-01-02", "per_eur": "10.8085", "source": "ecb"},
              {"currency": "SEK", "date": "2026-10-30", "per_eur": "10.9780", "source": "ecb"}]}))


def utc(hour: int) -> datetime:
    return datetime(2026, 12, 1, hour, tzinfo=UTC)             # CET = UTC+1: 17:00 local is 16 UTC


def order(order_id: str, node: str, start: int, end: int, mw: str, price: str,
          kind: FlexOrderType = FlexOrderType.SHORT_FLEX) -> FlexOrder:
    return FlexOrder(order_id, node, utc(start), utc(end), Decimal(mw), Decimal(price), kind)


EVENING = order("N0-evening", "N0", 16, 18, "0.05", "5000")            # 17-19 local, 5,000 SEK/MWh


# -- exchange rates ---------------------------------------------------------------------------------
def test_a_day_uses_the_latest_rate_published_on_or_before_it():
    assert RATES.on("SEK", date(2026, 12, 1)).per_eur == Decimal("10.9780")
    assert RATES.on("SEK", date(2026, 10, 29)).per_eur == Decimal("10.8085")
    assert RATES.on("EUR", DAY).per_eur == 1
    with pytest.raises(ValueError, match="currency: no SEK rate on or before 2025-12-31"):
        RATES.on("SEK", date(2025, 12, 31))
    with pytest.raises(ValueError, match="currency: no NOK rate"):
        RATES.on("NOK", DAY)
    rate = RATES.on("SEK", DAY)
    assert rate.from_eur(rate.to_eur(Decimal("5000"))) == pytest.approx(Decimal("5000"))


def test_the_shipped_rates_are_the_ecb_s_and_a_bad_entry_is_refused_naming_it():
    shipped = default_exchange_rates()
    latest = shipped.on("SEK", DAY)
    assert (latest.day, latest.per_eur) == (date(2026, 10, 30), Decimal("10.9780"))
    assert shipped.sources[latest.source].issuer == "European Central Bank"
    good = {"base": "EUR", "sources": {"ecb": {"title": "t", "issuer": "ECB", "version": "v", "url": "https://x"}},
            "rates": [{"currency": "SEK", "date": "2026-10-30", "per_eur": "10.978", "source": "ecb"}]}
    for change, says in ((("per_eur", "-1"), r"rates\[0\].per_eur"), (("per_eur", 10.978), r"rates\[0\].per_eur"),
                         (("date", "30/10/2026"), r"rates\[0\].date"), (("currency", "kr"), r"rates\[0\].currency"),
                         (("source", "riksbank"), r"rates\[0\].source")):
        bad = json.loads(json.dumps(good))
        bad["rates"][0][change[0]] = change[1]
        with pytest.raises(ValueError, match=says):
            parse_exchange_rates(json.dumps(bad))
    with pytest.raises(ValueError, match="a second SEK rate"):
        parse_exchange_rates(json.dumps(good | {"rates": good["rates"] * 2}))


# -- orders become markets --------------------------------------------------------------------------
def test_each_order_is_a_market_at_its_node_priced_in_eur_inside_its_window_only():
    long = order("N0-long", "N0", 16, 17, "0.2", "400", FlexOrderType.LONG_FLEX)     # same node, overlapping
    capped = order("N0-dear", "N0", 6, 7, "0.1", "12000")                           # above the 10,000 cap
    later = FlexOrder("N0-next-day", "N0", utc(23) + timedelta(hours=1), utc(23) + timedelta(hours=3),
                      Decimal("0.1"), Decimal("3000"), FlexOrderType.SHORT_FLEX)
    prices = flat_prices({UP.id: 5.0, DOWN.id: 3.0}, HOURS)
    dm = day_markets(CATALOGUE, "SE3", DAY, "D-1", prices, orders=[EVENING, long, capped, later], rates=RATES)

    local = {m.key: m for m in dm.markets if m.product.id == FLEX.id}
    assert set(local) == {f"{FLEX.id}@N0-evening", f"{FLEX.id}@N0-long", f"{FLEX.id}@N0-dear"}   # next day: none
    short = local[f"{FLEX.id}@N0-evening"]
    assert (short.direction, short.grid_node, short.max_mw, short.endurance_min, short.auction) == (
        "up", "N0", 0.05, 60.0, "continuous")
    assert short.activation_mwh_per_mw_h == SHORT_FLEX_ACTIVATION_MWH_PER_MW_H == 1.0
    assert local[f"{FLEX.id}@N0-long"].activation_mwh_per_mw_h == LONG_FLEX_ACTIVATION_MWH_PER_MW_H < 1.0

    eur = Decimal("455.45")                 # 5000 / 10.9780 = 455.456..., floored to the cent
    assert eur * Decimal("10.9780") <= 5000 < (eur + Decimal("0.01")) * Decimal("10.9780")
    row = dm.prices.row(short.key)
    inside = np.isin(np.array(HOURS, dtype=object), [utc(16), utc(17)])
    assert row.shape == (1, len(HOURS)) and (row[0, inside] == float(eur)).all() and (row[0, ~inside] == 0).all()
    assert dm.prices.row(f"{FLEX.id}@N0-long")[0].tolist() == [36.43 if t == utc(16) else 0.0 for t in HOURS]
    assert dm.prices.row(f"{FLEX.id}@N0-dear").max() == pytest.approx(float(Decimal(10000) / Decimal("10.9780")),
                                                                       abs=0.01)
    # A shortfall costs the payment withheld (and the stated surcharge, none).
    assert short.penalty_eur_per_mw_h == pytest.approx(float(eur) * (1 + LOCAL_SHORTFALL_SURCHARGE))
    assert dm.surcharge_eur_per_mw_h[short.key] == 0.0 and dm.orders[short.key] is EVENING
    assert (dm.prices.row(UP.id) == 5.0).all()                                      # the FCR rows as given
    assert dm.notes and "N0-evening" in dm.notes[0] and "10.9780 per EUR" in dm.notes[0] and "2026-10-30" in dm.notes[0]
    assert order_id_of(FLEX.id, short.key) == "N0-evening" and order_id_of(UP.id, UP.id) is None


def test_an_order_in_a_currency_without_a_rate_is_refused_naming_orders():
    nok = FlexOrder("N0-nok", "N0", utc(16), utc(17), Decimal("0.1"), Decimal("500"), FlexOrderType.SHORT_FLEX,
                    currency="NOK")
    with pytest.raises(BiddingInputError, match="orders: N0-nok: currency: no NOK rate"):
        day_markets(CATALOGUE, "SE3", DAY, "D-1", flat_prices({UP.id: 5.0, DOWN.id: 3.0}, HOURS), orders=[nok],
                    rates=RATES)


# -- a plan --------------------------------------------------------------------------------------------
def small_fleet(n: int = 24) -> tuple[Fleet, object]:
    """V2G cars half at N0, half at N1, plugged in from 15 to 20 UTC (home in the evening), each
    holding 7 kW either way for an hour; a short day keeps the plan fast."""
    ids = tuple(f"ev-{i:02d}" for i in range(n))
    nodes = np.array(["N0" if i % 2 == 0 else "N1" for i in range(n)], dtype=object)
    fleet = Fleet(ids, nodes, np.array(["LFP"] * n, dtype=object), np.full(n, 0.02), np.full(n, np.nan))
    quarters = pd.DatetimeIndex(mtus_of_delivery_day(DAY, "SE3"))
    home = np.asarray((quarters >= utc(15)) & (quarters < utc(20)))
    p = np.broadcast_to(np.where(home, 0.97, 0.0), (n, len(quarters)))
    return fleet, uniform_availability(ids, quarters, p=p, up_kw=21.0, down_kw=21.0, power_up_kw=7.0,
                                       power_down_kw=7.0, departure_min=600.0)


@pytest.fixture(scope="module")
def evening_plan():
    """(fleet, plan) of the small fleet with the evening order at N0 and one at a node without
    cars, explained as plan_day stores it."""
    fleet, availability = small_fleet()
    prices = flat_prices({UP.id: 5.0, DOWN.id: 3.0}, HOURS)
    elsewhere = order("N9-evening", "N9", 16, 18, "0.05", "5000")                   # no car at N9
    problem, dm = bidding_problem(DAY, "SE3", "D-1", NOW, CATALOGUE, fleet, availability, {}, prices,
                                  orders=[EVENING, elsewhere], rates=RATES)
    assert [m.key for m in problem.markets if m.grid_node] == [f"{FLEX.id}@N0-evening"]
    raw = plan_bids(problem, SolveOptions(time_limit_s=20))
    # Outside its window the order asks for nothing: the planner's reasons for those hours go.
    assert any(d.market_key == f"{FLEX.id}@N0-evening" and d.mtu_start == utc(3) for d in raw.dropped)
    plan = with_orders_explained(raw, dm)
    assert not any(d.market_key == f"{FLEX.id}@N0-evening" and d.mtu_start not in (utc(16), utc(17))
                   for d in plan.dropped)
    assert set(plan.bids) == set(raw.bids) and plan.notes[:len(raw.notes)] == raw.notes
    assert "N0-evening (ShortFlex, 0.05 MW at N0, 455.45 EUR/MW h)" in plan.notes[-1]
    return fleet, plan


def test_a_plan_bids_the_winter_evening_order_with_its_node_s_cars_never_above_its_quantity(evening_plan):
    fleet, plan = evening_plan

    local = [b for b in plan.bids if b.product_id == FLEX.id]
    assert sorted(b.mtu_start for b in local) == [utc(16), utc(17)], plan.dropped
    at_n0 = set(np.array(fleet.vehicle_ids)[fleet.grid_node == "N0"])
    for b in local:
        assert b.market_key == f"{FLEX.id}@N0-evening" and b.grid_node == "N0" and b.direction == "up"
        assert set(b.vehicles) <= at_n0 and b.vehicles
        assert Decimal("0.01") <= b.volume_mw <= EVENING.quantity_mw
        assert b.price_eur_per_mw_h == Decimal("455.45")                            # pay-as-bid at the order's price
        assert b.p90_kw_backing >= float(b.volume_mw) * 1000 * 0.999
    # The node's 12 cars could hold more than the order wants: the order's quantity caps the bid.
    assert max(b.volume_mw for b in local) == EVENING.quantity_mw
    # N1's cars are there in the same hours, and back FCR-D, not the order.
    assert any(set(b.vehicles) - at_n0 for b in plan.bids if b.product_id == UP.id and b.mtu_start == utc(16))
    # The same batteries also hold FCR-D: a car's up obligations in an hour stay within its 7 kW.
    up = {}
    for b in plan.bids:
        if b.direction == "up":
            for v, kw in zip(b.vehicles, b.obligations_kw):
                up[(v, b.mtu_start)] = up.get((v, b.mtu_start), 0.0) + kw
    assert max(up.values()) <= 7.0 + 1e-6
    assert any(b.product_id == UP.id for b in plan.bids)


def test_orders_from_the_simulated_marketplace_plan_the_same_way():
    fleet, availability = small_fleet()
    orders = dso_orders(DAY, ["N0", "N1"], seed=2)                                  # one ShortFlex at N0, 17-20
    assert [o.order_id for o in orders] == ["N0-20261201-0"]
    problem, dm = bidding_problem(DAY, "SE3", "D-1", NOW, CATALOGUE, fleet, availability, {},
                                  flat_prices({UP.id: 5.0, DOWN.id: 3.0}, HOURS), orders=orders)
    plan = plan_bids(problem, SolveOptions(time_limit_s=20))
    local = [b for b in plan.bids if b.product_id == FLEX.id]
    assert {b.mtu_start for b in local} == {utc(16), utc(17), utc(18)}
    assert all(b.volume_mw <= orders[0].quantity_mw for b in local)
    cleared = clear_simulated(local, seed=2)                                        # the same day's orders
    assert all(mw == b.volume_mw and price == b.price_eur_per_mw_h for b, mw, price in cleared)


# -- clearing ------------------------------------------------------------------------------------------
def bid(market_key: str, hour: int, mw: str, price: str, node: str | None = "N0", product: str = FLEX.id) -> Bid:
    return Bid(product, "continuous", utc(hour), Decimal(mw), Decimal(price), ("ev-00",), (float(mw) * 1000,),
               Decimal(0), float(mw) * 1000, 0.0, "up", market_key, node)


def test_local_bids_clear_pay_as_bid_against_the_day_s_orders_hour_by_hour():
    key = f"{FLEX.id}@N0-evening"
    bids = [bid(key, 16, "0.04", "455.45"),                # at the order's price: all of it, paid its own price
            bid(key, 17, "0.03", "400.00"),                # the second hour of the order, cheaper
            bid(key, 18, "0.03", "400.00"),                # after the order's window: nothing to meet
            bid(f"{FLEX.id}@N0-gone", 16, "0.02", "100"),  # an order not in the book
            bid(key, 16, "0.02", "455.45", node="N1")]      # at the wrong node
    cleared = clear_simulated(bids, orders=[EVENING], rates=RATES)
    assert [(mw, price) for _, mw, price in cleared] == [
        (Decimal("0.04"), Decimal("455.45")), (Decimal("0.03"), Decimal("400.00")),
        (Decimal(0), None), (Decimal(0), None), (Decimal(0), None)]
    assert [b for b, _, _ in cleared] == bids

    # Above the order's price: rejected; more than the order wants: what it wants.
    over = clear_simulated([bid(key, 16, "0.04", "455.46")], orders=[EVENING], rates=RATES)
    assert over[0][1:] == (Decimal(0), None)
    big = clear_simulated([bid(key, 17, "0.2", "300")], orders=[EVENING], rates=RATES)
    assert big[0][1:] == (EVENING.quantity_mw, Decimal("300.00"))


def test_fcr_bids_still_clear_in_their_auction_beside_local_ones():
    key = f"{FLEX.id}@N0-evening"
    fcr = bid(UP.id, 16, "0.1", "0.00", node=None, product=UP.id)
    cleared = clear_simulated([fcr, bid(key, 16, "0.04", "455.45")], orders=[EVENING], rates=RATES)
    (_, fcr_mw, fcr_price), (_, local_mw, _) = cleared
    assert fcr_mw == Decimal("0.1") and fcr_price is not None and fcr_price > 0   # a zero offer clears at the price
    assert local_mw == Decimal("0.04")


# -- files ---------------------------------------------------------------------------------------------
def test_the_bid_files_name_the_grid_node_and_order_of_a_local_bid(tmp_path, evening_plan):
    _, plan = evening_plan
    stored = tuple(StoredBid(f"p/{n}", "p", "SE3", DAY, b.product_id, b.market_key, b.auction, b.direction, b.grid_node,
                             b.mtu_start, 60, b.volume_mw, b.price_eur_per_mw_h, b.expected_value_eur,
                             b.p90_kw_backing, b.shortfall_probability, b.vehicles, b.obligations_kw)
                   for n, b in enumerate(plan.bids))
    json_path, csv_path = write_bid_files(StoredPlan("p", "SE3", DAY, "D-1 first", NOW, None, plan, stored), tmp_path)
    records = json.loads(json_path.read_text())["bids"]
    local = [r for r in records if r["product_id"] == FLEX.id]
    assert local and all(r["order_id"] == "N0-evening" and r["grid_node"] == "N0" for r in local)
    assert all(r["order_id"] is None for r in records if r["product_id"] != FLEX.id)
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert {(r["grid_node"], r["order_id"]) for r in rows if r["product_id"] == FLEX.id} == {("N0", "N0-evening")}
    assert {r["order_id"] for r in rows if r["product_id"] != FLEX.id} == {""}
