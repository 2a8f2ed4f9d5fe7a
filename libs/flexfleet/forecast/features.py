"""Features of one vehicle at one target MTU, as known at the issue time.

Everything is computed from the grid before the issue MTU `tau` (no peeking): the vehicle's own
habits at this time of week and of day, whether it is plugged in now and for how long, the
departure its owner declared, and the calendar (local time of day, weekday, public holiday).
A weather hook is left open: `extra` columns are passed through when a caller has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import holidays
import numpy as np
import pandas as pd

from flexfleet.domain.zones import BiddingZone
from flexfleet.forecast.grid import Grid

MTUS_PER_DAY = 96
MTUS_PER_WEEK = 7 * MTUS_PER_DAY
HISTORY_WEEKS = 4
HORIZON = 2 * MTUS_PER_DAY   # 48 hours
# The history a first forecast needs: one week (the habit features average what there is, up
# to four weeks).
WARM_UP = MTUS_PER_WEEK
DIRECTIONS = ("up", "down")

FEATURES = ("horizon", "mtu_of_day", "day_of_week", "holiday", "week_mean", "day_mean",
            "daytype_mean", "mean_28d", "available_now", "plugged_for", "declared_minus_target")


@dataclass
class FeatureGrid:
    """Feature arrays over the whole grid for one direction, computed once, sliced per issue time.

    The target is the vehicle's flexible kW in that direction as a share of the most it brings
    (`capacity_kw`): for up, a commuter's car counts only while on its V2G home charger, not on
    the one-way charger at work. Vehicles that never bring any are left out (`vehicles`).
    """

    grid: Grid
    zone: BiddingZone
    direction: str = "up"

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction: must be up or down, got {self.direction!r}")
        self.kw = kw = self.grid.up_kw if self.direction == "up" else self.grid.down_kw
        share = np.divide(kw, np.maximum(self.grid.plugged, 1e-6), dtype=np.float64)
        self.capacity_kw = np.where(self.grid.plugged > 0.01, share, 0.0).max(axis=1)
        self.vehicles = np.flatnonzero(self.capacity_kw > 0)
        self.target = (kw / np.maximum(self.capacity_kw, 1e-9)[:, None]).clip(0, 1).astype(np.float32)

    @cached_property
    def calendar(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        local = self.grid.mtu_starts().tz_convert(self.zone.timezone)
        days = holidays.country_holidays(self.zone.country, years=sorted(set(local.year)))
        holiday = np.array([d in days for d in local.date], dtype=np.float32)
        return ((local.hour * 4 + local.minute // 15).to_numpy(np.float32),
                local.day_of_week.to_numpy(np.float32), holiday)

    @cached_property
    def week_mean(self) -> np.ndarray:
        """Mean target at the same MTU of the week over the previous (up to) four weeks."""
        return _lagged_mean(self.target, MTUS_PER_WEEK, 1, HISTORY_WEEKS)

    @cached_property
    def day_mean(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean plugged share at the same MTU of the day over seven days, starting one day back
        (for targets within 24 h of the issue time) or two days back (24-48 h)."""
        return tuple(_lagged_mean(self.target, MTUS_PER_DAY, first, 7) for first in (1, 2))

    @cached_property
    def daytype_mean(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean target at the same MTU of the day over the days of the same kind (working day, or
        weekend and holiday) in the previous two weeks, starting one or two days back."""
        _, dow, holiday = self.calendar
        free = (dow >= 5) | (holiday > 0)
        out = []
        for first in (1, 2):
            total = np.zeros(self.target.shape, dtype=np.float64)
            count = np.zeros(self.target.shape[1])
            for k in range(first, first + 14):
                lag = k * MTUS_PER_DAY
                same = np.zeros(self.target.shape[1], dtype=bool)
                same[lag:] = free[lag:] == free[:-lag]
                total[:, same] += self.target[:, np.flatnonzero(same) - lag]
                count[same] += 1
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append((total / np.where(count > 0, count, np.nan)).astype(np.float32))
        return out[0], out[1]

    @cached_property
    def cumulative(self) -> np.ndarray:
        return np.concatenate([np.zeros((self.target.shape[0], 1)), np.cumsum(self.target, axis=1, dtype=np.float64)], axis=1)

    @cached_property
    def plugged_run(self) -> np.ndarray:
        """MTUs the vehicle has been plugged in without a break, up to and including each MTU."""
        on = self.grid.plugged > 0.5
        run = np.zeros(on.shape, dtype=np.float32)
        for t in range(on.shape[1]):
            run[:, t] = np.where(on[:, t], (run[:, t - 1] if t else 0) + 1, 0)
        return run

    def frame(self, tau: int, vehicles: np.ndarray | None = None, horizons: np.ndarray | None = None,
              extra: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
        """One row per (vehicle, horizon) for a forecast issued at the start of MTU `tau`."""
        horizons = np.arange(HORIZON) if horizons is None else horizons
        if tau < WARM_UP:
            raise ValueError(f"tau: a forecast needs {WARM_UP} MTUs of history, got {tau}")
        if tau + horizons.max() >= self.grid.n_mtus:
            raise ValueError("tau: the grid must reach past the last target MTU (future cells empty)")
        vehicles = self.vehicles if vehicles is None else vehicles
        v = np.repeat(vehicles, len(horizons))
        h = np.tile(horizons, len(vehicles))
        t = tau + h
        mtu_of_day, dow, holiday = self.calendar
        day1, day2 = self.day_mean
        day_mean = np.where(h < MTUS_PER_DAY, day1[v, t], day2[v, t])
        type1, type2 = self.daytype_mean
        daytype_mean = np.where(h < MTUS_PER_DAY, type1[v, t], type2[v, t])
        now, since = tau - 1, max(0, tau - HISTORY_WEEKS * MTUS_PER_WEEK)
        declared = self.grid.declared_departure[v, now]
        data = {
            "horizon": h.astype(np.float32),
            "mtu_of_day": mtu_of_day[t], "day_of_week": dow[t], "holiday": holiday[t],
            "week_mean": self.week_mean[v, t],
            "day_mean": day_mean,
            "daytype_mean": daytype_mean,
            "mean_28d": ((self.cumulative[v, tau] - self.cumulative[v, since]) / (tau - since)).astype(np.float32),
            "available_now": self.target[v, now],
            "plugged_for": self.plugged_run[v, now],
            "declared_minus_target": (declared - t).astype(np.float32),
        }
        for name, values in (extra or {}).items():
            data[name] = values
        return pd.DataFrame(data)


def _lagged_mean(a: np.ndarray, period: int, first: int, count: int) -> np.ndarray:
    """Mean of a[:, t - k*period] for k in first..first+count-1; NaN where that reaches before 0."""
    out = np.zeros(a.shape, dtype=np.float64)
    n = np.zeros(a.shape[1])
    for k in range(first, first + count):
        lag = k * period
        out[:, lag:] += a[:, :-lag] if lag else a
        n[lag:] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return (out / np.where(n > 0, n, np.nan)).astype(np.float32)
