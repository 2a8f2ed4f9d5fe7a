"""Contracts as data: terms in force at an MTU, and bad contracts and inputs refused naming the field."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from types import SimpleNamespace

import pytest

from flexfleet.domain import DomainError
from flexfleet.settlement import (ChargingRefund, Commitment, Contract, ContractTerm, Month, ObligationMtu, Penalty,
                                  RefundScope, SocTrace, VehicleMtu, contract_from_mapping, obligation_mtu,
                                  settle_month)

MARCH = Month(date(2026, 3, 1), "SE3")   # 31 days with the spring DST change: 2972 MTUs
T0 = MARCH.start


def term(tid: str, start: datetime, **rates) -> ContractTerm:
    return ContractTerm(tid, start, **rates)


def test_month_bounds_follow_the_local_calendar() -> None:
    assert MARCH.start == datetime(2026, 2, 28, 23, tzinfo=UTC)
    assert MARCH.end == datetime(2026, 3, 31, 22, tzinfo=UTC)
    assert MARCH.n_mtus == 31 * 96 - 4 and MARCH.label == "2026-03"
    assert Month.parse("2026-03", "SE3") == MARCH
    with pytest.raises(DomainError, match="month: must be the first day"):
        Month(date(2026, 3, 2), "SE3")
    with pytest.raises(DomainError, match="zone"):
        Month(date(2026, 3, 1), "Mars/Base")


def test_terms_at_picks_the_term_in_force() -> None:
    a, b, c = (term("a", T0), term("b", T0 + timedelta(days=14)), term("c", T0 + timedelta(days=20)))
    k = Contract("k", "o", ("v",), "SEK", (a, b, c), ends=T0 + timedelta(days=25))
    assert k.terms_at(T0) is a
    assert k.terms_at(T0 + timedelta(days=14) - timedelta(minutes=15)) is a
    assert k.terms_at(T0 + timedelta(days=14)) is b
    assert k.terms_at(T0 + timedelta(days=24)) is c
    with pytest.raises(DomainError, match=r"mtu: contract k has no terms in force at .*: its first term starts"):
        k.terms_at(T0 - timedelta(minutes=15))
    with pytest.raises(DomainError, match="mtu: contract k has no terms in force at .*: it ended"):
        k.terms_at(T0 + timedelta(days=25))
    periods = k.term_periods(MARCH.start, MARCH.end)
    assert [(t.term_id, x - T0, y - T0) for t, x, y in periods] == [
        ("a", timedelta(0), timedelta(days=14)), ("b", timedelta(days=14), timedelta(days=20)),
        ("c", timedelta(days=20), timedelta(days=25))]


@pytest.mark.parametrize("kwargs, field", [
    (dict(currency="GBP"), "currency: must be one of EUR, SEK, NOK, DKK; got 'GBP'"),
    (dict(terms=()), "terms: contract k needs at least one term"),
    (dict(terms=(term("a", T0 + timedelta(days=3)), term("b", T0))),
     r"terms\[1\].valid_from: .* is not after terms\[0\]"),
    (dict(terms=(term("a", T0), term("b", T0))), r"terms\[1\].valid_from: .* one in force at a time"),
    (dict(terms=(term("a", T0), term("a", T0 + timedelta(days=1)))), "terms: term_id 'a' appears twice"),
    (dict(vehicle_ids=("v", "v")), "vehicle_ids: contract k lists a vehicle twice"),
    (dict(vehicle_ids="v"), "vehicle_ids: must be a non-empty list"),
    (dict(language="xx"), "language: must be one of"),
    (dict(ends=T0), "ends: must be after the last term's valid_from"),
    (dict(terms=(term("a", T0), term("b", T0 + timedelta(days=3))), ends=T0 + timedelta(days=2)),
     "ends: must be after the last term's valid_from"),
])
def test_bad_contracts_name_the_field(kwargs, field: str) -> None:
    base = dict(contract_id="k", owner_id="o", vehicle_ids=("v",), currency="EUR", terms=(term("a", T0),))
    with pytest.raises(DomainError, match=field):
        Contract(**{**base, **kwargs})


@pytest.mark.parametrize("rates, field", [
    (dict(availability_per_hour=D("-0.1")), "availability_per_hour: must not be negative"),
    (dict(energy_per_kwh=0.15), "energy_per_kwh: must be a Decimal, an int or a decimal string"),
    (dict(revenue_share_pct=D(101)), "revenue_share_pct: must be at most 100"),
    (dict(fixed_monthly=D("10.005")), "fixed_monthly: has more than 2 decimals"),
    (dict(wear_factor=D("NaN")), "wear_factor: must be finite"),
    (dict(annual_cap=D(-1)), "annual_cap: must not be negative"),
    (dict(credit_per_broken_departure="five"), "credit_per_broken_departure: not a decimal number"),
])
def test_bad_rates_name_the_field(rates, field: str) -> None:
    with pytest.raises(DomainError, match=field):
        term("a", T0, **rates)


def test_terms_start_at_an_aware_mtu_start() -> None:
    with pytest.raises(DomainError, match="valid_from: must start a 15-minute MTU"):
        term("a", T0 + timedelta(minutes=5))
    with pytest.raises(DomainError, match="valid_from: naive datetime"):
        term("a", datetime(2026, 3, 1))
    with pytest.raises(DomainError, match="charging_refund.scope: must be platform_caused or all"):
        ChargingRefund("some")


def test_contract_from_mapping_reads_plain_data_and_names_bad_fields() -> None:
    data = {"contract_id": "k", "owner_id": "o", "vehicle_ids": ["v"], "currency": "NOK", "language": "nb",
            "terms": [{"term_id": "a", "valid_from": "2026-03-01T00:00:00+01:00", "availability_per_hour": "0.50",
                       "charging_refund": {"scope": "all"}, "annual_cap": "6000"},
                      {"term_id": "b", "valid_from": "2026-03-15T00:00:00+01:00", "availability_per_hour": "0.60"}]}
    k = contract_from_mapping(data)
    assert k.terms[0].charging_refund == ChargingRefund(RefundScope.ALL, None)
    assert k.terms_at(T0 + timedelta(days=20)).availability_per_hour == D("0.60")
    assert k.language.value == "nb"
    bad = {**data, "terms": [{**data["terms"][0]}, {**data["terms"][1], "availabilty_per_hour": "1"}]}
    with pytest.raises(DomainError, match=r"terms\[1\].availabilty_per_hour: unknown field"):
        contract_from_mapping(bad)
    bad = {**data, "terms": [data["terms"][0], {**data["terms"][1], "energy_per_kwh": "-1"}]}
    with pytest.raises(DomainError, match=r"terms\[1\].energy_per_kwh: must not be negative"):
        contract_from_mapping(bad)
    with pytest.raises(DomainError, match=r"terms\[0\].charging_refund.per_kwh: must not be negative"):
        contract_from_mapping({**data, "terms": [{**data["terms"][0], "charging_refund": {"per_kwh": "-1"}}]})


def _settle(contracts, obligations=(), vehicle_mtus=(), traces=()):
    return settle_month(MARCH, contracts, obligations, vehicle_mtus, traces)


def test_an_mtu_without_a_contract_in_force_is_refused() -> None:
    k = Contract("k", "o", ("v",), "EUR", (term("a", T0 + timedelta(days=2), availability_per_hour=D(1)),))
    with pytest.raises(DomainError, match=r"vehicle_mtus\[1\]: vehicle v has no contract with terms in force at "
                                          r"2026-02-28T23:00:00\+00:00"):
        _settle([k], vehicle_mtus=[VehicleMtu("v", T0 + timedelta(days=3), True), VehicleMtu("v", T0, True)])
    ob = ObligationMtu("o1", "FCR-D-up/SE_DK2", T0, T0 + timedelta(hours=1), "EUR", D(1), D(5),
                       (Commitment("w", D(10)),))
    with pytest.raises(DomainError, match="commitments: vehicle w has no contract"):
        _settle([k], obligations=[ob])


def test_bad_settlement_inputs_name_the_field() -> None:
    k = Contract("k", "o", ("v",), "EUR", (term("a", T0, charging_refund=ChargingRefund()),))
    with pytest.raises(DomainError, match=r"vehicle_mtus\[0\].mtu: .* is outside 2026-03"):
        _settle([k], vehicle_mtus=[VehicleMtu("v", MARCH.end, True)])
    with pytest.raises(DomainError, match=r"vehicle_mtus\[1\]: a second record for vehicle v"):
        _settle([k], vehicle_mtus=[VehicleMtu("v", T0, True), VehicleMtu("v", T0, False)])
    with pytest.raises(DomainError, match=r"vehicle_mtus\[0\].charging_price_per_kwh: term a of contract k refunds"):
        _settle([k], vehicle_mtus=[VehicleMtu("v", T0, True, charged_kwh=D(2), platform_charged_kwh=D(1))])
    with pytest.raises(DomainError, match="platform_charged_kwh: vehicle v .* exceeds charged_kwh"):
        VehicleMtu("v", T0, True, charged_kwh=D(1), platform_charged_kwh=D(2))
    with pytest.raises(DomainError, match="discharged_kwh: must not be negative"):
        VehicleMtu("v", T0, True, discharged_kwh=D(-1))
    with pytest.raises(DomainError, match=r"contracts\[1\].contract_id: 'k' appears twice"):
        _settle([k, k])
    k2 = Contract("k2", "o", ("v",), "EUR", (term("a", T0 + timedelta(days=9)),))
    with pytest.raises(DomainError, match=r"contracts\[1\]: vehicle v is in contracts k and k2 at the same time"):
        _settle([k, k2])


def test_bad_obligations_name_the_field() -> None:
    h = T0 + timedelta(hours=5)
    good = dict(obligation_id="o1", product_id="FCR-D-up/SE_DK2", mtu_start=h, mtu_end=h + timedelta(hours=1),
                currency="EUR", accepted_mw=D("0.5"), price_per_mw_h=D(10), commitments=(Commitment("v", D(5)),))
    for change, field in [(dict(currency="USD"), "currency: must be one of EUR, SEK, NOK, DKK; got 'USD'"),
                          (dict(accepted_mw=D(-1)), "accepted_mw: must not be negative"),
                          (dict(mtu_end=h), "mtu_end: obligation o1: must be after mtu_start"),
                          (dict(mtu_start=h + timedelta(minutes=7)), "mtu_start: must start a 15-minute MTU"),
                          (dict(commitments=(Commitment("v", D(1)), Commitment("v", D(2)))),
                           "commitments: obligation o1 commits a vehicle twice")]:
        with pytest.raises(DomainError, match=field):
            ObligationMtu(**{**good, **change})
    with pytest.raises(DomainError, match="commitments.kw: must be positive"):
        Commitment("v", D(0))
    with pytest.raises(DomainError, match="penalties.cause: must be a snake_case name"):
        Penalty("Capacity!", "withheld", D(1), D(1))
    k = Contract("k", "o", ("v",), "EUR", (term("a", T0),))
    sek = ObligationMtu(**{**good, "obligation_id": "o2", "currency": "SEK"})
    with pytest.raises(DomainError, match=r"obligations\[1\].currency: FCR-D-up/SE_DK2 is settled in EUR"):
        _settle([k], obligations=[ObligationMtu(**good), sek])
    with pytest.raises(DomainError, match=r"obligations\[1\]: obligation o1 at .* is given twice"):
        _settle([k], obligations=[ObligationMtu(**good), ObligationMtu(**good)])


def test_bad_soc_traces_name_the_field() -> None:
    good = dict(vehicle_id="v", start=T0, dt_s=900.0, soc=(0.5, 0.6), chemistry="NMC", battery_kwh=D(60),
                pack_value_per_kwh=D(100), pack_value_currency="EUR")
    for change, field in [(dict(soc=(0.5, 1.2)), "soc_traces.soc: vehicle v: must be fractions"),
                          (dict(chemistry="LMO"), "soc_traces.chemistry: must be NMC, LFP or NCA"),
                          (dict(pack_value_currency="USD"), "soc_traces.pack_value_currency: must be one of"),
                          (dict(reference_soc=(0.5,)), "soc_traces.reference_soc: vehicle v: needs at least two"),
                          (dict(temps_c=(20.0,)), "soc_traces.temps_c: must be one finite temperature")]:
        with pytest.raises(DomainError, match=field):
            SocTrace(**{**good, **change})
    k = Contract("k", "o", ("v",), "EUR", (term("a", T0, wear_factor=D(1)),))
    early = SocTrace(**{**good, "start": T0 - timedelta(hours=1)})
    with pytest.raises(DomainError, match=r"soc_traces\[0\].start: the trace .* is not inside 2026-03"):
        _settle([k], traces=[early])


def test_obligation_mtu_from_a_verified_delivery() -> None:
    h = T0 + timedelta(hours=17)
    ob = SimpleNamespace(obligation_id="o1", product_id="FCR-D-up/SE_DK2", direction="up", mtu_start=h,
                         mtu_end=h + timedelta(hours=1), volume_mw=D("0.3"), vehicles=("a", "b"), kw=(100.0, 250.5))
    delivery = SimpleNamespace(obligation_id="o1", product_id="FCR-D-up/SE_DK2", mtu_start=h,
                               mtu_end=h + timedelta(hours=1), kind="frequency", shortfall_mwh=0.0123456789,
                               capacity_share=0.96, response_share=0.9)
    rec = obligation_mtu(ob, D("45.10"), "EUR", delivery, surcharge_per_mwh=D(20))
    assert rec.commitments == (Commitment("a", D("100.0")), Commitment("b", D("250.5")))
    assert [(p.cause, p.kind.value, p.shortfall_mwh, p.price_per_mwh) for p in rec.penalties] == [
        ("activation_response", "withheld", D("0.012346"), D("45.10")),
        ("activation_response", "surcharge", D("0.012346"), D(20))]
    assert rec.revenue == D("0.3") * D("45.10")
    full = obligation_mtu(ob, D("45.10"), "EUR", SimpleNamespace(**{**vars(delivery), "shortfall_mwh": 0.0}))
    assert full.penalties == ()
    dso = obligation_mtu(ob, D(900), "SEK", SimpleNamespace(**{**vars(delivery), "kind": "dso_order"}))
    assert dso.penalties[0].cause == "energy_short"
