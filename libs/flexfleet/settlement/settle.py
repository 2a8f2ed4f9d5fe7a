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

Scale: a fleet's month is ~100 M vehicle MTUs. They are read as `VehicleMtus` columns and summed
per vehicle and term in integers with numpy (`_Rows`); records are turned into columns once, and
`_vehicle_mtu_lines` keeps the per-record reading as the reference the columns are tested against.
Revenue share splits each obligation in integer weights (`_owner_parts`), so Python objects are
made per line, commitment and entry, not per MTU.

Margin is what is left: revenue - penalties - owner pay - wear pay per market, posted by the
closing entry to aggregator_margin. It may be negative (fixed pay, availability and wear are
owed whatever the market paid; the aggregator carries that risk); owners are never charged for
a loss, and a market with no revenue in the month still closes, with a negative margin.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from fractions import Fraction
from functools import cache, cached_property

import numpy as np

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency
from flexfleet.domain.time import MTU, mtu_floor
from flexfleet.markets.exchange_rates import ExchangeRates, default_exchange_rates
from flexfleet.settlement.allocation import allocate
from flexfleet.settlement.attribution import EnergyWeights, MarketWeights, Profile, convert_batch
from flexfleet.settlement.contracts import Contract, ContractTerm, RefundScope
from flexfleet.settlement.inputs import CapUsage, Month, ObligationMtu, SocTrace, VehicleMtu, VehicleMtus
from flexfleet.settlement.ledger import (Account, AccountKind, EntryKind, JournalEntry, Posting, balances,
                                         entry)
from flexfleet.settlement.lines import (CAPPED, GATED, SOURCE_ORDER, UNATTRIBUTED, EligibilityCheck, MarketPart,
                                        ObligationSettlement, OwnerLine, PenaltyAmount, ReconciliationRow, Source)
from flexfleet.settlement.money import (EXACT, MINOR_DIGITS, FxRate, format_money, fx_rate, major, minor_units,
                                        round_half_up, to_minor)
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
        self._last: dict[str, tuple[Contract, ContractTerm, datetime, datetime]] = {}

    def at(self, vehicle_id: str, mtu: datetime, where: str) -> tuple[Contract, ContractTerm]:
        last = self._last.get(vehicle_id)      # a vehicle's commitments come in time order: one span, many MTUs
        if last is not None and last[2] <= mtu < last[3]:
            return last[0], last[1]
        c, t, until = self.span(vehicle_id, mtu, where)
        self._last[vehicle_id] = (c, t, max(t.valid_from, c.starts), until)
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

    @cached_property
    def line_id(self) -> str:
        mtu = self.mtu.isoformat() if self.mtu else "-"
        return "|".join((self.contract.contract_id, self.vehicle_id or "-", self.source.value, self.term.term_id,
                         self.obligation_id or "-", mtu))

    def minor(self) -> int:
        """The amount rounded half up to minor units of the contract's currency (rule 1, once)."""
        digits = MINOR_DIGITS[self.contract.currency]
        if self.exact is None and self.paid is not None:
            return int(EXACT.multiply(self.paid, Decimal(10) ** digits).to_integral_value(ROUND_HALF_UP, EXACT))
        if self.exact is None and type(self.quantity) is Decimal and self.rate is not None:
            d = EXACT.multiply(EXACT.multiply(self.quantity, self.rate), Decimal(10) ** digits)
            return int(d.to_integral_value(ROUND_HALF_UP, EXACT))   # exact: EXACT raises rather than round
        return round_half_up(to_minor(self.money(), self.contract.currency))

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


# ------------------------------------------------------------------------ vehicle MTUs as columns


def _run_bounds(span_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends of the runs of equal values in a sorted array."""
    if not len(span_of):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, span_of[1:] != span_of[:-1]])
    return starts, np.r_[starts[1:], len(span_of)]


class _Rows:
    """The month's vehicle MTUs sorted by (vehicle id, MTU), cut into spans (one vehicle, one
    term): every sum is a numpy reduction over a span's rows, so only lines become objects."""

    def __init__(self, month: Month, fleet: _Fleet, cols: VehicleMtus) -> None:
        self.month, self.cols, n = month, cols, month.n_mtus
        self.ids = cols.vehicle_ids
        by_name = sorted(range(len(self.ids)), key=lambda i: self.ids[i])
        rank = np.empty(len(self.ids), np.int64)
        rank[by_name] = np.arange(len(self.ids))
        self.rank_of = {self.ids[i]: int(rank[i]) for i in range(len(self.ids))}
        self.id_of_rank = [self.ids[i] for i in by_name]
        off = (cols.origin - month.start) // MTU
        if int(cols.mtu.min()) + off < 0 or int(cols.mtu.max()) + off >= n:
            at = cols.mtu.astype(np.int64) + off
            bad = np.flatnonzero((at < 0) | (at >= n))      # the first in (vehicle, MTU) order, as per record
            i = int(bad[np.lexsort((bad, at[bad], rank[cols.vehicle[bad]]))[0]])
            ts = cols.origin + int(cols.mtu[i]) * MTU
            raise DomainError(f"vehicle_mtus[{i}].mtu", f"{ts.isoformat()} is outside {month.label}")
        m = cols.mtu.astype(np.int64 if cols.mtu.dtype.itemsize > 4 or cols.mtu.dtype.kind == "u" else np.int32)
        m += off
        key = rank[cols.vehicle] * n + m
        del m
        self.order: np.ndarray | None = None
        if len(key) > 1 and not bool(np.all(key[1:] > key[:-1])):
            self.order = np.argsort(key, kind="stable")
            key = key[self.order]
        self.key = key
        dup = np.flatnonzero(key[1:] == key[:-1]) if self.order is not None else ()
        if len(dup):
            self._fail(int(dup[0]) + 1, "a second record for vehicle {v} at {ts}")
        self._spans(fleet)

    def _original(self, j: int) -> int:
        return int(self.order[j]) if self.order is not None else j

    def at(self, j: int) -> tuple[str, datetime]:
        k = int(self.key[j])
        return self.id_of_rank[k // self.month.n_mtus], self.month.start + (k % self.month.n_mtus) * MTU

    def _fail(self, j: int, reason: str, field: str = "") -> None:
        v, ts = self.at(j)
        raise DomainError(f"vehicle_mtus[{self._original(j)}]{field}", reason.format(v=v, ts=ts.isoformat()))

    def col(self, name: str) -> np.ndarray | None:
        """A column in sorted row order."""
        arr = getattr(self.cols, name)
        return arr if arr is None or self.order is None else arr[self.order]

    def _spans(self, fleet: _Fleet) -> None:
        n = self.month.n_mtus
        spans = []
        for c in fleet.contracts:
            for v in c.vehicle_ids:
                r = self.rank_of.get(v)
                if r is None:
                    continue
                for t, a, b in fleet.covered(c):
                    lo, hi = (a - self.month.start) // MTU, (b - self.month.start) // MTU
                    spans.append((r * n + lo, r * n + hi, c, t, v))
        spans.sort(key=lambda s: s[0])
        self.spans = spans
        lo_keys = np.array([s[0] for s in spans], dtype=np.int64)
        hi_keys = np.array([s[1] for s in spans], dtype=np.int64)
        self.lo = np.searchsorted(self.key, lo_keys, "left")
        self.hi = np.searchsorted(self.key, hi_keys, "left")
        if int((self.hi - self.lo).sum()) != len(self.key):
            cover = np.zeros(len(self.key) + 1, np.int32)
            np.add.at(cover, self.lo, 1)
            np.add.at(cover, self.hi, -1)
            j = int(np.argmax(np.cumsum(cover)[:-1] == 0))
            self._fail(j, "vehicle {v} has no contract with terms in force at {ts}")

    def mtu_of(self, j: int) -> datetime:
        return self.month.start + int(self.key[j] % self.month.n_mtus) * MTU

    def dense(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per span: how many rows hold `mask`, and the first and last such row (where any)."""
        cs = np.zeros(len(mask) + 1, np.int64 if len(mask) >= 2**31 else np.int32)
        np.cumsum(mask, out=cs[1:])
        count = cs[self.hi] - cs[self.lo]
        first = np.searchsorted(cs, cs[self.lo] + 1, "left") - 1
        last = np.searchsorted(cs, cs[self.hi], "left") - 1
        return count, first, last

    def sparse(self, values: np.ndarray, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows where `values` > 0 in the spans `spans` (a mask over spans), and their span."""
        idx = np.flatnonzero(values)
        span_of = np.searchsorted(self.lo, idx, "right") - 1
        # a span may be empty (lo == hi): searchsorted picks the last of equal starts, the one holding the row
        keep = spans[span_of]
        return idx[keep], span_of[keep]


def _grouped_sums(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums of int `values` per run of equal sorted `groups`: (group, sum, first position of the run)."""
    starts, _ = _run_bounds(groups)
    if not len(starts):
        return groups[:0], np.zeros(0, np.int64), starts
    sums = np.add.reduceat(values.astype(np.int64), starts) if values.dtype != object \
        else np.add.reduceat(values, starts)
    return groups[starts], sums, starts


def _profile_ids(rows: _Rows, weights: MarketWeights) -> tuple[np.ndarray, np.ndarray, list[Profile]]:
    """Commitment profiles (committed kW per market) by row key: sorted keys, profile ids, profiles
    (id 0 = no commitment). A vehicle in one obligation at an MTU (nearly all) needs no Python."""
    n, start = rows.month.n_mtus, rows.month.start
    pairs: dict[tuple[str, Decimal], int] = {}
    keys, lengths, pair_of = [], [], []
    for o in weights.obligations:
        a, q = (o.mtu_start - start) // MTU, (o.mtu_end - o.mtu_start) // MTU
        for c in o.commitments:
            r = rows.rank_of.get(c.vehicle_id)
            if r is not None:
                keys.append(r * n + a)
                lengths.append(q)
                pair_of.append(pairs.setdefault((o.product_id, c.kw), len(pairs)))
    profiles: list[Profile] = [()] + [((m, kw),) for m, kw in pairs]
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), profiles
    q = np.array(lengths, dtype=np.int64)
    which = np.repeat(np.arange(len(q)), q)
    k = np.array(keys, dtype=np.int64)[which] + (np.arange(len(which)) - np.repeat(np.cumsum(q) - q, q))
    pid = np.array(pair_of, dtype=np.int64)[which] + 1
    order = np.argsort(k, kind="stable")
    k, pid = k[order], pid[order]
    starts, ends = _run_bounds(k)
    ids = pid[starts]
    index = {p: i for i, p in enumerate(profiles)}
    by_pair = list(pairs)
    for g in np.flatnonzero(ends - starts > 1).tolist():   # several commitments in one MTU: summed per market
        slot: dict[str, Decimal] = {}
        for x in pid[starts[g]:ends[g]].tolist():
            m, kw = by_pair[x - 1]
            slot[m] = EXACT.add(slot.get(m, Decimal(0)), kw)
        profile = tuple(sorted(slot.items()))
        if profile not in index:
            index[profile] = len(profiles)
            profiles.append(profile)
        ids[g] = index[profile]
    return k[starts], ids, profiles


def _energy_weights(rows: _Rows, table: tuple[np.ndarray, np.ndarray, list[Profile]], idx: np.ndarray,
                    span_of: np.ndarray, kwh: np.ndarray, lines_of: dict[int, _Line]) -> None:
    """kWh per line and commitment profile of the MTUs it flowed in (as `EnergyWeights.add` per record)."""
    tkeys, tids, profiles = table
    k = rows.key[idx]
    pos = np.minimum(np.searchsorted(tkeys, k), max(len(tkeys) - 1, 0))
    pid = np.where((tkeys[pos] == k) if len(tkeys) else np.zeros(len(k), bool), tids[pos] if len(tids) else 0, 0)
    group = span_of * len(profiles) + pid
    order = np.argsort(group, kind="stable")
    g, sums, _ = _grouped_sums(kwh[order], group[order])
    scale = -rows.cols.kwh_places
    for gi, s in zip(g.tolist(), sums.tolist()):
        line = lines_of[gi // len(profiles)]
        line.energy.add(Decimal(s).scaleb(scale), profiles[gi % len(profiles)])  # type: ignore[union-attr]


def _line_at(rows: _Rows, lines: _Lines, s: int, source: Source, unit: str, rate: Decimal | None, rate_unit: str,
             first: int, last: int, quantity: Decimal, energy: bool = False) -> _Line:
    _, _, c, t, v = rows.spans[s]
    a, b = rows.mtu_of(first), rows.mtu_of(last) + MTU
    line = lines.get(c, v, source, t, a, a + MTU, unit, rate, rate_unit,
                     **({"energy": EnergyWeights()} if energy else {}))
    line.quantity, line.last_end = quantity, b
    return line


def _vehicle_mtu_columns(month: Month, fleet: _Fleet, cols: VehicleMtus, weights: MarketWeights,
                         lines: _Lines) -> dict[tuple[str, str], int]:
    """`_vehicle_mtu_lines` over columns: the same lines, each quantity summed exactly as integers.

    Bad rows are refused as the per-record path refuses them, naming the first bad row in
    (vehicle, MTU) order; a month with faults of several kinds may have another one named first.
    """
    plugged: dict[tuple[str, str], int] = defaultdict(int)
    if not len(cols):
        return plugged
    rows = _Rows(month, fleet, cols)
    spans = rows.spans
    terms = [s[3] for s in spans]
    cur = [s[2].currency.value for s in spans]
    count, _, _ = rows.dense(rows.col("plugged_in"))
    for s, k in enumerate(count.tolist()):
        if k:
            plugged[(spans[s][2].contract_id, spans[s][4])] += k
    if any(t.availability_per_hour for t in terms):
        count, first, last = rows.dense(rows.col("controllable"))
        for s, (k, a, b) in enumerate(zip(count.tolist(), first.tolist(), last.tolist())):
            t = terms[s]
            if k and t.availability_per_hour:
                _line_at(rows, lines, s, Source.AVAILABILITY, "h", t.availability_per_hour, f"{cur[s]}/h", a, b,
                         EXACT.multiply(Decimal(k), QUARTER_HOUR))
    table = None
    scale = -cols.kwh_places

    def summed(values: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int, int]]]:
        idx, span_of = rows.sparse(values, want)
        g, sums, starts = _grouped_sums(values[idx], span_of)
        ends = np.r_[starts[1:], len(idx)] - 1 if len(starts) else starts
        out = [(s, q, int(idx[a]), int(idx[b])) for s, q, a, b in zip(g.tolist(), sums.tolist(), starts, ends)]
        return idx, span_of, out

    discharged = rows.col("discharged")
    want = np.array([bool(t.energy_per_kwh) for t in terms])
    if discharged is not None and want.any():
        idx, span_of, groups = summed(discharged, want)
        lines_of = {s: _line_at(rows, lines, s, Source.ENERGY, "kWh", terms[s].energy_per_kwh, f"{cur[s]}/kWh", a, b,
                                Decimal(q).scaleb(scale), energy=True) for s, q, a, b in groups}
        table = _profile_ids(rows, weights)
        _energy_weights(rows, table, idx, span_of, discharged[idx], lines_of)
    refunds = _refund_rows(rows, terms)
    for name, idx, span_of in refunds:
        kwh = rows.col(name)[idx]  # type: ignore[index]
        g, sums, starts = _grouped_sums(kwh, span_of)
        ends = np.r_[starts[1:], len(idx)] - 1
        table = table or _profile_ids(rows, weights)
        lines_of = {}
        for s, q, a, b in zip(g.tolist(), sums.tolist(), idx[starts].tolist(), idx[ends].tolist()):
            refund = terms[s].charging_refund
            unit = f"{cur[s]}/kWh" if refund.per_kwh is not None else "price paid"  # type: ignore[union-attr]
            per_kwh = refund.per_kwh  # type: ignore[union-attr]
            lines_of[s] = _line_at(rows, lines, s, Source.CHARGING_REFUND, "kWh", per_kwh, unit, a, b,
                                   Decimal(q).scaleb(scale), energy=True)
        _energy_weights(rows, table, idx, span_of, kwh, lines_of)
        _paid(rows, terms, idx, span_of, kwh, lines_of)
    for source, name, rate_name in ((Source.CREDIT_DEPARTURE, "broken_departures", "credit_per_broken_departure"),
                                    (Source.CREDIT_MIN_SOC, "broken_min_soc", "credit_per_broken_min_soc")):
        counts = rows.col(name)
        want = np.array([bool(getattr(t, rate_name)) for t in terms])
        if counts is None or not want.any():
            continue
        for s, q, a, b in summed(counts, want)[2]:
            _line_at(rows, lines, s, source, "event", getattr(terms[s], rate_name), f"{cur[s]}/event", a, b,
                     Decimal(q))
    return plugged


def _refund_rows(rows: _Rows, terms: list[ContractTerm]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Rows refunded per energy column (all charging or the platform's), with their spans; a row
    refunded at the price paid without a price is refused, the first in (vehicle, MTU) order."""
    out = []
    for scope, name in ((RefundScope.ALL, "charged"), (RefundScope.PLATFORM_CAUSED, "platform_charged")):
        kwh = rows.col(name)
        want = np.array([t.charging_refund is not None and t.charging_refund.scope is scope for t in terms])
        if kwh is not None and want.any():
            idx, span_of = rows.sparse(kwh, want)
            if len(idx):
                out.append((name, idx, span_of))
    at_price = np.array([t.charging_refund is not None and t.charging_refund.per_kwh is None for t in terms])
    has = rows.col("has_price")
    first: tuple[int, int] | None = None
    for _, idx, span_of in out:
        missing = at_price[span_of] & (~has[idx] if has is not None else True)
        if missing.any():
            k = int(np.argmax(missing))
            first = min(first or (int(idx[k]), int(span_of[k])), (int(idx[k]), int(span_of[k])))
    if first is not None:
        _, _, c, t, _ = rows.spans[first[1]]
        rows._fail(first[0], f"term {t.term_id} of contract {c.contract_id} refunds charging at the price paid; "
                             "vehicle {v} at {ts} has none", ".charging_price_per_kwh")
    return out


def _paid(rows: _Rows, terms: list[ContractTerm], idx: np.ndarray, span_of: np.ndarray, kwh: np.ndarray,
          lines_of: dict[int, _Line]) -> None:
    """Refunds at the price paid: sum of kWh x price per line, in exact integers."""
    at_price = np.array([t.charging_refund is not None and t.charging_refund.per_kwh is None for t in terms])
    keep = at_price[span_of]
    if not keep.any():
        return
    idx, span_of, kwh = idx[keep], span_of[keep], kwh[keep]
    price = rows.col("charging_price")
    p = price[idx].astype(np.int64)  # type: ignore[index]
    k = kwh.astype(np.int64)
    bound = int(np.abs(p).max(initial=0)) * int(k.max(initial=0)) * max(len(k), 1)
    products = p * k if bound < 2**62 else p.astype(object) * k.astype(object)
    g, sums, _ = _grouped_sums(products, span_of)
    scale = -(rows.cols.kwh_places + rows.cols.price_places)
    for s, total in zip(g.tolist(), sums.tolist()):
        lines_of[s].paid = Decimal(int(total)).scaleb(scale)


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
        sharing: list[tuple[str, Contract, ContractTerm, Decimal]] = []
        for c in o.commitments:
            contract, t = fleet.at(c.vehicle_id, o.mtu_start, f"obligations[{o.obligation_id}].commitments")
            if t.revenue_share_pct and net:
                sharing.append((c.vehicle_id, contract, t, c.kw))
        share = 0
        if sharing:
            sharing.sort(key=lambda x: x[0])
            for (v, contract, t, kw), part in zip(sharing, _owner_parts(net, o.committed_kw, sharing)):
                line = lines.get(contract, v, Source.CAPACITY_SHARE, t, o.mtu_start, o.mtu_end, "kW",
                                 t.revenue_share_pct, "%", obligation_id=o.obligation_id, market=o.product_id,
                                 mtu=o.mtu_start)
                line.quantity, line.market_amount = kw, part
                share += part
        out.append(ObligationSettlement(o.obligation_id, o.product_id, o.mtu_start, o.mtu_end, o.currency, revenue,
                                        pens, net, share, net - share))
    return out


def _owner_parts(net: int, total_kw: Decimal, sharing: list[tuple[str, Contract, ContractTerm, Decimal]]) -> list[int]:
    """The owners' parts of `net` (sorted by vehicle), split with the aggregator's remainder by the
    largest-remainder rule: owner i's exact share is net x kW_i / total kW x %_i / 100.

    The same as `allocate(net, {(0, vehicle): share, ..., (1, ""): net - sum(shares)})`, with
    the weights as integers (kW_i x %_i over a common power of ten; the rule only compares
    ratios): an hourly obligation backed by thousands of cars needs no Fraction per car.
    """
    kw_places = max(_places(total_kw), *(_places(x[3]) for x in sharing))
    pct_places = max(_places(x[2].revenue_share_pct) for x in sharing)
    ks, ps = 10 ** kw_places, 10 ** pct_places
    w = [int(kw * ks) * int(t.revenue_share_pct * ps) for _, _, t, kw in sharing]
    w.append(int(total_kw * ks) * 100 * ps - sum(w))
    whole = sum(w)
    if net * max(w) < 2**62 and whole < 2**62:
        q, r = np.divmod(np.array(w, dtype=np.int64) * net, whole)
        order = np.lexsort((np.arange(len(w)), -r))
        q[order[:net - int(q.sum())]] += 1
        return q[:-1].tolist()
    parts = allocate(net, dict(enumerate(w)))          # integer weights too large for int64
    return [parts[i] for i in range(len(sharing))]


def _places(d: Decimal) -> int:
    return max(0, -d.as_tuple().exponent)  # type: ignore[operator]


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
            line.amount = line.minor()
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


@cache
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
    # Posting's fields after `market`, positionally (one entry per owner line: hundreds of thousands)
    ctx = (line.obligation_id, line.mtu, line.vehicle_id, line.owner_id, line.contract_id, line.term_id, line.line_id)
    postings = []
    cur = line.currency
    kind = AccountKind.WEAR_PAY if line.source is Source.WEAR else AccountKind.OWNER_PAY
    sub = "" if line.source is Source.WEAR else line.source.value
    payable = _acc(AccountKind.OWNER_PAYABLE, line.owner_id)
    for part in line.parts:
        mcur, m = part.market_currency, part.market
        postings.append(Posting(_acc(kind, m, sub), mcur, part.market_amount, m, *ctx))
        if mcur != cur:
            fx = _acc(AccountKind.FX_CONVERSION)
            postings.append(Posting(fx, mcur, -part.market_amount, m, *ctx))
            postings.append(Posting(fx, cur, part.amount, m, *ctx))
        postings.append(Posting(payable, cur, -part.amount, m, *ctx))
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


_QUANTIZE = Context(prec=60, traps=[InvalidOperation])


def _decimal(x: Fraction | Decimal, places: int) -> Decimal:
    """`x` rounded half up to `places` decimals, exactly (for quantities shown on statements)."""
    if type(x) is Decimal:      # the same, without a Fraction: halves away from zero, as round_half_up
        return x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=_QUANTIZE)
    return Decimal(round_half_up(Fraction(x) * 10**places)).scaleb(-places)


def _tidy(d: Decimal) -> Decimal:
    """Without trailing zeros and without an exponent (10, not 1E+1), for statements."""
    d = d.normalize()
    return d.quantize(Decimal(1)) if d.as_tuple().exponent > 0 else d  # type: ignore[operator]


def _owner_line(line: _Line, markets: dict[str, Currency]) -> OwnerLine:
    c = line.contract
    parts = tuple(MarketPart(m, markets.get(m, c.currency), p, line.market_parts.get(m, p))
                  for m, p in sorted(line.parts.items()) if p or line.market_parts.get(m))
    quantity = _tidy(_decimal(line.quantity, 4 if line.source is Source.WEAR else 6))
    return OwnerLine(line.line_id, c.owner_id, c.contract_id, line.vehicle_id, line.source, line.term.term_id,
                     c.currency, line.amount, quantity, line.unit, line.rate,
                     line.rate_unit, line.first, line.last_end, line.obligation_id, line.market, line.mtu,
                     line.forfeited, line.note, parts)


def _line_order(x: OwnerLine) -> tuple:
    return (x.owner_id, x.contract_id, x.vehicle_id or "~", SOURCE_ORDER[x.source], x.period_start, x.term_id,
            x.obligation_id or "", x.line_id)


def settle_month(month: Month, contracts: Iterable[Contract], obligations: Iterable[ObligationMtu],
                 vehicle_mtus: Sequence[VehicleMtu] | VehicleMtus, soc_traces: Sequence[SocTrace] = (),
                 cap_usage: Iterable[CapUsage] = (), rates: ExchangeRates | None = None, *,
                 columnar: bool = True) -> Settlement:
    """Settle `month` (see the module doc); `rates` defaults to the packaged ECB rates.

    Vehicle MTUs come as `VehicleMtus` columns or as `VehicleMtu` records, which are turned into
    columns once. `columnar=False` settles records one by one instead: the readable reference
    the columnar path is tested against (and the benchmark's baseline), too slow for a fleet.
    """
    if not isinstance(month, Month):
        raise DomainError("month", f"must be a Month; got {type(month).__name__}")
    with _without_cycle_collection():
        return _settle(month, contracts, obligations, vehicle_mtus, soc_traces, cap_usage, rates, columnar)


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """A fleet's month builds millions of small objects and no reference cycles: the cyclic
    collector would rescan them again and again (a third of the time at 10,000 owners)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _settle(month: Month, contracts: Iterable[Contract], obligations: Iterable[ObligationMtu],
            vehicle_mtus: Sequence[VehicleMtu] | VehicleMtus, soc_traces: Sequence[SocTrace],
            cap_usage: Iterable[CapUsage], rates: ExchangeRates | None, columnar: bool) -> Settlement:
    fleet = _Fleet(month, contracts)
    fx = _Fx(rates if rates is not None else default_exchange_rates(), month)
    obs, markets = _check_obligations(month, obligations)
    weights = MarketWeights(obs)
    lines = _Lines()
    if isinstance(vehicle_mtus, VehicleMtus):
        plugged = _vehicle_mtu_columns(month, fleet, vehicle_mtus, weights, lines)
    elif columnar:
        plugged = _vehicle_mtu_columns(month, fleet, VehicleMtus.from_records(vehicle_mtus, month.start), weights,
                                       lines)
    else:
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

