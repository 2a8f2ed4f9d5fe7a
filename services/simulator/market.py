"""The simulated market the demo and the bid backtest trade against.

A thin shell: it reads the shipped price scenarios (data/markets/prices/), and calls the pure
clearing, frequency and local-flexibility code in flexfleet.markets. Every draw is seeded by
(seed, delivery day, purpose), so the same bids on the same day always meet the same market,
whichever order a backtest visits the days in.

The realised market of a day is the history's own day when the day is in the data (a
backtest over 2022 or 2025), otherwise one history day of the same type drawn for it (the
demo's days in the future).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from flexfleet.domain.time import delivery_day_bounds, delivery_day_of
from flexfleet.markets import default_catalogue
from flexfleet.markets.catalogue import FrequencyActivation
from flexfleet.markets.clearing import (
    CapacityBid, ClearingResult, FlexMatching, FlexOffer, FlexOrder, FlexOrderType, FrequencyModel,
    FrequencyTrace, activated_energy, clear_capacity_auction, generate_frequency, match_flex_orders,
    seed_for, synthetic_supply,
)
from flexfleet.markets.prices import PriceScenarios, parse_price_scenarios
from services.simulator.market_prices import PRICES_DIR, REGIMES, file_name

MARKET_TZ = "Europe/Stockholm"  # SE+DK2 FCR delivery days are Swedish/Danish local days
LOCAL_FLEX = "local-flex/NODES"
_FREQUENCY, _REALISED, _SUPPLY, _DSO = 1, 2, 3, 4  # seed salts, one per purpose


@lru_cache(maxsize=len(REGIMES))
def price_history(regime: str = "low") -> PriceScenarios:
    """The shipped hourly series of one regime ("high": 2022 to March 2023, "low": 2025)."""
    if regime not in REGIMES:
        raise KeyError(f"unknown price regime {regime!r} (have {sorted(REGIMES)})")
    ids = [p.id for p in default_catalogue().products]
    return parse_price_scenarios((PRICES_DIR / file_name(regime)).read_bytes(), regime=regime,
                                 known_products=ids)


def price_scenarios(
    day: date, n: int = 20, *, regime: str = "low", seed: int = 0, before: date | None = None
) -> PriceScenarios:
    """A price forecast with ``n`` equally likely scenario days for delivery ``day``."""
    return price_history(regime).draw_days(day, n, seed=seed, tz=MARKET_TZ, before=before)


def realised_prices(day: date, *, regime: str = "low", seed: int = 0) -> PriceScenarios:
    """The prices and demand that will clear on ``day`` (one scenario)."""
    hist = price_history(regime)
    if day in hist.days(MARKET_TZ):
        return hist.day(day, MARKET_TZ)
    return hist.draw_days(day, 1, seed=seed_for(seed, day, _REALISED), tz=MARKET_TZ)


def simulate_clearing(
    bids: Mapping[tuple[str, datetime], Sequence[CapacityBid]],
    *,
    regime: str = "low",
    seed: int = 0,
) -> dict[tuple[str, datetime], ClearingResult]:
    """Clear our bids per (product id, MTU start) against the realised market of that MTU.

    The other bidders' merit order is rebuilt from the realised price and TSO demand
    (:func:`synthetic_supply`), so bidding under the realised price wins and over it loses,
    and a large enough bid moves the price.
    """
    catalogue = default_catalogue()
    days: dict[date, PriceScenarios] = {}
    out: dict[tuple[str, datetime], ClearingResult] = {}
    for (product_id, mtu_start), ours in bids.items():
        product = catalogue.by_id(product_id)
        u = mtu_start.astimezone(UTC)
        minutes = product.mtu_minutes.value
        if (u.minute * 60 + u.second) % (minutes * 60) or u.microsecond:
            raise ValueError(f"{product_id}: {u.isoformat()} is not the start of a {minutes}-minute MTU")
        day = delivery_day_of(u, MARKET_TZ)
        if day not in days:
            days[day] = realised_prices(day, regime=regime, seed=seed)
        real = days[day]
        i = real.mtu_index(u)
        p_idx = real.product_index(product_id)
        price = Decimal(str(round(float(real.prices[0, p_idx, i]), 2)))
        demand = Decimal(str(round(float(real.demand_mw[0, p_idx, i]), 1)))
        rng = np.random.default_rng(seed_for(seed, day, _SUPPLY, p_idx, i))
        out[(product_id, mtu_start)] = clear_capacity_auction(
            product, demand, synthetic_supply(price, demand, rng), ours
        )
    return out


def frequency_day(
    day: date, *, seed: int = 0, resolution_s: float = 1.0, model: FrequencyModel = FrequencyModel()
) -> FrequencyTrace:
    """The grid frequency over local delivery ``day`` (23, 24 or 25 hours)."""
    start, end = delivery_day_bounds(day, MARKET_TZ)
    return generate_frequency(start, duration_s=(end - start).total_seconds(),
                              resolution_s=resolution_s, seed=seed_for(seed, day, _FREQUENCY), model=model)


def expected_activation(product_id: str, days: Iterable[date], *, seed: int = 0) -> float:
    """Mean activated energy per MW of capacity per hour (MWh per MW h) over simulated days."""
    activation = default_catalogue().by_id(product_id).activation.value
    if not isinstance(activation, FrequencyActivation):
        raise ValueError(f"{product_id} is not frequency-activated")
    values = [activated_energy(frequency_day(d, seed=seed), activation).expected_mwh_per_mw_h for d in days]
    if not values:
        raise ValueError("days: need at least one day")
    return float(np.mean(values))


# DSO orders per grid node and day by month: winter evening peaks are what local markets buy.
_ORDERS_PER_NODE_DAY = {1: 0.5, 2: 0.45, 3: 0.3, 4: 0.12, 5: 0.04, 6: 0.02, 7: 0.02, 8: 0.03,
                        9: 0.05, 10: 0.12, 11: 0.3, 12: 0.5}


def dso_orders(day: date, nodes: Iterable[str], seed: int = 0) -> list[FlexOrder]:
    """DSO buy orders (NODES kind) at grid nodes on local ``day``.

    Mostly evening peaks (16-20 local) and some morning peaks (07-09), many more in winter,
    fewer at weekends. ShortFlex max prices are per MWh and stay under the marketplace cap;
    LongFlex pays per MW and hour of availability. Quantities suit a node of some tens of homes.
    """
    product = default_catalogue().by_id(LOCAL_FLEX)
    cap = float(product.pricing.value.price_cap or Decimal(10_000))
    currency = product.pricing.value.currency or "SEK"
    rate = _ORDERS_PER_NODE_DAY[day.month] * (0.5 if day.weekday() >= 5 else 1.0)
    winter = day.month in (11, 12, 1, 2, 3)
    orders: list[FlexOrder] = []
    for node in sorted(set(nodes)):
        rng = np.random.default_rng(seed_for(seed, day, _DSO, zlib.crc32(node.encode())))
        for k in range(min(int(rng.poisson(rate)), 2)):
            evening = rng.random() < 0.75
            first = int(rng.choice([16, 17, 18])) if evening else int(rng.choice([7, 8]))
            hours = int(rng.integers(2, 4)) if evening else int(rng.integers(1, 3))
            start = _local_hour(day, first)
            end = _local_hour(day, first + hours)
            kind = FlexOrderType.SHORT_FLEX if rng.random() < 0.6 else FlexOrderType.LONG_FLEX
            if kind is FlexOrderType.SHORT_FLEX:
                lo, hi = (2000.0, 8000.0) if winter else (1000.0, 4000.0)
                max_price = min(rng.uniform(lo, hi), cap)
            else:
                max_price = rng.uniform(150.0, 800.0) if winter else rng.uniform(50.0, 300.0)
            orders.append(FlexOrder(
                order_id=f"{node}-{day:%Y%m%d}-{k}",
                grid_node=node,
                start=start,
                end=end,
                quantity_mw=Decimal(str(round(float(rng.uniform(0.02, 0.30)), 2))),
                max_price=Decimal(str(round(float(max_price), 0))),
                order_type=kind,
                currency=currency,
            ))
    return sorted(orders, key=lambda o: (o.start, o.order_id))


def _local_hour(day: date, hour: int) -> datetime:
    """UTC instant of a local wall-clock hour of ``day`` (wall-clock arithmetic across DST)."""
    local = datetime.combine(day, datetime.min.time(), ZoneInfo(MARKET_TZ)) + timedelta(hours=hour)
    return local.astimezone(UTC)


def clear_local_flex(orders: Iterable[FlexOrder], offers: Iterable[FlexOffer]) -> FlexMatching:
    """Match DSO orders and our offers with the NODES product's step and price cap."""
    product = default_catalogue().by_id(LOCAL_FLEX)
    return match_flex_orders(orders, offers, step_mw=product.bid_step_mw.value,
                             price_cap_per_mwh=product.pricing.value.price_cap)
