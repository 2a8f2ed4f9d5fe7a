"""State of charge of each vehicle at each MTU of the next 48 hours, given it is plugged in then:
LightGBM quantile models (10, 50 and 90 %), one set for the whole fleet like availability.

Conditioning on "plugged in then" keeps the two questions apart: availability says whether the
car is there, this says how full it is if it is; flexibility multiplies them. The rows are
sampled like availability's (random (vehicle, horizon) pairs per issue time), but only where the
vehicle was plugged in at the target. The departure model (departure.py) trains on the same rows
and features, so both share `StateFeatures`, `sample_plugged` and `QuantileModel` from here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import lightgbm as lgb
import numpy as np
import pandas as pd

from flexfleet.forecast.features import FEATURES, HISTORY_WEEKS, HORIZON, MTUS_PER_WEEK, FeatureGrid
from flexfleet.forecast.grid import CHARGE_EFFICIENCY

QUANTILES = (0.1, 0.5, 0.9)
PARAMS = {"objective": "quantile", "learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 200,
          "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
          "num_threads": 2, "deterministic": True, "force_row_wise": True, "verbosity": -1}
ROUNDS = 100
ROWS_PER_ISSUE = 20_000
# MTUs between training issue times: 11 h, so the issue times walk through every hour of the day
# (gcd(44, 96) = 4), at a quarter of availability's issue times.
TRAIN_EVERY = 44
# Stays are counted up to 48 h: longer ones are "there for the whole forecast" anyway, and the
# cap keeps every lagged value a forecast uses inside the known history (see `StateFeatures`).
DWELL_CAP = HORIZON
STATE_FEATURES = ("soc_now", "soc_last", "since_soc", "arrival_soc_mean", "soc_week_mean",
                  "remaining_week_mean", "charge_rate")
MODEL_FEATURES = FEATURES + STATE_FEATURES


class StateFeatures:
    """The availability features (`FeatureGrid.frame`, direction "down": every vehicle that ever
    plugs in) plus the vehicle's state: SoC now and when last seen, its mean arrival SoC and mean
    SoC at this MTU of the week over the past four weeks, how long it usually stays from this MTU
    of the week, and how fast it charges (SoC points per MTU).

    Lagged values reach at least a week back and targets lie at most 48 h ahead, so with stays
    capped at 48 h (DWELL_CAP) the remaining time of a lagged cell ended before the issue time.
    """

    def __init__(self, features: FeatureGrid) -> None:
        self.features = features
        self.grid = features.grid

    @property
    def vehicles(self) -> np.ndarray:
        return self.features.vehicles

    @cached_property
    def last_soc_at(self) -> np.ndarray:
        """Index of the last MTU up to each MTU with a known SoC, -1 before the first."""
        known = ~np.isnan(self.grid.soc)
        at = np.where(known, np.arange(self.grid.n_mtus, dtype=np.int32)[None, :], np.int32(-1))
        return np.maximum.accumulate(at, axis=1)

    @cached_property
    def soc_week_mean(self) -> np.ndarray:
        return _lagged_nanmean(self.grid.soc, MTUS_PER_WEEK, HISTORY_WEEKS)

    @cached_property
    def remaining_week_mean(self) -> np.ndarray:
        return _lagged_nanmean(np.minimum(self.grid.remaining, DWELL_CAP), MTUS_PER_WEEK, HISTORY_WEEKS)

    @cached_property
    def charge_rate(self) -> np.ndarray:
        """SoC points per MTU at the vehicle's usual charging power; NaN without a battery size."""
        return self.features.capacity_kw * 0.25 * CHARGE_EFFICIENCY / self.grid.battery_kwh * 100

    def arrival_soc_mean(self, tau: int) -> np.ndarray:
        """Per vehicle, mean SoC at plug-in over the (up to) four weeks before `tau`; NaN if none."""
        a = self.grid.arrivals
        inside = ((a["mtu"] < tau) & (a["mtu"] >= tau - HISTORY_WEEKS * MTUS_PER_WEEK)).to_numpy()
        rows = a["row"].to_numpy()[inside]
        n = len(self.grid.vehicle_ids)
        total = np.bincount(rows, weights=a["soc"].to_numpy()[inside], minlength=n)
        count = np.bincount(rows, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / np.where(count > 0, count, np.nan)

    def frame(self, tau: int) -> pd.DataFrame:
        """One row per (vehicle, horizon), vehicles then horizons as in `FeatureGrid.frame`."""
        frame = self.features.frame(tau)
        v = self.vehicles
        now = tau - 1
        last = self.last_soc_at[v, now]
        seen = last >= 0
        soc_last = np.where(seen, self.grid.soc[v, np.maximum(last, 0)], np.nan)
        per_vehicle = {
            "soc_now": self.grid.soc[v, now],
            "soc_last": soc_last,
            "since_soc": np.where(seen, now - last, np.nan),
            "arrival_soc_mean": self.arrival_soc_mean(tau)[v],
            "charge_rate": self.charge_rate[v],
        }
        for name, values in per_vehicle.items():
            frame[name] = np.repeat(values.astype(np.float32), HORIZON)
        t = tau + np.arange(HORIZON)
        frame["soc_week_mean"] = self.soc_week_mean[v[:, None], t[None, :]].ravel()
        frame["remaining_week_mean"] = self.remaining_week_mean[v[:, None], t[None, :]].ravel()
        return frame[list(MODEL_FEATURES)]


class PluggedSample(NamedTuple):
    """Training rows: features, and which vehicle and target MTU each row is about."""

    x: np.ndarray          # float32 (rows, MODEL_FEATURES)
    vehicle: np.ndarray    # grid row of the vehicle
    target: np.ndarray     # MTU index of the target


def sample_plugged(state: StateFeatures, issue_times: list[int], rows_per_issue: int = ROWS_PER_ISSUE,
                   seed: int = 0) -> PluggedSample:
    """Up to `rows_per_issue` random (vehicle, horizon) rows per issue time among those where the
    vehicle was plugged in (at least half the MTU) at the target: what "given plugged in" means."""
    rng = np.random.default_rng([seed, 5])
    v_all = np.repeat(state.vehicles, HORIZON)
    h_all = np.tile(np.arange(HORIZON), len(state.vehicles))
    xs, vs, ts = [], [], []
    for tau in issue_times:
        if tau + HORIZON > state.grid.n_mtus:
            raise ValueError(f"issue_times: {tau} has targets past the end of the history")
        plugged = state.grid.plugged[state.vehicles, tau:tau + HORIZON] >= 0.5
        candidates = np.flatnonzero(plugged.ravel())
        if len(candidates) == 0:
            continue
        pick = np.sort(rng.choice(candidates, size=min(rows_per_issue, len(candidates)), replace=False))
        xs.append(state.frame(tau).to_numpy(np.float32)[pick])
        vs.append(v_all[pick])
        ts.append(tau + h_all[pick])
    if not xs:
        raise ValueError("issue_times: no vehicle was plugged in at any target; nothing to learn from")
    return PluggedSample(np.concatenate(xs), np.concatenate(vs), np.concatenate(ts))


@dataclass(frozen=True)
class QuantileModel:
    """One booster per level of QUANTILES for one target (SoC, or MTUs until departure)."""

    name: str
    boosters: tuple[lgb.Booster, ...]
    trained_on: tuple[int, int]              # first and last issue MTU index used for training
    bounds: tuple[float, float]              # predictions are clipped into these

    @property
    def version(self) -> str:
        trees = "\n".join(b.model_to_string() for b in self.boosters)
        return f"{self.name}-" + hashlib.sha256(trees.encode()).hexdigest()[:12]

    def predict(self, x: np.ndarray | pd.DataFrame) -> np.ndarray:
        """(rows, QUANTILES). Separately trained levels can cross; sorting each row restores
        P10 <= P50 <= P90 (and never makes a row's pinball loss worse)."""
        x = x.to_numpy(np.float32) if isinstance(x, pd.DataFrame) else x
        q = np.column_stack([b.predict(x, num_threads=PARAMS["num_threads"]) for b in self.boosters])
        return np.clip(np.sort(q, axis=1), *self.bounds)

    def to_dict(self) -> dict:
        return {"name": self.name, "trees": [b.model_to_string() for b in self.boosters],
                "trained_on": list(self.trained_on), "bounds": list(self.bounds)}

    @classmethod
    def from_dict(cls, doc: dict) -> QuantileModel:
        return cls(doc["name"], tuple(lgb.Booster(model_str=t) for t in doc["trees"]),
                   tuple(doc["trained_on"]), tuple(doc["bounds"]))


def fit_quantiles(name: str, x: np.ndarray, y: np.ndarray, bounds: tuple[float, float],
                  trained_on: tuple[int, int], seed: int = 0, rounds: int = ROUNDS) -> QuantileModel:
    """A booster per level on the same rows (one binned Dataset for all three)."""
    if len(y) == 0:
        raise ValueError(f"{name}: no training rows with a known target")
    data = lgb.Dataset(x, y, feature_name=list(MODEL_FEATURES), free_raw_data=False,
                       params={"verbosity": -1, "num_threads": PARAMS["num_threads"]})
    boosters = tuple(lgb.train(PARAMS | {"alpha": a, "seed": seed}, data, num_boost_round=rounds)
                     for a in QUANTILES)
    return QuantileModel(name, boosters, trained_on, bounds)


def fit_soc(state: StateFeatures, sample: PluggedSample, issue_times: list[int], seed: int = 0,
            rounds: int = ROUNDS) -> QuantileModel | None:
    """SoC (%) at the target, given plugged in, on the sampled rows whose SoC is known; None when
    no session in the history tells a SoC (sessions imported without soc_start and soc_end)."""
    y = state.grid.soc[sample.vehicle, sample.target].astype(np.float64)
    known = ~np.isnan(y)
    if not known.any():
        return None
    return fit_quantiles("soc", sample.x[known], y[known], (0.0, 100.0),
                         (min(issue_times), max(issue_times)), seed, rounds)


def _lagged_nanmean(a: np.ndarray, period: int, count: int) -> np.ndarray:
    """Mean of the known (non-NaN) a[:, t - k*period], k = 1..count; NaN where none is known."""
    total = np.zeros(a.shape, dtype=np.float32)
    n = np.zeros(a.shape, dtype=np.float32)
    known = ~np.isnan(a)
    filled = np.where(known, a, 0).astype(np.float32)
    for k in range(1, count + 1):
        lag = k * period
        if lag >= a.shape[1]:
            break
        total[:, lag:] += filled[:, :-lag]
        n[:, lag:] += known[:, :-lag]
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / np.where(n > 0, n, np.nan)
