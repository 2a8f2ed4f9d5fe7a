"""From charging sessions to forecasts: train the models on a history, issue a 48-hour fleet
forecast at any time, and backtest on the last days, which the models never saw.

>>> # sessions: vehicle_id, charger_id, plug_in_at, plug_out_at, up_kw, down_kw, soc_start, soc_end,
>>> #           max_power_kw, departure_declared_at, min_soc
>>> # specs (index vehicle_id): battery_kwh, usable_soc_min_pct, usable_soc_max_pct, oem_cap_remaining_kwh
>>> # forecaster = train_forecaster(sessions, specs, "SE3", start, until)
>>> # forecast = issue_forecast(forecaster, sessions, specs, issued_at)
>>> # forecast.portfolio  -> per direction, endurance and MTU: quantiles of flexible kW, P90 kW and kWh
>>> # forecast.vehicles   -> per vehicle and MTU: availability, SoC and departure forecasts, 20-min kW
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
from flexfleet.forecast import soc as soc_models
from flexfleet.forecast.availability import AvailabilityModel, fit_availability
from flexfleet.forecast.backtest import (ENDURANCE_MIN, Backtest, StateModels, backtest_rows, calibrate_endurance,
                                         calibrate_portfolio, predictions, run_backtest, seasonal_naive_series,
                                         summarise)
from flexfleet.forecast.departure import fit_departure
from flexfleet.forecast.features import (DIRECTIONS, HISTORY_WEEKS, HORIZON, MTUS_PER_DAY, WARM_UP, FeatureGrid)
from flexfleet.forecast.flexibility import (ENDURANCES_MIN, VehicleLimits, endurance_kw, endurance_quantiles,
                                            fleet_soc, forecast_state, held_key, realised_endurance_kw)
from flexfleet.forecast.grid import Grid, session_grid
from flexfleet.forecast.portfolio import LEVELS, Calibration, p90_volume
from flexfleet.forecast.soc import QuantileModel, StateFeatures, fit_soc, sample_plugged

TRAIN_EVERY = 16        # MTUs between training issue times (4 h): every time of day is seen
CALIBRATION_ORIGINS = 16
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
    soc: QuantileModel | None               # SoC given plugged in; None if the history had no SoC
    departure: QuantileModel                # MTUs until plug-out given plugged in

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
            "soc": self.soc.to_dict() if self.soc else None, "departure": self.departure.to_dict(),
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Forecaster:
        doc = json.loads(text)
        models = {d: AvailabilityModel(lgb.Booster(model_str=m["trees"]), tuple(m["trained_on"]))
                  for d, m in doc["models"].items()}
        calibrations = {d: Calibration(c["rho"], tuple(c["levels"]), tuple(c["model_levels"]))
                        for d, c in doc["calibrations"].items()}
        return cls(BiddingZone.parse(doc["zone"]), datetime.fromisoformat(doc["trained_until"]), models, calibrations,
                   QuantileModel.from_dict(doc["soc"]) if doc["soc"] else None, QuantileModel.from_dict(doc["departure"]))


@dataclass(frozen=True)
class FleetForecast:
    """One 48-hour forecast as issued: what the bidder plans on and what the store keeps.

    portfolio: direction ("up"/"down"), endurance_min (0: power while plugged in, no energy
        limit; 20, 60, 120: kW held that long), target_start (UTC), q05..q95 (kW), p90_kw (the
        10 % quantile), p90_kwh (p90_kw x endurance_min / 60).
    vehicles: vehicle_id, target_start, p_up, p_down, capacity_up_kw, capacity_down_kw, soc_p10,
        soc_p50, soc_p90 (% given plugged in, NaN where unknown), departure_p10_at (P10 plug-out
        given plugged in, NaT where unknown), up_20_kw, down_20_kw, up_60_kw, ..., down_120_kw (kW
        held that many minutes given plugged in, in the car's median state: `endurance_kw`).
    """

    issued_at: datetime       # start of the first target MTU; only data before it was used
    zone: BiddingZone
    forecaster_version: str
    portfolio: pd.DataFrame
    vehicles: pd.DataFrame


def train_forecaster(sessions: pd.DataFrame, specs: pd.DataFrame, zone: str | BiddingZone,
                     start: datetime, until: datetime, seed: int = 0,
                     progress: Callable[[str], None] = lambda step: None, **fit_options) -> Forecaster:
    """Fit one availability model per direction on [start, until) and calibrate it on origins
    spread over the same history, then the SoC and departure models on the same history.

    `specs` is indexed by vehicle_id (its order is the fleet's; see `VehicleLimits`).
    `fit_options`: rounds and rows_per_issue go to `fit_availability`; quantile_rounds and
    quantile_rows_per_issue to the SoC and departure models."""
    zone = BiddingZone.parse(zone)
    start = mtu_floor(start)
    limits = VehicleLimits.from_specs(specs)
    quantile_rounds = fit_options.pop("quantile_rounds", soc_models.ROUNDS)
    quantile_rows = fit_options.pop("quantile_rows_per_issue", soc_models.ROWS_PER_ISSUE)
    grid = session_grid(sessions, limits.vehicle_ids, start, _mtus(start, until), limits.battery_kwh)
    last = grid.n_mtus - HORIZON
    if last <= WARM_UP + MTUS_PER_DAY:
        raise ValueError(f"history: {grid.n_mtus / MTUS_PER_DAY:.1f} days is too little to train on "
                         f"(needs more than {(WARM_UP + HORIZON) / MTUS_PER_DAY + 1:.0f})")
    train = list(range(WARM_UP, last + 1, TRAIN_EVERY))
    calibration = sorted({int(x) for x in np.linspace(WARM_UP, last, CALIBRATION_ORIGINS)})
    models, calibrations, features, predicted = {}, {}, {}, {}
    for direction in DIRECTIONS:
        fg = features[direction] = FeatureGrid(grid, zone, direction)
        progress(f"training {direction}")
        models[direction] = fit_availability(fg, train, seed=seed, **fit_options)
        progress(f"calibrating {direction}")
        predicted[direction] = predictions(models[direction], fg, calibration)
        calibrations[direction] = calibrate_portfolio(predicted[direction], fg)
    progress("sampling plugged-in rows")
    state = StateFeatures(features["down"])
    state_train = list(range(WARM_UP, last + 1, soc_models.TRAIN_EVERY))
    sample = sample_plugged(state, state_train, quantile_rows, seed)
    progress("fitting soc")
    soc = fit_soc(state, sample, state_train, seed, quantile_rounds)
    progress("fitting departure")
    departure = fit_departure(state, sample, state_train, seed, quantile_rounds)
    progress("calibrating endurance")
    # Every other calibration origin: the levels need a few thousand PIT values, and each origin
    # costs a SoC and departure forecast for the whole fleet.
    calibrations |= calibrate_endurance(predicted, features, StateModels(soc, departure, limits), calibration[::2],
                                        ENDURANCES_MIN, calibrations)
    return Forecaster(zone, mtu_floor(until), models, calibrations, soc, departure)


def issue_forecast(forecaster: Forecaster, sessions: pd.DataFrame, specs: pd.DataFrame,
                   issued_at: datetime, history_start: datetime | None = None) -> FleetForecast:
    """The 48-hour forecast issued at `issued_at` from sessions known then (later ones ignored)."""
    require_aware(issued_at, "issued_at")
    limits = VehicleLimits.from_specs(specs)
    ids = np.asarray(limits.vehicle_ids, dtype=object)
    tau_time = mtu_floor(issued_at)
    start = mtu_floor(history_start or tau_time - timedelta(weeks=5))
    known = sessions[pd.to_datetime(sessions["plug_in_at"], utc=True) < tau_time].copy()
    known["plug_out_at"] = pd.to_datetime(known["plug_out_at"], utc=True).clip(upper=tau_time)
    grid = session_grid(known, limits.vehicle_ids, start, _mtus(start, tau_time) + HORIZON, limits.battery_kwh)
    tau = grid.n_mtus - HORIZON
    targets = grid.mtu_starts()[tau:]
    features = {d: FeatureGrid(grid, forecaster.zone, d) for d in DIRECTIONS}
    state = forecast_state(forecaster.soc, forecaster.departure, StateFeatures(features["down"]), limits, tau)
    capacities = (features["up"].capacity_kw, features["down"].capacity_kw)
    portfolio, per_vehicle = [], {}
    for direction in DIRECTIONS:
        fg = features[direction]
        p = forecaster.models[direction].predict(fg, tau)
        q = forecaster.calibrations[direction].quantiles(p, fg.capacity_kw[fg.vehicles][:, None])
        held = {e: endurance_kw(direction, *capacities, state, limits, e) for e in ENDURANCES_MIN}
        held_q = endurance_quantiles(forecaster.calibrations, direction, p, q,
                                     {e: kw[fg.vehicles] for e, kw in held.items()})
        for endurance, quantiles in ((0, q), *held_q.items()):
            portfolio.append(_portfolio_rows(direction, endurance, targets, quantiles))
        full = np.zeros((len(ids), HORIZON))
        full[fg.vehicles] = p
        per_vehicle[f"p_{direction}"] = full.ravel()
        per_vehicle[f"capacity_{direction}_kw"] = np.repeat(fg.capacity_kw, HORIZON)
        for endurance, kw in held.items():
            per_vehicle[f"{direction}_{endurance}_kw"] = kw.ravel()
    target_start = pd.DatetimeIndex(np.tile(targets.to_numpy("datetime64[ns]"), len(ids))).tz_localize("UTC")
    departure = target_start + pd.to_timedelta(state.departure_min[:, :, 0].ravel(), unit="min")
    vehicles = pd.DataFrame({
        "vehicle_id": np.repeat(ids, HORIZON), "target_start": target_start,
        **{k: per_vehicle[k] for k in ("p_up", "p_down", "capacity_up_kw", "capacity_down_kw")},
        **{f"soc_p{int(a * 100)}": state.soc[:, :, i].ravel() for i, a in enumerate(soc_models.QUANTILES)},
        "departure_p10_at": departure.floor("s"),
        **{f"{d}_{e}_kw": per_vehicle[f"{d}_{e}_kw"] for e in ENDURANCES_MIN for d in DIRECTIONS}})
    return FleetForecast(tau_time, forecaster.zone, forecaster.version,
                         pd.concat(portfolio, ignore_index=True), vehicles)


def _portfolio_rows(direction: str, endurance_min: int, targets: pd.DatetimeIndex, q: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(q, columns=list(QUANTILE_COLUMNS))
    frame.insert(0, "target_start", targets)
    frame.insert(0, "endurance_min", np.full(len(targets), endurance_min, dtype=np.int64))
    frame.insert(0, "direction", direction)
    frame["p90_kw"] = p90_volume(q)
    frame["p90_kwh"] = frame["p90_kw"] * endurance_min / 60
    return frame


def backtest_sessions(sessions: pd.DataFrame, specs: pd.DataFrame, zone: str | BiddingZone,
                      start: datetime, end: datetime, test_days: int = 14, seed: int = 0,
                      progress: Callable[[str], None] = lambda step: None) -> Backtest:
    """Train on [start, end - test_days), score daily 48-hour forecasts issued in the test days."""
    test_from = mtu_floor(end) - timedelta(days=test_days)
    forecaster = train_forecaster(sessions, specs, zone, start, test_from, seed, progress)
    progress("backtesting")
    return backtest_forecaster(forecaster, sessions, specs, start, end)


def backtest_forecaster(forecaster: Forecaster, sessions: pd.DataFrame, specs: pd.DataFrame,
                        start: datetime, end: datetime) -> Backtest:
    """Score the forecasts issued at ISSUE_HOUR each day after the forecaster's training history:
    availability per direction, 20-minute endurance flexibility, and the SoC and departure models."""
    start = mtu_floor(start)
    limits = VehicleLimits.from_specs(specs)
    grid = session_grid(sessions, limits.vehicle_ids, start, _mtus(start, end), limits.battery_kwh)
    origins = issue_times(grid, forecaster.zone, _mtus(start, forecaster.trained_until), grid.n_mtus - HORIZON)
    if not origins:
        raise ValueError(f"test_days: no {ISSUE_HOUR:02d}:00 issue time after {forecaster.trained_until:%Y-%m-%d %H:%M} "
                         "leaves 48 hours to score; use at least 3 test days")
    features = {d: FeatureGrid(grid, forecaster.zone, d) for d in DIRECTIONS}
    return run_backtest(forecaster.models, features, origins, forecaster.calibrations,
                        StateModels(forecaster.soc, forecaster.departure, limits))


def score_forecast(forecast: FleetForecast, sessions: pd.DataFrame, specs: pd.DataFrame, end: datetime) -> Backtest:
    """Score one forecast as issued (stored, say) against what happened between its issue time
    and `end` (at most its 48 hours), beside the seasonal-naive forecast issued at the same time:
    flexible power and power held for ENDURANCE_MIN, in `run_backtest`'s rows and summary.

    `sessions` must reach back HISTORY_WEEKS + 1 weeks before the issue time: the baseline's
    quantiles come from the errors of its rule over those weeks."""
    start = forecast.issued_at - timedelta(weeks=HISTORY_WEEKS + 1)
    limits = VehicleLimits.from_specs(specs)
    grid = session_grid(sessions, limits.vehicle_ids, start, _mtus(start, end), limits.battery_kwh)
    tau = _mtus(start, forecast.issued_at)
    n = min(HORIZON, grid.n_mtus - tau)
    if n <= 0:
        raise ValueError(f"end: {end:%Y-%m-%d %H:%M} leaves nothing of the forecast issued at "
                         f"{forecast.issued_at:%Y-%m-%d %H:%M} to score")
    fleet = fleet_soc(grid, grid.n_mtus)
    frames = []
    for direction in DIRECTIONS:
        power = (grid.up_kw if direction == "up" else grid.down_kw).sum(axis=0).astype(np.float64)
        held = realised_endurance_kw(direction, grid, limits, ENDURANCE_MIN, fleet).sum(axis=0)
        for name, series, endurance in ((direction, power, 0), (held_key(direction, ENDURANCE_MIN), held, ENDURANCE_MIN)):
            issued = forecast.portfolio[(forecast.portfolio["direction"] == direction)
                                        & (forecast.portfolio["endurance_min"] == endurance)]
            q = issued.sort_values("target_start")[list(QUANTILE_COLUMNS)].to_numpy(np.float64)
            frames.append(backtest_rows(grid.mtu_starts(), tau, name, series[tau:tau + n], q,
                                        seasonal_naive_series(series, tau)))
    rows = pd.concat(frames, ignore_index=True)
    return Backtest(rows, summarise(rows), {}, {"forecaster": forecast.forecaster_version})


def issue_times(grid: Grid, zone: BiddingZone, first: int, last: int) -> list[int]:
    """MTU indices in [first, last] that start at ISSUE_HOUR:00 local time."""
    local = grid.mtu_starts().tz_convert(zone.timezone)
    at = np.flatnonzero((local.hour == ISSUE_HOUR) & (local.minute == 0))
    return [int(i) for i in at if first <= i <= last]


def _mtus(start: datetime, end: datetime) -> int:
    return int((mtu_floor(end) - start).total_seconds() // MTU_SECONDS)
