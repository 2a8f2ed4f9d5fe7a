"""Bidding zones: each carries the timezone its delivery days are counted in and its currency.

Delivery days, gate closures and owner statements are local; a zone's clock decides them.
"""

from __future__ import annotations

from enum import StrEnum
from zoneinfo import ZoneInfo

from flexfleet.domain.errors import DomainError


class BiddingZone(StrEnum):
    SE1 = "SE1"
    SE2 = "SE2"
    SE3 = "SE3"
    SE4 = "SE4"
    NO1 = "NO1"
    NO2 = "NO2"
    NO3 = "NO3"
    NO4 = "NO4"
    NO5 = "NO5"
    FI = "FI"
    DK1 = "DK1"
    DK2 = "DK2"
    NL = "NL"

    @property
    def timezone(self) -> str:
        """IANA name of the zone's local time."""
        return _TZ[self.value[:2]]

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def currency(self) -> str:
        """ISO 4217 currency owners in this zone are paid in (Finland and the Netherlands use EUR)."""
        return _CURRENCY[self.value[:2]]

    @property
    def country(self) -> str:
        return _COUNTRY[self.value[:2]]

    @classmethod
    def parse(cls, value: str | BiddingZone, field: str = "bidding_zone") -> BiddingZone:
        """The zone named by `value`, or a DomainError that lists the known ones."""
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            known = ", ".join(z.value for z in cls)
            raise DomainError(field, f"unknown bidding zone {value!r}; known: {known}") from None


_TZ = {"SE": "Europe/Stockholm", "NO": "Europe/Oslo", "FI": "Europe/Helsinki",
       "DK": "Europe/Copenhagen", "NL": "Europe/Amsterdam"}
_CURRENCY = {"SE": "SEK", "NO": "NOK", "FI": "EUR", "DK": "DKK", "NL": "EUR"}
_COUNTRY = {"SE": "SE", "NO": "NO", "FI": "FI", "DK": "DK", "NL": "NL"}
