"""The settlement service's pure parts: registry rows to contracts, obligation ids, broken
promises per MTU, and adjustments that turn a posted ledger into a re-settled one."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency
from flexfleet.settlement import Month
from flexfleet.settlement.statement import Promise, PromiseKind
from services.settlement.inputs import (PACK_VALUE_EUR, broken_by_mtu, contract_from_row, settlement_obligation_id,
                                        stored_obligation_id)
from services.settlement.service import adjustments
from services.settlement.store import PostingRow
from services.simulator.fleet import contract_terms, generate_fleet

START = datetime(2026, 1, 1, tzinfo=UTC)


def _row(terms: dict, **extra) -> dict:
    return {"contract_id": "k1", "owner_id": "o1", "vehicle_id": "v1", "valid_to": None, "terms": terms,
            "currency": "SEK", "language": "sv", **extra}


@pytest.mark.parametrize("plan", ["flex_availability", "flex_revenue_share", "flex_power_pack"])
@pytest.mark.parametrize("v2g", [True, False])
def test_every_simulated_plan_is_a_settlement_contract_in_the_owners_currency(plan, v2g):
    k = contract_from_row(_row(contract_terms(plan, START, Currency.SEK, v2g)))
    (term,) = k.terms
    assert (k.currency, k.vehicle_ids, k.language.value) == (Currency.SEK, ("v1",), "sv")
    assert term.wear_factor == 1 and term.credit_per_broken_departure == Decimal(22)
    assert (term.energy_per_kwh > 0) is v2g and (term.charging_refund is not None) is v2g
    assert term.availability_per_hour > 0 or term.revenue_share_pct == 50


def test_the_simulated_fleet_writes_settlement_terms():
    fleet = generate_fleet(30, seed=2)
    for k in fleet.contracts:
        c = contract_from_row(_row(dict(k.terms), contract_id=k.contract_id, vehicle_id=k.vehicle_id))
        assert c.terms[0].valid_from == k.valid_from
    assert len({k.kind for k in fleet.contracts}) == 3


def test_a_misspelt_rate_and_the_old_opaque_terms_are_refused_by_name():
    terms = contract_terms("flex_availability", START, Currency.SEK, False)
    terms["terms"][0]["availabilty_per_hour"] = terms["terms"][0].pop("availability_per_hour")
    with pytest.raises(DomainError) as err:
        contract_from_row(_row(terms))
    assert err.value.field == "contracts[k1].terms[0].availabilty_per_hour"
    with pytest.raises(DomainError) as err:
        contract_from_row(_row({"availability_eur_per_h": 0.05, "wear_paid": True}))
    assert err.value.field == "contracts[k1].terms.availability_eur_per_h"


def test_a_contract_row_that_ends_ends_the_settlement_contract():
    end = datetime(2026, 6, 1, tzinfo=UTC)
    k = contract_from_row(_row(contract_terms("flex_availability", START, Currency.SEK, False), valid_to=end))
    assert k.ends == end and not k.covers(end)


def test_bidder_obligation_ids_map_to_settlement_ids_and_back():
    oid = "671f554e-d38f-4e2d-8069-3060391f3b0d/12"
    assert stored_obligation_id(settlement_obligation_id(oid)) == oid
    with pytest.raises(DomainError):
        settlement_obligation_id("a:b")


def test_broken_promises_count_in_the_mtu_they_fell_due():
    month = Month(date(2026, 10, 1), "SE3")
    due = datetime(2026, 10, 7, 5, 50, tzinfo=UTC)
    promises = (Promise("v1", PromiseKind.DEPARTURE, due, 80, 50, kept=False),
                Promise("v1", PromiseKind.MIN_SOC, due, 20, 10, kept=False),
                Promise("v2", PromiseKind.MIN_SOC, due, 20, 25, kept=True))
    assert broken_by_mtu(promises, month) == {("v1", datetime(2026, 10, 7, 5, 45, tzinfo=UTC)): (1, 1)}


def test_the_pack_value_is_the_bnef_ev_price_in_euro():
    assert PACK_VALUE_EUR == Decimal("92.14")   # 97 USD / 1.0527 USD per EUR


_ACCOUNTS = [("owner_pay", "m", "availability", "EUR"), ("owner_payable", "o", "", "EUR"),
             ("market_revenue", "m", "", "SEK"), ("market_receivable", "m", "", "SEK")]


@st.composite
def _ledger(draw, name: str) -> list[PostingRow]:
    """Balanced entries: each moves an amount from one account to another of its currency."""
    rows = []
    for i in range(draw(st.integers(0, 5))):
        eid = f"{name}{draw(st.integers(0, 3))}" if draw(st.booleans()) else f"e{i}"
        pair = draw(st.sampled_from([(0, 1), (2, 3)]))
        amount = draw(st.integers(-500, 500).filter(bool))
        trace = (None, None, None, f"v{draw(st.integers(0, 2))}", None, None, None, None)
        for acc, sign in zip(pair, (1, -1)):
            rows.append(PostingRow(eid, "pay", *_ACCOUNTS[acc], sign * amount, trace))
    return rows


def _by_entry(rows) -> dict:
    out: dict = defaultdict(int)
    for r in rows:
        out[(r.entry_id, r.key)] += r.amount
    return {k: v for k, v in out.items() if v}


@given(_ledger("a"), _ledger("b"), _ledger("c"))
def test_adjustments_turn_what_is_posted_into_the_new_settlement(v1, v2, v3):
    posted = [(1, r, None) for r in v1]
    for version, new in ((2, v2), (3, v3)):
        rows, adjusts, _ = adjustments(posted, new)
        sums: dict = defaultdict(int)
        for r in rows:
            assert r.kind == "adjustment" and adjusts[r.entry_id]
            sums[(r.entry_id, r.currency)] += r.amount
        assert not any(sums.values())                       # every adjustment entry balances
        posted += [(version, r, adjusts[r.entry_id]) for r in rows]
        effective = [PostingRow(a or r.entry_id, r.kind, r.account_kind, r.account_key, r.account_sub, r.currency,
                                r.amount, r.trace) for _, r, a in posted]
        assert _by_entry(effective) == _by_entry(new)       # posted + adjustments = the new settlement
    assert adjustments(posted, v3)[0] == []                  # nothing changed: nothing to post


def test_a_rate_published_for_the_month_changes_the_input_digest():
    from dataclasses import replace

    from flexfleet.markets.exchange_rates import ExchangeRate, default_exchange_rates
    from services.settlement.inputs import MonthInputs
    from services.settlement.service import input_digest

    month = Month(date(2026, 10, 1), "SE3")
    inputs = MonthInputs(month, (), (), (), (), (), (), ())
    rates = default_exchange_rates()
    newer = replace(rates, rates=rates.rates + (ExchangeRate("SEK", month.rate_day, Decimal("11.0001"), "ecb"),))
    assert input_digest(inputs, rates) == input_digest(inputs) != input_digest(inputs, newer)
    earlier = replace(rates, rates=rates.rates + (ExchangeRate("SEK", date(2026, 11, 2), Decimal("12"), "ecb"),))
    assert input_digest(inputs, earlier) == input_digest(inputs)    # published after the month: not its rate
