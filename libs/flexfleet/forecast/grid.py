"""Charging sessions on the MTU grid: what share of each 15-minute MTU each vehicle was plugged in,
the flexible power that share carried, and the state of the plugged-in car (state of charge,
time left until it leaves, the minimum SoC its owner declared).

Forecasts and backtests work on these dense (vehicles x MTUs) arrays: 2,000 vehicles over eight
weeks is 10.8 million cells, a few tens of megabytes, and every feature is then an array slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from flexfleet.domain.time import MTU_SECONDS, require_aware

# Grid to battery. The reference SoC trajectory charges at the session's power times this.
CHARGE_EFFICIENCY = 0.92


@dataclass(frozen=True)
class Grid:
    """Per vehicle and MTU: plugged-in share, the up/down flexible kW it carried, and the state of
    the plugged-in car (NaN in the cells where it is not plugged in)."""

    vehicle_ids: tuple[str, ...]
    start: datetime              # UTC start of MTU 0
    plugged: np.ndarray          # float32 (vehicles, mtus), 0..1
    up_kw: np.ndarray            # float32, plugged share x discharge kW of the pair
    down_kw: np.ndarray          # float32, plugged share x charge kW of the pair
    declared_departure: np.ndarray  # float32 MTU index (from `start`) the owner declared, NaN if none
    soc: np.ndarray              # float32 SoC (%) at the cell's start (or plug-in), NaN when not plugged or unknown
    remaining: np.ndarray        # float32 MTUs from the cell's start (or plug-in) to plug-out, NaN when not plugged
    min_soc: np.ndarray          # float32 minimum SoC (%) the owner declared for that stay, NaN if none
    battery_kwh: np.ndarray      # float64 per vehicle, NaN when not given
    arrivals: pd.DataFrame       # one row per session starting inside the grid with a known SoC: row, mtu, soc

    @property
    def n_mtus(self) -> int:
        return self.plugged.shape[1]

    def mtu_starts(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, periods=self.n_mtus, freq="15min", tz="UTC")


def session_grid(sessions: pd.DataFrame, vehicle_ids: list[str] | tuple[str, ...], start: datetime,
                 n_mtus: int, battery_kwh: np.ndarray | None = None) -> Grid:
    """Spread sessions over the MTU grid starting at `start`.

    `sessions` needs vehicle_id, plug_in_at, plug_out_at and the pair's up_kw and down_kw (what
    the vehicle could discharge and charge on that charger). Partial MTUs count by their share, so
    a car plugged in at 17:40 is 1/3 available in the 17:30 MTU.

    With `battery_kwh` (per vehicle, aligned with `vehicle_ids`) and the sessions' soc_start and
    soc_end, each plugged-in cell also gets the SoC of the reference trajectory (`soc_trajectory`).
    The state cells (soc, remaining, min_soc, declared departure) of an MTU two stays share
    belong to the later stay: it is the car's state when the MTU ends.
    """
    require_aware(start, "start")
    index = {v: i for i, v in enumerate(vehicle_ids)}
    shape = (len(vehicle_ids), n_mtus)
    battery = np.full(len(vehicle_ids), np.nan) if battery_kwh is None else np.asarray(battery_kwh, dtype=np.float64)
    if battery.shape != (len(vehicle_ids),):
        raise ValueError(f"battery_kwh: needs one value per vehicle ({len(vehicle_ids)}), got shape {battery.shape}")
    out = [np.zeros(shape, dtype=np.float64) for _ in range(3)]
    state = [np.full(shape, np.nan, dtype=np.float32) for _ in range(4)]   # declared, soc, remaining, min_soc
    rows = sessions["vehicle_id"].map(index)
    keep = rows.notna().to_numpy()
    if not keep.any():
        return Grid(tuple(vehicle_ids), start, *(a.astype(np.float32) for a in out), *state, battery, _arrivals())
    rows = rows.to_numpy()[keep].astype(np.int64)
    t0 = start.timestamp()
    a_raw = (_epoch_s(sessions["plug_in_at"])[keep] - t0) / MTU_SECONDS
    b_raw = (_epoch_s(sessions["plug_out_at"])[keep] - t0) / MTU_SECONDS
    a, b = np.clip(a_raw, 0, n_mtus), np.clip(b_raw, 0, n_mtus)
    weights = (np.ones(len(rows)), sessions["up_kw"].to_numpy(float)[keep], sessions["down_kw"].to_numpy(float)[keep])
    # Cumulative coverage C(x) = time plugged in [0, x); each MTU gets C(k+1) - C(k). A session
    # adds a ramp from a to b: represented by +1 slope at a and -1 at b, integrated twice.
    for grid, w in zip(out, weights):
        _add_intervals(grid, rows, a, b, w)
    _fill_state(state, sessions, keep, rows, a_raw, b_raw, a, b, battery, t0)
    soc_start = _optional(sessions, "soc_start", keep)
    inside = (a_raw >= 0) & (a_raw < n_mtus) & ~np.isnan(soc_start)
    arrivals = _arrivals(rows[inside], a_raw[inside], soc_start[inside])
    plugged, up, down = (np.clip(g, 0, None).astype(np.float32) for g in out)
    return Grid(tuple(vehicle_ids), start, plugged, up, down, *state, battery, arrivals)


def soc_trajectory(soc_start: np.ndarray, soc_end: np.ndarray, power_kw: np.ndarray, battery_kwh: np.ndarray,
                   duration_mtus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per session, the reference trajectory's rate (SoC points per MTU, signed) and the SoC change
    it stops at: from soc_start towards soc_end at the session's power x CHARGE_EFFICIENCY, flat
    once there. Sessions tell only their ends, and a car that is not on a schedule charges at
    once; where the power is unknown (or 0) the SoC moves linearly over the whole stay instead.
    SoC after x MTUs plugged in: soc_start + sign(gap) x min(|gap|, |rate| x x)."""
    step = power_kw * (MTU_SECONDS / 3600) * CHARGE_EFFICIENCY / battery_kwh * 100
    gap = soc_end - soc_start
    linear = np.abs(gap) / np.maximum(duration_mtus, 1e-6)
    return np.where(np.isfinite(step) & (step > 0), step, linear) * np.sign(gap), gap


def _fill_state(state: list[np.ndarray], sessions: pd.DataFrame, keep: np.ndarray, rows: np.ndarray,
                a_raw: np.ndarray, b_raw: np.ndarray, a: np.ndarray, b: np.ndarray, battery: np.ndarray,
                t0: float) -> None:
    """Per-cell state of each stay: declared departure, SoC, MTUs left, declared minimum SoC.
    Per-session values are computed first and only gathered per cell (millions of cells)."""
    declared, soc, remaining, min_soc = state
    n = declared.shape[1]
    order = np.argsort(a_raw, kind="stable")      # later stays overwrite shared cells
    span, cell = _span_cells(a[order], b[order], n)
    if len(cell) == 0:
        return
    s = order[span]
    flat = rows[s] * n + cell
    # MTUs since plug-in at the cell's start (0 in the plug-in cell).
    elapsed = np.maximum(cell - a_raw[s], 0).astype(np.float32)
    remaining.reshape(-1)[flat] = (b_raw - a_raw)[s].astype(np.float32) - elapsed
    if "departure_declared_at" in sessions:
        dep = (_epoch_s(sessions["departure_declared_at"])[keep] - t0) / MTU_SECONDS
        declared.reshape(-1)[flat] = dep.astype(np.float32)[s]
    min_soc.reshape(-1)[flat] = _optional(sessions, "min_soc", keep).astype(np.float32)[s]
    soc_start, soc_end = _optional(sessions, "soc_start", keep), _optional(sessions, "soc_end", keep)
    rate, gap = soc_trajectory(soc_start, soc_end, _optional(sessions, "max_power_kw", keep), battery[rows],
                               b_raw - a_raw)
    rate, gap = np.abs(rate).astype(np.float32), gap.astype(np.float32)
    change = np.minimum(np.abs(gap)[s], rate[s] * elapsed)
    soc.reshape(-1)[flat] = soc_start.astype(np.float32)[s] + np.copysign(change, gap[s])


def _optional(sessions: pd.DataFrame, name: str, keep: np.ndarray) -> np.ndarray:
    """A float column of the kept sessions, all NaN when the sessions do not have it."""
    if name not in sessions:
        return np.full(int(keep.sum()), np.nan)
    return pd.to_numeric(sessions[name]).to_numpy(np.float64, na_value=np.nan)[keep]


def _arrivals(rows: np.ndarray | None = None, mtu: np.ndarray | None = None, soc: np.ndarray | None = None) -> pd.DataFrame:
    empty = np.zeros(0)
    return pd.DataFrame({"row": (empty if rows is None else rows).astype(np.int64),
                         "mtu": empty if mtu is None else mtu, "soc": empty if soc is None else soc})


def _epoch_s(column: pd.Series) -> np.ndarray:
    """Seconds since the epoch (NaN for missing), whatever the column's datetime resolution."""
    return ((pd.to_datetime(column, utc=True) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(float)


def _span_cells(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(span index, cell) for every cell [k, k+1) that each span [a, b) touches, all spans at once."""
    lo = np.floor(a).astype(np.int64)
    hi = np.minimum(np.ceil(b).astype(np.int64), n)
    lengths = np.maximum(hi - lo, 0)
    total = int(lengths.sum())
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(np.arange(len(a)), lengths), np.repeat(lo, lengths) + offsets


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
