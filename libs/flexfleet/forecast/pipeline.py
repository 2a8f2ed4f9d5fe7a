"""From charging sessions to forecasts: train the models on a history, issue a 48-hour fleet
forecast at any time, and backtest on the last days, which the models never saw.

>>> # sessions: vehicle_id, charger_id, plug_in_at, plug_out_at, up_kw, down_kw, ...
>>> # forecaster = train_forecaster(sessions, vehicle_ids, "SE3", start, until)
>>> # forecast = issue_forecast(forecaster, sessions, vehicle_ids, issued_at)
>>> # forecast.portfolio  -> per direction and MTU: quantiles of flexible kW and the P90 volume
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import lightgbm as lgb
import numpy as np
import pandas as pd

from flexfleet.domain.time import MTU_SECONDS, mtu_floor, require_aware
from flexfleet.domain.zones import BiddingZone
from flexfleet.forecast.availability import AvailabilityModel, fit_availability
from flexfleet.forecast.backtest import Backtest, calibrate_portfolio, run_backtest
from flexfleet.forecast.features import DIRECTIONS, HORIZON, MTUS_PER_DAY, WARM_UP, FeatureGrid
from flexfleet.forecast.grid import Grid, session_grid
from flexfleet.forecast.portfolio import LEVELS, Calibration, p90_volume

TRAIN_EVERY = 16        # MTUs between training issue times (4 h): every time of day is seen
CALIBRATION_ORIGINS = 32
# Forecasts are issued each morning at 08:00 local, before the D-1 capacity auctions close.
ISSUE_HOUR = 8
QUANTILE_COLUMNS = tuple(f"q{int(a * 100):02d}" for a in LEVELS)


@dataclass(frozen=True)
class Forecaster:
    """Trained models and their calibration: everything needed to issue a forecast, and to issue
    the same one again later (`to_json` / `from_json` round-trip the trees exactly)."""

    zone: BiddingZone
    trained_until: datetime                 # no session after this was seen
    models: dict[str, AvailabilityModel]
    calibrations: dict[str, Calibration]

    @property
    def version(self) -> str:
        return "ff-" + hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def to_json(self) -> str:
        return json.dumps({
            "zone": self.zone.value, "trained_until": self.trained_until.isoformat(),
            "models": {d: {"trees": m.booster.model_to_string(), "trained_on": list(m.trained_on)}
                       for d, m in self.models.items()},
            "calibrations": {d: {"rho": c.rho, "levels": c.levels, "model_levels": c.model_levels}
                             for d, c in self.calibrations.items()},
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Forecaster:
        doc = json.loads(text)
        models = {d: AvailabilityModel(lgb.Booster(model_str=m["trees"]), tuple(m["trained_on"]))
                  for d, m in doc["models"].items()}
        calibrations = {d: Calibration(c["rho"], tuple(c["levels"]), tuple(c["model_levels"]))
                        for d, c in doc["calibrations"].items()}
        return cls(BiddingZone.parse(doc["zone"]), datetime.fromisoformat(doc["trained_until"]), models, calibrations)


@dataclass(frozen=True)
class FleetForecast:
    """One 48-hour forecast as issued: what the bidder plans on and what the store keeps."""

    issued_at: datetime       # start of the first target MTU; only data before it was used
    zone: BiddingZone
    forecaster_version: str
    portfolio: pd.DataFrame   # direction, target_start, q05..q95 (kW), p90_kw
    vehicles: pd.DataFrame    # vehicle_id, target_start, p_up, p_down, capacity_up_kw, capacity_down_kw


def train_forecaster(sessions: pd.DataFrame, vehicle_ids: list[str], zone: str | BiddingZone,
                     start: datetime, until: datetime, seed: int = 0,
                     progress: Callable[[str], None] = lambda step: None, **fit_options) -> Forecaster:
    """Fit one availability model per direction on [start, until) and calibrate it on origins
    spread over the same history. `fit_options` go to `fit_availability` (rounds, rows_per_issue)."""
    zone = BiddingZone.parse(zone)
    start = mtu_floor(start)
    grid = session_grid(sessions, vehicle_ids, start, _mtus(start, until))
    last = grid.n_mtus - HORIZON
    if last <= WARM_UP + MTUS_PER_DAY:
        raise ValueError(f"history: {grid.n_mtus / MTUS_PER_DAY:.1f} days is too little to train on "
                         f"(needs more than {(WARM_UP + HORIZON) / MTUS_PER_DAY + 1:.0f})")
    train = list(range(WARM_UP, last + 1, TRAIN_EVERY))
    calibration = sorted({int(x) for x in np.linspace(WARM_UP, last, CALIBRATION_ORIGINS)})
    models, calibrations = {}, {}
    for direction in DIRECTIONS:
        fg = FeatureGrid(grid, zone, direction)
        progress(f"training {direction}")
        models[direction] = fit_availability(fg, train, seed=seed, **fit_options)
        progress(f"calibrating {direction}")
        calibrations[direction] = calibrate_portfolio(models[direction], fg, calibration)
    return Forecaster(zone, mtu_floor(until), models, calibrations)


def issue_forecast(forecaster: Forecaster, sessions: pd.DataFrame, vehicle_ids: list[str],
                   issued_at: datetime, history_start: datetime | None = None) -> FleetForecast:
    """The 48-hour forecast issued at `issued_at` from sessions known then (later ones ignored)."""
    require_aware(issued_at, "issued_at")
    tau_time = mtu_floor(issued_at)
    start = mtu_floor(history_start or tau_time - timedelta(weeks=5))
    known = sessions[pd.to_datetime(sessions["plug_in_at"], utc=True) < tau_time].copy()
    known["plug_out_at"] = pd.to_datetime(known["plug_out_at"], utc=True).clip(upper=tau_time)
    grid = session_grid(known, vehicle_ids, start, _mtus(start, tau_time) + HORIZON)
    tau = grid.n_mtus - HORIZON
    targets = grid.mtu_starts()[tau:]
    portfolio, per_vehicle = [], {}
    for direction in DIRECTIONS:
        fg = FeatureGrid(grid, forecaster.zone, direction)
        p = forecaster.models[direction].predict(fg, tau)
        capacity = fg.capacity_kw[fg.vehicles]
        q = forecaster.calibrations[direction].quantiles(p, capacity[:, None])
        frame = pd.DataFrame(q, columns=list(QUANTILE_COLUMNS))
        frame.insert(0, "target_start", targets)
        frame.insert(0, "direction", direction)
        frame["p90_kw"] = p90_volume(q)
        portfolio.append(frame)
        full = np.zeros((len(vehicle_ids), HORIZON))
        full[fg.vehicles] = p
        per_vehicle[f"p_{direction}"] = full.ravel()
        per_vehicle[f"capacity_{direction}_kw"] = np.repeat(fg.capacity_kw, HORIZON)
    vehicles = pd.DataFrame({"vehicle_id": np.repeat(np.asarray(vehicle_ids, dtype=object), HORIZON),
                             "target_start": np.tile(targets, len(vehicle_ids)), **per_vehicle})
    return FleetForecast(tau_time, forecaster.zone, forecaster.version,
                         pd.concat(portfolio, ignore_index=True), vehicles)


def backtest_sessions(sessions: pd.DataFrame, vehicle_ids: list[str], zone: str | BiddingZone,
                      start: datetime, end: datetime, test_days: int = 14, seed: int = 0,
                      progress: Callable[[str], None] = lambda step: None) -> Backtest:
    """Train on [start, end - test_days), score daily 48-hour forecasts issued in the test days."""
    test_from = mtu_floor(end) - timedelta(days=test_days)
    forecaster = train_forecaster(sessions, vehicle_ids, zone, start, test_from, seed, progress)
    progress("backtesting")
    return backtest_forecaster(forecaster, sessions, vehicle_ids, start, end)


def backtest_forecaster(forecaster: Forecaster, sessions: pd.DataFrame, vehicle_ids: list[str],
                        start: datetime, end: datetime) -> Backtest:
    """Score the forecasts issued at ISSUE_HOUR each day after the forecaster's training history."""
    start = mtu_floor(start)
    grid = session_grid(sessions, vehicle_ids, start, _mtus(start, end))
    origins = issue_times(grid, forecaster.zone, _mtus(start, forecaster.trained_until), grid.n_mtus - HORIZON)
    if not origins:
        raise ValueError(f"test_days: no {ISSUE_HOUR:02d}:00 issue time after {forecaster.trained_until:%Y-%m-%d %H:%M} "
                         "leaves 48 hours to score; use at least 3 test days")
    features = {d: FeatureGrid(grid, forecaster.zone, d) for d in DIRECTIONS}
    return run_backtest(forecaster.models, features, origins, forecaster.calibrations)


def issue_times(grid: Grid, zone: BiddingZone, first: int, last: int) -> list[int]:
    """MTU indices in [first, last] that start at ISSUE_HOUR:00 local time."""
    local = grid.mtu_starts().tz_convert(zone.timezone)
    at = np.flatnonzero((local.hour == ISSUE_HOUR) & (local.minute == 0))
    return [int(i) for i in at if first <= i <= last]


def _mtus(start: datetime, end: datetime) -> int:
    return int((mtu_floor(end) - start).total_seconds() // MTU_SECONDS)
