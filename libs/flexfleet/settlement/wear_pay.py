"""Battery wear for pay: the cycling the platform added to a car's month, priced on the battery
model's cycle-depth curve.

What is paid for is the difference of two rainflow-counted sums on Phi(d), the capacity lost per
cycle of depth d (`flexfleet.battery.wear.stress_curve`, fitted from BLAST-Lite): one over the
month's SoC trace, one over its reference, the trace the car would have had without the platform.

Why the curve and not a BLAST-Lite run over the month: a fresh model run over one month prices
every month as the first month of a new cell, whose cycles are the dearest (2.9x the curve on the
settlement benchmark's V2G cars), while the curve averages over a year at one full cycle a day.
It is also the price the bidder put on discharge when it offered the car, so the owner is paid
what the bid assumed. And it takes a fraction of a millisecond a car rather than 27 ms: a fleet's
month with wear settles in about a minute rather than a quarter of an hour more (docs/benchmarks.md).

The reference (`reference_soc`): a plugged-in car left alone only charges. In each stay in which
the platform discharged the car, the reference is the running maximum of the SoC since plug-in;
everywhere else it is the trace itself. The owner's trips and own charging cost the platform
nothing; a V2G dip and the recharge that makes up for it are paid. A stay the platform ends lower
than it found it rejoins the trace at plug-out (the departure credit, not wear, covers that).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

import numpy as np
import rainflow

from flexfleet.domain.model import Chemistry
from flexfleet.domain.time import MTU, MTU_SECONDS
from flexfleet.settlement.inputs import SocTrace


@dataclass(frozen=True)
class WearAssessment:
    """A vehicle's month of wear: capacity fractions lost to cycling and the kWh we pay for."""

    vehicle_id: str
    chemistry: Chemistry
    cycling_loss: float                 # the trace's cycles on the curve
    reference_cycling_loss: float | None
    platform_loss: float                # what is paid for: cycling loss minus the reference's, >= 0
    lost_kwh: Decimal                   # platform_loss x battery kWh, to the Wh
    efc: float                          # full cycles the platform added (all of the trace's without a reference)
    days: float


def reference_soc(soc: np.ndarray, plugged: np.ndarray, discharging: np.ndarray) -> np.ndarray:
    """The SoC without the platform: the running maximum since plug-in in stays with a discharge.

    `plugged` and `discharging` are booleans per sample; a stay is a run of plugged samples.
    """
    soc = np.asarray(soc, dtype=float)
    plugged = np.asarray(plugged, dtype=bool)
    discharging = np.asarray(discharging, dtype=bool) & plugged
    ref = soc.copy()
    if not discharging.any():
        return ref
    edges = np.diff(np.r_[0, plugged.astype(np.int8), 0])
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):   # each stay [a, b)
        if discharging[a:b].any():
            ref[a:b] = np.maximum.accumulate(soc[a:b])
    return ref


def reversal_values(soc: np.ndarray) -> np.ndarray:
    """The trace's turning points (and its ends), as `rainflow.reversals` finds them, in numpy.

    Rainflow counting only ever looks at turning points; a month of 15-minute SoC has a few
    hundred among thousands of samples, so counting on them alone is what makes it fast.
    """
    x = np.asarray(soc, dtype=float)
    x = x[np.r_[True, np.diff(x) != 0]] if x.size else x
    if x.size < 3:
        return x
    d = np.diff(x)
    turn = np.flatnonzero(d[:-1] * d[1:] < 0) + 1
    return x[np.r_[0, turn, x.size - 1]]


def cycle_loss(soc: np.ndarray, coeffs: tuple[float, float, float]) -> float:
    """Sum over rainflow cycles of count x Phi(depth), Phi(d) = c1 d + c2 d^2 + c3 d^3."""
    turns = reversal_values(soc)
    if turns.size == 2:     # rainflow.reversals drops the end of a two-point series: one half cycle
        cycles = np.array([[abs(turns[1] - turns[0]), 0.5]])
    else:
        cycles = np.array([(r, c) for r, _, c, _, _ in rainflow.extract_cycles(turns)]).reshape(-1, 2)
    d, n = cycles[:, 0], cycles[:, 1]
    c1, c2, c3 = coeffs
    return float(np.sum(n * d * (c1 + d * (c2 + d * c3))))


def _efc(soc: np.ndarray) -> float:
    return float(np.abs(np.diff(soc)).sum() / 2)


def assess_wear(trace: SocTrace) -> WearAssessment:
    """The trace's cycling on the curve for its chemistry and mean temperature, less its reference's."""
    from flexfleet.battery.wear import stress_curve     # BLAST-Lite takes seconds to import

    soc = trace.soc
    temp = float(np.mean(trace.temps_c)) if isinstance(trace.temps_c, tuple) else float(trace.temps_c)
    coeffs = stress_curve(trace.chemistry.value, temp).coeffs
    run = cycle_loss(soc, coeffs)
    ref = None if trace.reference_soc is None else cycle_loss(trace.reference_soc, coeffs)
    platform = max(0.0, run - (ref or 0.0))
    lost = (Decimal(repr(platform)) * trace.battery_kwh).quantize(Decimal("0.001"))
    efc = _efc(soc) - (0.0 if ref is None else _efc(trace.reference_soc))
    days = trace.dt_s * (soc.size - 1) / 86400
    return WearAssessment(trace.vehicle_id, trace.chemistry, run, ref, platform, lost, max(0.0, efc), days)


def throughput_by_mtu(trace: SocTrace, origin: datetime) -> dict[datetime, Fraction]:
    """The platform's |dSoC| in each 15-minute MTU (a step counts in the MTU it starts in): how a
    month's wear spreads over the contract terms in force while it happened.

    With a reference, a step's weight is how far the platform moved the SoC away from it,
    |d(soc) - d(reference)|; without one, all of |d(soc)|. `origin` is an MTU start at or before the
    trace: MTUs are counted from it in whole milliseconds, so no float decides where a step lands.
    """
    soc = trace.soc
    step = np.diff(soc) if trace.reference_soc is None else np.diff(soc) - np.diff(trace.reference_soc)
    offset_ms = round((trace.start - origin).total_seconds() * 1000)
    dt_ms = round(trace.dt_s * 1000)
    k = (offset_ms + np.arange(step.size, dtype=np.int64) * dt_ms) // (MTU_SECONDS * 1000)
    moved = np.bincount(k, weights=np.abs(step))
    return {origin + int(i) * MTU: Fraction(float(moved[i])) for i in np.flatnonzero(moved)}
