"""What a settled month says about each owner and each obligation: the result records.

An OwnerLine is one priced item of an owner's month, named by what caused it: contract, vehicle,
source, the contract term in force, and for revenue-share lines the obligation and MTU. Its
`parts` say how its amount is attributed to markets (in the contract's currency and converted
into the market's), which is what the ledger posts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from flexfleet.domain.model import Currency

UNATTRIBUTED = "unattributed"   # the market of pay in a month no vehicle committed anything


class Source(StrEnum):
    """Where a line's money comes from, in the order a statement lists them."""

    AVAILABILITY = "availability"
    CAPACITY_SHARE = "capacity_share"
    ENERGY = "energy"
    CHARGING_REFUND = "charging_refund"
    WEAR = "wear"
    FIXED = "fixed"
    CREDIT_DEPARTURE = "credit_departure"
    CREDIT_MIN_SOC = "credit_min_soc"
    CAP = "cap"


SOURCE_ORDER = {s: i for i, s in enumerate(Source)}
CAPPED = frozenset({Source.AVAILABILITY, Source.CAPACITY_SHARE, Source.ENERGY, Source.FIXED})
GATED = frozenset({Source.AVAILABILITY, Source.FIXED})   # forfeited when a vehicle is not eligible


@dataclass(frozen=True)
class MarketPart:
    """The part of a line attributed to one market: `amount` in the contract's currency,
    `market_amount` in the market's (equal when the currencies are)."""

    market: str
    market_currency: Currency
    amount: int
    market_amount: int


@dataclass(frozen=True)
class OwnerLine:
    line_id: str
    owner_id: str
    contract_id: str
    vehicle_id: str | None          # None: a contract-wide line (the annual cap)
    source: Source
    term_id: str
    currency: Currency              # the contract's
    amount: int                     # minor units; what the owner is paid for this line
    quantity: Decimal
    unit: str
    rate: Decimal | None
    rate_unit: str
    period_start: datetime          # first MTU that contributed
    period_end: datetime            # end of the last one
    obligation_id: str | None = None
    market: str | None = None
    mtu: datetime | None = None
    forfeited: int = 0              # what an ineligible month did not pay (amount is then 0)
    note: str = ""
    parts: tuple[MarketPart, ...] = ()


@dataclass(frozen=True)
class EligibilityCheck:
    contract_id: str
    vehicle_id: str
    term_id: str
    plugged_in_hours: Decimal
    required_hours: Decimal         # the term's monthly minimum, pro rata for a part month
    eligible: bool


@dataclass(frozen=True)
class PenaltyAmount:
    cause: str
    kind: str
    amount: int


@dataclass(frozen=True)
class ObligationSettlement:
    """One obligation in one MTU, in the market's currency: what the market paid and kept, what
    owners were given of it by revenue share, and what the aggregator kept of the net."""

    obligation_id: str
    market: str
    mtu_start: datetime
    mtu_end: datetime
    currency: Currency
    revenue: int
    penalties: tuple[PenaltyAmount, ...]
    net: int                        # revenue - penalties, floored at 0: owners never share a loss
    owner_share: int
    kept: int                       # net - owner_share


@dataclass(frozen=True)
class ReconciliationRow:
    """One market and currency for the month: revenue = owner pay + wear pay + penalties + margin."""

    market: str
    currency: Currency
    revenue: int
    penalties: int
    owner_pay: int
    wear_pay: int
    margin: int

    @property
    def payouts(self) -> int:
        return self.owner_pay + self.wear_pay

    @property
    def balanced(self) -> bool:
        return self.revenue == self.payouts + self.penalties + self.margin
