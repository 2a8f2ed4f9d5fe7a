"""Property tests: for random fleets, contracts (with terms changing mid-month) and deliveries, the
ledger balances, the reconciliation holds to the minor unit, and no rounding creates or loses money."""

import random
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal as D
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexfleet.markets.exchange_rates import default_exchange_rates
from flexfleet.settlement import (CapUsage, ChargingRefund, Commitment, Contract, ContractTerm, Month, ObligationMtu,
                                  Penalty, RefundScope, SocTrace, Source, VehicleMtu, balances, fx_rate, month_report,
                                  round_half_up, settle_month)
from flexfleet.settlement.ledger import AccountKind, EntryKind
from flexfleet.settlement.money import Currency

MARKETS = {"FCR-D-up/SE_DK2": "EUR", "FCR-D-down/SE_DK2": "EUR", "local-flex/NODES": "SEK", "FCR-N/NO": "NOK"}
Q = timedelta(minutes=15)
RATES = default_exchange_rates()


def money(places: int = 2, hi: int = 50):
    return st.decimals(0, hi, places=places, allow_nan=False, allow_infinity=False)


def rate_or_zero(places: int = 4, hi: int = 5):
    return st.one_of(st.just(D(0)), money(places, hi))


@st.composite
def terms(draw, month: Month):
    n = draw(st.integers(1, 3))
    first = draw(st.one_of(st.just(-96 * 40), st.integers(0, month.n_mtus // 2)))
    offsets = sorted(set([first] + draw(st.lists(st.integers(first + 1, month.n_mtus - 1), max_size=n - 1))))
    out = []
    for i, off in enumerate(offsets):
        refund = draw(st.one_of(st.none(), st.builds(ChargingRefund, st.sampled_from(list(RefundScope)),
                                                        st.one_of(st.none(), money(4, 1)))))
        out.append(ContractTerm(
            f"t{i}", month.start + off * Q,
            availability_per_hour=draw(rate_or_zero()), revenue_share_pct=draw(st.sampled_from([D(0), D(35), D(50),
                                                                                                D("62.5"), D(100)])),
            energy_per_kwh=draw(rate_or_zero()), charging_refund=refund,
            wear_factor=draw(st.sampled_from([D(1), D("0.5"), D(0)])),
            fixed_monthly=draw(st.one_of(st.just(D(0)), money(2, 300))),
            annual_cap=draw(st.one_of(st.none(), money(2, 200))),
            min_plugged_in_hours=draw(st.sampled_from([D(0), D(1), D(3), D(200)])),
            credit_per_broken_departure=draw(st.one_of(st.just(D(0)), money(2, 20))),
            credit_per_broken_min_soc=draw(st.one_of(st.just(D(0)), money(2, 20)))))
    return tuple(out)


@st.composite
def fleets(draw):
    month = Month(date(2026, draw(st.sampled_from([2, 3, 10])), 1), draw(st.sampled_from(["SE3", "NO1", "FI", "DK2"])))
    markets = draw(st.lists(st.sampled_from(sorted(MARKETS)), min_size=1, max_size=3, unique=True))
    contracts, cover = [], {}
    for c in range(draw(st.integers(1, 4))):
        ts = draw(terms(month))
        vehicles = tuple(f"v{c}{j}" for j in range(draw(st.integers(1, 2))))
        ends = None
        if draw(st.booleans()) and draw(st.booleans()):
            ends = max(ts[-1].valid_from, month.start) + draw(st.integers(1, 96 * 5)) * Q
        k = Contract(f"c{c}", f"o{draw(st.integers(0, 2))}", vehicles, draw(st.sampled_from(list(Currency))), ts,
                     ends=ends)
        contracts.append(k)
        lo = max(0, (k.starts - month.start) // Q)
        hi = month.n_mtus if ends is None else min(month.n_mtus, (ends - month.start) // Q)
        for v in vehicles:
            cover[v] = (lo, hi)
    vehicles = sorted(cover)
    records = []
    for v in vehicles:
        lo, hi = cover[v]
        for i in sorted(set(draw(st.lists(st.integers(lo, hi - 1), max_size=30)))):
            plugged = draw(st.booleans())
            charged = draw(money(3, 11))
            records.append(VehicleMtu(
                v, month.start + i * Q, plugged, plugged and draw(st.booleans()),
                discharged_kwh=draw(money(3, 5)), charged_kwh=charged,
                platform_charged_kwh=min(charged, draw(money(3, 11))),
                charging_price_per_kwh=draw(st.decimals(-1, 3, places=4, allow_nan=False, allow_infinity=False)),
                broken_departures=draw(st.integers(0, 1)), broken_min_soc=draw(st.integers(0, 1))))
    obligations = []
    for n in range(draw(st.integers(0, 8))):
        market = draw(st.sampled_from(markets))
        length = draw(st.sampled_from([1, 4]))
        start = draw(st.integers(0, month.n_mtus - length))
        backers = [v for v in vehicles if cover[v][0] <= start < cover[v][1]]
        chosen = draw(st.lists(st.sampled_from(backers), unique=True, max_size=4)) if backers else []
        commitments = tuple(Commitment(v, draw(st.decimals("0.5", 22, places=1))) for v in chosen)
        accepted = draw(st.decimals("0.1", 5, places=1))
        price = draw(money(2, 120))
        penalties = tuple(Penalty(draw(st.sampled_from(["capacity_not_held", "activation_response", "energy_short"])),
                                  draw(st.sampled_from(["withheld", "surcharge"])),
                                  draw(st.decimals(0, accepted, places=4)), draw(money(2, 150)))
                          for _ in range(draw(st.integers(0, 2))))
        obligations.append(ObligationMtu(f"ob{n}", market, month.start + start * Q, month.start + (start + length) * Q,
                                         MARKETS[market], accepted, price, commitments, penalties))
    traces = []
    if vehicles and draw(st.integers(0, 5)) == 0:            # BLAST-Lite is the slow part: now and then
        v = draw(st.sampled_from(vehicles))
        lo, hi = cover[v]
        soc = draw(st.lists(st.floats(0.2, 0.9), min_size=24, max_size=48))
        if hi - lo > 4 * len(soc):
            traces.append(SocTrace(v, month.start + lo * Q, 3600.0, tuple(soc), "NMC", D(50), D("97.5"),
                                   draw(st.sampled_from(list(Currency)))))
    usage = [CapUsage(k.contract_id, 2026, draw(st.integers(0, 20000))) for k in contracts if draw(st.booleans())]
    return month, contracts, obligations, records, traces, usage


def _shuffled(seq, rnd):
    out = list(seq)
    rnd.shuffle(out)
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fleets(), st.randoms(use_true_random=False))
def test_random_months_balance_reconcile_and_never_round_money_away(case, rnd) -> None:
    month, contracts, obligations, records, traces, usage = case
    s = settle_month(month, contracts, obligations, records, traces, usage)

    # Every journal entry balances per currency, so the whole ledger does.
    for e in s.entries:
        sums = defaultdict(int)
        for p in e.postings:
            sums[p.currency] += p.amount
        assert not any(sums.values()), e.entry_id
    after = balances(s.entries)

    # Market money from the inputs, independently: revenue and penalties per market.
    revenue, penalties = defaultdict(int), defaultdict(int)
    for o in obligations:
        revenue[o.product_id] += round_half_up(Fraction(o.accepted_mw) * Fraction(o.price_per_mw_h) * o.hours * 100)
        for p in o.penalties:
            penalties[o.product_id] += round_half_up(Fraction(p.shortfall_mwh) * Fraction(p.price_per_mwh) * 100)
    rows = {(r.market, r.currency): r for r in s.reconciliation}
    for market in revenue:
        if revenue[market] or penalties[market]:
            row = rows[(market, Currency(MARKETS[market]))]
            assert (row.revenue, row.penalties) == (revenue[market], penalties[market])
    for r in s.reconciliation:
        assert r.balanced and r.revenue == r.owner_pay + r.wear_pay + r.penalties + r.margin
        # The closing entry leaves only the margin: nominal accounts are zero after it.
        assert after.get((_acc(AccountKind.AGGREGATOR_MARGIN, r.market), r.currency), 0) == -r.margin
    for (acc, cur), bal in after.items():
        if acc.kind in (AccountKind.MARKET_REVENUE, AccountKind.PENALTY, AccountKind.OWNER_PAY, AccountKind.WEAR_PAY):
            assert bal == 0, (acc, cur)

    # Owner lines and the ledger agree: what each owner is owed, per currency.
    owed = defaultdict(int)
    for line in s.lines:
        owed[(line.owner_id, line.currency)] += line.amount
        assert sum(p.amount for p in line.parts) == line.amount               # a split never loses a cent
        for p in line.parts:
            if p.market_currency == line.currency:
                assert p.amount == p.market_amount
        if line.forfeited:
            assert line.amount == 0 and line.source in (Source.AVAILABILITY, Source.FIXED)
    for (owner, cur), amount in owed.items():
        assert after.get((_acc(AccountKind.OWNER_PAYABLE, owner), cur), 0) == -amount
    pre = balances(s.entries, skip=(EntryKind.CLOSE,))
    paid_by_market = defaultdict(int)
    for (acc, cur), bal in pre.items():
        if acc.kind in (AccountKind.OWNER_PAY, AccountKind.WEAR_PAY):
            paid_by_market[(acc.key, cur)] += bal
    for (market, cur), r in rows.items():
        assert paid_by_market[(market, cur)] == r.payouts

    # Conversions: each batch (market, pair, sign) is its exact conversion rounded once.
    batches = defaultdict(lambda: [0, 0])
    for line in s.lines:
        for p in line.parts:
            if p.market_currency != line.currency:
                if line.source is Source.CAPACITY_SHARE:
                    key = (p.market, p.market_currency, line.currency, True)
                    batches[key][0] += p.market_amount
                    batches[key][1] += p.amount
                else:
                    key = (p.market, line.currency, p.market_currency, p.amount > 0)
                    batches[key][0] += p.amount
                    batches[key][1] += p.market_amount
    for (_, a, b, _), (source_total, converted) in batches.items():
        assert converted == round_half_up(fx_rate(RATES, a, b, month.rate_day).convert(source_total))

    # Revenue share: owners' parts and the aggregator's keep add up to the net, each within a cent.
    shares = defaultdict(list)
    for line in s.lines:
        if line.source is Source.CAPACITY_SHARE:
            shares[(line.obligation_id, line.mtu)].append(line)
    by_id = {(o.obligation_id, o.mtu_start): o for o in obligations}
    for o in s.obligations:
        pens = sum(p.amount for p in o.penalties)
        assert o.net == max(0, o.revenue - pens) and o.owner_share + o.kept == o.net and o.kept >= 0
        got = shares.get((o.obligation_id, o.mtu_start), [])
        assert sum(p.market_amount for x in got for p in x.parts) == o.owner_share
        inp = by_id[(o.obligation_id, o.mtu_start)]
        kw = {c.vehicle_id: Fraction(c.kw) for c in inp.commitments}
        for x in got:
            exact = o.net * kw[x.vehicle_id] / sum(kw.values()) * Fraction(x.rate) / 100
            assert abs(sum(p.market_amount for p in x.parts) - exact) < 1     # no parts: a share that rounded to 0

    # Priced lines are their exact amount rounded half up once (availability, checked from the inputs).
    hours = defaultdict(Fraction)
    for r in records:
        if r.controllable:
            k = next(c for c in contracts if r.vehicle_id in c.vehicle_ids)
            t = k.terms_at(r.mtu)
            if t.availability_per_hour:
                hours[(k.contract_id, r.vehicle_id, t.term_id)] += Fraction(1, 4)
    for line in s.lines:
        if line.source is Source.AVAILABILITY:
            exact = hours.pop((line.contract_id, line.vehicle_id, line.term_id)) * Fraction(line.rate) * 100
            assert (line.amount or line.forfeited) == round_half_up(exact)
    assert not hours

    # The annual cap is never exceeded by this month's pay.
    for u in s.cap_usage:
        k = next(c for c in contracts if c.contract_id == u.contract_id)
        cap = k.term_periods(month.start, month.end)[-1][0].annual_cap
        before = next((x.counted for x in usage if x.contract_id == u.contract_id), 0)
        if cap is not None:
            assert u.counted <= max(before, round_half_up(Fraction(cap) * 100))
    assert month_report(s).reconciled

    # Determinism: the same inputs in another order give the same result, value for value.
    again = settle_month(month, _shuffled(contracts, rnd), _shuffled(obligations, rnd), _shuffled(records, rnd),
                         traces, _shuffled(usage, rnd))
    assert again == s
    assert repr(again) == repr(s)


def _acc(kind, key=""):
    from flexfleet.settlement.ledger import Account
    return Account(kind, key)


def test_a_month_without_commitments_goes_to_unattributed_with_a_negative_margin() -> None:
    month = Month(date(2026, 2, 1), "SE3")
    k = Contract("k", "o", ("v",), "SEK", (ContractTerm("a", month.start, fixed_monthly=D("99.00")),))
    s = settle_month(month, [k], [], [])
    (row,) = s.reconciliation
    assert (row.market, row.currency.value, row.revenue, row.owner_pay, row.margin) == (
        "unattributed", "SEK", 0, 9900, -9900)


def test_ineligible_vehicles_forfeit_availability_and_fixed_pay_only() -> None:
    month = Month(date(2026, 2, 1), "FI")
    t = ContractTerm("a", month.start, availability_per_hour=D("0.2"), fixed_monthly=D(5), energy_per_kwh=D("0.1"),
                     min_plugged_in_hours=D(100), credit_per_broken_min_soc=D(2))
    k = Contract("k", "o", ("v",), "EUR", (t,))
    recs = [VehicleMtu("v", month.start + i * Q, True, discharged_kwh=D(1), broken_min_soc=int(i == 0))
            for i in range(40)]
    s = settle_month(month, [k], [], recs)
    got = [(x.source.value, x.amount, x.forfeited) for x in s.lines]
    assert got == [("availability", 0, 200), ("energy", 400, 0), ("fixed", 0, 500), ("credit_min_soc", 200, 0)]
    assert "not eligible: 10.00 h plugged in, 100.00 h required" in s.lines[0].note
    (check,) = s.eligibility
    assert not check.eligible and check.required_hours == D("100.00")
    # A contract that starts mid-month needs the pro-rata share of the minimum only.
    late = Contract("k", "o", ("v",), "EUR", (ContractTerm("a", month.start + 2016 * Q, min_plugged_in_hours=D(100),
                                                           fixed_monthly=D(5)),))
    s = settle_month(month, [late], [], [VehicleMtu("v", month.start + (2016 + i) * Q, True) for i in range(100)])
    (check,) = s.eligibility
    assert check.required_hours == D("25.00") and check.eligible
    assert [(x.quantity, x.amount) for x in s.lines] == [(D("0.25"), 125)]


def test_a_vehicle_changing_contract_mid_month_is_paid_under_each() -> None:
    month = Month(date(2026, 10, 1), "NO1")
    mid = month.start + 96 * 10 * Q
    old = Contract("old", "o1", ("v",), "NOK", (ContractTerm("a", month.start, availability_per_hour=D(1)),), ends=mid)
    new = Contract("new", "o2", ("v",), "SEK", (ContractTerm("b", mid, availability_per_hour=D(2)),))
    ob = ObligationMtu("x", "FCR-N/NO", mid, mid + 4 * Q, "NOK", D("0.1"), D(100), (Commitment("v", D(10)),))
    recs = [VehicleMtu("v", mid + i * Q, True) for i in range(-4, 4)]
    s = settle_month(month, [old, new], [ob], recs)
    assert [(x.contract_id, x.owner_id, x.currency.value, x.amount) for x in s.lines] == [
        ("old", "o1", "NOK", 100), ("new", "o2", "SEK", 200)]
    (row,) = s.reconciliation
    fx = fx_rate(RATES, Currency.SEK, Currency.NOK, month.rate_day)
    assert row.owner_pay == 100 + round_half_up(fx.convert(200))
    assert row.revenue == 1000 and row.balanced


def test_rerunning_a_month_gives_identical_output() -> None:
    rnd = random.Random(7)
    month = Month(date(2026, 3, 1), "DK2")
    contracts = [Contract(f"c{i}", f"o{i % 3}", (f"v{i}",), ["EUR", "DKK", "SEK"][i % 3],
                          (ContractTerm("a", month.start, availability_per_hour=D("0.07"), revenue_share_pct=D(40),
                                        energy_per_kwh=D("0.11")),
                           ContractTerm("b", month.start + 1000 * Q, availability_per_hour=D("0.09"),
                                        revenue_share_pct=D(45), energy_per_kwh=D("0.13"))))
                 for i in range(30)]
    recs = [VehicleMtu(f"v{i}", month.start + m * Q, True, discharged_kwh=D(rnd.randint(0, 30)) / 10)
            for i in range(30) for m in sorted(rnd.sample(range(month.n_mtus), 60))]
    obs = [ObligationMtu(f"ob{n}", ["FCR-D-up/SE_DK2", "local-flex/NODES"][n % 2], month.start + 4 * n * Q,
                         month.start + 4 * (n + 1) * Q, ["EUR", "SEK"][n % 2], D("1.3"), D("17.77"),
                         tuple(Commitment(f"v{i}", D(rnd.randint(3, 11))) for i in sorted(rnd.sample(range(30), 9))))
           for n in range(200)]
    first = settle_month(month, contracts, obs, recs)
    second = settle_month(month, contracts, list(reversed(obs)), list(reversed(recs)))
    assert repr(first) == repr(second)
    assert month_report(first).reconciled
