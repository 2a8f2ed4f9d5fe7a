"""The columnar path (`VehicleMtus`, numpy sums per vehicle and term) against the per-record
reference (`columnar=False`): the same Settlement, line for line and posting for posting, on
random months; and the same errors, naming the same record."""

from datetime import date, timedelta
from decimal import Decimal as D
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexfleet.domain.errors import DomainError
from flexfleet.settlement import (ChargingRefund, Commitment, Contract, ContractTerm, Month, ObligationMtu,
                                  RefundScope, VehicleMtu, allocate, settle_month)
from flexfleet.settlement.inputs import VehicleMtus
from flexfleet.settlement.settle import _owner_parts

MARKETS = {"FCR-D-up/SE_DK2": "EUR", "FCR-D-down/SE_DK2": "EUR", "local-flex/NODES": "SEK"}
Q = timedelta(minutes=15)
MARCH = Month(date(2026, 3, 1), "SE3")


def rate(places: int = 4, hi: int = 5):
    return st.one_of(st.just(D(0)), st.decimals(0, hi, places=places, allow_nan=False, allow_infinity=False))


@st.composite
def terms(draw, month: Month):
    first = draw(st.one_of(st.just(-96 * 3), st.integers(0, month.n_mtus // 2)))
    offsets = sorted({first, *draw(st.lists(st.integers(first + 1, month.n_mtus - 1), max_size=2))})
    out = []
    for i, off in enumerate(offsets):
        refund = draw(st.one_of(st.none(), st.builds(ChargingRefund, st.sampled_from(list(RefundScope)),
                                                        st.one_of(st.none(), rate(4, 1)))))
        out.append(ContractTerm(
            f"t{i}", month.start + off * Q, availability_per_hour=draw(rate()),
            revenue_share_pct=draw(st.sampled_from([D(0), D(50), D(100)])), energy_per_kwh=draw(rate()),
            charging_refund=refund, fixed_monthly=draw(rate(2, 300)),
            min_plugged_in_hours=draw(st.sampled_from([D(0), D(2), D(300)])),
            credit_per_broken_departure=draw(rate(2, 20)), credit_per_broken_min_soc=draw(rate(2, 20))))
    return tuple(out)


@st.composite
def months(draw):
    """Contracts with mid-month term changes and ends, records in any order with energies of up to
    six decimals, and obligations overlapping in time (a vehicle in two markets in one MTU)."""
    month = Month(date(2026, draw(st.sampled_from([3, 10])), 1), draw(st.sampled_from(["SE3", "FI"])))
    contracts, cover = [], {}
    for c in range(draw(st.integers(1, 4))):
        ts = draw(terms(month))
        ends = None
        if draw(st.booleans()):
            ends = max(ts[-1].valid_from, month.start) + draw(st.integers(1, 96 * 20)) * Q
        k = Contract(f"c{c}", f"o{c % 2}", tuple(f"v{c}{j}" for j in range(draw(st.integers(1, 3)))),
                     draw(st.sampled_from(["EUR", "SEK", "NOK"])), ts, ends=ends)
        contracts.append(k)
        lo = max(0, (k.starts - month.start) // Q)
        hi = month.n_mtus if ends is None else min(month.n_mtus, (ends - month.start) // Q)
        cover.update({v: (lo, hi) for v in k.vehicle_ids})
    kwh = st.decimals(0, 11, places=draw(st.sampled_from([0, 3, 6])), allow_nan=False, allow_infinity=False)
    records = []
    for v, (lo, hi) in sorted(cover.items()):
        for i in sorted(set(draw(st.lists(st.integers(lo, min(hi - 1, lo + 60)), max_size=25)))):
            plugged, charged = draw(st.booleans()), draw(kwh)
            price = draw(st.decimals(-1, 3, places=5, allow_nan=False, allow_infinity=False))
            records.append(VehicleMtu(
                v, month.start + i * Q, plugged, draw(st.booleans()), discharged_kwh=draw(kwh), charged_kwh=charged,
                platform_charged_kwh=min(charged, draw(kwh)),
                charging_price_per_kwh=price if charged or draw(st.booleans()) else None,
                broken_departures=draw(st.integers(0, 2)), broken_min_soc=draw(st.integers(0, 1))))
    records = draw(st.permutations(records))
    obligations = []
    for n in range(draw(st.integers(0, 6))):
        market = draw(st.sampled_from(sorted(MARKETS)))
        length = draw(st.sampled_from([1, 4]))
        start = draw(st.one_of(st.sampled_from([0, 4, 8]), st.integers(0, 64)))    # overlaps: several markets
        backers = sorted(v for v, (lo, hi) in cover.items() if lo <= start and start + length <= hi)
        chosen = draw(st.lists(st.sampled_from(backers), unique=True, max_size=4)) if backers else []
        obligations.append(ObligationMtu(
            f"ob{n}", market, month.start + start * Q, month.start + (start + length) * Q, MARKETS[market],
            draw(st.decimals("0.1", 2, places=1)), draw(st.decimals(1, 90, places=2)),
            tuple(Commitment(v, draw(st.decimals("0.5", 11, places=1))) for v in chosen)))
    return month, contracts, obligations, records


def _settle_both(month, contracts, obligations, records):
    """Both paths, or the error both raise."""
    out = []
    for columnar in (False, True):
        try:
            out.append(settle_month(month, contracts, obligations, records, columnar=columnar))
        except DomainError as exc:
            out.append(("error", exc.field, exc.reason))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(months())
def test_columnar_and_per_record_paths_settle_a_month_identically(case) -> None:
    month, contracts, obligations, records = case
    reference, columnar = _settle_both(month, contracts, obligations, records)
    assert columnar == reference


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(months(), st.randoms(use_true_random=False))
def test_columns_built_by_hand_in_any_row_order_settle_like_the_records(case, rnd) -> None:
    """What a caller builds with numpy (narrow dtypes, its own vehicle order, rows shuffled, an
    origin before the month) settles like the records."""
    month, contracts, obligations, records = case
    places = max([3] + [max(0, -d.as_tuple().exponent) for r in records
                        for d in (r.discharged_kwh, r.charged_kwh, r.platform_charged_kwh)])
    ids = sorted({r.vehicle_id for r in records}, reverse=True)
    rows = list(records)
    rnd.shuffle(rows)
    origin = month.start - 7 * Q
    scale = D(10) ** places
    cols = VehicleMtus(
        tuple(ids), origin, vehicle=np.array([ids.index(r.vehicle_id) for r in rows], np.int16),
        mtu=np.array([(r.mtu - origin) // Q for r in rows], np.int32),
        plugged_in=np.array([r.plugged_in for r in rows], bool),
        controllable=np.array([r.controllable for r in rows], bool),
        discharged=np.array([int(r.discharged_kwh * scale) for r in rows], np.int64),
        charged=np.array([int(r.charged_kwh * scale) for r in rows], np.int64),
        platform_charged=np.array([int(r.platform_charged_kwh * scale) for r in rows], np.int64),
        charging_price=np.array([int((r.charging_price_per_kwh or 0) * 100_000) for r in rows], np.int32),
        has_price=np.array([r.charging_price_per_kwh is not None for r in rows], bool),
        broken_departures=np.array([r.broken_departures for r in rows], np.uint8),
        broken_min_soc=np.array([r.broken_min_soc for r in rows], np.uint8), kwh_places=places, price_places=5)
    try:
        expected = settle_month(month, contracts, obligations, records, columnar=False)
    except DomainError:
        with pytest.raises(DomainError):
            settle_month(month, contracts, obligations, cols)
        return
    assert settle_month(month, contracts, obligations, cols) == expected


def _k(**rates):
    return Contract("k", "o", ("v", "w"), "EUR", (ContractTerm("a", MARCH.start + 96 * Q, **rates),))


@pytest.mark.parametrize("records, field", [
    ([VehicleMtu("v", MARCH.start + 100 * Q, True), VehicleMtu("v", MARCH.end, True)], "vehicle_mtus[1].mtu"),
    ([VehicleMtu("w", MARCH.start + 100 * Q, True), VehicleMtu("v", MARCH.start + 99 * Q, True),
      VehicleMtu("w", MARCH.start + 100 * Q, False)], "vehicle_mtus[2]"),
    ([VehicleMtu("v", MARCH.start + 100 * Q, True), VehicleMtu("v", MARCH.start + 95 * Q, True)], "vehicle_mtus[1]"),
    ([VehicleMtu("x", MARCH.start + 100 * Q, True)], "vehicle_mtus[0]"),
    ([VehicleMtu("v", MARCH.start + 100 * Q, True, charged_kwh=D(1), charging_price_per_kwh=D("0.2")),
      VehicleMtu("v", MARCH.start + 101 * Q, True, charged_kwh=D(1))], "vehicle_mtus[1].charging_price_per_kwh"),
])
def test_both_paths_refuse_bad_records_naming_the_same_one(records, field) -> None:
    k = _k(charging_refund=ChargingRefund(RefundScope.ALL))
    reference, columnar = _settle_both(MARCH, [k], [], records)
    assert reference[:2] == ("error", field)
    assert columnar == reference


def test_bad_columns_name_the_column() -> None:
    ok = dict(vehicle=np.array([0, 0]), mtu=np.array([1, 2]), plugged_in=np.array([True, False]))
    with pytest.raises(DomainError, match=r"vehicle_mtus.vehicle: must index vehicle_ids"):
        VehicleMtus(("v",), MARCH.start, **{**ok, "vehicle": np.array([0, 1])})
    with pytest.raises(DomainError, match=r"vehicle_mtus.plugged_in: must be a 1-d array of booleans"):
        VehicleMtus(("v",), MARCH.start, **{**ok, "plugged_in": np.array([1, 0])})
    with pytest.raises(DomainError, match=r"vehicle_mtus.mtu: has 1 rows, not 2"):
        VehicleMtus(("v",), MARCH.start, **{**ok, "mtu": np.array([1])})
    with pytest.raises(DomainError, match=r"vehicle_mtus.discharged: must not be negative \(row 1\)"):
        VehicleMtus(("v",), MARCH.start, **ok, discharged=np.array([0, -1]))
    with pytest.raises(DomainError, match=r"vehicle_mtus.platform_charged: row 0: exceeds charged"):
        VehicleMtus(("v",), MARCH.start, **ok, charged=np.array([1, 1]), platform_charged=np.array([2, 0]))
    with pytest.raises(DomainError, match=r"vehicle_mtus.origin: must start a 15-minute MTU"):
        VehicleMtus(("v",), MARCH.start + timedelta(minutes=5), **ok)
    with pytest.raises(DomainError, match=r"vehicle_mtus.vehicle_ids\[0\]"):
        VehicleMtus(("bad id",), MARCH.start, **ok)
    # An unplugged row is never controllable, as for a VehicleMtu.
    cols = VehicleMtus(("v",), MARCH.start, **ok, controllable=np.array([True, True]))
    assert cols.controllable.tolist() == [True, False]


def test_a_fleet_month_sums_exactly_into_lines() -> None:
    """Quarter hours and Wh summed as integers: 2,000 plugged quarters of 1.234 kWh each."""
    k = Contract("k", "o", ("v",), "EUR", (ContractTerm("a", MARCH.start, availability_per_hour=D("0.10"),
                                                        energy_per_kwh=D("0.3")),))
    n = 2000
    cols = VehicleMtus(("v",), MARCH.start, vehicle=np.zeros(n, np.int32), mtu=np.arange(n, dtype=np.int16),
                       plugged_in=np.ones(n, bool), discharged=np.full(n, 1234, np.int32))
    s = settle_month(MARCH, [k], [], cols)
    got = {x.source.value: (x.quantity, x.amount, x.period_start, x.period_end) for x in s.lines}
    assert got == {"availability": (D(500), 5000, MARCH.start, MARCH.start + n * Q),
                   "energy": (D("2468"), 74040, MARCH.start, MARCH.start + n * Q)}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.decimals("0.1", 50, places=2, allow_nan=False, allow_infinity=False),
                          st.sampled_from([D(0), D(1), D("33.3"), D(50), D("62.5"), D(100)])),
                min_size=1, max_size=30),
       st.integers(0, 10**7), st.decimals(0, 40, places=1, allow_nan=False, allow_infinity=False))
def test_revenue_share_in_integers_splits_like_the_largest_remainder_rule(backers, net, others_kw) -> None:
    """`_owner_parts` (integer weights, numpy) against `allocate` over the exact Fraction shares."""
    total = sum((kw for kw, _ in backers), others_kw)
    sharing = [(f"v{i:02d}", None, ContractTerm("t", MARCH.start, revenue_share_pct=pct), kw)
               for i, (kw, pct) in enumerate(backers) if pct]
    if not sharing:
        return
    exact = {(0, v): net * Fraction(kw) / Fraction(total) * Fraction(t.revenue_share_pct) / 100
             for v, _, t, kw in sharing}
    parts = allocate(net, {**exact, (1, ""): net - sum(exact.values())})
    assert _owner_parts(net, total, sharing) == [parts[(0, v)] for v, _, _, _ in sharing]


def test_of_several_rows_outside_the_month_the_first_by_vehicle_and_mtu_is_named() -> None:
    k = _k()
    records = [VehicleMtu("w", MARCH.end + Q, True), VehicleMtu("v", MARCH.end + 2 * Q, True),
               VehicleMtu("v", MARCH.end, True)]
    reference, columnar = _settle_both(MARCH, [k], [], records)
    assert reference[:2] == ("error", "vehicle_mtus[2].mtu")
    assert columnar == reference


def test_energy_in_an_mtu_committed_to_several_obligations_splits_by_their_summed_kw() -> None:
    """A vehicle in two markets in one hour, and twice in one market in another: its energy there
    goes to the markets by the summed kW of its commitments, in both paths."""
    k = Contract("k", "o", ("v", "w"), "EUR", (ContractTerm("a", MARCH.start, energy_per_kwh=D("0.25"),
                                                            charging_refund=ChargingRefund(per_kwh=D("0.3"))),))
    hour, later = MARCH.start + 8 * Q, MARCH.start + 40 * Q

    def ob(i, market, start, kw):
        return ObligationMtu(f"ob{i}", market, start, start + 4 * Q, MARKETS[market], D(1), D(10),
                             (Commitment("v", D(kw)), Commitment("w", D(1))))
    obligations = [ob(1, "FCR-D-up/SE_DK2", hour, 3), ob(2, "local-flex/NODES", hour, 1),
                   ob(3, "FCR-D-down/SE_DK2", later, 2), ob(4, "FCR-D-down/SE_DK2", later, 2),
                   ob(5, "local-flex/NODES", later + 4 * Q, 5)]
    records = [VehicleMtu("v", t, True, discharged_kwh=D("2.5"), charged_kwh=D(1), platform_charged_kwh=D(1))
               for t in (hour + Q, later, later + 4 * Q, MARCH.start + 90 * Q)]
    reference, columnar = _settle_both(MARCH, [k], obligations, records)
    assert columnar == reference
    energy = next(x for x in reference.lines if x.vehicle_id == "v" and x.source.value == "energy")
    assert {p.market for p in energy.parts} == {"FCR-D-up/SE_DK2", "local-flex/NODES", "FCR-D-down/SE_DK2"}
    assert sum(p.amount for p in energy.parts) == energy.amount == 250
