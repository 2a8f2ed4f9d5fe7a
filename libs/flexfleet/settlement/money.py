"""Money as whole minor units of a currency; Decimal only for rates, prices and quantities.

Why integers: a ledger that must balance to zero and rerun byte for byte cannot carry binary
floats, and a Decimal amount invites a third decimal no bank account holds. Every amount the
settlement posts is an int of cents (öre, øre) tagged with its currency. Intermediate amounts
(rate x quantity, a share of a pool, a conversion) are exact Fractions until the one place that
rounds them, which says how (half up here, largest remainder in `allocation`).

Conversion reuses the daily ECB reference rates of `flexfleet.markets.exchange_rates`: the rate
for a month is the latest one published on or before the month's last day (`rate_day`), i.e. that
of its last ECB business day (a month ending on a weekend or a TARGET holiday uses the business
day before). The month's pay is owed when the month closes, one rate per currency pair and month
keeps each statement to one stated rate, and a rerun next year picks the same rate as the first run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from fractions import Fraction

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency, as_enum
from flexfleet.markets.exchange_rates import ExchangeRate, ExchangeRates

# Digits after the decimal point of each currency's minor unit (ISO 4217: all four have 2).
MINOR_DIGITS: dict[Currency, int] = {Currency.EUR: 2, Currency.SEK: 2, Currency.NOK: 2, Currency.DKK: 2}

Exact = Fraction | Decimal | int

# Sums and products of input Decimals (kWh, prices) are taken in this context: 60 digits hold any
# realistic month exactly, and an operation that would have to round raises decimal.Inexact
# instead of losing a digit without a word.
EXACT = Context(prec=60, traps=[Inexact, Overflow, InvalidOperation, DivisionByZero])


def currency(value: object, field: str = "currency") -> Currency:
    """`value` as a Currency, or a DomainError naming `field` and the known currencies."""
    return as_enum(Currency, value, field)


def decimal(value: object, field: str, *, lo: Decimal | None = Decimal(0), hi: Decimal | None = None,
            places: int | None = None) -> Decimal:
    """A finite Decimal from a Decimal, int or decimal string (a float is refused: 0.1 is not 0.1)."""
    if type(value) is Decimal and value.is_finite() and hi is None and places is None and (lo is None or value >= lo):
        return value    # the common case, checked cheaply: records come by the million
    if isinstance(value, bool) or isinstance(value, float) or not isinstance(value, (Decimal, int, str)):
        raise DomainError(field, f"must be a Decimal, an int or a decimal string; got {value!r}")
    try:
        d = Decimal(value)
    except ArithmeticError:
        raise DomainError(field, f"not a decimal number: {value!r}") from None
    if not d.is_finite():
        raise DomainError(field, f"must be finite; got {value!r}")
    if lo is not None and d < lo:
        raise DomainError(field, f"must not be below {lo}; got {d}" if lo else f"must not be negative; got {d}")
    if hi is not None and d > hi:
        raise DomainError(field, f"must be at most {hi}; got {d}")
    if places is not None and d != d.quantize(Decimal(1).scaleb(-places)):
        raise DomainError(field, f"has more than {places} decimals: {d}")
    return d


def exact(x: Exact) -> Fraction:
    """The exact rational value (Decimal converts without loss)."""
    return x if isinstance(x, Fraction) else Fraction(x)


def round_half_up(x: Exact) -> int:
    """Nearest integer, halves away from zero: the commercial rule an owner checks by hand."""
    q = exact(x)
    n, r = divmod(abs(q.numerator), q.denominator)
    if 2 * r >= q.denominator:
        n += 1
    return n if q >= 0 else -n


def to_minor(amount: Exact, cur: Currency) -> Fraction:
    """Exact minor units of an amount in major units (12.345 EUR -> 1234.5)."""
    return exact(amount) * 10 ** MINOR_DIGITS[cur]


def minor_units(amount: Exact, cur: Currency) -> int:
    """An amount in major units rounded half up to whole minor units."""
    return round_half_up(to_minor(amount, cur))


def major(minor: int, cur: Currency) -> Decimal:
    """Whole minor units back as an exact Decimal of major units (1234 -> Decimal('12.34'))."""
    return Decimal(minor).scaleb(-MINOR_DIGITS[cur])


def format_money(minor: int, cur: Currency) -> str:
    return f"{major(minor, cur):.{MINOR_DIGITS[cur]}f} {cur.value}"


@dataclass(frozen=True, order=True)
class Money:
    """An amount in whole minor units of one currency; sums refuse to mix currencies."""

    minor: int
    currency: Currency

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise DomainError("minor", f"must be an int of minor units; got {self.minor!r}")
        object.__setattr__(self, "currency", currency(self.currency))

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise DomainError("currency", f"cannot combine {self.currency.value} with {other.currency.value}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    @property
    def major(self) -> Decimal:
        return major(self.minor, self.currency)

    def __str__(self) -> str:
        return format_money(self.minor, self.currency)


def rate_day(month_first_day: dt.date) -> dt.date:
    """The date whose rate converts a month: its last day (see the module doc for why)."""
    nxt = (month_first_day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return nxt - dt.timedelta(days=1)


@dataclass(frozen=True)
class FxRate:
    """Units of `to_currency` per unit of `from_currency` on `day`, as the cross of two ECB euro
    rates (each with its own publication date and source: what a statement must name)."""

    from_currency: Currency
    to_currency: Currency
    day: dt.date
    from_per_eur: ExchangeRate
    to_per_eur: ExchangeRate

    @property
    def factor(self) -> Fraction:
        return exact(self.to_per_eur.per_eur) / exact(self.from_per_eur.per_eur)

    def convert(self, minor: Exact) -> Fraction:
        """Exact minor units of `to_currency` (all four currencies have the same minor digits)."""
        shift = MINOR_DIGITS[self.to_currency] - MINOR_DIGITS[self.from_currency]
        return exact(minor) * self.factor * Fraction(10) ** shift


def fx_rate(rates: ExchangeRates, from_currency: Currency, to_currency: Currency, day: dt.date) -> FxRate:
    """The cross rate on `day` from the latest ECB rates published on or before it."""
    try:
        a = rates.on(from_currency.value, day)
        b = rates.on(to_currency.value, day)
    except ValueError as exc:
        raise DomainError("exchange_rates", str(exc)) from None
    return FxRate(from_currency, to_currency, day, a, b)
