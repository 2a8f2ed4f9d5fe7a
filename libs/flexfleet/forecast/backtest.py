"""Portfolio forecasts of flexible power, the seasonal-naive baseline, and the rolling-origin
backtest that scores both on history the model did not see.

Flexible power up is what plugged-in V2G pairs can discharge; down is what plugged-in pairs can
charge. The forecast is (probability plugged in) x (kW the vehicle brings when plugged in at
that time of week), aggregated with the correlated portfolio model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from flexfleet.forecast.availability import AvailabilityModel
from flexfleet.forecast.features import HISTORY_WEEKS, HORIZON, MTUS_PER_WEEK, FeatureGrid
from flexfleet.forecast.portfolio import LEVELS, Calibration, calibrate, pinball

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
    series = features.kw.sum(axis=0).astype(np.float64)
    t = tau + np.arange(HORIZON)
    point = series[t - MTUS_PER_WEEK]
    past = np.arange(max(MTUS_PER_WEEK, tau - HISTORY_WEEKS * MTUS_PER_WEEK), tau)
    errors = series[past] - series[past - MTUS_PER_WEEK]
    return np.maximum(point[:, None] + np.quantile(errors, LEVELS)[None, :], 0.0)


def calibrate_portfolio(model: AvailabilityModel, features: FeatureGrid, origins: list[int]) -> Calibration:
    """Correlation and level calibration of the portfolio model on held-out origins."""
    return calibrate([(model.predict(features, tau), _capacity(features), realised(features, tau)) for tau in origins])


@dataclass(frozen=True)
class Backtest:
    rows: pd.DataFrame      # one row per origin, direction, horizon: realised and both forecasts' quantiles
    summary: pd.DataFrame   # per direction and forecaster: pinball per level, coverage, P90 coverage, width
    calibrations: dict[str, Calibration]
    model_versions: dict[str, str]


def run_backtest(models: dict[str, AvailabilityModel], features: dict[str, FeatureGrid], origins: list[int],
                 calibrations: dict[str, Calibration]) -> Backtest:
    """Score the models and the baseline at every origin, per direction; origins must leave 48 h
    of history after them."""
    frames = []
    for direction, model in models.items():
        fg = features[direction]
        starts = fg.grid.mtu_starts()
        for tau in origins:
            if tau + HORIZON > fg.grid.n_mtus:
                raise ValueError(f"origins: {tau} has targets past the end of the history")
            y = realised(fg, tau)
            for name, q in (("model", model_forecast(model, fg, tau, calibrations[direction])),
                            ("seasonal_naive", seasonal_naive(fg, tau))):
                frame = pd.DataFrame(q, columns=[f"q{int(a * 100):02d}" for a in LEVELS])
                frame.insert(0, "realised_kw", y)
                frame.insert(0, "target", starts[tau:tau + HORIZON])
                frame.insert(0, "horizon", np.arange(HORIZON))
                frame.insert(0, "issued", starts[tau])
                frame.insert(0, "direction", direction)
                frame.insert(0, "forecaster", name)
                frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    return Backtest(rows, summarise(rows), dict(calibrations), {d: m.version for d, m in models.items()})


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Pinball loss per level and on average, coverage of each quantile, P90 coverage (share of
    MTUs where the realised volume reached the P90 volume, i.e. the 10 % quantile) and the width
    of the 10-90 % interval."""
    qcols = [f"q{int(a * 100):02d}" for a in LEVELS]
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
