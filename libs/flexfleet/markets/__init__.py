"""Nordic reserve and local-flexibility products as sourced data, and the rules bids must meet."""

from flexfleet.markets.catalogue import (
    BIDDING_ZONES,
    Auction,
    Catalogue,
    CatalogueError,
    Endurance,
    FixedGateClosure,
    FrequencyActivation,
    ManualActivation,
    OrderActivation,
    Pricing,
    Product,
    ProductType,
    RelativeGateClosure,
    Source,
    Sourced,
    parse_catalogue,
    parse_product,
)
from flexfleet.markets.packaged import default_catalogue
from flexfleet.markets.rules import Violation, check_bid, gate_closure, is_open, round_to_step

__all__ = [
    "BIDDING_ZONES", "Auction", "Catalogue", "CatalogueError", "Endurance", "FixedGateClosure",
    "FrequencyActivation", "ManualActivation", "OrderActivation", "Pricing", "Product",
    "ProductType", "RelativeGateClosure", "Source", "Sourced", "Violation", "check_bid",
    "default_catalogue", "gate_closure", "is_open", "parse_catalogue", "parse_product",
    "round_to_step",
]
