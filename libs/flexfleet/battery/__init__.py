"""Battery wear: BLAST-Lite capacity loss split into calendar and cycling, priced for bidding."""

from flexfleet.battery.models import MODEL_FOR, Chemistry
from flexfleet.battery.pack_value import (
    BNEF_2024_AVERAGE,
    BNEF_2024_EV,
    PACK_VALUES,
    PackValue,
    latest_pack_value,
)
from flexfleet.battery.wear import (
    Cycle,
    DischargeSegment,
    StressCurve,
    WearResult,
    capacity_loss,
    cycling_loss_from_curve,
    marginal_wear_cost_per_kwh,
    piecewise_linear_discharge_cost,
    rainflow_cycles,
    stress_curve,
    wear_cost,
)

__all__ = [
    "BNEF_2024_AVERAGE", "BNEF_2024_EV", "MODEL_FOR", "PACK_VALUES", "Chemistry", "Cycle",
    "DischargeSegment", "PackValue", "StressCurve", "WearResult", "capacity_loss",
    "cycling_loss_from_curve", "latest_pack_value", "marginal_wear_cost_per_kwh",
    "piecewise_linear_discharge_cost", "rainflow_cycles", "stress_curve", "wear_cost",
]
