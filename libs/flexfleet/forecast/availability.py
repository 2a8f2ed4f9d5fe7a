"""Per-vehicle availability: the probability that a vehicle brings its flexibility (plugged in at
a pair that can deliver it) in each MTU of the next 48 hours, from a gradient-boosted model
(LightGBM, cross-entropy on the available share; one model per direction).

One model for the whole fleet, not one per car: a car's own habits enter through its history
features, so a new car borrows from the fleet until its own history speaks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np

from flexfleet.forecast.features import FEATURES, HORIZON, FeatureGrid

PARAMS = {"objective": "cross_entropy", "learning_rate": 0.08, "num_leaves": 63, "min_data_in_leaf": 200,
          "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
          "num_threads": 2, "deterministic": True, "force_row_wise": True, "verbosity": -1}
ROUNDS = 250
ROWS_PER_ISSUE = 10_000


@dataclass
class AvailabilityModel:
    booster: lgb.Booster
    trained_on: tuple[int, int]          # first and last issue MTU index used for training
    params: dict = field(default_factory=lambda: dict(PARAMS))

    @property
    def version(self) -> str:
        """Changes whenever the trees change: stored next to every forecast for replay."""
        return "avail-" + hashlib.sha256(self.booster.model_to_string().encode()).hexdigest()[:12]

    def predict(self, features: FeatureGrid, tau: int) -> np.ndarray:
        """(features.vehicles, HORIZON) probabilities for a forecast issued at the start of MTU `tau`."""
        frame = features.frame(tau)
        n = len(frame) // HORIZON
        p = self.booster.predict(frame[list(FEATURES)].to_numpy(np.float32), num_threads=PARAMS["num_threads"])
        return np.clip(p, 0.0, 1.0).reshape(n, HORIZON)


def fit_availability(features: FeatureGrid, issue_times: list[int], seed: int = 0,
                     rows_per_issue: int = ROWS_PER_ISSUE, rounds: int = ROUNDS) -> AvailabilityModel:
    """Train on forecasts that could have been issued at `issue_times` (their 48-h targets must
    lie inside the known history). Each issue time contributes a random sample of (vehicle,
    horizon) rows, which keeps training time flat in fleet size."""
    rng = np.random.default_rng(seed)
    vehicles = features.vehicles
    xs, ys = [], []
    for tau in issue_times:
        if tau + HORIZON > features.grid.n_mtus:
            raise ValueError(f"issue_times: {tau} has targets past the end of the history")
        frame = features.frame(tau)
        pick = rng.choice(len(frame), size=min(rows_per_issue, len(frame)), replace=False)
        v = np.repeat(vehicles, HORIZON)[pick]
        h = np.tile(np.arange(HORIZON), len(vehicles))[pick]
        xs.append(frame[list(FEATURES)].to_numpy(np.float32)[pick])
        ys.append(features.target[v, tau + h])
    data = lgb.Dataset(np.concatenate(xs), np.concatenate(ys), feature_name=list(FEATURES), free_raw_data=True)
    params = PARAMS | {"seed": seed}
    booster = lgb.train(params, data, num_boost_round=rounds)
    return AvailabilityModel(booster, (min(issue_times), max(issue_times)), params)
