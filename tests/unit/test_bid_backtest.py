"""Bid backtest arithmetic: strict delivery by the bundle, shared cars, the rule-of-thumb bidder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from flexfleet.bidding import Bid, Fleet, Market
from flexfleet.bidding.backtest import Award, Realised, deliver, foresight_availability, rule_of_thumb_bids, score
from flexfleet.markets import default_catalogue

T0 = datetime(2025, 11, 3, tzinfo=UTC)
UP = default_catalogue().product("FCR-D-up", "SE3")
MARKET = Market(UP, activation_mwh_per_mw_h=0.1, penalty_eur_per_mw_h=0.0)


def realised_for(held_up: np.ndarray, start: datetime = T0) -> Realised:
    v, q = held_up.shape
    quarters = pd.date_range(start, periods=q, freq="15min", tz="UTC")
    zero = np.zeros_like(held_up)
    return Realised(tuple(f"v{i}" for i in range(v)), quarters, held_up > 0, {"up": held_up, "down": zero},
                    {f"{d}_{e}min": held_up if d == "up" else zero for d in ("up", "down") for e in (20, 60, 120)},
                    np.where(held_up > 0, 120.0, np.nan))


def bid(mtu: datetime, vehicles: tuple[str, ...], kw: tuple[float, ...], mw: str) -> Bid:
    return Bid(UP.id, "D-1 first", mtu, Decimal(mw), Decimal(0), vehicles, kw, Decimal(0), sum(kw), 0.0, "up", UP.id)


FLEET = Fleet(("v0", "v1", "v2"), np.array(["N0"] * 3, dtype=object), np.array(["NMC"] * 3, dtype=object),
              np.array([0.05, 0.05, 0.02]), np.full(3, np.nan))


def test_a_bundle_delivers_what_it_held_in_its_worst_quarter_and_pays_for_the_shortfall():
    held = np.array([[5.0] * 8, [5, 5, 0, 5, 5, 5, 5, 5], [10.0] * 8])
    real = realised_for(held)
    short = bid(T0, ("v0", "v1"), (5.0, 5.0), "0.01")
    full = bid(T0 + timedelta(hours=1), ("v0", "v2"), (5.0, 5.0), "0.01")
    awards = [Award(short, Decimal("0.01"), Decimal("4")), Award(full, Decimal("0.01"), Decimal("4"))]
    out = deliver(awards, {UP.id: MARKET}, FLEET, real, {UP.id: 0.1}, {UP.id: 6.0})
    a, b = out
    assert a.delivered_mw == pytest.approx(0.005) and not a.full
    assert a.revenue_eur == pytest.approx(0.005 * 4)         # the undelivered half is withheld
    assert a.penalty_eur == pytest.approx(0.005 * 6.0)
    assert b.full and b.delivered_mw == pytest.approx(0.01) and b.penalty_eur == 0
    # wear: 0.01 MW x 1 h x 0.1 MWh/MW h = 1 kWh, at the bundle's obligation-weighted rate
    assert b.wear_eur == pytest.approx(1.0 * (0.05 + 0.02) / 2)
    s = score([short, full], out, {UP.id: MARKET})
    assert (s.accepted_mtus, s.full_mtus) == (2, 1)
    assert s.net_eur == pytest.approx(sum(o.revenue_eur - o.penalty_eur - o.wear_eur for o in out))


def test_a_car_in_two_bids_of_one_mtu_shares_what_it_held():
    held = np.array([[5.0] * 4, [0.0] * 4, [10.0] * 4])
    real = realised_for(held)
    big = bid(T0, ("v0", "v2"), (5.0, 5.0), "0.01")
    small = bid(T0, ("v2",), (5.0,), "0.006")
    out = deliver([Award(big, Decimal("0.01"), Decimal(1)), Award(small, Decimal("0.006"), Decimal(1))],
                  {UP.id: MARKET}, FLEET, real, {}, {})
    assert out[0].full                                       # v0 5 kW + half of v2's 10 kW
    assert out[1].delivered_mw == pytest.approx(0.005)       # the other half: short of 6 kW


def test_nothing_is_delivered_outside_what_was_observed_and_rejected_bids_are_skipped():
    real = realised_for(np.full((3, 4), 10.0))
    later = bid(T0 + timedelta(hours=5), ("v0",), (5.0,), "0.005")
    rejected = bid(T0, ("v0",), (5.0,), "0.005")
    out = deliver([Award(later, Decimal("0.005"), Decimal(1)), Award(rejected, Decimal(0), Decimal(0))],
                  {UP.id: MARKET}, FLEET, real, {}, {})
    assert len(out) == 1 and out[0].delivered_mw == 0


def test_rule_of_thumb_offers_a_share_of_the_usual_plugged_in_power_known_at_gate_closure():
    days = 9
    power = np.full((2, days * 96), 400.0)
    gate = T0 + timedelta(days=7)
    power[:, 7 * 96:] = 4000.0                  # what happens after gate closure must not count
    real = realised_for(power)
    mtus = [T0 + timedelta(days=8, hours=h) for h in range(24)]
    bids = rule_of_thumb_bids([MARKET], real, mtus, gate, 0.5, "D-1 first")
    assert len(bids) == 24
    assert {b.volume_mw for b in bids} == {Decimal("0.4")}   # 0.5 x 800 kW, on the 0.1 MW step
    assert all(b.price_eur_per_mw_h == 0 and b.vehicles == ("v0", "v1") for b in bids)
    assert rule_of_thumb_bids([MARKET], realised_for(np.full((2, 9 * 96), 50.0)), mtus, gate, 0.5, "D-1 first") == []


def test_perfect_foresight_knows_exactly_who_is_plugged_in():
    held = np.array([[5.0, 0, 5, 5], [0.0, 0, 0, 0], [10.0] * 4])
    real = realised_for(held)
    view = foresight_availability(real, real.quarter_starts)
    assert view.p_up.tolist() == [[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]]
    assert view.up_20_kw.tolist() == held.tolist()
    with pytest.raises(ValueError, match="quarters"):
        foresight_availability(real, real.quarter_starts + pd.Timedelta(days=1))


def test_a_car_that_cannot_discharge_counts_what_it_holds_for_the_two_hour_threshold():
    down = default_catalogue().product("FCR-D-down", "SE3")
    market = Market(down)
    quarters = pd.date_range(T0, periods=4, freq="15min", tz="UTC")
    v2g, v1g = [11.0] * 4, [0.0] * 4
    held = {"down_20min": np.array([[10.0] * 4, [10.0] * 4]), "down_60min": np.array([[8.0] * 4, [8.0] * 4]),
            "down_120min": np.array([[6.0] * 4, [2.0] * 4])}
    real = Realised(("v0", "v1"), quarters, np.ones((2, 4), bool), {"up": np.array([v2g, v1g]), "down": np.full((2, 4), 11.0)},
                    held | {k.replace("down", "up"): np.zeros((2, 4)) for k in held}, np.full((2, 4), 300.0))
    b = Bid(down.id, "D-1 first", T0, Decimal("0.02"), Decimal(0), ("v0", "v1"), (10.0, 10.0), Decimal(0), 20.0, 0.0,
            "down", down.id)
    out = deliver([Award(b, Decimal("0.02"), Decimal(1))], {down.id: market}, FLEET, real, {}, {})
    assert out[0].delivered_mw == pytest.approx(0.012)     # the V2G car's 10 kW, the V1G car's 2 kW
