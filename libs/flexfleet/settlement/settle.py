"""Settle one month: owner lines, the double-entry ledger and the reconciliation per market.

`settle_month` is a pure function of its inputs: records are sorted before use and every result
is in a stated order, so the same inputs give the same lines, entries and rows, value for value
(the service writes them and its files are byte-identical on a rerun).

How money is made, in order:
1. Market money per obligation and MTU, in the market's currency: revenue (accepted MW x price
   x hours) and each penalty (shortfall MWh x price), each rounded half up once.
2. Owner lines in the contract's currency, each from the term in force at its MTUs: the exact
   amount (quantity x rate summed over the month) rounded half up once per line.
3. Revenue share: each obligation MTU's net (revenue - penalties, at least 0) is split over the
   committed vehicles' exact shares (net x kW / total kW x %) and the aggregator's remainder by
   the largest-remainder rule, so owners' parts and what the aggregator keeps add up to the net.
4. Eligibility forfeits, then the annual cap's cut, per contract.
5. Attribution of each line to markets and conversion into the market's currency
   (see `attribution`), then the ledger: revenue, penalty, pay and closing entries.

Margin is what is left: revenue - penalties - owner pay - wear pay per market, posted by the
closing entry to aggregator_margin. It may be negative (fixed pay, availability and wear are
owed whatever the market paid; the aggregator carries that risk); owners are never charged for
a loss, and a market with no revenue in the month still closes, with a negative margin.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency
from flexfleet.domain.time import MTU, mtu_floor
from flexfleet.markets.exchange_rates import ExchangeRates, default_exchange_rates
from flexfleet.settlement.allocation import allocate
from flexfleet.settlement.attribution import EnergyWeights, MarketWeights, convert_batch
from flexfleet.settlement.contracts import Contract, ContractTerm, RefundScope
from flexfleet.settlement.inputs import CapUsage, Month, ObligationMtu, SocTrace, VehicleMtu
from flexfleet.settlement.ledger import (Account, AccountKind, EntryKind, JournalEntry, Posting, balances,
                                         entry)
from flexfleet.settlement.lines import (CAPPED, GATED, SOURCE_ORDER, UNATTRIBUTED, EligibilityCheck, MarketPart,
                                        ObligationSettlement, OwnerLine, PenaltyAmount, ReconciliationRow, Source)
from flexfleet.settlement.money import EXACT, FxRate, format_money, fx_rate, major, minor_units, round_half_up, to_minor
from flexfleet.settlement.wear_pay import WearAssessment, assess_wear, throughput_by_mtu

QUARTER_HOUR = Decimal("0.25")


@dataclass(frozen=True)
class Settlement:
    month: Month
    lines: tuple[OwnerLine, ...]
    entries: tuple[JournalEntry, ...]
    reconciliation: tuple[ReconciliationRow, ...]
    obligations: tuple[ObligationSettlement, ...]
    eligibility: tuple[EligibilityCheck, ...]
    wear: tuple[WearAssessment, ...]
    fx_rates: tuple[FxRate, ...]
    cap_usage: tuple[CapUsage, ...]     # counted towards each contract's cap by the end of this month

    def owner_lines(self, owner_id: str) -> tuple[OwnerLine, ...]:
        return tuple(x for x in self.lines if x.owner_id == owner_id)


# ------------------------------------------------------------------------------ the fleet's contracts


class _Fleet:
    """The contracts in force in the month, and which one covers a vehicle at an MTU."""

    def __init__(self, month: Month, contracts: Iterable[Contract]) -> None:
        self.month = month
        self.contracts: list[Contract] = []
        self._by_vehicle: dict[str, list[Contract]] = defaultdict(list)
        seen: set[str] = set()
        for i, c in enumerate(contracts):
            if not isinstance(c, Contract):
                raise DomainError(f"contracts[{i}]", f"must be a Contract; got {type(c).__name__}")
            if c.contract_id in seen:
                raise DomainError(f"contracts[{i}].contract_id", f"{c.contract_id!r} appears twice")
            seen.add(c.contract_id)
            if not c.term_periods(month.start, month.end):
                continue
            self.contracts.append(c)
            for v in c.vehicle_ids:
                for other in self._by_vehicle[v]:
                    if c.starts < (other.ends or month.end) and other.starts < (c.ends or month.end):
                        raise DomainError(f"contracts[{i}]", f"vehicle {v} is in contracts {other.contract_id} and "
                                                             f"{c.contract_id} at the same time")
                self._by_vehicle[v].append(c)
        self.contracts.sort(key=lambda c: (c.owner_id, c.contract_id))

    def at(self, vehicle_id: str, mtu: datetime, where: str) -> tuple[Contract, ContractTerm]:
        c, t, _ = self.span(vehicle_id, mtu, where)
        return c, t

    def span(self, vehicle_id: str, mtu: datetime, where: str) -> tuple[Contract, ContractTerm, datetime]:
        """The contract and term in force for the vehicle at `mtu`, and until when (at most the month's end)."""
        for c in self._by_vehicle.get(vehicle_id, ()):
            if c.covers(mtu):
                t, until = c.term_span(mtu)
                return c, t, min(until, self.month.end) if until is not None else self.month.end
        raise DomainError(where, f"vehicle {vehicle_id} has no contract with terms in force at {mtu.isoformat()}")

    def covered(self, c: Contract) -> list[tuple[ContractTerm, datetime, datetime]]:
        return c.term_periods(self.month.start, self.month.end)


class _Fx:
    """The month's conversion rates, looked up once per currency pair and remembered for the result."""

    def __init__(self, rates: ExchangeRates, month: Month) -> None:
        self._rates, self._day = rates, month.rate_day
        self.used: dict[tuple[Currency, Currency], FxRate] = {}

    def __call__(self, a: Currency, b: Currency) -> FxRate:
        if (a, b) not in self.used:
            self.used[(a, b)] = fx_rate(self._rates, a, b, self._day)
        return self.used[(a, b)]


# ---------------------------------------------------------------------------------------- draft lines


@dataclass
class _Line:
    contract: Contract
    vehicle_id: str | None
    source: Source
    term: ContractTerm
    unit: str
    rate: Decimal | None
    rate_unit: str
    first: datetime
    last_end: datetime
    obligation_id: str | None = None
    market: str | None = None
    mtu: datetime | None = None
    quantity: Decimal | Fraction = Decimal(0)
    paid: Decimal | None = None            # refunds at the price paid: sum of kWh x price
    exact: Fraction | None = None          # fixed and wear lines: the exact amount, set whole
    energy: EnergyWeights | None = None
    amount: int = 0
    market_amount: int = 0                 # revenue share: the part of the net, market currency
    forfeited: int = 0
    note: str = ""
    parts: dict[str, int] = field(default_factory=dict)          # market -> contract currency
    market_parts: dict[str, int] = field(default_factory=dict)   # market -> market currency

    @property
    def line_id(self) -> str:
        mtu = self.mtu.isoformat() if self.mtu else "-"
        return "|".join((self.contract.contract_id, self.vehicle_id or "-", self.source.value, self.term.term_id,
                         self.obligation_id or "-", mtu))

    def money(self) -> Fraction:
        """The exact amount in major units of the contract's currency."""
        if self.exact is not None:
            return self.exact
        if self.paid is not None:
            return Fraction(self.paid)
        return Fraction(self.quantity) * Fraction(self.rate)  # type: ignore[arg-type]

    def add(self, end: datetime, quantity: Decimal) -> None:
        """One more MTU's quantity (records come in time order, so only the end moves)."""
        self.quantity = EXACT.add(self.quantity, quantity)  # type: ignore[arg-type]
        if end > self.last_end:
            self.last_end = end


class _Lines:
    def __init__(self) -> None:
        self.by_key: dict[tuple, _Line] = {}
        self._by_contract: dict[str, list[_Line]] = defaultdict(list)

    def get(self, c: Contract, vehicle_id: str | None, source: Source, t: ContractTerm, start: datetime,
            end: datetime, unit: str, rate: Decimal | None, rate_unit: str, **extra: object) -> _Line:
        key = (c.contract_id, vehicle_id, source, t.term_id, extra.get("obligation_id"), extra.get("mtu"))
        line = self.by_key.get(key)
        if line is None:
            line = self.by_key[key] = _Line(c, vehicle_id, source, t, unit, rate, rate_unit, start, end,
                                            **extra)  # type: ignore[arg-type]
            self._by_contract[c.contract_id].append(line)
        return line

    def of(self, contract_id: str) -> list[_Line]:
        return list(self._by_contract.get(contract_id, ()))


class _Span:
    """The lines of one vehicle while one term is in force: looked up once per span, not per MTU."""

    def __init__(self, c: Contract, t: ContractTerm, vehicle_id: str, start: datetime, until: datetime,
                 lines: _Lines) -> None:
        self.c, self.t, self.v, self.start, self.until, self._lines = c, t, vehicle_id, start, until, lines
        self.cur = c.currency.value
        self._open: dict[Source, _Line] = {}

    def line(self, source: Source, mtu: datetime, unit: str, rate: Decimal | None, rate_unit: str,
             energy: bool = False) -> _Line:
        line = self._open.get(source)
        if line is None:
            line = self._open[source] = self._lines.get(self.c, self.v, source, self.t, mtu, mtu + MTU, unit, rate,
                                                        rate_unit, **({"energy": EnergyWeights()} if energy else {}))
        return line


def _vehicle_mtu_lines(month: Month, fleet: _Fleet, records: Sequence[VehicleMtu], weights: MarketWeights,
                       lines: _Lines) -> dict[tuple[str, str], int]:
    """Availability, energy, charging refunds and credits; returns plugged-in MTUs per contract and vehicle."""
    plugged: dict[tuple[str, str], int] = defaultdict(int)
    for i, r in enumerate(records):
        if not isinstance(r, VehicleMtu):
            raise DomainError(f"vehicle_mtus[{i}]", f"must be a VehicleMtu; got {type(r).__name__}")
    span: _Span | None = None
    previous: tuple[str, datetime] | None = None
    for i, r in sorted(enumerate(records), key=lambda ir: (ir[1].vehicle_id, ir[1].mtu)):
        where, v, mtu = f"vehicle_mtus[{i}]", r.vehicle_id, r.mtu
        if not month.start <= mtu < month.end:
            raise DomainError(f"{where}.mtu", f"{mtu.isoformat()} is outside {month.label}")
        if previous == (v, mtu):
            raise DomainError(where, f"a second record for vehicle {v} at {mtu.isoformat()}")
        previous = (v, mtu)
        if span is None or span.v != v or not span.start <= mtu < span.until:
            c, t, until = fleet.span(v, mtu, where)
            span = _Span(c, t, v, mtu, until, lines)
        t, end = span.t, mtu + MTU
        if r.plugged_in:
            plugged[(span.c.contract_id, v)] += 1
        if r.controllable and t.availability_per_hour:
            span.line(Source.AVAILABILITY, mtu, "h", t.availability_per_hour, f"{span.cur}/h").add(end, QUARTER_HOUR)
        if r.discharged_kwh and t.energy_per_kwh:
            line = span.line(Source.ENERGY, mtu, "kWh", t.energy_per_kwh, f"{span.cur}/kWh", energy=True)
            line.add(end, r.discharged_kwh)
            line.energy.add(r.discharged_kwh, weights.at(v, mtu))  # type: ignore[union-attr]
        refund = t.charging_refund
        if refund is not None:
            kwh = r.charged_kwh if refund.scope is RefundScope.ALL else r.platform_charged_kwh
            if kwh:
                _refund(span, r, where, kwh, weights)
        if r.broken_departures and t.credit_per_broken_departure:
            span.line(Source.CREDIT_DEPARTURE, mtu, "event", t.credit_per_broken_departure,
                      f"{span.cur}/event").add(end, Decimal(r.broken_departures))
        if r.broken_min_soc and t.credit_per_broken_min_soc:
            span.line(Source.CREDIT_MIN_SOC, mtu, "event", t.credit_per_broken_min_soc,
                      f"{span.cur}/event").add(end, Decimal(r.broken_min_soc))
    return plugged


def _refund(span: _Span, r: VehicleMtu, where: str, kwh: Decimal, weights: MarketWeights) -> None:
    refund = span.t.charging_refund
    assert refund is not None
    price = refund.per_kwh if refund.per_kwh is not None else r.charging_price_per_kwh
    if price is None:
        raise DomainError(f"{where}.charging_price_per_kwh",
                          f"term {span.t.term_id} of contract {span.c.contract_id} refunds charging at the price "
                          f"paid; vehicle {r.vehicle_id} at {r.mtu.isoformat()} has none")
    unit = f"{span.cur}/kWh" if refund.per_kwh is not None else "price paid"
    line = span.line(Source.CHARGING_REFUND, r.mtu, "kWh", refund.per_kwh, unit, energy=True)
    line.add(r.mtu + MTU, kwh)
    if refund.per_kwh is None:
        line.paid = EXACT.add(line.paid or Decimal(0), EXACT.multiply(kwh, price))
    line.energy.add(kwh, weights.at(r.vehicle_id, r.mtu))  # type: ignore[union-attr]


def _fixed_lines(month: Month, fleet: _Fleet, lines: _Lines) -> None:
    """A fixed monthly amount per vehicle, pro rata by the MTUs each term is in force in the month."""
    for c in fleet.contracts:
        for t, a, b in fleet.covered(c):
            if t.fixed_monthly:
                share = Fraction((b - a) // MTU, month.n_mtus)
                for v in c.vehicle_ids:
                    line = lines.get(c, v, Source.FIXED, t, a, b, "month", t.fixed_monthly, f"{c.currency.value}/month")
                    line.quantity, line.exact = share, share * Fraction(t.fixed_monthly)


def _wear_lines(month: Month, fleet: _Fleet, traces: Sequence[SocTrace], fx: _Fx,
                lines: _Lines) -> list[WearAssessment]:
    """Wear pay per vehicle and term: lost kWh of capacity (by throughput share) x pack value x factor."""
    out, seen = [], set()
    for i, tr in sorted(enumerate(traces), key=lambda it: getattr(it[1], "vehicle_id", "")):
        where = f"soc_traces[{i}]"
        if not isinstance(tr, SocTrace):
            raise DomainError(where, f"must be a SocTrace; got {type(tr).__name__}")
        if tr.vehicle_id in seen:
            raise DomainError(f"{where}.vehicle_id", f"a second trace for vehicle {tr.vehicle_id} (one per month)")
        seen.add(tr.vehicle_id)
        if tr.start < month.start or tr.end > month.end:
            raise DomainError(f"{where}.start", f"the trace ({tr.start.isoformat()} to {tr.end.isoformat()}) is not "
                                                f"inside {month.label}")
        wear = assess_wear(tr)
        out.append(wear)
        by_mtu = throughput_by_mtu(tr, month.start) or {mtu_floor(tr.start): Fraction(1)}
        groups: dict[tuple[str, str], tuple[Contract, ContractTerm, Fraction, datetime, datetime]] = {}
        for mtu, moved in sorted(by_mtu.items()):
            c, t = fleet.at(tr.vehicle_id, mtu, where)
            _, _, x, a, _ = groups.get((c.contract_id, t.term_id), (c, t, Fraction(0), mtu, mtu))
            groups[(c.contract_id, t.term_id)] = (c, t, x + moved, a, mtu + MTU)
        total = sum((g[2] for g in groups.values()), Fraction(0))
        for c, t, moved, a, b in groups.values():
            if not t.wear_factor or not wear.lost_kwh:
                continue
            pack = Fraction(tr.pack_value_per_kwh)
            if tr.pack_value_currency != c.currency:
                pack *= fx(tr.pack_value_currency, c.currency).factor
            rate = pack * Fraction(t.wear_factor)
            lost = Fraction(wear.lost_kwh) * moved / total
            line = lines.get(c, tr.vehicle_id, Source.WEAR, t, a, b, "kWh of capacity", _decimal(rate, 4),
                             f"{c.currency.value}/kWh of capacity")
            line.quantity, line.exact = lost, lost * rate
    return out


# ----------------------------------------------------------------------- revenue share and obligations


def _check_obligations(month: Month, obligations: Iterable[ObligationMtu]) -> tuple[list[ObligationMtu],
                                                                                   dict[str, Currency]]:
    markets: dict[str, Currency] = {}
    seen: set[tuple[str, datetime]] = set()
    out = []
    for i, o in enumerate(obligations):
        where = f"obligations[{i}]"
        if not isinstance(o, ObligationMtu):
            raise DomainError(where, f"must be an ObligationMtu; got {type(o).__name__}")
        if o.product_id == UNATTRIBUTED:
            raise DomainError(f"{where}.product_id", f"{UNATTRIBUTED!r} is reserved")
        if o.mtu_start < month.start or o.mtu_end > month.end:
            raise DomainError(f"{where}.mtu_start", f"obligation {o.obligation_id} at {o.mtu_start.isoformat()} is "
                                                    f"outside {month.label}")
        if (o.obligation_id, o.mtu_start) in seen:
            raise DomainError(where, f"obligation {o.obligation_id} at {o.mtu_start.isoformat()} is given twice")
        seen.add((o.obligation_id, o.mtu_start))
        if markets.setdefault(o.product_id, o.currency) != o.currency:
            raise DomainError(f"{where}.currency", f"{o.product_id} is settled in {markets[o.product_id].value}, "
                                                   f"obligation {o.obligation_id} says {o.currency.value}")
        out.append(o)
    out.sort(key=lambda o: (o.mtu_start, o.obligation_id))
    return out, markets


def _revenue_share(obligations: list[ObligationMtu], fleet: _Fleet, lines: _Lines) -> list[ObligationSettlement]:
    """Market money per obligation MTU, and each committed vehicle's share of its net."""
    out = []
    for o in obligations:
        revenue = minor_units(o.revenue, o.currency)
        pens = tuple(sorted((PenaltyAmount(p.cause, p.kind.value, minor_units(p.amount, o.currency))
                             for p in o.penalties), key=lambda p: (p.cause, p.kind, p.amount)))
        net = max(0, revenue - sum(p.amount for p in pens))
        total_kw = Fraction(o.committed_kw)
        exact: dict[tuple[int, str], Fraction] = {}
        who: dict[str, tuple[Contract, ContractTerm, Decimal]] = {}
        for c in o.commitments:
            contract, t = fleet.at(c.vehicle_id, o.mtu_start, f"obligations[{o.obligation_id}].commitments")
            if t.revenue_share_pct and net:
                exact[(0, c.vehicle_id)] = net * Fraction(c.kw) / total_kw * Fraction(t.revenue_share_pct) / 100
                who[c.vehicle_id] = (contract, t, c.kw)
        share = 0
        if exact:
            parts = allocate(net, {**exact, (1, ""): net - sum(exact.values())})
            for (owner_first, v), part in parts.items():
                if owner_first:
                    continue
                contract, t, kw = who[v]
                line = lines.get(contract, v, Source.CAPACITY_SHARE, t, o.mtu_start, o.mtu_end, "kW",
                                 t.revenue_share_pct, "%", obligation_id=o.obligation_id, market=o.product_id,
                                 mtu=o.mtu_start)
                line.quantity, line.market_amount = Fraction(kw), part
                share += part
        out.append(ObligationSettlement(o.obligation_id, o.product_id, o.mtu_start, o.mtu_end, o.currency, revenue,
                                        pens, net, share, net - share))
    return out


# ------------------------------------------------------------------------------ pricing and the cap


def _price(lines: _Lines, fx: _Fx, markets: dict[str, Currency]) -> None:
    """Round every line once; revenue-share lines are converted per market and currency pair."""
    batches: dict[tuple[str, Currency, Currency], dict[str, int]] = defaultdict(dict)
    for line in lines.by_key.values():
        if line.source is Source.CAPACITY_SHARE:
            mcur = markets[line.market]  # type: ignore[index]
            if mcur == line.contract.currency:
                line.amount = line.market_amount
            else:
                batches[(line.market, mcur, line.contract.currency)][line.line_id] = line.market_amount  # type: ignore[index]
            line.market_parts = {line.market: line.market_amount}  # type: ignore[dict-item]
        else:
            line.amount = round_half_up(to_minor(line.money(), line.contract.currency))
    by_id = {x.line_id: x for x in lines.by_key.values()}
    for (_, a, b), items in sorted(batches.items()):
        for line_id, amount in convert_batch(items, fx(a, b)).items():
            by_id[line_id].amount = amount
    for line in lines.by_key.values():
        if line.source is Source.CAPACITY_SHARE:
            line.parts = {line.market: line.amount}  # type: ignore[dict-item]


def _eligibility(month: Month, fleet: _Fleet, plugged: dict[tuple[str, str], int],
                 lines: _Lines) -> list[EligibilityCheck]:
    """Below the (pro rata) minimum plugged-in hours, availability and fixed pay are forfeited."""
    out = []
    for c in fleet.contracts:
        periods = fleet.covered(c)
        t = periods[-1][0]
        if not t.min_plugged_in_hours:
            continue
        covered = sum((b - a) // MTU for _, a, b in periods)
        required = Fraction(t.min_plugged_in_hours) * covered / month.n_mtus
        for v in c.vehicle_ids:
            hours = Fraction(plugged.get((c.contract_id, v), 0), 4)
            ok = hours >= required
            need = _decimal(required, 2)
            out.append(EligibilityCheck(c.contract_id, v, t.term_id, _tidy(_decimal(hours, 2)), need, ok))
            if ok:
                continue
            for line in lines.of(c.contract_id):
                if line.vehicle_id == v and line.source in GATED and line.amount:
                    line.forfeited, line.amount = line.amount, 0
                    line.note = f"not eligible: {_decimal(hours, 2)} h plugged in, {need} h required"
    return out


def _attribute(lines: _Lines, weights: MarketWeights) -> None:
    for line in lines.by_key.values():
        if line.source is Source.CAPACITY_SHARE or not line.amount:
            continue
        month = weights.month(line.vehicle_id)  # type: ignore[arg-type]
        w = line.energy.resolve(month) if line.energy is not None else month
        line.parts = {m: p for m, p in allocate(line.amount, w).items()}


def _cap(month: Month, fleet: _Fleet, usage: Iterable[CapUsage], lines: _Lines) -> list[CapUsage]:
    """Cut the month's capped pay to what the contract's annual cap has left, per calendar year."""
    before = {}
    for i, u in enumerate(usage):
        if not isinstance(u, CapUsage):
            raise DomainError(f"cap_usage[{i}]", f"must be a CapUsage; got {type(u).__name__}")
        if u.year == month.first_day.year:
            if u.contract_id in before:
                raise DomainError(f"cap_usage[{i}]", f"a second {u.year} record for contract {u.contract_id}")
            before[u.contract_id] = u.counted
    out = []
    for c in fleet.contracts:
        periods = fleet.covered(c)
        t = periods[-1][0]
        capped = [x for x in lines.of(c.contract_id) if x.source in CAPPED]
        earned = sum(x.amount for x in capped)
        counted = before.get(c.contract_id, 0)
        cut = 0
        if t.annual_cap is not None:
            cap = minor_units(t.annual_cap, c.currency)
            cut = max(0, earned - max(0, cap - counted))
        if cut:
            cur = c.currency
            line = lines.get(c, None, Source.CAP, t, periods[0][1], periods[-1][2], cur.value, t.annual_cap,
                             f"{cur.value}/year")
            line.quantity, line.amount = Fraction(major(earned, cur)), -cut
            line.note = (f"annual cap {format_money(cap, cur)}: {format_money(counted, cur)} counted before this "
                         f"month, {format_money(earned, cur)} this month")
            w: dict[str, int] = defaultdict(int)
            for x in capped:
                for m, p in x.parts.items():
                    w[m] += p
            line.parts = allocate(-cut, w)
        out.append(CapUsage(c.contract_id, month.first_day.year, counted + earned - cut))
    return out


def _convert_parts(lines: _Lines, fx: _Fx, markets: dict[str, Currency]) -> None:
    """Each part in the market's currency: converted per market, pair and sign as one batch."""
    batches: dict[tuple[str, Currency, Currency, bool], dict[tuple[str, str], int]] = defaultdict(dict)
    by_id = {}
    for line in lines.by_key.values():
        if line.source is Source.CAPACITY_SHARE:
            continue
        by_id[line.line_id] = line
        for m, p in line.parts.items():
            mcur = markets.get(m, line.contract.currency)
            if mcur == line.contract.currency:
                line.market_parts[m] = p
            elif p:
                batches[(m, line.contract.currency, mcur, p > 0)][(line.line_id, m)] = p
            else:
                line.market_parts[m] = 0
    for (_, a, b, _), items in sorted(batches.items()):
        for (line_id, m), amount in convert_batch(items, fx(a, b)).items():
            by_id[line_id].market_parts[m] = amount


# ------------------------------------------------------------------------------------- ledger


def _acc(kind: AccountKind, key: str = "", sub: str = "") -> Account:
    return Account(kind, key, sub)


def _market_entries(settled: list[ObligationSettlement]) -> list[JournalEntry]:
    out = []
    for s in settled:
        ctx = dict(market=s.market, obligation_id=s.obligation_id, mtu=s.mtu_start)
        mtu = s.mtu_start.isoformat()
        out.append(entry(f"revenue|{s.obligation_id}|{mtu}", EntryKind.REVENUE, (
            Posting(_acc(AccountKind.MARKET_RECEIVABLE, s.market), s.currency, s.revenue, **ctx),
            Posting(_acc(AccountKind.MARKET_REVENUE, s.market), s.currency, -s.revenue, **ctx))))
        for i, p in enumerate(s.penalties):
            out.append(entry(f"penalty|{s.obligation_id}|{mtu}|{i}", EntryKind.PENALTY, (
                Posting(_acc(AccountKind.PENALTY, s.market, f"{p.cause}:{p.kind}"), s.currency, p.amount, **ctx),
                Posting(_acc(AccountKind.MARKET_RECEIVABLE, s.market), s.currency, -p.amount, **ctx))))
    return out


def _pay_entry(line: OwnerLine) -> JournalEntry:
    ctx = dict(obligation_id=line.obligation_id, mtu=line.mtu, vehicle_id=line.vehicle_id, owner_id=line.owner_id,
               contract_id=line.contract_id, term_id=line.term_id, line_id=line.line_id)
    postings = []
    cur = line.currency
    for part in line.parts:
        kind = AccountKind.WEAR_PAY if line.source is Source.WEAR else AccountKind.OWNER_PAY
        sub = "" if line.source is Source.WEAR else line.source.value
        mcur = part.market_currency
        postings.append(Posting(_acc(kind, part.market, sub), mcur, part.market_amount, market=part.market, **ctx))
        if mcur != cur:
            fx = _acc(AccountKind.FX_CONVERSION)
            postings.append(Posting(fx, mcur, -part.market_amount, market=part.market, **ctx))
            postings.append(Posting(fx, cur, part.amount, market=part.market, **ctx))
        postings.append(Posting(_acc(AccountKind.OWNER_PAYABLE, line.owner_id), cur, -part.amount, market=part.market,
                                **ctx))
    return entry(f"pay|{line.line_id}", EntryKind.PAY, postings)


def _close(entries: list[JournalEntry]) -> tuple[list[JournalEntry], list[ReconciliationRow]]:
    """Per market and currency, the month's margin: close revenue, penalties and pay into it."""
    nominal = (AccountKind.MARKET_REVENUE, AccountKind.PENALTY, AccountKind.OWNER_PAY, AccountKind.WEAR_PAY)
    per: dict[tuple[str, Currency], dict[Account, int]] = defaultdict(dict)
    for (acc, cur), bal in balances(entries).items():
        if acc.kind in nominal:
            per[(acc.key, cur)][acc] = bal
    closing, rows = [], []
    for (market, cur), accs in sorted(per.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
        def total(kind: AccountKind) -> int:
            return sum(b for a, b in accs.items() if a.kind is kind)
        revenue = -total(AccountKind.MARKET_REVENUE)
        row = ReconciliationRow(market, cur, revenue, total(AccountKind.PENALTY), total(AccountKind.OWNER_PAY),
                                total(AccountKind.WEAR_PAY), 0)
        margin = revenue - row.penalties - row.payouts
        rows.append(ReconciliationRow(market, cur, revenue, row.penalties, row.owner_pay, row.wear_pay, margin))
        postings = [Posting(a, cur, -b, market=market) for a, b in accs.items()]
        postings.append(Posting(_acc(AccountKind.AGGREGATOR_MARGIN, market), cur, -margin, market=market))
        closing.append(entry(f"close|{market}|{cur.value}", EntryKind.CLOSE, postings))
    return closing, rows


# ----------------------------------------------------------------------------------------- settle


def _decimal(x: Fraction | Decimal, places: int) -> Decimal:
    """`x` rounded half up to `places` decimals, exactly (for quantities shown on statements)."""
    return Decimal(round_half_up(Fraction(x) * 10**places)).scaleb(-places)


def _tidy(d: Decimal) -> Decimal:
    """Without trailing zeros and without an exponent (10, not 1E+1), for statements."""
    d = d.normalize()
    return d.quantize(Decimal(1)) if d.as_tuple().exponent > 0 else d  # type: ignore[operator]


def _owner_line(line: _Line, markets: dict[str, Currency]) -> OwnerLine:
    c = line.contract
    parts = tuple(MarketPart(m, markets.get(m, c.currency), p, line.market_parts.get(m, p))
                  for m, p in sorted(line.parts.items()) if p or line.market_parts.get(m))
    quantity = _tidy(_decimal(line.quantity, 3 if line.source is Source.WEAR else 6))
    return OwnerLine(line.line_id, c.owner_id, c.contract_id, line.vehicle_id, line.source, line.term.term_id,
                     c.currency, line.amount, quantity, line.unit, line.rate,
                     line.rate_unit, line.first, line.last_end, line.obligation_id, line.market, line.mtu,
                     line.forfeited, line.note, parts)


def _line_order(x: OwnerLine) -> tuple:
    return (x.owner_id, x.contract_id, x.vehicle_id or "~", SOURCE_ORDER[x.source], x.period_start, x.term_id,
            x.obligation_id or "", x.line_id)


def settle_month(month: Month, contracts: Iterable[Contract], obligations: Iterable[ObligationMtu],
                 vehicle_mtus: Sequence[VehicleMtu], soc_traces: Sequence[SocTrace] = (),
                 cap_usage: Iterable[CapUsage] = (), rates: ExchangeRates | None = None) -> Settlement:
    """Settle `month` (see the module doc); `rates` defaults to the packaged ECB rates."""
    if not isinstance(month, Month):
        raise DomainError("month", f"must be a Month; got {type(month).__name__}")
    fleet = _Fleet(month, contracts)
    fx = _Fx(rates if rates is not None else default_exchange_rates(), month)
    obs, markets = _check_obligations(month, obligations)
    weights = MarketWeights(obs)
    lines = _Lines()
    plugged = _vehicle_mtu_lines(month, fleet, list(vehicle_mtus), weights, lines)
    _fixed_lines(month, fleet, lines)
    wear = _wear_lines(month, fleet, list(soc_traces), fx, lines)
    settled = _revenue_share(obs, fleet, lines)
    _price(lines, fx, markets)
    eligibility = _eligibility(month, fleet, plugged, lines)
    _attribute(lines, weights)
    usage = _cap(month, fleet, cap_usage, lines)
    _convert_parts(lines, fx, markets)
    owner_lines = sorted((_owner_line(x, markets) for x in lines.by_key.values()), key=_line_order)
    entries = _market_entries(settled)
    entries += [_pay_entry(x) for x in owner_lines if x.parts]
    closing, rows = _close(entries)
    return Settlement(
        month=month, lines=tuple(owner_lines), entries=tuple(entries + closing), reconciliation=tuple(rows),
        obligations=tuple(settled), eligibility=tuple(eligibility), wear=tuple(wear),
        fx_rates=tuple(fx.used[k] for k in sorted(fx.used, key=lambda k: (k[0].value, k[1].value))),
        cap_usage=tuple(usage))

