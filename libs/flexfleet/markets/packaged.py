"""The catalogue shipped with the package (data/markets/nordic_products.json).

Kept apart from the pure parser so that tests and services can pass their own rule text.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

from flexfleet.markets.catalogue import Catalogue, parse_catalogue

PACKAGED_FILE = "nordic_products.json"


@lru_cache(maxsize=1)
def default_catalogue() -> Catalogue:
    """Parse the packaged Nordic catalogue once per process."""
    return parse_catalogue(files("flexfleet.markets").joinpath(PACKAGED_FILE).read_text("utf-8"))
