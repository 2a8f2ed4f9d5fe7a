"""From the forecast's per-vehicle quarter-hours to what each car can hold for a product MTU.

A product MTU (an hour for FCR-D) spans four forecast quarters, and the TSO counts a bundle's
sum quarter by quarter. So the arrays keep the quarters: a car that arrives at half past backs
the last two quarters, where taking each car's worst quarter would count it nowhere (on a
weekday daytime, 10-20 % of the fleet's sum). The planner checks its P90 in every quarter.

Held kW come from the forecast's per-car figures for 20, 60 and 120 minutes (in the car's median
state: the forecaster's endurance calibrations, which the P90 check uses, are fitted on them),
which encode the SoC window, the minimum SoC, the departure, the charger and the OEM cap. An
endurance E uses the figure of the shortest forecast endurance at least E (what is held for
longer is held for E), as it is: the forecaster's calibrations, which the P90 check uses, carry
the uncertainty of each car's departure, so cutting the figure again at the P10 departure would
count it twice (it left most daytime cars out of the two-hour figures). Beyond the longest
forecast endurance the planner extrapolates: that figure is scaled by its endurance / E (the
energy-limited kW), and only cars whose P10 departure is at least E minutes after every
quarter's start keep it. A forecast with only the 20-minute figures (older stored ones) scales
those.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from flexfleet.bidding.models import FORECAST_ENDURANCE_MIN, BiddingInputError, Direction

QUARTER = pd.Timedelta(minutes=15)
ROW_COLUMNS = ("vehicle_id", "target_start", "p_up", "p_down", "capacity_up_kw", "capacity_down_kw",
               "up_20_kw", "down_20_kw")
# Held kW for longer endurances: optional (None: not in the forecast).
LONGER = {60: ("up_60_kw", "down_60_kw"), 120: ("up_120_kw", "down_120_kw")}
_OPTIONAL = tuple(name for pair in LONGER.values() for name in pair)
_ARRAYS = ("p_up", "p_down", "capacity_up_kw", "capacity_down_kw", "up_20_kw", "down_20_kw", "departure_min")


def _held_kw(arrays, direction: Direction, endurance_min: float) -> tuple[np.ndarray, float]:
    """The held-kW array to use for `endurance_min`, and the factor to scale it by."""
    side = 0 if direction == "up" else 1
    have = {FORECAST_ENDURANCE_MIN: getattr(arrays, f"{direction}_20_kw")}
    have |= {float(e): getattr(arrays, names[side]) for e, names in LONGER.items()
             if getattr(arrays, names[side]) is not None}
    longer = [e for e in sorted(have) if e >= endurance_min]
    base = longer[0] if longer else max(have)
    return have[base], min(1.0, base / endurance_min)


@dataclass(frozen=True)
class Availability:
    """Per vehicle and forecast quarter, given plugged in (arrays are (vehicles, quarters)).

    departure_min: minutes from the quarter's start to the P10 departure (NaN: unknown).
    """

    vehicle_ids: tuple[str, ...]
    quarter_starts: pd.DatetimeIndex
    p_up: np.ndarray
    p_down: np.ndarray
    capacity_up_kw: np.ndarray
    capacity_down_kw: np.ndarray
    up_20_kw: np.ndarray
    down_20_kw: np.ndarray
    departure_min: np.ndarray
    up_60_kw: np.ndarray | None = None
    down_60_kw: np.ndarray | None = None
    up_120_kw: np.ndarray | None = None
    down_120_kw: np.ndarray | None = None

    def _present(self) -> tuple[str, ...]:
        return _ARRAYS + tuple(n for n in _OPTIONAL if getattr(self, n) is not None)

    def __post_init__(self) -> None:
        shape = (len(self.vehicle_ids), len(self.quarter_starts))
        for name in self._present():
            a = np.asarray(getattr(self, name))
            if a.dtype not in (np.float32, np.float64):   # float32 halves a large fleet's memory
                a = a.astype(np.float64)
            if a.shape != shape:
                raise BiddingInputError(f"vehicles.{name}: shape {a.shape}, expected {shape}")
            if name != "departure_min":
                if np.isnan(a).any():
                    a = np.nan_to_num(a, nan=0.0)
                bad = (a < 0) | ~np.isfinite(a) | ((a > 1) if name.startswith("p_") else False)
                if bad.any():
                    v, q = np.argwhere(bad)[0]
                    raise BiddingInputError(f"vehicles.{name}: {a[v, q]!r} out of range for vehicle "
                                            f"{self.vehicle_ids[v]} at {self.quarter_starts[q]}")
            object.__setattr__(self, name, a)

    @classmethod
    def from_vehicle_rows(cls, rows: pd.DataFrame, quarter_starts: pd.DatetimeIndex | None = None) -> Availability:
        """From `FleetForecast.vehicles`; only `quarter_starts` are kept when given (vehicles
        without a row for a quarter count as unplugged there)."""
        missing = [c for c in ROW_COLUMNS if c not in rows]
        if missing:
            raise BiddingInputError(f"vehicles: missing column(s) {', '.join(missing)}")
        starts = pd.DatetimeIndex(pd.to_datetime(rows["target_start"], utc=True))
        if quarter_starts is not None:
            quarter_starts = pd.DatetimeIndex(quarter_starts).tz_convert("UTC")
            keep = starts.isin(quarter_starts)
            rows, starts = rows[keep], starts[keep]
        else:
            quarter_starts = pd.DatetimeIndex(np.unique(starts)).tz_convert("UTC") if len(starts) else \
                pd.DatetimeIndex([], tz="UTC")
        v_index, ids = pd.factorize(rows["vehicle_id"].astype(str), sort=False)
        q_index = quarter_starts.get_indexer(starts)
        if (pd.Series(v_index * len(quarter_starts) + q_index).duplicated()).any():
            raise BiddingInputError("vehicles: a vehicle has two rows for the same target_start")
        shape = (len(ids), len(quarter_starts))
        arrays = {}
        for name in ROW_COLUMNS[2:] + tuple(n for n in _OPTIONAL if n in rows):
            a = np.zeros(shape)
            a[v_index, q_index] = pd.to_numeric(rows[name]).to_numpy(np.float64)
            arrays[name] = a
        departure = np.full(shape, np.nan)
        if "departure_p10_at" in rows:
            leave = pd.to_datetime(rows["departure_p10_at"], utc=True)
            departure[v_index, q_index] = ((leave - starts).dt.total_seconds() / 60).to_numpy(np.float64)
        return cls(tuple(str(i) for i in ids), quarter_starts, departure_min=departure, **arrays)

    def aligned(self, vehicle_ids: tuple[str, ...]) -> Availability:
        """The same rows in the order of `vehicle_ids`; vehicles the forecast lacks hold nothing."""
        if tuple(vehicle_ids) == self.vehicle_ids:
            return self
        where = pd.Index(self.vehicle_ids).get_indexer(pd.Index(vehicle_ids))
        found = where >= 0
        out = {}
        for name in self._present():
            src = getattr(self, name)
            a = np.full((len(vehicle_ids), src.shape[1]), np.nan if name == "departure_min" else 0.0)
            a[found] = src[where[found]]
            out[name] = a
        return replace(self, vehicle_ids=tuple(vehicle_ids), **out)

    def per_mtu(self, mtu_starts: list, mtu_minutes: int) -> MtuAvailability:
        """The quarters of each product MTU side by side: arrays (vehicles, MTUs, quarters)."""
        k = max(1, mtu_minutes // 15)
        wanted = pd.DatetimeIndex([pd.Timestamp(t) + i * QUARTER for t in mtu_starts for i in range(k)])
        idx = self.quarter_starts.get_indexer(wanted) if len(wanted) else np.zeros(0, dtype=int)
        covered = (idx >= 0).reshape(len(mtu_starts), k).all(axis=1)
        shape = (len(self.vehicle_ids), len(mtu_starts), k)
        if len(idx) == len(self.quarter_starts) and (idx == np.arange(len(idx))).all():
            return MtuAvailability(covered=covered, **{n: getattr(self, n).reshape(shape) for n in self._present()})
        take = np.where(idx >= 0, idx, 0)
        arrays = {}
        for name in self._present():
            src = getattr(self, name)
            a = src[:, take] if src.shape[1] else np.zeros((src.shape[0], len(take)))
            a = np.where(idx[None, :] >= 0, a, np.nan if name == "departure_min" else 0.0)
            arrays[name] = a.reshape(shape)
        return MtuAvailability(covered=covered, **arrays)


@dataclass(frozen=True)
class MtuAvailability:
    """Availability arrays (vehicles, MTUs, quarters of the MTU); covered[t]: the forecast has
    every quarter of MTU t."""

    covered: np.ndarray
    p_up: np.ndarray
    p_down: np.ndarray
    capacity_up_kw: np.ndarray
    capacity_down_kw: np.ndarray
    up_20_kw: np.ndarray
    down_20_kw: np.ndarray
    departure_min: np.ndarray
    up_60_kw: np.ndarray | None = None
    down_60_kw: np.ndarray | None = None
    up_120_kw: np.ndarray | None = None
    down_120_kw: np.ndarray | None = None

    def probability(self, direction: Direction) -> np.ndarray:
        """(vehicles, MTUs, quarters) probability the car is plugged in with the capability."""
        return self.p_up if direction == "up" else self.p_down

    def power_kw(self, side: Direction) -> np.ndarray:
        """(vehicles, MTUs) the pair's power on a side through the whole MTU."""
        return (self.capacity_up_kw if side == "up" else self.capacity_down_kw).min(axis=2)

    def held_kw(self, direction: Direction, endurance_min: float, oem_cap_kwh: np.ndarray | None = None) -> np.ndarray:
        """(vehicles, MTUs, quarters) kW the car holds for `endurance_min` from the quarter's
        start, given plugged in; up is also capped so one full activation fits the OEM cap left."""
        base, scale = _held_kw(self, direction, endurance_min)
        power = self.capacity_up_kw if direction == "up" else self.capacity_down_kw
        kw = np.minimum(base * scale, power)
        if scale < 1:       # extrapolated: the car must stay (an unknown departure does not)
            with np.errstate(invalid="ignore"):
                kw = np.where(np.nan_to_num(self.departure_min, nan=-1.0) >= endurance_min, kw, 0.0)
        if direction == "up" and oem_cap_kwh is not None:
            cap = np.where(np.isnan(oem_cap_kwh), np.inf, oem_cap_kwh)
            kw = np.minimum(kw, cap[:, None, None] / (endurance_min / 60))
        return kw
