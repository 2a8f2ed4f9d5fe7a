"""Synthetic hourly FCR capacity prices and TSO demand for SE3, in two regimes, as shipped data.

Historical price series cannot be fetched from inside the build, so data/markets/prices/ holds
series made by this seeded generator, calibrated to published averages (see the README there).
Run ``python -m services.simulator.market_prices`` to rewrite them; the same seed gives the
same bytes.

Per product and regime the log price is: a regime trend (knots below), a daily shape by local
hour, a weekend factor, and hourly AR(1) noise shared in part between the three products. Then
spikes (a latent AR(1) crossing a threshold, so they come in short runs) multiply the price,
zero-price runs (another latent process, likelier at night) set it to 0, and one factor scales
the series to the target mean exactly. Demand is the TSO's volume: a cap by period, lowered
in weeks when the largest unit (the reference incident) is out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

PRICES_DIR = Path(__file__).resolve().parents[2] / "data" / "markets" / "prices"
COLUMNS = ("mtu_start", "regime", "zone", "product", "price_eur_per_mw_h", "demand_mw")
STOCKHOLM = ZoneInfo("Europe/Stockholm")
SEED = 20251123


@dataclass(frozen=True)
class ProductSpec:
    product: str
    target_mean: float  # EUR/MW/h over every hour, zeros and spikes included
    sigma: float  # stationary std of the hourly log-price noise
    phi: float  # hourly AR(1) coefficient of that noise
    zero_share: float  # share of hours cleared at 0
    spike_share: float  # share of hours in a spike
    spike_factor: tuple[float, float]  # spike multiplier range
    daily: tuple[float, ...]  # 24 multipliers by local hour (weekdays)
    weekend: float  # extra multiplier on Saturdays and Sundays
    demand: tuple[tuple[date, float], ...]  # (from day, MW cap) steps
    outage_factor: float  # demand multiplier while the largest unit is out (1: no effect)


@dataclass(frozen=True)
class RegimeSpec:
    name: str
    first_day: date  # a Monday, local
    weeks: int
    trend: tuple[tuple[date, float], ...]  # knots of a multiplicative level, linear between
    products: tuple[ProductSpec, ...]
    outage_weeks: int  # weeks with the largest nuclear unit out, drawn mostly in summer


def _shape(night: float, morning: float, day: float, evening: float) -> tuple[float, ...]:
    """24 hourly multipliers from four levels (00-06, 06-10, 10-17, 17-24), smoothed."""
    raw = [night] * 6 + [morning] * 4 + [day] * 7 + [evening] * 7
    sm = [(raw[h - 1] + 2 * raw[h] + raw[(h + 1) % 24]) / 4 for h in range(24)]
    mean = sum(sm) / 24
    return tuple(round(v / mean, 4) for v in sm)


D_UP = "FCR-D-up/SE_DK2"
D_DOWN = "FCR-D-down/SE_DK2"
N = "FCR-N/SE_DK2"

# Demand caps (MW, SE+DK2 joint market). Sources in data/markets/prices/README.md.
HIGH = RegimeSpec(
    name="high",
    first_day=date(2022, 1, 3),
    weeks=64,  # to Sunday 26 March 2023
    trend=((date(2022, 1, 1), 0.55), (date(2022, 5, 1), 0.7), (date(2022, 8, 15), 1.45),
           (date(2022, 11, 1), 1.35), (date(2023, 1, 15), 1.0), (date(2023, 3, 31), 0.75)),
    products=(
        ProductSpec(D_UP, 57.0, 0.45, 0.97, 0.004, 0.010, (2.0, 5.0),
                    _shape(1.25, 0.95, 0.85, 1.0), 1.10,
                    ((date(2022, 1, 1), 598.0),), 0.88),
        ProductSpec(D_DOWN, 31.0, 0.55, 0.96, 0.010, 0.010, (2.0, 6.0),
                    _shape(0.9, 1.0, 1.15, 0.95), 1.15,
                    ((date(2022, 1, 1), 100.0), (date(2022, 7, 1), 120.0),
                     (date(2022, 10, 1), 165.0), (date(2023, 1, 1), 200.0)), 1.0),
        ProductSpec(N, 40.0, 0.40, 0.97, 0.002, 0.008, (2.0, 4.0),
                    _shape(1.2, 1.0, 0.9, 1.0), 1.05,
                    ((date(2022, 1, 1), 248.0),), 1.0),
    ),
    outage_weeks=8,
)

LOW = RegimeSpec(
    name="low",
    first_day=date(2025, 1, 6),
    weeks=51,  # to Sunday 28 December 2025
    trend=((date(2025, 1, 1), 1.15), (date(2025, 4, 1), 0.9), (date(2025, 7, 15), 1.1),
           (date(2025, 10, 1), 0.95), (date(2025, 12, 31), 1.05)),
    products=(
        ProductSpec(D_UP, 4.00, 0.90, 0.93, 0.08, 0.008, (4.0, 12.0),
                    _shape(1.3, 0.9, 0.8, 1.05), 1.15,
                    ((date(2025, 1, 1), 600.0),), 0.88),
        ProductSpec(D_DOWN, 8.66, 0.75, 0.94, 0.04, 0.008, (3.0, 8.0),
                    _shape(0.85, 1.0, 1.2, 0.95), 1.2,
                    ((date(2025, 1, 1), 580.0),), 1.0),
        ProductSpec(N, 25.30, 0.50, 0.96, 0.01, 0.006, (2.5, 6.0),
                    _shape(1.2, 1.05, 0.85, 1.0), 1.05,
                    ((date(2025, 1, 1), 248.0),), 1.0),
    ),
    outage_weeks=6,
)

REGIMES = {r.name: r for r in (HIGH, LOW)}


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """Stationary AR(1) with unit variance."""
    eps = rng.standard_normal(n) * math.sqrt(1 - phi * phi)
    out = np.empty(n)
    x = rng.standard_normal()
    for i in range(n):
        x = phi * x + eps[i]
        out[i] = x
    return out


def _step_value(steps: tuple[tuple[date, float], ...], days: np.ndarray) -> np.ndarray:
    starts = np.array([np.datetime64(d) for d, _ in steps])
    values = np.array([v for _, v in steps])
    idx = np.searchsorted(starts, days, side="right") - 1
    return values[np.clip(idx, 0, None)]


def _hours(spec: RegimeSpec) -> pd.DatetimeIndex:
    start = datetime.combine(spec.first_day, datetime.min.time(), STOCKHOLM).astimezone(UTC)
    last = spec.first_day + timedelta(weeks=spec.weeks)
    end = datetime.combine(last, datetime.min.time(), STOCKHOLM).astimezone(UTC)
    return pd.date_range(start, end, freq="h", inclusive="left")


def generate_regime(spec: RegimeSpec, seed: int = SEED) -> pd.DataFrame:
    """One regime's hourly prices and demand for the three FCR products, long format."""
    rng = np.random.default_rng([seed, sum(map(ord, spec.name))])
    utc = _hours(spec)
    local = utc.tz_convert(STOCKHOLM)
    n = len(utc)
    hour = local.hour.to_numpy()
    weekend = np.asarray(local.day_of_week >= 5)
    days = local.tz_localize(None).normalize().to_numpy().astype("datetime64[D]")

    knots = np.array([np.datetime64(d).astype("datetime64[h]").astype(float) for d, _ in spec.trend])
    trend = np.interp(days.astype("datetime64[h]").astype(float), knots, [v for _, v in spec.trend])

    # Weeks with the largest unit out: FCR-D up demand falls with the reference incident.
    week = ((days - np.datetime64(spec.first_day)).astype(int) // 7)
    week_month = pd.DatetimeIndex([spec.first_day + timedelta(weeks=int(w)) for w in range(spec.weeks)]).month
    w_prob = np.where((week_month >= 5) & (week_month <= 9), 4.0, 1.0)
    out_weeks = rng.choice(spec.weeks, size=spec.outage_weeks, replace=False, p=w_prob / w_prob.sum())
    outage = np.isin(week, out_weeks)

    common = _ar1(rng, n, 0.98)
    night = np.isin(hour, [0, 1, 2, 3, 4, 5]).astype(float)
    frames = []
    for p in spec.products:
        own = _ar1(rng, n, p.phi)
        noise = p.sigma * (math.sqrt(0.4) * common + math.sqrt(0.6) * own)
        log_p = np.log(trend) + np.log(np.asarray(p.daily)[hour]) + np.where(weekend, math.log(p.weekend), 0.0)
        price = np.exp(log_p + noise - p.sigma**2 / 2)

        spike_latent = _ar1(rng, n, 0.6)
        spikes = spike_latent > np.quantile(spike_latent, 1 - p.spike_share)
        price[spikes] *= rng.uniform(*p.spike_factor, spikes.sum())

        zero_latent = _ar1(rng, n, 0.85) + 0.8 * night + 0.3 * weekend
        zeros = zero_latent > np.quantile(zero_latent, 1 - p.zero_share)
        price[zeros & ~spikes] = 0.0

        price *= p.target_mean / price.mean()
        price = np.round(price, 2)

        demand = _step_value(p.demand, days)
        demand = np.where(outage, demand * p.outage_factor, demand)
        demand = np.round(demand - 0.02 * demand * (1 - night) * (p.outage_factor < 1), 0)

        frames.append(pd.DataFrame({
            "mtu_start": utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "regime": spec.name,
            "zone": "SE3",
            "product": p.product,
            "price_eur_per_mw_h": price,
            "demand_mw": demand,
        }))
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def file_name(regime: str) -> str:
    return f"fcr_se3_{regime}.csv.gz"


def write_price_files(out_dir: Path = PRICES_DIR, seed: int = SEED) -> dict[str, Path]:
    """Regenerate every regime's CSV (gzip with a fixed header time, so bytes repeat)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, spec in REGIMES.items():
        df = generate_regime(spec, seed)
        path = out_dir / file_name(name)
        df.to_csv(path, index=False, float_format="%.2f", lineterminator="\n",
                  compression={"method": "gzip", "mtime": 0, "compresslevel": 9})
        paths[name] = path
    return paths


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per regime and product: mean, share of zero hours, 99th percentile, max, demand."""
    g = df.groupby(["regime", "product"])
    return pd.DataFrame({
        "mean": g["price_eur_per_mw_h"].mean().round(2),
        "zero_share": g["price_eur_per_mw_h"].apply(lambda s: round(float((s == 0).mean()), 4)),
        "p50": g["price_eur_per_mw_h"].median().round(2),
        "p99": g["price_eur_per_mw_h"].quantile(0.99).round(2),
        "max": g["price_eur_per_mw_h"].max(),
        "demand_mean": g["demand_mw"].mean().round(1),
        "demand_min": g["demand_mw"].min(),
        "demand_max": g["demand_mw"].max(),
        "hours": g.size(),
    })


if __name__ == "__main__":
    written = write_price_files()
    frames = [pd.read_csv(p) for p in written.values()]
    print(summary(pd.concat(frames)).to_string())
    for p in written.values():
        print(p, p.stat().st_size, "bytes")
