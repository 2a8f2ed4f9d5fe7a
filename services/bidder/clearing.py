"""Bids against the simulated market: where the demo and the backtest get their clearing results
(a real deployment gets them from the TSO's platform and the flexibility marketplace, through
POST /v1/clearing).

FCR-D bids clear per product and MTU in the realised capacity auction. Local-flex bids become
NODES offers at their grid node and MTU, matched pay-as-bid against the same day's DSO orders.
NODES trades flexibility as power during an hour (MWh/h), so each order is met hour by hour: a
bid for one MTU of a three-hour order can be accepted whatever the other hours got.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from flexfleet.domain.time import delivery_day_of
from flexfleet.markets import default_catalogue
from flexfleet.markets.catalogue import ProductType
from flexfleet.markets.clearing import CapacityBid, FlexOffer, FlexOrder
from flexfleet.markets.exchange_rates import ExchangeRates, default_exchange_rates
from services.bidder.problem import order_id_of
from services.simulator.market import MARKET_TZ, clear_local_flex, dso_orders, simulate_clearing

_CENT = Decimal("0.01")


class Offered(Protocol):
    product_id: str
    market_key: str
    grid_node: str | None
    mtu_start: datetime
    volume_mw: Decimal
    price_eur_per_mw_h: Decimal


def clear_simulated[B: Offered](bids: Sequence[B], regime: str = "low", seed: int = 0,
                                orders: Iterable[FlexOrder] | None = None, rates: ExchangeRates | None = None,
                                ) -> list[tuple[B, Decimal, Decimal | None]]:
    """(bid, accepted MW, price paid in EUR per MW h or None) for every bid, in the bids' order.
    `orders`: the DSO order book local bids meet (default: the simulator's orders of each bid's
    day at its node, drawn with `seed` as the plan drew them)."""
    catalogue = default_catalogue()
    by_key: dict[tuple[str, datetime], list[CapacityBid]] = {}
    local: dict[str, B] = {}
    for i, bid in enumerate(bids):
        product = catalogue.by_id(bid.product_id)
        if product.product_type is ProductType.LOCAL_FLEX:
            local[str(i)] = bid
            continue
        by_key.setdefault((bid.product_id, bid.mtu_start), []).append(
            CapacityBid(str(i), bid.volume_mw, bid.price_eur_per_mw_h, bool(product.indivisible.value)))
    outcomes = {o.bid_id: (o.accepted_mw, o.price_paid) for result in simulate_clearing(by_key, regime=regime,
                                                                                        seed=seed).values()
                for o in result.bids}
    outcomes |= _clear_local(local, seed, orders, rates or default_exchange_rates())
    return [(bid, *outcomes[str(i)]) for i, bid in enumerate(bids)]


def _clear_local(bids: dict[str, Offered], seed: int, orders: Iterable[FlexOrder] | None,
                 rates: ExchangeRates) -> dict[str, tuple[Decimal, Decimal | None]]:
    """Each local bid as a FlexOffer in its order's currency and unit, matched against the orders
    split into their hourly MTUs; accepted MW and the price paid (pay-as-bid: the offer) back in EUR."""
    if not bids:
        return {}
    if orders is None:
        wanted: dict[date, set[str | None]] = {}
        for b in bids.values():
            wanted.setdefault(delivery_day_of(b.mtu_start, MARKET_TZ), set()).add(b.grid_node)
        orders = [o for day, nodes in wanted.items() for o in dso_orders(day, sorted(n for n in nodes if n), seed)]
    book = {o.order_id: o for o in orders}
    catalogue = default_catalogue()
    offers, rate_of, hourly = [], {}, {}
    for offer_id, b in bids.items():
        order = book.get(order_id_of(b.product_id, b.market_key) or "")
        if order is None:       # not in the day's book: nothing to match
            continue
        mtu = timedelta(minutes=catalogue.by_id(b.product_id).mtu_minutes.value)
        rate = rates.on(order.currency, delivery_day_of(b.mtu_start, MARKET_TZ))
        rate_of[offer_id] = rate
        offers.append(FlexOffer(offer_id, b.grid_node or order.grid_node, b.mtu_start, b.mtu_start + mtu,
                                b.volume_mw, rate.from_eur(b.price_eur_per_mw_h), order.order_type,
                                order.currency, order.price_unit))
        if order.order_id not in hourly:
            hourly[order.order_id] = list(_hours(order, mtu))
    matching = clear_local_flex([h for hours in hourly.values() for h in hours], offers)
    accepted: dict[str, Decimal] = {}
    paid: dict[str, Decimal] = {}
    for t in matching.trades:
        accepted[t.offer_id] = accepted.get(t.offer_id, Decimal(0)) + t.quantity_mw
        paid[t.offer_id] = rate_of[t.offer_id].to_eur(t.price).quantize(_CENT)
    return {i: (accepted.get(i, Decimal(0)), paid.get(i)) for i in bids}


def _hours(order: FlexOrder, mtu: timedelta) -> Iterable[FlexOrder]:
    """The order as one order per MTU of its window, each for the order's full quantity and price."""
    start = order.start
    while start < order.end:
        end = min(start + mtu, order.end)
        yield replace(order, order_id=f"{order.order_id}/{start:%Y%m%dT%H%MZ}", start=start, end=end)
        start = end
