"""A synthetic bidding day: home and workplace charging habits, a V2G share, OEM caps, grid
nodes with limits, FCR-D up and down and one local flexibility order. For tests and the
benchmark, where a trained forecaster would cost minutes; arrays are drawn directly."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from flexfleet.bidding.availability import Availability
from flexfleet.bidding.models import BiddingProblem, Fleet, Market, NodeLimit, PriceScenarios
from flexfleet.domain.time import mtus_of_delivery_day
from flexfleet.forecast.portfolio import Calibration
from flexfleet.markets import default_catalogue

CHEMISTRY_WEAR = {"NMC": 0.05, "LFP": 0.02, "NCA": 0.06}   # EUR per kWh cycled


def synthetic_problem(vehicles: int = 1000, seed: int = 0, day: date = date(2026, 12, 1), zone: str = "SE3",
                      nodes: int = 20, order_mw: float = 0.3, scenarios: int = 20, rho: float = 0.05,
                      dtype: type = np.float64) -> BiddingProblem:
    """The whole day's problem; `dtype=np.float32` halves the memory of a very large fleet."""
    rng = np.random.default_rng(seed)
    quarters = pd.DatetimeIndex(mtus_of_delivery_day(day, zone))
    hours = quarters[::4]
    ids = tuple(f"ev-{i:06d}" for i in range(vehicles))
    availability = _availability(rng, ids, quarters, dtype)
    fleet = _fleet(rng, ids, nodes)
    catalogue = default_catalogue()
    up, down = catalogue.product("FCR-D-up", zone), catalogue.product("FCR-D-down", zone)
    flex = catalogue.product("local-flex", zone)
    markets = (
        Market(up, activation_mwh_per_mw_h=0.01, penalty_eur_per_mw_h=60.0),
        Market(down, activation_mwh_per_mw_h=0.01, penalty_eur_per_mw_h=60.0),
        Market(flex, direction="up", grid_node="N0", max_mw=order_mw, endurance_min=60.0,
               activation_mwh_per_mw_h=0.3, penalty_eur_per_mw_h=100.0),
    )
    prices = _prices(rng, [m.key for m in markets], hours, scenarios)
    limits = tuple(NodeLimit(f"N{i}", max_export_kw=60.0 * vehicles / nodes) for i in range(min(3, nodes)))
    now = datetime.combine(day - timedelta(days=2), datetime.min.time(), tzinfo=UTC)   # before every gate
    calibrations = {"up_20min": Calibration(rho=rho), "down_20min": Calibration(rho=rho),
                    "up_60min": Calibration(rho=rho)}
    return BiddingProblem(day, zone, "D-1 first", now, markets, prices, fleet, availability, calibrations, limits)


def _availability(rng: np.random.Generator, ids: tuple[str, ...], quarters: pd.DatetimeIndex,
                  dtype: type) -> Availability:
    n, q = len(ids), len(quarters)
    local_h = (quarters.tz_convert("Europe/Stockholm").hour + quarters.tz_convert("Europe/Stockholm").minute / 60)
    h = np.asarray(local_h, dtype=np.float64)[None, :]
    home = rng.random(n) < 0.75
    arrive = np.where(home, rng.normal(18, 1.5, n), rng.normal(8.5, 1.0, n))[:, None]
    leave = np.where(home, rng.normal(7.5, 1.0, n), rng.normal(16.5, 1.0, n))[:, None]
    # hours since arrival and until leaving on a 24 h circle: inside the window when both are short
    since = (h - arrive) % 24
    until = (leave - h) % 24
    inside = since + until <= ((leave - arrive) % 24) + 1e-9
    edge = np.minimum(since, until)
    p_max = rng.uniform(0.8, 0.97, (n, 1))
    p = np.where(inside, p_max * np.clip(0.4 + edge, 0, 1), 0.04).astype(dtype)
    v2g = rng.random(n) < 0.4
    cap_up = np.where(v2g, rng.choice([7.4, 11.0], n), 0.0)[:, None]
    cap_down = rng.choice([7.4, 11.0], n)[:, None]
    departure = np.where(inside, until * 60 - 30, np.nan)                    # P10: half an hour early
    stays = np.nan_to_num(departure, nan=-1) >= 20
    up_20 = np.where(stays, cap_up * rng.uniform(0.3, 1.0, (n, 1)), 0.0)
    down_20 = np.where(stays, cap_down * rng.uniform(0.3, 1.0, (n, 1)), 0.0)
    full = np.ones((n, q), dtype=dtype)
    return Availability(ids, quarters, p, p.copy(), (full * cap_up).astype(dtype), (full * cap_down).astype(dtype),
                        up_20.astype(dtype), down_20.astype(dtype), departure.astype(dtype))


def _fleet(rng: np.random.Generator, ids: tuple[str, ...], nodes: int) -> Fleet:
    n = len(ids)
    chemistry = rng.choice(list(CHEMISTRY_WEAR), n, p=[0.7, 0.2, 0.1])
    wear = np.array([CHEMISTRY_WEAR[c] for c in chemistry])
    capped = rng.random(n) < 0.2
    return Fleet(ids, np.array([f"N{i}" for i in rng.integers(0, nodes, n)], dtype=object), chemistry, wear,
                 np.where(capped, 1250 / 365, np.nan))


def _prices(rng: np.random.Generator, keys: list[str], hours: pd.DatetimeIndex, scenarios: int) -> PriceScenarios:
    means = np.array([30.0, 15.0, 80.0])[: len(keys)]
    shape = (scenarios, len(keys), len(hours))
    prices = means[None, :, None] * rng.lognormal(0.0, 0.6, shape)
    return PriceScenarios(tuple(keys), tuple(t.to_pydatetime() for t in hours), prices,
                          np.full(scenarios, 1.0 / scenarios))


def uniform_availability(ids: tuple[str, ...], quarter_starts: pd.DatetimeIndex, *, p: float | np.ndarray = 1.0,
                         up_kw: float | np.ndarray = 10.0, down_kw: float | np.ndarray = 10.0,
                         power_up_kw: float | np.ndarray = 10.0, power_down_kw: float | np.ndarray = 10.0,
                         departure_min: float | np.ndarray = 600.0) -> Availability:
    """Hand-made availability: each value a scalar, one per vehicle, or (vehicles, quarters)."""
    shape = (len(ids), len(quarter_starts))

    def grid(x: float | np.ndarray) -> np.ndarray:
        a = np.asarray(x, dtype=np.float64)
        return np.broadcast_to(a[:, None] if a.ndim == 1 else a, shape).copy()

    return Availability(tuple(ids), pd.DatetimeIndex(quarter_starts), grid(p), grid(p), grid(power_up_kw),
                        grid(power_down_kw), grid(up_kw), grid(down_kw), grid(departure_min))


def flat_prices(prices: dict[str, float], mtu_starts: list[datetime]) -> PriceScenarios:
    """One certain price per market key, the same in every MTU."""
    keys = tuple(prices)
    values = np.array([[prices[k]] * len(mtu_starts) for k in keys])[None]
    return PriceScenarios(keys, tuple(mtu_starts), values, np.ones(1))
