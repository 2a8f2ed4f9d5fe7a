"""The monthly operations settlement report, as data: what the markets paid and kept, what owners
were paid and why, the margin, and the reconciliation to the minor unit.

Everything is read back from the settled ledger (not recomputed beside it), so the report shows
what was posted; owner pay by source also comes from the owner lines, in the owners' currencies,
and the two views are tied by `owner_payable`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency
from flexfleet.settlement.inputs import Month
from flexfleet.settlement.ledger import AccountKind, EntryKind, JournalEntry, balances
from flexfleet.settlement.lines import SOURCE_ORDER, OwnerLine, ReconciliationRow, Source
from flexfleet.settlement.money import FxRate
from flexfleet.settlement.settle import Settlement


@dataclass(frozen=True)
class RevenueRow:
    market: str
    currency: Currency
    obligation_mtus: int
    revenue: int


@dataclass(frozen=True)
class PenaltyRow:
    market: str
    currency: Currency
    cause: str
    kind: str
    amount: int


@dataclass(frozen=True)
class PenaltyDetail:
    """One penalty of one obligation MTU: what finance follows up (which obligation lost money, when)."""

    market: str
    currency: Currency
    obligation_id: str
    mtu_start: datetime | None
    cause: str
    kind: str
    amount: int


@dataclass(frozen=True)
class PayoutRow:
    """Pay charged to a market, by source, in the market's currency (wear as source "wear")."""

    market: str
    currency: Currency
    source: str
    amount: int


@dataclass(frozen=True)
class OwnerPayRow:
    """Pay by source in an owners' currency, as the statements show it."""

    currency: Currency
    source: Source
    lines: int
    amount: int
    forfeited: int


@dataclass(frozen=True)
class MonthReport:
    month: str
    zone: str
    revenue: tuple[RevenueRow, ...]
    penalties: tuple[PenaltyRow, ...]
    payouts: tuple[PayoutRow, ...]
    owner_pay: tuple[OwnerPayRow, ...]
    reconciliation: tuple[ReconciliationRow, ...]
    fx_rates: tuple[FxRate, ...]
    fx_position: tuple[tuple[Currency, int], ...]     # fx_conversion balance per currency
    ledger_sums: tuple[tuple[Currency, int], ...]     # every posting summed per currency: all zero
    owners: int
    vehicles: int
    ineligible_vehicles: int
    penalty_details: tuple[PenaltyDetail, ...] = ()   # per obligation MTU, in time order
    owner_payable: tuple[tuple[Currency, int], ...] = ()   # what the month owes owners, per currency

    @property
    def reconciled(self) -> bool:
        return (all(r.balanced for r in self.reconciliation) and all(s == 0 for _, s in self.ledger_sums)
                and self.owner_pay_ties)

    @property
    def owner_pay_ties(self) -> bool:
        """The owner lines by source add up to what the ledger owes owners, per currency: the
        statements and the market view are the same money."""
        lines = {c: v for c, v in self.owner_pay_totals if v}
        return lines == {c: v for c, v in self.owner_payable if v}

    @property
    def owner_pay_totals(self) -> tuple[tuple[Currency, int], ...]:
        out: dict[Currency, int] = defaultdict(int)
        for r in self.owner_pay:
            out[r.currency] += r.amount
        return tuple(sorted(out.items(), key=lambda kv: kv[0].value))


@dataclass(frozen=True)
class ReportChange:
    """One amount that differs between two versions of a month's report."""

    section: str        # reconciliation, penalty, owner_pay, owner_payable
    item: str           # e.g. "FCR-D-up/SE_DK2 margin", "FCR-N/NO capacity_not_held:withheld"
    currency: Currency
    previous: int
    now: int

    @property
    def difference(self) -> int:
        return self.now - self.previous


def report_changes(previous: MonthReport, current: MonthReport) -> tuple[ReportChange, ...]:
    """What changed between two versions of the same month and zone, amount by amount (zero
    differences left out): a re-settled month is an adjustment finance must be able to explain."""
    if (previous.month, previous.zone) != (current.month, current.zone):
        raise DomainError("previous", f"is {previous.zone} {previous.month}, not {current.zone} {current.month}")
    out: list[ReportChange] = []
    for section, before, now in (("reconciliation", _recon_amounts(previous), _recon_amounts(current)),
                                 ("penalty", _penalty_amounts(previous), _penalty_amounts(current)),
                                 ("owner_pay", _owner_pay_amounts(previous), _owner_pay_amounts(current)),
                                 ("owner_payable", _payable_amounts(previous), _payable_amounts(current))):
        for key in sorted(set(before) | set(now), key=lambda k: (k[0], k[1].value)):
            a, b = before.get(key, 0), now.get(key, 0)
            if a != b:
                out.append(ReportChange(section, key[0], key[1], a, b))
    return tuple(out)


_RECON_FIELDS = ("revenue", "penalties", "owner_pay", "wear_pay", "margin")


def _recon_amounts(r: MonthReport) -> dict[tuple[str, Currency], int]:
    return {(f"{x.market} {f}", x.currency): getattr(x, f) for x in r.reconciliation for f in _RECON_FIELDS}


def _penalty_amounts(r: MonthReport) -> dict[tuple[str, Currency], int]:
    return {(f"{x.market} {x.cause}:{x.kind}", x.currency): x.amount for x in r.penalties}


def _owner_pay_amounts(r: MonthReport) -> dict[tuple[str, Currency], int]:
    return {(x.source.value, x.currency): x.amount for x in r.owner_pay}


def _payable_amounts(r: MonthReport) -> dict[tuple[str, Currency], int]:
    return {("owed to owners", c): v for c, v in r.owner_payable}


def month_report(settlement: Settlement) -> MonthReport:
    count: dict[str, int] = defaultdict(int)
    for o in settlement.obligations:
        count[o.market] += 1
    return report_of(settlement.month, settlement.entries, settlement.lines, settlement.reconciliation,
                     settlement.fx_rates, count, sum(not e.eligible for e in settlement.eligibility))


def report_of(month: Month, entries: Iterable[JournalEntry], lines: Iterable[OwnerLine],
              reconciliation: Iterable[ReconciliationRow], fx_rates: Iterable[FxRate],
              obligation_mtus: Mapping[str, int], ineligible_vehicles: int) -> MonthReport:
    """The report of a month's ledger and owner lines, whether just settled or read back from
    storage (a version's entries rebuilt from its postings): one derivation for both."""
    entries, lines, reconciliation = tuple(entries), tuple(lines), tuple(reconciliation)
    pre_close = balances(entries, skip=(EntryKind.CLOSE,))
    penalties, payouts = [], []
    for (acc, cur), bal in pre_close.items():
        if acc.kind is AccountKind.PENALTY and bal:
            cause, kind = acc.sub.split(":", 1)
            penalties.append(PenaltyRow(acc.key, cur, cause, kind, bal))
        elif acc.kind in (AccountKind.OWNER_PAY, AccountKind.WEAR_PAY) and bal:
            payouts.append(PayoutRow(acc.key, cur, acc.sub or Source.WEAR.value, bal))
    payouts.sort(key=lambda r: (r.market, r.currency.value, SOURCE_ORDER[Source(r.source)]))

    revenue = tuple(RevenueRow(r.market, r.currency, obligation_mtus.get(r.market, 0), r.revenue)
                    for r in reconciliation if r.revenue or obligation_mtus.get(r.market))

    by_source: dict[tuple[Currency, Source], list[int]] = defaultdict(lambda: [0, 0, 0])
    for line in lines:
        acc = by_source[(line.currency, line.source)]
        acc[0] += 1
        acc[1] += line.amount
        acc[2] += line.forfeited
    owner_pay = tuple(OwnerPayRow(cur, src, n, amount, forfeited)
                      for (cur, src), (n, amount, forfeited)
                      in sorted(by_source.items(), key=lambda kv: (kv[0][0].value, SOURCE_ORDER[kv[0][1]])))

    fx_position: dict[Currency, int] = defaultdict(int)
    payable: dict[Currency, int] = defaultdict(int)
    sums: dict[Currency, int] = defaultdict(int)
    for (acc, cur), bal in balances(entries).items():
        sums[cur] += bal
        if acc.kind is AccountKind.FX_CONVERSION:
            fx_position[cur] += bal
        elif acc.kind is AccountKind.OWNER_PAYABLE:
            payable[cur] -= bal
    return MonthReport(
        month=month.label, zone=month.zone, revenue=revenue, penalties=tuple(penalties),
        payouts=tuple(payouts), owner_pay=owner_pay, reconciliation=reconciliation, fx_rates=tuple(fx_rates),
        fx_position=_by_currency(fx_position), ledger_sums=_by_currency(sums),
        owners=len({x.owner_id for x in lines}), vehicles=len({x.vehicle_id for x in lines if x.vehicle_id}),
        ineligible_vehicles=ineligible_vehicles, penalty_details=_penalty_details(entries),
        owner_payable=_by_currency(payable))


def _by_currency(amounts: Mapping[Currency, int]) -> tuple[tuple[Currency, int], ...]:
    return tuple(sorted(amounts.items(), key=lambda kv: kv[0].value))


def _penalty_details(entries: Iterable[JournalEntry]) -> tuple[PenaltyDetail, ...]:
    """Penalty postings summed per market, obligation, MTU, cause and kind (zeros left out), in
    time order: the same rows whether the ledger is one version or a version and its adjustments."""
    out: dict[tuple, int] = defaultdict(int)
    for e in entries:
        if e.kind is EntryKind.CLOSE:
            continue
        for p in e.postings:
            if p.account.kind is AccountKind.PENALTY:
                cause, kind = p.account.sub.split(":", 1)
                out[(p.mtu, p.obligation_id or "", p.account.key, p.currency, cause, kind)] += p.amount
    return tuple(PenaltyDetail(market, cur, obl, mtu, cause, kind, amount)
                 for (mtu, obl, market, cur, cause, kind), amount in
                 sorted(out.items(), key=lambda kv: (kv[0][0].isoformat() if kv[0][0] else "", kv[0][1], kv[0][2],
                                                     kv[0][3].value, kv[0][4], kv[0][5]))
                 if amount)
