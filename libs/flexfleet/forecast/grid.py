"""Charging sessions on the MTU grid: what share of each 15-minute MTU each vehicle was plugged in,
and the flexible power that share carried.

Forecasts and backtests work on these dense (vehicles x MTUs) arrays: 2,000 vehicles over eight
weeks is 10.8 million cells, a few tens of megabytes, and every feature is then an array slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from flexfleet.domain.time import MTU_SECONDS, require_aware


@dataclass(frozen=True)
class Grid:
    """Per vehicle and MTU: plugged-in share and the up/down flexible kW it carried."""

    vehicle_ids: tuple[str, ...]
    start: datetime              # UTC start of MTU 0
    plugged: np.ndarray          # float32 (vehicles, mtus), 0..1
    up_kw: np.ndarray            # float32, plugged share x discharge kW of the pair
    down_kw: np.ndarray          # float32, plugged share x charge kW of the pair
    declared_departure: np.ndarray  # float32 MTU index (from `start`) the owner declared, NaN if none

    @property
    def n_mtus(self) -> int:
        return self.plugged.shape[1]

    def mtu_starts(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, periods=self.n_mtus, freq="15min", tz="UTC")


def session_grid(sessions: pd.DataFrame, vehicle_ids: list[str] | tuple[str, ...], start: datetime,
                 n_mtus: int) -> Grid:
    """Spread sessions over the MTU grid starting at `start`.

    `sessions` needs vehicle_id, plug_in_at, plug_out_at and the pair's up_kw and down_kw (what
    the vehicle could discharge and charge on that charger). Partial MTUs count by their share, so
    a car plugged in at 17:40 is 1/3 available in the 17:30 MTU.
    """
    require_aware(start, "start")
    index = {v: i for i, v in enumerate(vehicle_ids)}
    shape = (len(vehicle_ids), n_mtus)
    out = [np.zeros(shape, dtype=np.float64) for _ in range(3)]
    rows = sessions["vehicle_id"].map(index)
    keep = rows.notna().to_numpy()
    declared = np.full(shape, np.nan, dtype=np.float32)
    if not keep.any():
        return Grid(tuple(vehicle_ids), start, *(a.astype(np.float32) for a in out), declared)
    rows = rows.to_numpy()[keep].astype(np.int64)
    t0 = start.timestamp()
    a = (_epoch_s(sessions["plug_in_at"])[keep] - t0) / MTU_SECONDS
    b = (_epoch_s(sessions["plug_out_at"])[keep] - t0) / MTU_SECONDS
    a, b = np.clip(a, 0, n_mtus), np.clip(b, 0, n_mtus)
    weights = (np.ones(len(rows)), sessions["up_kw"].to_numpy(float)[keep], sessions["down_kw"].to_numpy(float)[keep])
    # Cumulative coverage C(x) = time plugged in [0, x); each MTU gets C(k+1) - C(k). A session
    # adds a ramp from a to b: represented by +1 slope at a and -1 at b, integrated twice.
    for grid, w in zip(out, weights):
        _add_intervals(grid, rows, a, b, w)
    if "departure_declared_at" in sessions:
        dep = (_epoch_s(sessions["departure_declared_at"])[keep] - t0) / MTU_SECONDS
        has = ~np.isnan(dep)
        _fill_spans(declared, rows[has], a[has], b[has], dep[has].astype(np.float32))
    return Grid(tuple(vehicle_ids), start, *(np.clip(g, 0, None).astype(np.float32) for g in out), declared)


def _epoch_s(column: pd.Series) -> np.ndarray:
    """Seconds since the epoch (NaN for missing), whatever the column's datetime resolution."""
    return ((pd.to_datetime(column, utc=True) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(float)


def _fill_spans(grid: np.ndarray, rows: np.ndarray, a: np.ndarray, b: np.ndarray, value: np.ndarray) -> None:
    """grid[row, cells touched by [a, b)] = value, for all spans at once."""
    lo = np.floor(a).astype(np.int64)
    hi = np.minimum(np.ceil(b).astype(np.int64), grid.shape[1])
    lengths = np.maximum(hi - lo, 0)
    total = int(lengths.sum())
    if total == 0:
        return
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    grid[np.repeat(rows, lengths), np.repeat(lo, lengths) + offsets] = np.repeat(value, lengths)


def _add_intervals(grid: np.ndarray, rows: np.ndarray, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> None:
    """Add w x (overlap of [a, b) with each cell [k, k+1)) to grid[row], for all intervals at once."""
    n = grid.shape[1]
    ia, ib = np.floor(a).astype(np.int64), np.floor(b).astype(np.int64)
    same = ia == ib
    # Interval inside one cell.
    np.add.at(grid, (rows[same], np.minimum(ia[same], n - 1)), w[same] * (b[same] - a[same]))
    r, ia, ib, a, b, w = rows[~same], ia[~same], ib[~same], a[~same], b[~same], w[~same]
    # Partial first and last cells.
    np.add.at(grid, (r, ia), w * (ia + 1 - a))
    last = ib < n
    np.add.at(grid, (r[last], ib[last]), w[last] * (b[last] - ib[last]))
    # Full cells in between, through a difference array.
    diff = np.zeros((grid.shape[0], n + 1))
    np.add.at(diff, (r, ia + 1), w)
    np.add.at(diff, (r, np.minimum(ib, n)), -w)
    grid += np.cumsum(diff, axis=1)[:, :n]
