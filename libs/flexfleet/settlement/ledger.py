"""The double-entry ledger's values: accounts, postings, journal entries and balances.

Sign: a posting's amount is in minor units, positive = debit, negative = credit. A journal entry
refuses to exist unless its postings sum to zero in every currency, so an unbalanced ledger
cannot be built, only an entry that fails to construct.

Accounts (kind, key, sub), one per market (product id) where money is earned or spent:
    market_receivable  market            what the market owes us (revenue less what it keeps)
    market_revenue     market            accepted MW x price x duration
    penalty            market, cause:kind withheld payment and surcharges for shortfalls
    owner_pay          market, source    owner pay attributed to the market (availability, ...)
    wear_pay           market            battery wear pay attributed to the market
    owner_payable      owner             what we owe the owner (contract currency)
    fx_conversion      -                 the treasury's currency position: each conversion posts the
                                         same value in both currencies at the month's rate
    aggregator_margin  market            revenue - penalties - owner and wear pay; may be negative
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency


class AccountKind(StrEnum):
    MARKET_RECEIVABLE = "market_receivable"
    MARKET_REVENUE = "market_revenue"
    PENALTY = "penalty"
    OWNER_PAY = "owner_pay"
    WEAR_PAY = "wear_pay"
    OWNER_PAYABLE = "owner_payable"
    FX_CONVERSION = "fx_conversion"
    AGGREGATOR_MARGIN = "aggregator_margin"


class EntryKind(StrEnum):
    REVENUE = "revenue"     # one per obligation and MTU
    PENALTY = "penalty"     # one per obligation, MTU, cause and kind
    PAY = "pay"             # one per owner line
    CLOSE = "close"         # one per market and currency: the month's margin


@dataclass(frozen=True, order=True)
class Account:
    kind: AccountKind
    key: str = ""
    sub: str = ""

    def __str__(self) -> str:
        return ":".join(x for x in (self.kind.value, self.key, self.sub) if x)


@dataclass(frozen=True)
class Posting:
    """One side of an entry, with everything that caused it (None where it does not apply)."""

    account: Account
    currency: Currency
    amount: int
    market: str | None = None
    obligation_id: str | None = None
    mtu: datetime | None = None
    vehicle_id: str | None = None
    owner_id: str | None = None
    contract_id: str | None = None
    term_id: str | None = None
    line_id: str | None = None


@dataclass(frozen=True)
class JournalEntry:
    entry_id: str
    kind: EntryKind
    postings: tuple[Posting, ...]

    def __post_init__(self) -> None:
        off = {c: s for c, s in currency_sums(self.postings).items() if s}
        if off:
            raise DomainError("postings", f"entry {self.entry_id} does not balance: {off}")


def currency_sums(postings: Iterable[Posting]) -> dict[Currency, int]:
    out: dict[Currency, int] = defaultdict(int)
    for p in postings:
        out[p.currency] += p.amount
    return dict(out)


def balances(entries: Iterable[JournalEntry], *, skip: Iterable[EntryKind] = ()) -> dict[tuple[Account, Currency], int]:
    """Balance of every account and currency (debit +), in account order."""
    leave_out = set(skip)
    out: dict[tuple[Account, Currency], int] = defaultdict(int)
    for e in entries:
        if e.kind in leave_out:
            continue
        for p in e.postings:
            out[(p.account, p.currency)] += p.amount
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1].value)))


def entry(entry_id: str, kind: EntryKind, postings: Iterable[Posting]) -> JournalEntry:
    """An entry without its zero postings (a zero says nothing and would clutter the ledger)."""
    return JournalEntry(entry_id, kind, tuple(p for p in postings if p.amount))
