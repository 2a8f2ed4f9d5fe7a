"""Vehicles, owners, chargers, sites, contracts and the MTU time grid (pure, no I/O)."""

from flexfleet.domain.catalogue import Bidirectional, VehicleModel, parse_vehicle_models
from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import (
    Charger, Chemistry, Currency, CurrentType, Earthing, Language, Owner, PairLimits,
    Site, SiteKind, Vehicle, VehicleSpec, pair_limits,
)
from flexfleet.domain.time import (
    MTU, delivery_day_bounds, delivery_day_of, format_rfc3339, mtu_floor, mtus_of_delivery_day,
    parse_rfc3339, require_aware, to_local, to_utc,
)
from flexfleet.domain.zones import BiddingZone

__all__ = [
    "MTU", "BiddingZone", "Bidirectional", "Charger", "Chemistry", "Currency",
    "CurrentType", "DomainError", "Earthing", "Language", "Owner", "PairLimits", "Site", "SiteKind",
    "Vehicle", "VehicleModel", "VehicleSpec", "delivery_day_bounds", "delivery_day_of",
    "format_rfc3339", "mtu_floor", "mtus_of_delivery_day", "pair_limits", "parse_rfc3339",
    "parse_vehicle_models", "require_aware", "to_local", "to_utc",
]
