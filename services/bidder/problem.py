"""The day's bidding problem from what the platform knows: the catalogue, the registry's fleet,
a forecast issued before gate closure, and price scenarios.

Money terms the published rules leave open are stated here, once:
- a shortfall loses the capacity payment for the MTU (Svenska kraftnät withholds it) plus a
  surcharge of SHORTFALL_SURCHARGE times the price (SvK's sanction formula was not read);
- a local (NODES) shortfall loses the order's payment for the undelivered volume and nothing more
  (LOCAL_SHORTFALL_SURCHARGE);
- wear per kWh from the chemistry's BLAST-Lite curve at reserve depth;
- the OEM's yearly discharge cap spread evenly over the days.

A DSO's order at one of the fleet's grid nodes is a market of its own (key "<product>@<order_id>",
so two orders at one node never share a price row), backed only by that node's cars and priced
in EUR at the latest ECB reference rate on or before the delivery day
(flexfleet.markets.exchange_rates). The orders come in as a parameter: a real deployment reads
them from the marketplace, the demo from the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

import numpy as np
import pandas as pd

from flexfleet.bidding import (BiddingInputError, BiddingProblem, BidPlan, Dropped, Fleet, Market, PriceScenarios,
                               wear_rate_per_kwh)
from flexfleet.bidding.models import Direction
from flexfleet.domain.time import delivery_day_of
from flexfleet.forecast.portfolio import Calibration
from flexfleet.markets.catalogue import Catalogue, Product, ProductType
from flexfleet.markets.clearing import FlexOrder, FlexOrderType, FlexPriceUnit
from flexfleet.markets.exchange_rates import ExchangeRate, ExchangeRates, default_exchange_rates
from flexfleet.markets.rules import gate_closure

BID_PRODUCTS = (ProductType.FCR_D_UP, ProductType.FCR_D_DOWN)
SHORTFALL_SURCHARGE = 1.0
DAYS_PER_YEAR = 365.0
# Expected FCR-D activation energy per MW h sold, from the simulated frequency (see
# services.simulator.market.expected_activation): used when the caller measures none.
DEFAULT_ACTIVATION_MWH_PER_MW_H = 0.01

LOCAL_PRODUCT = ProductType.LOCAL_FLEX
# NODES withholds the payment for volume not delivered against the baseline (the catalogue's
# `penalties`, from the sthlmflex season-3 report via a secondary summary; the NODES rulebook was
# not read): no fee beyond it is known, so a local shortfall costs the order's price and no more.
LOCAL_SHORTFALL_SURCHARGE = 0.0
# A ShortFlex order buys activation: every MW sold is delivered for the whole hourly MTU.
SHORT_FLEX_ACTIVATION_MWH_PER_MW_H = 1.0
# A LongFlex order buys availability; the DSO calls it when the grid needs it (sthlmflex season
# flex: on days forecast at -5 C or colder, in the 7-11 and 17-21 windows, per NODES' LongFlex
# tender) and pays the call at the seller's own activation price, which the simulated order does
# not carry. One hour in four is assumed called (a cold spell's share of a Stockholm winter, not
# measured): its wear and OEM-cap use are charged to the availability.
LONG_FLEX_ACTIVATION_MWH_PER_MW_H = 0.25
LOCAL_ENDURANCE_MIN = 60.0    # a call holds for the whole hourly MTU
# The simulated orders relieve evening and morning peaks: less load or more export at the node.
LOCAL_DIRECTION: Direction = "up"
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class DayMarkets:
    """The markets of one delivery day with their auction and the money terms they were given.

    prices: the given scenarios plus one row per DSO order (None when built by hand);
    orders: the DSO order behind each local market, by market key.
    """

    markets: tuple[Market, ...]
    auction: str
    surcharge_eur_per_mw_h: Mapping[str, float]
    prices: PriceScenarios | None = None
    orders: Mapping[str, FlexOrder] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


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
                activation_mwh_per_mw_h: Mapping[str, float] | None = None, orders: Sequence[FlexOrder] = (),
                rates: ExchangeRates | None = None) -> DayMarkets:
    """FCR-D up and down of the zone, penalties priced from the day's expected prices, and a
    market per DSO order that reaches into the day (prices extended with its row)."""
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
    local = local_markets(catalogue, zone, day, orders, prices.mtu_starts, rates) if orders else []
    rows = [lm.row for lm in local]
    for lm in local:
        markets.append(lm.market)
        surcharge[lm.market.key] = LOCAL_SHORTFALL_SURCHARGE * float(lm.eur_per_mw_h)
    extended = prices if not rows else PriceScenarios(
        prices.product_ids + tuple(lm.market.key for lm in local), prices.mtu_starts,
        np.concatenate([prices.prices, np.broadcast_to(np.stack(rows)[None], (prices.prices.shape[0], len(rows),
                                                                              len(prices.mtu_starts)))], axis=1),
        prices.weights)
    return DayMarkets(tuple(markets), resolved, surcharge, extended, {lm.market.key: lm.order for lm in local},
                      _order_notes(local))


@dataclass(frozen=True)
class LocalMarket:
    """A DSO order as the plan sees it: its market, its price per MW h in EUR, the rate used, and
    its price row over the day's MTUs (the price inside the order's window, 0 outside)."""

    order: FlexOrder
    market: Market
    eur_per_mw_h: Decimal
    rate: ExchangeRate
    row: np.ndarray


def order_key(product: Product, order: FlexOrder) -> str:
    return f"{product.id}@{order.order_id}"


def order_id_of(product_id: str, market_key: str) -> str | None:
    """The DSO order a local-flex bid answers (its market key is "<product>@<order_id>"), else None."""
    head, sep, tail = market_key.partition("@")
    return tail if sep and head == product_id and product_id.startswith(LOCAL_PRODUCT.value) else None


def order_activation(order: FlexOrder) -> float:
    """Expected activation energy per MW h sold: ShortFlex is delivered, LongFlex sometimes called."""
    if order.order_type is FlexOrderType.SHORT_FLEX:
        return SHORT_FLEX_ACTIVATION_MWH_PER_MW_H
    return LONG_FLEX_ACTIVATION_MWH_PER_MW_H


def order_eur_per_mw_h(order: FlexOrder, rate: ExchangeRate, cap: Decimal | None = None) -> Decimal:
    """The most the order pays per MW of an hourly MTU, in EUR, floored to the cent so an offer at
    it, converted back, never exceeds the order's price. A per-MWh price pays an hour's full
    activation (1 MWh per MW), a per-MW,h price the hour's availability: either is per MW h.
    `cap` is the marketplace's per-MWh cap (sthlmflex: 10,000 SEK/MWh)."""
    if rate.currency != order.currency:
        raise BiddingInputError(f"orders: {order.order_id} is in {order.currency}, the rate given is {rate.currency}")
    price = order.max_price
    if cap is not None and order.price_unit is FlexPriceUnit.PER_MWH:
        price = min(price, cap)
    return rate.to_eur(price).quantize(_CENT, rounding=ROUND_FLOOR)


def local_markets(catalogue: Catalogue, zone: str, day: date, orders: Sequence[FlexOrder],
                  mtu_starts: Sequence[datetime], rates: ExchangeRates | None = None) -> list[LocalMarket]:
    """One market per order with an MTU of the day wholly inside its window; others are left out."""
    try:
        product = catalogue.product(LOCAL_PRODUCT, zone)
    except KeyError:
        raise BiddingInputError(f"orders: no {LOCAL_PRODUCT.value} product is catalogued for {zone}") from None
    rates = rates or default_exchange_rates()
    minutes = timedelta(minutes=product.mtu_minutes.value)
    starts = pd.DatetimeIndex(mtu_starts)
    pricing = product.pricing.value
    out, seen = [], set()
    for order in sorted(orders, key=lambda o: (o.start, o.order_id)):
        if order.order_id in seen:
            raise BiddingInputError(f"orders: {order.order_id} appears twice")
        seen.add(order.order_id)
        inside = np.asarray((starts >= order.start) & (starts + minutes <= order.end), dtype=bool)
        if not inside.any():
            continue
        try:
            rate = rates.on(order.currency, day)
        except ValueError as exc:
            raise BiddingInputError(f"orders: {order.order_id}: {exc}") from None
        cap = pricing.price_cap if pricing.currency in (None, order.currency) else None
        eur = order_eur_per_mw_h(order, rate, cap)
        market = Market(product, direction=LOCAL_DIRECTION, grid_node=order.grid_node,
                        max_mw=float(order.quantity_mw), endurance_min=LOCAL_ENDURANCE_MIN,
                        activation_mwh_per_mw_h=order_activation(order),
                        penalty_eur_per_mw_h=float(eur) * (1 + LOCAL_SHORTFALL_SURCHARGE),
                        auction=product.auctions[0].name, key=order_key(product, order))
        out.append(LocalMarket(order, market, eur, rate, np.where(inside, float(eur), 0.0)))
    return out


def with_orders_explained(plan: BidPlan, day_m: DayMarkets) -> BidPlan:
    """The plan with the orders and rates it priced in its notes, and without the "dropped" lines
    of hours outside an order's window: the order asks for nothing there."""
    def asked(d: Dropped) -> bool:
        order = day_m.orders.get(d.market_key)
        return order is None or d.mtu_start is None or order.start <= d.mtu_start < order.end

    return replace(plan, dropped=tuple(d for d in plan.dropped if asked(d)), notes=plan.notes + day_m.notes)


def _order_notes(local: Sequence[LocalMarket]) -> tuple[str, ...]:
    if not local:
        return ()
    rates = sorted({(lm.rate.currency, lm.rate.per_eur, lm.rate.day, lm.rate.source) for lm in local})
    said = "; ".join(f"{c} at {r} per EUR (rate of {d}, source {s})" for c, r, d, s in rates)
    orders = ", ".join(f"{lm.order.order_id} ({lm.order.order_type.value}, {lm.order.quantity_mw} MW at "
                       f"{lm.order.grid_node}, {lm.eur_per_mw_h} EUR/MW h)" for lm in local)
    return (f"local flexibility: {len(local)} DSO order(s) at the fleet's nodes: {orders}; {said}",)


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
                    orders: Sequence[FlexOrder] = (), rates: ExchangeRates | None = None,
                    ) -> tuple[BiddingProblem, DayMarkets]:
    """The day's problem; `orders` are the DSO orders known at `now` (those at none of the fleet's
    grid nodes are left out: no car could serve them)."""
    if fleet.vehicle_ids == ():
        raise BiddingInputError("fleet: empty")
    nodes = set(fleet.grid_node.tolist())
    day_m = day_markets(catalogue, zone, day, auction, prices, activation_mwh_per_mw_h,
                        [o for o in orders if o.grid_node in nodes], rates)
    problem = BiddingProblem(day, zone, day_m.auction, now, day_m.markets, day_m.prices or prices, fleet,
                             forecast_vehicles, dict(calibrations))
    return problem, day_m
