"""The largest-remainder rule and money helpers: parts sum to the total, each within one unit."""

import random
from datetime import date
from decimal import Decimal as D
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexfleet.domain import DomainError
from flexfleet.markets.exchange_rates import default_exchange_rates
from flexfleet.settlement import Money, allocate, exact_shares, format_money, fx_rate, minor_units, round_half_up
from flexfleet.settlement.attribution import convert_batch
from flexfleet.settlement.money import Currency, rate_day

weights_st = st.dictionaries(
    st.text("abcdef", min_size=1, max_size=3),
    st.one_of(st.integers(0, 10_000), st.decimals(0, 1000, places=3, allow_nan=False, allow_infinity=False),
              st.fractions(min_value=0, max_value=50, max_denominator=97)),
    min_size=1, max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.integers(-10**9, 10**9), weights_st, st.randoms(use_true_random=False))
def test_allocation_is_exact_within_one_unit_and_deterministic(total: int, weights, rnd: random.Random) -> None:
    if total and not any(weights.values()):
        with pytest.raises(DomainError, match="weights"):
            allocate(total, weights)
        return
    parts = allocate(total, weights)
    assert sum(parts.values()) == total                         # rounding never creates or loses money
    assert list(parts) == sorted(weights)                       # ascending key order
    exact = exact_shares(total, weights)
    for k, p in parts.items():
        assert abs(Fraction(p) - exact[k]) < 1                  # floor or floor + 1 of the exact share
        assert p in (floor(exact[k]), floor(exact[k]) + 1)
    shuffled = list(weights.items())
    rnd.shuffle(shuffled)
    assert allocate(total, shuffled) == parts                   # arrival order does not matter
    assert allocate(-total, weights) == {k: -p for k, p in parts.items()}   # a refund mirrors a payment


def test_allocation_ties_go_to_the_smaller_key() -> None:
    assert allocate(1, {"b": 1, "a": 1, "c": 1}) == {"a": 1, "b": 0, "c": 0}
    assert allocate(2, {"b": 1, "a": 1, "c": 1}) == {"a": 1, "b": 1, "c": 0}
    assert allocate(-1, {"b": 1, "a": 1}) == {"a": -1, "b": 0}
    assert allocate(10, {"x": D("0.5"), "y": D("0.25"), "z": D("0.25")}) == {"x": 5, "y": 3, "z": 2}


def test_allocation_refuses_bad_weights() -> None:
    with pytest.raises(DomainError, match="weights: weight of 'a' is negative"):
        allocate(5, {"a": -1, "b": 2})
    with pytest.raises(DomainError, match="weights: weight of 'a' must be"):
        allocate(5, {"a": 1.5})
    with pytest.raises(DomainError, match="all weights are zero"):
        allocate(5, {})
    with pytest.raises(DomainError, match="total: must be an int"):
        allocate(D("1.5"), {"a": 1})
    assert allocate(0, {"a": 0}) == {"a": 0}


@given(st.fractions(min_value=-10**6, max_value=10**6, max_denominator=1000))
def test_round_half_up_is_nearest_with_halves_away_from_zero(x: Fraction) -> None:
    r = round_half_up(x)
    assert abs(x - r) <= Fraction(1, 2)
    if abs(x - r) == Fraction(1, 2):
        assert abs(r) > abs(x)
    assert round_half_up(-x) == -r


def test_money_and_formatting() -> None:
    assert minor_units(D("0.225"), Currency.EUR) == 23 and minor_units(D("-0.225"), Currency.EUR) == -23
    assert format_money(-2092, Currency.SEK) == "-20.92 SEK"
    assert str(Money(1234, "NOK") + Money(1, "NOK")) == "12.35 NOK"
    with pytest.raises(DomainError, match="currency: cannot combine EUR with SEK"):
        Money(1, "EUR") + Money(1, "SEK")
    with pytest.raises(DomainError, match="currency: must be one of EUR, SEK, NOK, DKK; got 'GBP'"):
        Money(1, "GBP")


def test_fx_uses_the_latest_rate_on_or_before_the_months_last_day() -> None:
    rates = default_exchange_rates()
    assert rate_day(date(2026, 2, 1)) == date(2026, 2, 28) and rate_day(date(2024, 2, 1)) == date(2024, 2, 29)
    fx = fx_rate(rates, Currency.NOK, Currency.SEK, rate_day(date(2026, 10, 1)))
    assert (fx.from_per_eur.day, fx.to_per_eur.day) == (date(2026, 10, 30), date(2026, 10, 30))
    assert fx.factor == Fraction(D("10.9780")) / Fraction(D("10.3120"))
    earlier = fx_rate(rates, Currency.EUR, Currency.DKK, date(2026, 10, 25))     # a Sunday
    assert earlier.to_per_eur.day == date(2026, 10, 23)        # never a rate published later
    with pytest.raises(DomainError, match="exchange_rates: .*no SEK rate on or before 2021-12-31"):
        fx_rate(rates, Currency.SEK, Currency.EUR, date(2021, 12, 31))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 10**7), min_size=1, max_size=8), st.sampled_from(list(Currency)),
       st.sampled_from(list(Currency)), st.booleans())
def test_a_conversion_batch_rounds_once_and_splits_exactly(amounts, a, b, negative) -> None:
    fx = fx_rate(default_exchange_rates(), a, b, date(2026, 6, 30))
    items = {f"k{i}": (-x if negative else x) for i, x in enumerate(amounts)}
    out = convert_batch(items, fx)
    assert sum(out.values()) == round_half_up(fx.convert(sum(items.values())))
    for k, v in out.items():
        assert abs(fx.convert(items[k]) - v) < 2       # within a unit of the exact share of the rounded sum
