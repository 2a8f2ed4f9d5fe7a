"""Wear price per kWh for the bidder: the marginal cost of the shallow cycles reserve
activations make (Xu et al.'s convex curve, fitted from BLAST-Lite)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

ACTIVATION_DEPTH = 0.05   # a 20-minute reserve activation cycles a few % of a car's battery


@lru_cache(maxsize=64)
def wear_rate_per_kwh(chemistry: str, pack_value_per_kwh: Decimal = Decimal("97"), temp_c: float = 25.0,
                      mean_soc: float = 0.6) -> float:
    """Cost of one more kWh cycled at reserve depth, in the pack value's currency (cached: the
    first call per chemistry fits the curve, which takes seconds)."""
    from flexfleet.battery.wear import marginal_wear_cost_per_kwh   # BLAST-Lite: slow to import

    return float(marginal_wear_cost_per_kwh(ACTIVATION_DEPTH, mean_soc, chemistry, temp_c, pack_value_per_kwh))
