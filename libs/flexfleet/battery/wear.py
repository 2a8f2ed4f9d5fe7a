"""Battery wear from BLAST-Lite, split into calendar and cycling ageing, priced for optimisers.

Why the split: the owner's car ages on the driveway whatever we do (calendar), and only the
extra ageing our cycling causes is ours to pay. We measure it as BLAST-Lite run with the trace
minus BLAST-Lite run over the same time and temperatures at the trace's mean SoC.

Why a convex curve: optimisers need a per-kWh discharge cost that grows with depth so that
shallow cycles are used first (Xu et al. 2018, IEEE Trans. Power Syst. 33(2)). We fit
Phi(d), the cycling loss of one cycle of depth d, from BLAST-Lite runs at a fixed daily energy
throughput, with non-negative coefficients on d, d^2, d^3 so the fit is convex and increasing
by construction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import rainflow
from blast.utils.rainflow import extract_cycles
from scipy.optimize import nnls

from flexfleet.battery.models import Chemistry, new_model

DAY_S = 86400.0
_RATE_Q = Decimal("0.000001")  # per-kWh rates: not money yet, keep precision
_CENT = Decimal("0.01")


class Cycle(NamedTuple):
    depth: float
    mean_soc: float
    count: float  # 1.0 full cycle, 0.5 half cycle (rainflow convention)


class WearResult(NamedTuple):
    """Capacity lost over a trace, as fractions of the nominal capacity."""

    total_loss: float
    calendar_loss: float
    cycling_loss: float
    efc: float  # equivalent full cycles (half the summed |dSoC|)
    days: float
    mean_soc: float
    cycles: tuple[Cycle, ...]
    chemistry: Chemistry


def _as_array(x: float | Sequence[float] | np.ndarray, n: int, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have the trace's length {n}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinity")
    return a


def rainflow_cycles(soc_trace: Sequence[float] | np.ndarray) -> tuple[Cycle, ...]:
    """Rainflow-counted cycles of a SoC trace (depth and mean as SoC fractions)."""
    return tuple(
        Cycle(float(r), float(m), float(c))
        for r, m, c, _, _ in rainflow.extract_cycles(soc_trace)
        if r > 0
    )


def _blast_breakpoints(model: object, t: np.ndarray, soc: np.ndarray) -> list[int]:
    """The windows BLAST-Lite steps a trace in (its own rule: a day, or one EFC if sooner).

    Its state updates are explicit steps of a power law, so the result depends on the step
    size; the calendar reference must take the same steps as the full run, or their
    difference is partly discretisation rather than cycling.
    """
    turning = np.unique([int(c[-1]) for c in extract_cycles(soc)]).astype(int)
    efcs = np.cumsum(np.abs(np.ediff1d(soc, to_begin=0))) / 2
    bps: list[int] = list(model._find_breakpoints(t, efcs, turning))  # type: ignore[attr-defined]
    if not bps or bps[-1] != len(t) - 1:
        bps.append(len(t) - 1)
    return bps


def _run_windows(
    chem: Chemistry, t: np.ndarray, soc: np.ndarray, temps: np.ndarray, windows: list[int]
) -> Any:
    """Step a fresh model over contiguous windows ending at ``windows``.

    We drive BLAST-Lite's own update step rather than ``simulate_battery_life``: the latter
    drops the sample gap between windows and then replays the trace to make up the time, and
    rescales SoC swings by remaining capacity. A telemetry SoC is already relative to the
    aged capacity, and a trace should be simulated once, exactly.
    """
    model = new_model(chem)
    prior = 0
    for bp in windows:
        if bp > prior:
            model.update_battery_state(t[prior : bp + 1], soc[prior : bp + 1], temps[prior : bp + 1])
            prior = bp
    return model


def capacity_loss(
    soc_trace: Sequence[float] | np.ndarray,
    temps_c: float | Sequence[float] | np.ndarray,
    dt_s: float,
    chemistry: Chemistry | str,
) -> WearResult:
    """Capacity lost over a SoC trace (fractions 0..1, one sample every ``dt_s`` seconds).

    Both runs step over the same windows (BLAST-Lite's rule: a day, or one EFC if sooner); the
    calendar reference holds SoC at the trace's mean over the same times and temperatures.
    Cycling loss is the difference, floored at zero (it includes the calendar effect of where the cycles
    move the SoC, which is part of what cycling costs).
    """
    chem = Chemistry(chemistry)
    soc = np.asarray(soc_trace, dtype=float)
    if soc.ndim != 1 or soc.size < 2:
        raise ValueError("soc_trace needs at least two samples")
    if not np.all(np.isfinite(soc)) or soc.min() < 0 or soc.max() > 1:
        raise ValueError("soc_trace must be finite fractions in [0, 1]")
    if not dt_s > 0:
        raise ValueError("dt_s must be positive")
    n = soc.size
    temps = _as_array(temps_c, n, "temps_c")
    t = np.arange(n, dtype=float) * dt_s

    windows = _blast_breakpoints(new_model(chem), t, soc)
    full = _run_windows(chem, t, soc, temps, windows)
    total = 1.0 - float(full.outputs["q"][-1])
    mean_soc = float(np.mean(soc))
    cal = _run_windows(chem, t, np.full(n, mean_soc), temps, windows)
    calendar = 1.0 - float(cal.outputs["q"][-1])

    efc = float(np.sum(np.abs(np.diff(soc))) / 2)
    return WearResult(
        total_loss=total,
        calendar_loss=calendar,
        cycling_loss=max(0.0, total - calendar),
        efc=efc,
        days=float(t[-1] / DAY_S),
        mean_soc=mean_soc,
        cycles=rainflow_cycles(soc),
        chemistry=chem,
    )


def wear_cost(
    loss_fraction: float, battery_kwh: float | Decimal, pack_value_per_kwh: Decimal
) -> Decimal:
    """Money value of a capacity loss: lost kWh times the (dated) pack value per kWh, in cents."""
    if loss_fraction < 0 or not math.isfinite(loss_fraction):
        raise ValueError("loss_fraction must be a finite non-negative fraction")
    if Decimal(str(battery_kwh)) <= 0 or pack_value_per_kwh < 0:
        raise ValueError("battery_kwh must be positive and pack value non-negative")
    lost_kwh = Decimal(repr(loss_fraction)) * Decimal(str(battery_kwh))
    return (lost_kwh * pack_value_per_kwh).quantize(_CENT)


# --- fitted cycle-depth stress curve ------------------------------------------------------

_FIT_DEPTHS = (0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0)
TEMP_BAND_C = 5.0
SOC_BAND = 0.1


class StressCurve(NamedTuple):
    """Phi(d) = c1 d + c2 d^2 + c3 d^3: capacity fraction lost per cycle of depth d."""

    coeffs: tuple[float, float, float]
    chemistry: Chemistry
    temp_c: float
    mean_soc: float
    power_law: tuple[float, float]  # (a, b) of the a d^b fit, for comparison with Xu et al.
    fit_points: tuple[tuple[float, float], ...]

    def phi(self, d: float) -> float:
        c1, c2, c3 = self.coeffs
        return c1 * d + c2 * d * d + c3 * d**3

    def dphi(self, d: float) -> float:
        c1, c2, c3 = self.coeffs
        return c1 + 2 * c2 * d + 3 * c3 * d * d


def _cycle_window(depth: float, mean_soc: float) -> tuple[float, float]:
    lo = min(max(mean_soc - depth / 2, 0.0), 1.0 - depth)
    return lo, lo + depth


def _constant_run(chem: Chemistry, t: np.ndarray, soc: np.ndarray, temp_c: float, years: float) -> tuple[float, float]:
    m = new_model(chem)
    m.simulate_battery_life(
        {"Time_s": t, "SOC": soc, "Temperature_C": np.full(t.size, temp_c)},
        threshold_time=years,
        is_constant_input=True,
    )
    return float(m.outputs["q"][-1]), float(m.stressors["t_days"][-1])


@lru_cache(maxsize=512)
def _calendar_q(chem: Chemistry, soc: float, temp_c: float, years: float) -> float:
    t = np.array([0.0, DAY_S / 2, DAY_S])
    return _constant_run(chem, t, np.full(3, soc), temp_c, years)[0]


def _loss_per_cycle(
    chem: Chemistry, depth: float, mean_soc: float, temp_c: float, efc_per_day: float, horizon_days: float
) -> float:
    """BLAST-Lite cycling loss per cycle of ``depth`` at a fixed daily throughput.

    The repeated profile holds about a day of identical triangle cycles, so BLAST-Lite steps
    once a day as it does for real traces, and the C-rate is the same for every depth.
    """
    lo, hi = _cycle_window(depth, mean_soc)
    period_s = depth / efc_per_day * DAY_S
    per_profile = max(1, round(DAY_S / period_s))
    k = 10
    one = np.concatenate([np.linspace(hi, lo, k + 1), np.linspace(lo, hi, k + 1)[1:]])
    soc = np.concatenate([one] + [one[1:]] * (per_profile - 1))
    t = np.linspace(0.0, period_s * per_profile, soc.size)
    years = horizon_days / 365.0
    q_cyc, days = _constant_run(chem, t, soc, temp_c, years)
    q_cal = _calendar_q(chem, round((lo + hi) / 2, 9), temp_c, years)
    n_cycles = days * DAY_S / period_s
    return max(q_cal - q_cyc, 0.0) / n_cycles


def _band(x: float, width: float) -> float:
    return round(round(x / width) * width, 6)


@lru_cache(maxsize=256)
def _fitted(
    chem: Chemistry, temp_band: float, soc_band: float, efc_per_day: float, horizon_days: float
) -> StressCurve:
    d = np.array(_FIT_DEPTHS)
    y = np.array([_loss_per_cycle(chem, x, soc_band, temp_band, efc_per_day, horizon_days) for x in d])
    basis = np.column_stack([d, d**2, d**3])
    scale = float(np.max(y)) or 1.0
    # Relative weighting so the shallow points (small losses) count as much as the deep ones.
    w = 1.0 / np.maximum(y / scale, 1e-6)
    coef, _ = nnls(basis * w[:, None], (y / scale) * w)
    coeffs = tuple(float(c) * scale for c in coef)
    pos = y > 0
    b, log_a = np.polyfit(np.log(d[pos]), np.log(y[pos]), 1) if pos.sum() >= 2 else (1.0, -np.inf)
    return StressCurve(
        coeffs=(coeffs[0], coeffs[1], coeffs[2]),
        chemistry=chem,
        temp_c=temp_band,
        mean_soc=soc_band,
        power_law=(float(np.exp(log_a)), float(b)),
        fit_points=tuple(zip(map(float, d), map(float, y))),
    )


def stress_curve(
    chemistry: Chemistry | str,
    temp_c: float = 25.0,
    mean_soc: float = 0.5,
    efc_per_day: float = 1.0,
    horizon_days: float = 365.0,
) -> StressCurve:
    """Fitted Phi(d) for a chemistry, cached per 5 degC temperature band and 0.1 SoC band.

    ``efc_per_day`` and ``horizon_days`` set the throughput regime the loss is averaged over:
    BLAST-Lite's cycling loss grows sub-linearly with throughput, so the first cycles of a new
    cell are dearer than the average; we price the average over the horizon.
    """
    if not 0 < efc_per_day <= 10 or not 1 <= horizon_days <= 3650:
        raise ValueError("efc_per_day in (0, 10] and horizon_days in [1, 3650]")
    return _fitted(
        Chemistry(chemistry),
        _band(temp_c, TEMP_BAND_C),
        min(max(_band(mean_soc, SOC_BAND), 0.0), 1.0),
        float(efc_per_day),
        float(horizon_days),
    )


def marginal_wear_cost_per_kwh(
    depth_of_discharge: float,
    mean_soc: float,
    chemistry: Chemistry | str,
    temp_c: float = 25.0,
    pack_value_per_kwh: Decimal = Decimal("97"),
    *,
    discharge_efficiency: float = 1.0,
    efc_per_day: float = 1.0,
    horizon_days: float = 365.0,
) -> Decimal:
    """Cost of one more kWh discharged when the cycle is already ``depth_of_discharge`` deep.

    Equals pack value x dPhi/dd / efficiency: the charge back is counted with the discharge,
    as in Xu et al. Currency is the pack value's.
    """
    if not 0 <= depth_of_discharge <= 1 or not 0 <= mean_soc <= 1:
        raise ValueError("depth_of_discharge and mean_soc must be in [0, 1]")
    if not 0 < discharge_efficiency <= 1:
        raise ValueError("discharge_efficiency must be in (0, 1]")
    curve = stress_curve(chemistry, temp_c, mean_soc, efc_per_day, horizon_days)
    rate = curve.dphi(depth_of_discharge) / discharge_efficiency
    return (Decimal(repr(rate)) * pack_value_per_kwh).quantize(_RATE_Q)


class DischargeSegment(NamedTuple):
    soc_from: float
    soc_to: float
    cost_per_kwh: Decimal


def piecewise_linear_discharge_cost(
    chemistry: Chemistry | str,
    battery_kwh: float,
    pack_value: Decimal,
    segments: int = 16,
    *,
    temp_c: float = 25.0,
    discharge_efficiency: float = 1.0,
    efc_per_day: float = 1.0,
    horizon_days: float = 365.0,
) -> list[DischargeSegment]:
    """Xu et al.'s J-segment discharge cost: segment j costs (R/eta) J [Phi(j/J) - Phi((j-1)/J)]
    per unit of segment energy, i.e. per kWh  (R / E / eta) J dPhi.

    ``pack_value`` is the whole pack's value R (currency), ``battery_kwh`` its capacity E.
    Segments run from full (SoC 1) downwards; costs are non-decreasing with depth.
    """
    if segments < 1:
        raise ValueError("segments must be >= 1")
    if battery_kwh <= 0 or pack_value < 0:
        raise ValueError("battery_kwh must be positive and pack_value non-negative")
    if not 0 < discharge_efficiency <= 1:
        raise ValueError("discharge_efficiency must be in (0, 1]")
    curve = stress_curve(chemistry, temp_c, 0.5, efc_per_day, horizon_days)
    per_kwh_value = pack_value / Decimal(str(battery_kwh))
    out: list[DischargeSegment] = []
    for j in range(1, segments + 1):
        d0, d1 = (j - 1) / segments, j / segments
        rate = segments * (curve.phi(d1) - curve.phi(d0)) / discharge_efficiency
        cost = (Decimal(repr(rate)) * per_kwh_value).quantize(_RATE_Q)
        if out and cost < out[-1].cost_per_kwh:  # rounding must not break monotonicity
            cost = out[-1].cost_per_kwh
        out.append(DischargeSegment(1.0 - d0, 1.0 - d1, cost))
    return out


def cycling_loss_from_curve(
    soc_trace: Sequence[float] | np.ndarray, chemistry: Chemistry | str, temp_c: float = 25.0
) -> float:
    """Fast estimate of cycling loss: sum of Phi(depth) over rainflow-counted cycles."""
    curve = stress_curve(chemistry, temp_c)
    return float(sum(c.count * curve.phi(c.depth) for c in rainflow_cycles(soc_trace)))
