"""Which market each owner payment is charged to, and converting batches between currencies.

The reconciliation is per market (revenue = payouts + penalties + margin), so every owner line
is attributed to markets, with the largest-remainder rule so its parts add up to it exactly:
- revenue share: the obligation's market, entirely;
- energy pay and charging refunds: the markets the vehicle was committed to in the MTU the
  energy flowed, by committed kW (what the activation or refill served); energy in an MTU with
  no commitment falls back to the vehicle's month, as below;
- availability, fixed pay, wear, credits: the vehicle's committed kW x hours per market over the
  month (the markets its being there served); a vehicle that committed nothing all month
  follows the fleet's kW x hours; a month in which the fleet committed nothing goes to the
  market "unattributed" (no revenue, so its margin is the loss);
- the annual cap's cut: in proportion to the capped pay of the contract per market, so no
  market's payout of the contract turns negative.

Conversions: all parts of one market in one currency pair and of one sign are converted as one
sum (one rounding, half up) and the converted sum is split back over the parts by the
largest-remainder rule, so rounding a conversion happens once per market, pair and month.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import TypeVar

from flexfleet.domain.time import MTU
from flexfleet.settlement.allocation import allocate
from flexfleet.settlement.inputs import ObligationMtu
from flexfleet.settlement.lines import UNATTRIBUTED
from flexfleet.settlement.money import EXACT, FxRate, round_half_up

K = TypeVar("K", bound=Hashable)
Profile = tuple[tuple[str, Decimal], ...]   # committed kW per market, sorted by market
_ZERO = Decimal(0)


class MarketWeights:
    """Committed kW per market and MTU for each vehicle, and kW x hours over the month."""

    def __init__(self, obligations: Iterable[ObligationMtu]) -> None:
        self.obligations = list(obligations)
        mine: dict[tuple[str, str], Decimal] = {}
        fleet: dict[str, Decimal] = {}
        add, mul, get = EXACT.add, EXACT.multiply, mine.get
        for o in self.obligations:
            hours = EXACT.divide(Decimal(int((o.mtu_end - o.mtu_start).total_seconds())), 3600)
            p = o.product_id
            for c in o.commitments:
                k = (c.vehicle_id, p)
                mine[k] = add(get(k, _ZERO), mul(c.kw, hours))
            if o.commitments:
                fleet[p] = add(fleet.get(p, _ZERO), mul(o.committed_kw, hours))
        self._month: dict[str, dict[str, Decimal]] = {}
        for (v, p), kwh in mine.items():
            self._month.setdefault(v, {})[p] = kwh
        self._fleet = fleet
        self._at: dict[tuple[str, datetime], Profile] | None = None   # built when first asked (per-record path)

    def _slots(self) -> dict[tuple[str, datetime], Profile]:
        if self._at is None:
            at: dict[tuple[str, datetime], dict[str, Decimal]] = defaultdict(dict)
            for o in self.obligations:
                for c in o.commitments:
                    t = o.mtu_start
                    while t < o.mtu_end:
                        slot = at[(c.vehicle_id, t)]
                        slot[o.product_id] = EXACT.add(slot.get(o.product_id, _ZERO), c.kw)
                        t += MTU
            self._at = {k: tuple(sorted(v.items())) for k, v in at.items()}
        return self._at

    def month(self, vehicle_id: str) -> dict[str, Decimal]:
        """The vehicle's kW x hours per market, else the fleet's, else all to "unattributed"."""
        own = self._month.get(vehicle_id)
        if own:
            return dict(own)
        if self._fleet:
            return dict(self._fleet)
        return {UNATTRIBUTED: Decimal(1)}

    def at(self, vehicle_id: str, mtu: datetime) -> Profile:
        """The vehicle's committed kW per market in one 15-minute MTU, as sorted pairs (empty: none)."""
        return self._slots().get((vehicle_id, mtu), ())


class EnergyWeights:
    """Where a line's energy went: kWh summed per commitment profile of the MTUs it flowed in
    (few distinct profiles, many MTUs), split by kW when resolved; () = no commitment."""

    def __init__(self) -> None:
        self.kwh: dict[Profile, Decimal] = defaultdict(Decimal)

    def add(self, kwh: Decimal, profile: Profile) -> None:
        self.kwh[profile] = EXACT.add(self.kwh[profile], kwh)

    def resolve(self, month: Mapping[str, Decimal]) -> dict[str, Fraction]:
        out: dict[str, Fraction] = defaultdict(Fraction)
        for profile, kwh in self.kwh.items():
            shares = profile or tuple(month.items())
            whole = sum((Fraction(w) for _, w in shares), Fraction(0))
            for market, w in shares:
                out[market] += Fraction(kwh) * Fraction(w) / whole
        return dict(out)


def convert_batch(items: Mapping[K, int], fx: FxRate) -> dict[K, int]:
    """Amounts of one currency and one sign converted as one sum (half up) and split back."""
    total = sum(items.values())
    signs = {v > 0 for v in items.values() if v}
    assert len(signs) <= 1, "a conversion batch mixes signs"
    converted = round_half_up(fx.convert(total))
    if not converted:
        return {k: 0 for k in items}
    return allocate(converted, {k: abs(v) for k, v in items.items()})
