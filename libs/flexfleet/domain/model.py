"""Owners, sites, chargers, vehicles and contracts: the fleet registry as typed, checked values.

Frozen dataclasses validate on construction and raise DomainError naming the field, so a bad row
from a CSV, an API body or a test fails where it enters and says what is wrong. Plain strings
are accepted for enum fields and converted, which keeps loaders short.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar
from zoneinfo import ZoneInfo

from flexfleet.domain.errors import DomainError
from flexfleet.domain.zones import BiddingZone

# Ids travel as Kafka keys and in telemetry.v1, whose schema allows exactly these.
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class Language(StrEnum):
    EN = "en"
    NB = "nb"
    SV = "sv"
    DA = "da"
    NL = "nl"
    FI = "fi"


class Currency(StrEnum):
    EUR = "EUR"
    SEK = "SEK"
    NOK = "NOK"
    DKK = "DKK"


class SiteKind(StrEnum):
    HOME = "home"
    WORKPLACE = "workplace"
    SHARED_FLEET = "shared_fleet"
    PUBLIC = "public"


class Earthing(StrEnum):
    """Earthing system of the site's supply. Under current standards a car may not feed AC back
    on IT or TT networks (common in Norway); DC bidirectional charging is the way there."""

    TN = "TN"
    TT = "TT"
    IT = "IT"


class CurrentType(StrEnum):
    AC = "AC"
    DC = "DC"


class Chemistry(StrEnum):
    NMC = "NMC"
    LFP = "LFP"
    NCA = "NCA"


E = TypeVar("E", bound=StrEnum)


def as_enum(cls: type[E], value: object, name: str) -> E:
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise DomainError(name, f"must be one of {allowed}; got {value!r}") from None


def _id(value: object, name: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise DomainError(name, f"must be 1-64 characters of A-Z a-z 0-9 _ . : -; got {value!r}")
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DomainError(name, f"must be non-empty text; got {value!r}")
    return value


def _number(value: object, name: str, *, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DomainError(name, f"must be a finite number; got {value!r}")
    x = float(value)
    if lo is not None and (x <= lo if lo_open else x < lo):
        raise DomainError(name, f"must be {'above' if lo_open else 'at least'} {lo:g}; got {x:g}")
    if hi is not None and x > hi:
        raise DomainError(name, f"must be at most {hi:g}; got {x:g}")
    return x


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True)
class Owner:
    owner_id: str
    name: str
    language: Language = Language.EN
    currency: Currency = Currency.EUR

    def __post_init__(self) -> None:
        _id(self.owner_id, "owner_id")
        _text(self.name, "name")
        _set(self, "language", as_enum(Language, self.language, "language"))
        _set(self, "currency", as_enum(Currency, self.currency, "currency"))


@dataclass(frozen=True, slots=True)
class Site:
    """A connection point: the limits of its main fuse and its earthing bound every device on it."""

    site_id: str
    kind: SiteKind
    grid_node: str
    bidding_zone: BiddingZone
    max_import_kw: float
    max_export_kw: float
    earthing: Earthing = Earthing.TN
    timezone: str = ""  # empty: the bidding zone's timezone

    def __post_init__(self) -> None:
        _id(self.site_id, "site_id")
        _set(self, "kind", as_enum(SiteKind, self.kind, "kind"))
        _id(self.grid_node, "grid_node")
        _set(self, "bidding_zone", BiddingZone.parse(self.bidding_zone))
        _set(self, "earthing", as_enum(Earthing, self.earthing, "earthing"))
        _number(self.max_import_kw, "max_import_kw", lo=0, lo_open=True)
        _number(self.max_export_kw, "max_export_kw", lo=0)
        tz = self.timezone or self.bidding_zone.timezone
        try:
            ZoneInfo(tz)
        except Exception:
            raise DomainError("timezone", f"unknown IANA timezone {tz!r}") from None
        _set(self, "timezone", tz)

    @property
    def ac_export_allowed(self) -> bool:
        """Whether a car may feed AC back here: not on IT or TT earthing (Norwegian report)."""
        return self.earthing is Earthing.TN


@dataclass(frozen=True, slots=True)
class Charger:
    charger_id: str
    site: Site
    current: CurrentType
    bidirectional: bool
    max_charge_kw: float
    max_discharge_kw: float = 0.0

    def __post_init__(self) -> None:
        _id(self.charger_id, "charger_id")
        if not isinstance(self.site, Site):
            raise DomainError("site", f"must be a Site; got {type(self.site).__name__}")
        _set(self, "current", as_enum(CurrentType, self.current, "current"))
        if not isinstance(self.bidirectional, bool):
            raise DomainError("bidirectional", f"must be true or false; got {self.bidirectional!r}")
        _number(self.max_charge_kw, "max_charge_kw", lo=0, lo_open=True)
        _number(self.max_discharge_kw, "max_discharge_kw", lo=0)
        if not self.bidirectional and self.max_discharge_kw > 0:
            raise DomainError("max_discharge_kw", "must be 0 for a charger that is not bidirectional")

    @property
    def site_id(self) -> str:
        return self.site.site_id

    @property
    def discharge_block_reason(self) -> str | None:
        """Why this charger cannot discharge a car at all, or None when it can."""
        if not self.bidirectional or self.max_discharge_kw == 0:
            return "charger is not bidirectional"
        if self.current is CurrentType.AC and not self.site.ac_export_allowed:
            return f"AC export is not allowed on {self.site.earthing.value} earthing"
        if self.site.max_export_kw == 0:
            return "site may not export"
        return None

    @property
    def discharge_allowed(self) -> bool:
        return self.discharge_block_reason is None


@dataclass(frozen=True, slots=True)
class VehicleSpec:
    """A car model as the maker publishes it. battery_kwh is the usable capacity."""

    make: str
    model: str
    battery_kwh: float
    chemistry: Chemistry
    max_ac_charge_kw: float
    v2g_capable: bool = False
    max_discharge_kw: float = 0.0
    # Which current the car can discharge through (CHAdeMO/VW: DC, Renault 5: AC); None if none.
    v2g_current: CurrentType | None = None
    usable_soc_min_pct: float = 0.0
    usable_soc_max_pct: float = 100.0
    oem_discharge_cap_kwh_per_year: float | None = None
    kwh_per_km: float = 0.18

    def __post_init__(self) -> None:
        _text(self.make, "make")
        _text(self.model, "model")
        _number(self.battery_kwh, "battery_kwh", lo=0, lo_open=True, hi=300)
        _set(self, "chemistry", as_enum(Chemistry, self.chemistry, "chemistry"))
        _number(self.max_ac_charge_kw, "max_ac_charge_kw", lo=0, lo_open=True, hi=43)
        _number(self.max_discharge_kw, "max_discharge_kw", lo=0, hi=400)
        lo = _number(self.usable_soc_min_pct, "usable_soc_min_pct", lo=0, hi=100)
        hi = _number(self.usable_soc_max_pct, "usable_soc_max_pct", lo=0, hi=100)
        if lo >= hi:
            raise DomainError("usable_soc_min_pct", f"must be below usable_soc_max_pct ({lo:g} >= {hi:g})")
        if self.oem_discharge_cap_kwh_per_year is not None:
            _number(self.oem_discharge_cap_kwh_per_year, "oem_discharge_cap_kwh_per_year", lo=0, lo_open=True)
        _number(self.kwh_per_km, "kwh_per_km", lo=0.05, hi=1.0)
        if self.v2g_current is not None:
            _set(self, "v2g_current", as_enum(CurrentType, self.v2g_current, "v2g_current"))
        if not isinstance(self.v2g_capable, bool):
            raise DomainError("v2g_capable", f"must be true or false; got {self.v2g_capable!r}")
        if self.v2g_capable:
            if self.max_discharge_kw == 0:
                raise DomainError("max_discharge_kw", "must be above 0 for a V2G-capable vehicle")
            if self.v2g_current is None:
                raise DomainError("v2g_current", "must be AC or DC for a V2G-capable vehicle")
        elif self.max_discharge_kw > 0:
            raise DomainError("max_discharge_kw", "must be 0 for a vehicle that is not V2G capable")

    @property
    def name(self) -> str:
        return f"{self.make} {self.model}"


@dataclass(frozen=True, slots=True)
class Vehicle:
    vehicle_id: str
    owner_id: str
    spec: VehicleSpec
    home_charger_id: str | None = None

    def __post_init__(self) -> None:
        _id(self.vehicle_id, "vehicle_id")
        _id(self.owner_id, "owner_id")
        if not isinstance(self.spec, VehicleSpec):
            raise DomainError("spec", f"must be a VehicleSpec; got {type(self.spec).__name__}")
        if self.home_charger_id is not None:
            _id(self.home_charger_id, "home_charger_id")


@dataclass(frozen=True, slots=True)
class PairLimits:
    """What one vehicle on one charger can do, in kW (both positive), and why it cannot discharge."""

    max_charge_kw: float
    max_discharge_kw: float
    discharge_block_reason: str | None = None

    @property
    def can_discharge(self) -> bool:
        return self.max_discharge_kw > 0


def pair_limits(vehicle: Vehicle | VehicleSpec, charger: Charger) -> PairLimits:
    """Power limits of a vehicle-charger pair.

    Charging is the smaller of the two ratings. Discharging needs a bidirectional charger, a V2G
    capable car whose bidirectional path matches the charger's current (a CHAdeMO car cannot
    discharge through an AC wallbox), and for AC an earthing that allows export; otherwise 0,
    with the reason kept so operations can see why a pair falls back to smart charging.
    """
    spec = vehicle.spec if isinstance(vehicle, Vehicle) else vehicle
    charge = min(spec.max_ac_charge_kw, charger.max_charge_kw)
    reason = charger.discharge_block_reason
    if reason is None and not spec.v2g_capable:
        reason = f"{spec.name} is not V2G capable"
    if reason is None and spec.v2g_current is not charger.current:
        reason = (f"{spec.name} discharges over {spec.v2g_current}, charger is {charger.current}")
    if reason is not None:
        return PairLimits(charge, 0.0, reason)
    discharge = min(spec.max_discharge_kw, charger.max_discharge_kw, charger.site.max_export_kw)
    return PairLimits(charge, discharge, None)
