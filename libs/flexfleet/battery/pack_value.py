"""Dated battery pack values: the price of lost capacity falls every year, so keep the date."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import NamedTuple


class PackValue(NamedTuple):
    per_kwh: Decimal
    currency: str
    as_of: dt.date
    scope: str
    source: str
    url: str


_BNEF_2024 = (
    "BloombergNEF, 'Lithium-Ion Battery Pack Prices See Largest Drop Since 2017, Falling to "
    "$115 per Kilowatt-Hour', press release, 10 December 2024"
)
_BNEF_URL = (
    "https://about.bnef.com/blog/lithium-ion-battery-pack-prices-see-largest-drop-since-2017-"
    "falling-to-115-per-kilowatt-hour-bloombergnef/"
)

BNEF_2024_AVERAGE = PackValue(
    Decimal("115"), "USD", dt.date(2024, 12, 10), "volume-weighted average pack, all sectors", _BNEF_2024, _BNEF_URL
)
BNEF_2024_EV = PackValue(
    Decimal("97"), "USD", dt.date(2024, 12, 10), "battery-electric vehicle packs", _BNEF_2024, _BNEF_URL
)

PACK_VALUES: tuple[PackValue, ...] = (BNEF_2024_AVERAGE, BNEF_2024_EV)


def latest_pack_value(on: dt.date, scope_contains: str = "vehicle") -> PackValue:
    """The most recent dated value published on or before ``on`` for the scope."""
    cands = [p for p in PACK_VALUES if p.as_of <= on and scope_contains in p.scope]
    if not cands:
        raise LookupError(f"no pack value for {scope_contains!r} published by {on}")
    return max(cands, key=lambda p: p.as_of)
