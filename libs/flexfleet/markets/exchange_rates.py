"""Dated euro exchange rates as sourced data (data/markets/exchange_rates.json).

A DSO's flexibility order is priced in its market's currency (NODES in Sweden: SEK) while the
bidder plans and settles in EUR, so every conversion uses a rate that names its date and source.
`parse_exchange_rates` is pure; `default_exchange_rates` reads the file shipped with the package.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib.resources import files

from flexfleet.markets.catalogue import Source

PACKAGED_FILE = "exchange_rates.json"
_CURRENCY = re.compile(r"[A-Z]{3}")


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

    def on(self, currency: str, day: dt.date) -> ExchangeRate:
        """The latest rate published on or before `day`: what was known that day, never a later one."""
        if currency == "EUR":
            return ExchangeRate("EUR", day, Decimal(1), "identity")
        known = [r for r in self.rates if r.currency == currency]
        if not known:
            have = ", ".join(sorted({r.currency for r in self.rates}))
            raise ValueError(f"currency: no {currency} rate (have {have})")
        before = [r for r in known if r.day <= day]
        if not before:
            first = min(r.day for r in known)
            raise ValueError(f"currency: no {currency} rate on or before {day} (the first is {first})")
        return max(before, key=lambda r: r.day)


def parse_exchange_rates(text: str) -> ExchangeRates:
    """Rates from the file's text; a malformed entry raises ValueError naming it and the field."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"exchange rates: not JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("base") != "EUR":
        raise ValueError("base: must be EUR (rates are units of a currency per euro)")
    unknown = set(raw) - {"base", "sources", "checked", "note", "rates"}
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
        try:
            per_eur = Decimal(entry["per_eur"]) if isinstance(entry["per_eur"], str) else None
        except InvalidOperation:
            per_eur = None
        if per_eur is None or not per_eur.is_finite() or per_eur <= 0:
            raise ValueError(f"{where}.per_eur: {entry['per_eur']!r} must be a positive decimal string")
        if entry["source"] not in sources:
            raise ValueError(f"{where}.source: {entry['source']!r} is not in sources")
        if (currency, day) in seen:
            raise ValueError(f"{where}: a second {currency} rate for {day}")
        seen.add((currency, day))
        rates.append(ExchangeRate(currency, day, per_eur, entry["source"]))
    if not rates:
        raise ValueError("rates: none given")
    return ExchangeRates(tuple(sorted(rates, key=lambda r: (r.currency, r.day))), sources)


@lru_cache(maxsize=1)
def default_exchange_rates() -> ExchangeRates:
    """Parse the packaged rates once per process."""
    return parse_exchange_rates(files("flexfleet.markets").joinpath(PACKAGED_FILE).read_text("utf-8"))
