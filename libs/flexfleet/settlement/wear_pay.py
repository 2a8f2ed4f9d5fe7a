"""Battery wear for pay: the battery model's capacity loss of a month's SoC trace, and how it
spreads over the contract terms in force while it happened.

The loss is `flexfleet.battery.wear.capacity_loss` (BLAST-Lite, cycling split from calendar
ageing); nothing here models a battery. What the platform pays for is the cycling loss, or,
when the trace comes with the car's own reference trace, the cycling loss above the reference's.

Why split by SoC throughput: the model runs once over the whole month (ageing is path
dependent; cutting the trace at a term change would drop the cycles that cross it), and cycling
wear grows with the energy moved, so each term carries the share of the month's |dSoC| that
happened while it was in force. BLAST-Lite takes seconds to import: it is loaded only when a
month has traces.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from flexfleet.domain.model import Chemistry
from flexfleet.domain.time import MTU, MTU_SECONDS
from flexfleet.settlement.inputs import SocTrace


@dataclass(frozen=True)
class WearAssessment:
    """A vehicle's month of wear: capacity fractions lost and the kWh of capacity we pay for."""

    vehicle_id: str
    chemistry: Chemistry
    cycling_loss: float
    reference_cycling_loss: float | None
    platform_loss: float        # what is paid for: cycling loss (minus the reference's), >= 0
    lost_kwh: Decimal           # platform_loss x battery kWh, to the Wh
    efc: float                  # equivalent full cycles of the trace
    days: float


def assess_wear(trace: SocTrace) -> WearAssessment:
    """Run the battery model over the trace (and its reference, if any)."""
    from flexfleet.battery.wear import capacity_loss

    temps = trace.temps_c if isinstance(trace.temps_c, (int, float)) else list(trace.temps_c)
    run = capacity_loss(list(trace.soc), temps, float(trace.dt_s), trace.chemistry.value)
    ref = None
    if trace.reference_soc is not None:
        ref = capacity_loss(list(trace.reference_soc), temps, float(trace.dt_s), trace.chemistry.value).cycling_loss
    platform = max(0.0, run.cycling_loss - (ref or 0.0))
    lost = (Decimal(repr(platform)) * trace.battery_kwh).quantize(Decimal("0.001"))
    return WearAssessment(trace.vehicle_id, trace.chemistry, run.cycling_loss, ref, platform, lost, run.efc, run.days)


def throughput_by_mtu(trace: SocTrace, origin: datetime) -> dict[datetime, Fraction]:
    """|dSoC| moved in each 15-minute MTU (a step counts in the MTU it starts in).

    `origin` is an MTU start at or before the trace (the month's start): MTUs are counted from it
    in whole seconds, so no floating-point time decides which MTU a step lands in.
    """
    offset_ms = round((trace.start - origin).total_seconds() * 1000)
    dt_ms = round(trace.dt_s * 1000)
    out: dict[datetime, Fraction] = defaultdict(Fraction)
    soc = trace.soc
    for i in range(len(soc) - 1):
        d = abs(soc[i + 1] - soc[i])
        if d:
            k = (offset_ms + i * dt_ms) // (MTU_SECONDS * 1000)
            out[origin + k * MTU] += Fraction(Decimal(repr(d)))
    return dict(out)
