"""When each vehicle leaves, given it is plugged in at a target MTU of the next 48 hours: LightGBM
quantile models (10, 50 and 90 %) of the time it stays plugged in after that MTU's start, capped
at 48 hours.

The 10 % quantile is what flexibility uses: an activation has to end, and what it discharged be
charged back, before the car may leave, and with the P10 departure that holds in nine cases out
of ten for each car. The rows and features are the SoC model's (soc.py): the owner's declared
departure, how long the car has been plugged in, time of day and week, and how long the car
usually stays from this MTU of the week.
"""

from __future__ import annotations

import numpy as np

from flexfleet.domain.time import MTU_SECONDS
from flexfleet.forecast.soc import DWELL_CAP, ROUNDS, PluggedSample, QuantileModel, StateFeatures, fit_quantiles

MINUTES_PER_MTU = MTU_SECONDS // 60


def fit_departure(state: StateFeatures, sample: PluggedSample, issue_times: list[int], seed: int = 0,
                  rounds: int = ROUNDS) -> QuantileModel:
    """MTUs from the target MTU's start until plug-out (at most DWELL_CAP), given plugged in."""
    y = np.minimum(state.grid.remaining[sample.vehicle, sample.target], DWELL_CAP).astype(np.float64)
    known = ~np.isnan(y)
    return fit_quantiles("departure", sample.x[known], y[known], (0.0, float(DWELL_CAP)),
                         (min(issue_times), max(issue_times)), seed + 1, rounds)
