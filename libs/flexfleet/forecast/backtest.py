"""Portfolio forecasts of flexible power, the seasonal-naive baseline, and the rolling-origin
backtest that scores both on history the model did not see.

Flexible power up is what plugged-in V2G pairs can discharge; down is what plugged-in pairs can
charge. The forecast is (probability plugged in) x (kW the vehicle brings when plugged in at
that time of week), aggregated with the correlated portfolio model.

With the SoC and departure models (`StateModels`) the backtest also scores the 20-minute
endurance-limited flexibility (directions "up_20min", "down_20min") against what the fleet could
have held for 20 minutes, and the two models on their own targets (`Backtest.models`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from flexfleet.forecast.availability import AvailabilityModel
from flexfleet.forecast.departure import MINUTES_PER_MTU
from flexfleet.forecast.features import HISTORY_WEEKS, HORIZON, MTUS_PER_WEEK, FeatureGrid
from flexfleet.forecast.flexibility import (StateForecast, VehicleLimits, endurance_kw, endurance_quantiles,
                                            fleet_soc, forecast_state, held_key, realised_endurance_kw)
from flexfleet.forecast.portfolio import LEVELS, Calibration, calibrate, pinball
from flexfleet.forecast.soc import DWELL_CAP, QUANTILES, QuantileModel, StateFeatures

ENDURANCE_MIN = 20         # the endurance scored: FCR-D's limited energy reservoir
QCOLS = [f"q{int(a * 100):02d}" for a in LEVELS]
# Quantile predictions land on the point masses of their targets (SoC stops at charge limits of
# 80, 90 or 100 %) only up to float noise: closer than this counts as a tie.
TIE = 0.05


def realised(features: FeatureGrid, tau: int) -> np.ndarray:
    """Portfolio flexible kW per MTU of the forecast window, as it turned out."""
    return features.kw[:, tau:tau + HORIZON].sum(axis=0).astype(np.float64)


def model_forecast(model: AvailabilityModel, features: FeatureGrid, tau: int,
                   calibration: Calibration) -> np.ndarray:
    """Quantiles (HORIZON, LEVELS) of portfolio flexible kW for a forecast issued at MTU `tau`."""
    return calibration.quantiles(model.predict(features, tau), _capacity(features))


def _capacity(features: FeatureGrid) -> np.ndarray:
    return features.capacity_kw[features.vehicles][:, None]


def seasonal_naive(features: FeatureGrid, tau: int) -> np.ndarray:
    """Baseline: last week's value at the same MTU of the week, with the spread of that rule's
    own errors over the previous (up to) four weeks as its quantiles."""
    return seasonal_naive_series(features.kw.sum(axis=0).astype(np.float64), tau)


def seasonal_naive_series(series: np.ndarray, tau: int) -> np.ndarray:
    """`seasonal_naive` of any per-MTU portfolio series."""
    t = tau + np.arange(HORIZON)
    point = series[t - MTUS_PER_WEEK]
    past = np.arange(max(MTUS_PER_WEEK, tau - HISTORY_WEEKS * MTUS_PER_WEEK), tau)
    errors = series[past] - series[past - MTUS_PER_WEEK]
    return np.maximum(point[:, None] + np.quantile(errors, LEVELS)[None, :], 0.0)


# Coarser than the power's grid: four origins, searched once per direction.
HELD_RHO_GRID = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


def predictions(model: AvailabilityModel, features: FeatureGrid, origins: list[int]) -> dict[int, np.ndarray]:
    """The model's plug-in probabilities issued at each origin: computed once, calibrated twice."""
    return {tau: model.predict(features, tau) for tau in origins}


def calibrate_portfolio(p: dict[int, np.ndarray], features: FeatureGrid) -> Calibration:
    """Correlation and level calibration of the portfolio model on held-out origins (the keys
    of `p`, the model's predictions there)."""
    return calibrate([(p_tau, _capacity(features), realised(features, tau)) for tau, p_tau in p.items()])


def calibrate_endurance(predicted: dict[str, dict[int, np.ndarray]], features: dict[str, FeatureGrid],
                        state_models: StateModels, origins: list[int], endurances: tuple[int, ...],
                        power: dict[str, Calibration]) -> dict[str, Calibration]:
    """Per direction and endurance (`held_key`), the portfolio calibration of the median-state kW
    each car holds against what the fleet could have held, on the given origins
    (`predicted[direction]` must hold the model's predictions there).

    The correlation is fitted again, no lower than the direction's (`power`): besides whether
    the cars are there, what each holds depends on its SoC and departure, which move together
    too (a cold day drains every battery), and the one-factor model has only rho to carry that.
    With the direction's rho alone, 2,000 cars' 20-minute P90 held only 71 % of the time. The
    shortest endurance's rho serves the longer ones: the same states, a costly search saved."""
    states = _state_forecasts(state_models, features, origins)
    out = {}
    for direction, p in predicted.items():
        fg = features[direction]
        fleet = fleet_soc(fg.grid, fg.grid.n_mtus)
        grid = tuple(r for r in HELD_RHO_GRID if r >= power[direction].rho) or (power[direction].rho,)
        rho = None
        for endurance in sorted(endurances):
            held = realised_endurance_kw(direction, fg.grid, state_models.limits, endurance, fleet).sum(axis=0)
            cal = calibrate([(p[tau], _held_kw(direction, features, states[tau], state_models.limits, endurance),
                              held[tau:tau + HORIZON]) for tau in origins], rho=rho, rho_grid=grid, rho_origins=4)
            out[held_key(direction, endurance)] = cal
            rho = cal.rho
    return out


def _held_kw(direction: str, features: dict[str, FeatureGrid], state: StateForecast, limits: VehicleLimits,
             endurance: int) -> np.ndarray:
    """Median-state kW held for `endurance` by the direction's vehicles (rows of its model)."""
    kw = endurance_kw(direction, features["up"].capacity_kw, features["down"].capacity_kw, state, limits,
                      endurance)
    return kw[features[direction].vehicles]


@dataclass(frozen=True)
class StateModels:
    """The SoC and departure models, and the vehicles' limits, for scoring endurance."""

    soc: QuantileModel | None
    departure: QuantileModel
    limits: VehicleLimits


@dataclass(frozen=True)
class Backtest:
    rows: pd.DataFrame      # one row per origin, direction, horizon: realised and both forecasts' quantiles
    summary: pd.DataFrame   # per direction and forecaster: pinball per level, coverage, P90 coverage, width
    calibrations: dict[str, Calibration]
    model_versions: dict[str, str]
    models: pd.DataFrame = field(default_factory=pd.DataFrame)  # SoC and departure models on their own targets


def run_backtest(models: dict[str, AvailabilityModel], features: dict[str, FeatureGrid], origins: list[int],
                 calibrations: dict[str, Calibration], state_models: StateModels | None = None) -> Backtest:
    """Score the models and the baseline at every origin, per direction; origins must leave 48 h
    of history after them. With `state_models` (needs both directions' features) also the
    20-minute endurance flexibility and the SoC and departure models."""
    for tau in origins:
        if tau + HORIZON > next(iter(features.values())).grid.n_mtus:
            raise ValueError(f"origins: {tau} has targets past the end of the history")
    states = _state_forecasts(state_models, features, origins) if state_models else {}
    frames = []
    for direction, model in models.items():
        fg = features[direction]
        held = _realised_endurance(direction, fg, state_models) if state_models else None
        for tau in origins:
            p = model.predict(fg, tau)
            q = calibrations[direction].quantiles(p, _capacity(fg))
            frames.append(backtest_rows(fg.grid.mtu_starts(), tau, direction, realised(fg, tau), q, seasonal_naive(fg, tau)))
            if state_models:
                kw = _held_kw(direction, features, states[tau], state_models.limits, ENDURANCE_MIN)
                q_held = endurance_quantiles(calibrations, direction, p, q, {ENDURANCE_MIN: kw})[ENDURANCE_MIN]
                frames.append(backtest_rows(fg.grid.mtu_starts(), tau, held_key(direction, ENDURANCE_MIN),
                                    held[tau:tau + HORIZON], q_held, seasonal_naive_series(held, tau)))
    rows = pd.concat(frames, ignore_index=True)
    versions = {d: m.version for d, m in models.items()}
    scores = pd.DataFrame()
    if state_models:
        versions["departure"] = state_models.departure.version
        if state_models.soc is not None:
            versions["soc"] = state_models.soc.version
        scores = score_state_models(features["down"], states)
    return Backtest(rows, summarise(rows), dict(calibrations), versions, scores)


def backtest_rows(starts: pd.DatetimeIndex, tau: int, direction: str, y: np.ndarray, model_q: np.ndarray,
          naive_q: np.ndarray) -> pd.DataFrame:
    """Backtest rows of one origin for the first len(y) MTUs of its window (all 48 h in a backtest)."""
    n = len(y)
    frames = []
    for name, q in (("model", model_q), ("seasonal_naive", naive_q)):
        frame = pd.DataFrame(q[:n], columns=QCOLS)
        frame.insert(0, "realised_kw", y)
        frame.insert(0, "target", starts[tau:tau + n])
        frame.insert(0, "horizon", np.arange(n))
        frame.insert(0, "issued", starts[tau])
        frame.insert(0, "direction", direction)
        frame.insert(0, "forecaster", name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _state_forecasts(sm: StateModels, features: dict[str, FeatureGrid], origins: list[int]) -> dict[int, StateForecast]:
    if set(features) != {"up", "down"}:
        raise ValueError("features: scoring endurance needs both directions")
    state = StateFeatures(features["down"])
    return {tau: forecast_state(sm.soc, sm.departure, state, sm.limits, tau) for tau in origins}


def _realised_endurance(direction: str, fg: FeatureGrid, sm: StateModels) -> np.ndarray:
    """Portfolio kW held for ENDURANCE_MIN per MTU of the whole grid, as it turned out."""
    fleet = fleet_soc(fg.grid, fg.grid.n_mtus)
    return realised_endurance_kw(direction, fg.grid, sm.limits, ENDURANCE_MIN, fleet).sum(axis=0)


def score_state_models(plugged: FeatureGrid, states: dict[int, StateForecast]) -> pd.DataFrame:
    """Pinball loss and coverage of the SoC (%) and departure (hours until plug-out, capped at
    48) quantiles, over the (vehicle, target) pairs plugged in at the target. With point masses
    in the targets, coverage is given as the share strictly below (`below_qXX`) and at or below
    (`coverage_qXX`) each quantile; a calibrated quantile at level a has below <= a <= coverage."""
    grid = plugged.grid
    ys = {"soc": [], "departure": []}
    qs = {"soc": [], "departure": []}
    for tau, fc in states.items():
        on = grid.plugged[:, tau:tau + HORIZON] >= 0.5
        truth = {"soc": grid.soc[:, tau:tau + HORIZON],
                 "departure": np.minimum(grid.remaining[:, tau:tau + HORIZON], DWELL_CAP) * MINUTES_PER_MTU / 60}
        forecast = {"soc": fc.soc, "departure": fc.departure_min / 60}
        for name in ys:
            ok = on & ~np.isnan(truth[name]) & ~np.isnan(forecast[name][:, :, 0])
            ys[name].append(truth[name][ok])
            qs[name].append(forecast[name][ok])
    records = []
    for name, unit in (("soc", "%"), ("departure", "h")):
        y, q = np.concatenate(ys[name]), np.concatenate(qs[name])
        if len(y) == 0:
            continue
        loss = pinball(y, q, QUANTILES)
        cols = [f"q{int(a * 100):02d}" for a in QUANTILES]
        record = {"model": name, "unit": unit, "rows": len(y), "realised_mean": float(y.mean()),
                  "pinball_mean": float(loss.mean())}
        record |= {f"pinball_{c}": float(v) for c, v in zip(cols, loss)}
        record |= {f"below_{c}": float((y < q[:, i] - TIE).mean()) for i, c in enumerate(cols)}
        record |= {f"coverage_{c}": float((y <= q[:, i] + TIE).mean()) for i, c in enumerate(cols)}
        records.append(record)
    return pd.DataFrame(records)


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Pinball loss per level and on average, coverage of each quantile, P90 coverage (share of
    MTUs where the realised volume reached the P90 volume, i.e. the 10 % quantile) and the width
    of the 10-90 % interval."""
    qcols = QCOLS
    out = []
    for (name, direction), g in rows.groupby(["forecaster", "direction"], sort=True):
        y, q = g["realised_kw"].to_numpy(), g[qcols].to_numpy()
        loss = pinball(y, q)
        record = {"forecaster": name, "direction": direction, "pinball_mean": loss.mean(),
                  "p90_coverage": float((y >= g["q10"].to_numpy()).mean()),
                  "width_10_90": float((g["q90"] - g["q10"]).mean()), "realised_mean": float(y.mean())}
        record |= {f"pinball_{c}": v for c, v in zip(qcols, loss)}
        record |= {f"coverage_{c}": float((y <= q[:, i]).mean()) for i, c in enumerate(qcols)}
        out.append(record)
    return pd.DataFrame(out)
