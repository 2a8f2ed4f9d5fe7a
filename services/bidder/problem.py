"""The day's bidding problem from what the platform knows: the catalogue, the registry's fleet,
a forecast issued before gate closure, and price scenarios.

Money terms the published rules leave open are stated here, once:
- a shortfall loses the capacity payment for the MTU (Svenska kraftnät withholds it) plus a
  surcharge of SHORTFALL_SURCHARGE times the price (SvK's sanction formula was not read);
- wear per kWh from the chemistry's BLAST-Lite curve at reserve depth;
- the OEM's yearly discharge cap spread evenly over the days.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from flexfleet.bidding import BiddingInputError, BiddingProblem, Fleet, Market, PriceScenarios, wear_rate_per_kwh
from flexfleet.domain.time import delivery_day_of
from flexfleet.forecast.portfolio import Calibration
from flexfleet.markets.catalogue import Catalogue, Product, ProductType
from flexfleet.markets.rules import gate_closure

BID_PRODUCTS = (ProductType.FCR_D_UP, ProductType.FCR_D_DOWN)
SHORTFALL_SURCHARGE = 1.0
DAYS_PER_YEAR = 365.0
# Expected FCR-D activation energy per MW h sold, from the simulated frequency (see
# services.simulator.market.expected_activation): used when the caller measures none.
DEFAULT_ACTIVATION_MWH_PER_MW_H = 0.01


@dataclass(frozen=True)
class DayMarkets:
    """The markets of one delivery day with their auction and the money terms they were given."""

    markets: tuple[Market, ...]
    auction: str
    surcharge_eur_per_mw_h: Mapping[str, float]


def products(catalogue: Catalogue, zone: str) -> list[Product]:
    try:
        return [catalogue.product(t, zone) for t in BID_PRODUCTS]
    except KeyError as exc:
        raise BiddingInputError(f"zone: {exc.args[0]}") from None


def resolve_auction(product: Product, name: str) -> str:
    """An auction by its name, or by a prefix naming the earliest such auction: "D-1" is
    Svenska kraftnät's "D-1 first" and Fingrid's "hourly market D-1"."""
    names = [a.name for a in product.auctions]
    if name in names:
        return name
    like = [n for n in names if n.startswith(name) or n.endswith(name)]
    if not like:
        raise BiddingInputError(f"auction: {product.id} has no auction {name!r} (has {', '.join(names)})")
    return like[0]


def day_markets(catalogue: Catalogue, zone: str, day: date, auction: str, prices: PriceScenarios,
                activation_mwh_per_mw_h: Mapping[str, float] | None = None) -> DayMarkets:
    """FCR-D up and down of the zone, penalties priced from the day's expected prices."""
    activation = activation_mwh_per_mw_h or {}
    markets, surcharge = [], {}
    resolved = None
    for product in products(catalogue, zone):
        name = resolve_auction(product, auction)
        resolved = resolved or name
        row = prices.row(product.id)
        price = float((prices.weights @ row).mean()) if row is not None else 0.0
        surcharge[product.id] = SHORTFALL_SURCHARGE * price
        markets.append(Market(product, activation_mwh_per_mw_h=activation.get(product.id, DEFAULT_ACTIVATION_MWH_PER_MW_H),
                              penalty_eur_per_mw_h=price + surcharge[product.id], auction=name))
    return DayMarkets(tuple(markets), resolved, surcharge)


def day_gate_closure(catalogue: Catalogue, zone: str, day: date, auction: str) -> datetime:
    """When the first of the day's markets closes for `auction`: the last moment to bid."""
    return min(gate_closure(p, resolve_auction(p, auction), day) for p in products(catalogue, zone))


def fleet_for_bidding(vehicles: pd.DataFrame) -> Fleet:
    """From registry rows indexed by vehicle_id: grid_node (the home charger's, else the
    charger it uses), chemistry and oem_discharge_cap_kwh_per_year (NaN: no cap)."""
    missing = [c for c in ("grid_node", "chemistry", "oem_discharge_cap_kwh_per_year") if c not in vehicles]
    if missing:
        raise BiddingInputError(f"fleet: missing column(s) {', '.join(missing)}")
    if vehicles.empty:
        raise BiddingInputError("fleet: no vehicles in the registry for this zone")
    wear = [wear_rate_per_kwh(str(c)) for c in vehicles["chemistry"]]
    cap = pd.to_numeric(vehicles["oem_discharge_cap_kwh_per_year"]).to_numpy(np.float64) / DAYS_PER_YEAR
    return Fleet(tuple(str(v) for v in vehicles.index), vehicles["grid_node"].fillna("unknown").astype(str).to_numpy(),
                 vehicles["chemistry"].astype(str).to_numpy(), np.asarray(wear), cap)


def next_open_auction(catalogue: Catalogue, zone: str, now: datetime) -> tuple[date, str]:
    """The next delivery day and the first of its auctions still open at `now`."""
    today = delivery_day_of(now, zone)
    for day in (today + timedelta(days=1), today + timedelta(days=2)):
        for auction in products(catalogue, zone)[0].auctions:
            if now < day_gate_closure(catalogue, zone, day, auction.name):
                return day, auction.name
    raise BiddingInputError(f"now: no auction is open for the next two delivery days in {zone}")


def bidding_problem(day: date, zone: str, auction: str, now: datetime, catalogue: Catalogue, fleet: Fleet,
                    forecast_vehicles: pd.DataFrame, calibrations: Mapping[str, Calibration],
                    prices: PriceScenarios, activation_mwh_per_mw_h: Mapping[str, float] | None = None,
                    ) -> tuple[BiddingProblem, DayMarkets]:
    if fleet.vehicle_ids == ():
        raise BiddingInputError("fleet: empty")
    day_m = day_markets(catalogue, zone, day, auction, prices, activation_mwh_per_mw_h)
    problem = BiddingProblem(day, zone, day_m.auction, now, day_m.markets, prices, fleet, forecast_vehicles,
                             dict(calibrations))
    return problem, day_m
