"""The monthly operations settlement report, as data: what the markets paid and kept, what owners
were paid and why, the margin, and the reconciliation to the minor unit.

Everything is read back from the settled ledger (not recomputed beside it), so the report shows
what was posted; owner pay by source also comes from the owner lines, in the owners' currencies,
and the two views are tied by `owner_payable`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from flexfleet.domain.model import Currency
from flexfleet.settlement.ledger import AccountKind, EntryKind, balances
from flexfleet.settlement.lines import SOURCE_ORDER, ReconciliationRow, Source
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

    @property
    def reconciled(self) -> bool:
        return all(r.balanced for r in self.reconciliation) and all(s == 0 for _, s in self.ledger_sums)


def month_report(settlement: Settlement) -> MonthReport:
    pre_close = balances(settlement.entries, skip=(EntryKind.CLOSE,))
    penalties, payouts = [], []
    for (acc, cur), bal in pre_close.items():
        if acc.kind is AccountKind.PENALTY:
            cause, kind = acc.sub.split(":", 1)
            penalties.append(PenaltyRow(acc.key, cur, cause, kind, bal))
        elif acc.kind in (AccountKind.OWNER_PAY, AccountKind.WEAR_PAY):
            payouts.append(PayoutRow(acc.key, cur, acc.sub or Source.WEAR.value, bal))
    payouts.sort(key=lambda r: (r.market, r.currency.value, SOURCE_ORDER[Source(r.source)]))

    count: dict[str, int] = defaultdict(int)
    for o in settlement.obligations:
        count[o.market] += 1
    revenue = tuple(RevenueRow(r.market, r.currency, count.get(r.market, 0), r.revenue)
                    for r in settlement.reconciliation if r.revenue or count.get(r.market))

    by_source: dict[tuple[Currency, Source], list[int]] = defaultdict(lambda: [0, 0, 0])
    for line in settlement.lines:
        acc = by_source[(line.currency, line.source)]
        acc[0] += 1
        acc[1] += line.amount
        acc[2] += line.forfeited
    owner_pay = tuple(OwnerPayRow(cur, src, n, amount, forfeited)
                      for (cur, src), (n, amount, forfeited)
                      in sorted(by_source.items(), key=lambda kv: (kv[0][0].value, SOURCE_ORDER[kv[0][1]])))

    everything = balances(settlement.entries)
    fx_position: dict[Currency, int] = defaultdict(int)
    sums: dict[Currency, int] = defaultdict(int)
    for (acc, cur), bal in everything.items():
        sums[cur] += bal
        if acc.kind is AccountKind.FX_CONVERSION:
            fx_position[cur] += bal
    return MonthReport(
        month=settlement.month.label, zone=settlement.month.zone, revenue=revenue, penalties=tuple(penalties),
        payouts=tuple(payouts), owner_pay=owner_pay, reconciliation=settlement.reconciliation,
        fx_rates=settlement.fx_rates,
        fx_position=tuple(sorted(fx_position.items(), key=lambda kv: kv[0].value)),
        ledger_sums=tuple(sorted(sums.items(), key=lambda kv: kv[0].value)),
        owners=len({x.owner_id for x in settlement.lines}),
        vehicles=len({x.vehicle_id for x in settlement.lines if x.vehicle_id}),
        ineligible_vehicles=sum(not e.eligible for e in settlement.eligibility))
