"""Plan a delivery day from what the database knows: the registry, the latest forecast issued
before now, its forecaster's calibrations; price scenarios and expected activation from the
market simulator's data (the platform's price forecast is history of the same kind of day), and
the DSO orders at the fleet's grid nodes from the simulated marketplace (a real deployment reads
them from the marketplace's API)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import psycopg

from flexfleet.bidding import Availability, BiddingInputError, PriceScenarios, SolveOptions, plan_bids
from flexfleet.bidding.models import Bid
from flexfleet.domain.time import mtus_of_delivery_day
from flexfleet.domain.zones import BiddingZone
from flexfleet.forecast.portfolio import Calibration
from flexfleet.markets import default_catalogue
from flexfleet.markets.catalogue import Catalogue, FrequencyActivation
from services.bidder.problem import (bidding_problem, day_gate_closure, fleet_for_bidding, products, resolve_auction,
                                     with_orders_explained)
from services.bidder.store import StoredPlan, save_plan
from services.forecaster.store import load_forecast, load_forecaster
from services.runtime import metrics
from services.simulator.market_prices import REGIMES

ACTIVATION_DAYS = 7


@dataclass(frozen=True)
class PlanRequest:
    day: date
    zone: str = "SE3"
    auction: str = "D-1"
    now: datetime | None = None        # default: the clock
    regime: str = "low"                # the price history the scenarios are drawn from
    scenarios: int = 20
    seed: int = 0
    solve: SolveOptions = field(default_factory=SolveOptions)


_REGISTRY = """
SELECT v.vehicle_id, s.grid_node, v.chemistry, v.oem_discharge_cap_kwh_per_year
FROM vehicles v LEFT JOIN chargers c ON c.charger_id = v.home_charger_id LEFT JOIN sites s ON s.site_id = c.site_id
WHERE v.vehicle_id = ANY(%s)
"""
_FORECAST_BEFORE = """
SELECT forecast_id::text, issued_at, forecaster_version FROM forecasts
WHERE zone = %s AND issued_at <= %s ORDER BY issued_at DESC, created_at DESC LIMIT 1
"""


def registry_vehicles(conn: psycopg.Connection, vehicle_ids: list[str]) -> pd.DataFrame:
    """Grid node (the home charger's site), chemistry and OEM cap of the given vehicles."""
    rows = conn.execute(_REGISTRY, (vehicle_ids,)).fetchall()
    frame = pd.DataFrame(rows, columns=["vehicle_id", "grid_node", "chemistry", "oem_discharge_cap_kwh_per_year"])
    return frame.set_index("vehicle_id").reindex(vehicle_ids).dropna(subset=["chemistry"])


def check_gate(catalogue: Catalogue, zone: str, day: date, auction: str, now: datetime) -> None:
    closes = day_gate_closure(catalogue, zone, day, auction)
    if now >= closes:
        still = sorted({a.name for p in products(catalogue, zone) for a in p.auctions
                        if now < day_gate_closure(catalogue, zone, day, a.name)})
        hint = f"; still open: {', '.join(still)}" if still else ""
        raise BiddingInputError(f"day: gate closure of {resolve_auction(products(catalogue, zone)[0], auction)} "
                                f"for {day} passed at {closes.isoformat()} (now {now.isoformat()}){hint}")


def validate(request: PlanRequest, catalogue: Catalogue) -> tuple[str, datetime]:
    """The request's zone and time, or BiddingInputError naming the field (before any I/O)."""
    try:
        zone = BiddingZone.parse(request.zone).value
    except ValueError as exc:
        raise BiddingInputError(f"zone: {getattr(exc, 'reason', exc)}") from None
    if request.now is not None and request.now.tzinfo is None:
        raise BiddingInputError("now: give a time zone (e.g. 2026-11-23T10:00:00+01:00)")
    if request.regime not in REGIMES:
        raise BiddingInputError(f"regime: {request.regime!r} is not one of {', '.join(sorted(REGIMES))}")
    if request.scenarios < 1:
        raise BiddingInputError(f"scenarios: need at least one, got {request.scenarios}")
    now = (request.now or datetime.now(UTC)).astimezone(UTC)
    check_gate(catalogue, zone, request.day, request.auction, now)
    return zone, now


def plan_day(conn: psycopg.Connection, request: PlanRequest, catalogue: Catalogue | None = None) -> StoredPlan:
    """Plan, store and return the day's bids from the latest forecast issued before `now`; bad
    input raises BiddingInputError naming the field."""
    catalogue = catalogue or default_catalogue()
    zone, now = validate(request, catalogue)
    found = conn.execute(_FORECAST_BEFORE, (zone, now)).fetchone()
    if found is None:
        raise BiddingInputError(f"forecast: none stored for {zone} issued before {now.isoformat()}; "
                                "run `flexfleet forecast run` first")
    forecast_id, issued_at, version = found
    forecast = load_forecast(conn, forecast_id)
    quarters = pd.DatetimeIndex(mtus_of_delivery_day(request.day, zone))
    availability = Availability.from_vehicle_rows(forecast.vehicles, quarters)
    if not len(forecast.vehicles) or not pd.DatetimeIndex(forecast.vehicles["target_start"]).isin(quarters).any():
        raise BiddingInputError(f"forecast: the latest forecast (issued {issued_at.isoformat()}) does not reach "
                                f"delivery day {request.day}; issue a newer one")
    return plan_from_availability(conn, request, availability, load_forecaster(conn, version).calibrations,
                                  forecast_id, catalogue)


def plan_from_availability(conn: psycopg.Connection, request: PlanRequest, availability: Availability,
                           calibrations: Mapping[str, Calibration], forecast_id: str | None = None,
                           catalogue: Catalogue | None = None) -> StoredPlan:
    """Plan, store and return the day's bids on a given availability: the stored forecast's
    (`plan_day`), or what a perfect forecaster would have said (a simulated dispatch day)."""
    from services.simulator.market import dso_orders, expected_activation, price_scenarios

    catalogue = catalogue or default_catalogue()
    zone, now = validate(request, catalogue)
    registry = registry_vehicles(conn, list(availability.vehicle_ids))
    if registry.empty:
        raise BiddingInputError(f"fleet: none of the vehicles planned for is in the registry for {zone}")
    prices = PriceScenarios.like(price_scenarios(request.day, request.scenarios, regime=request.regime,
                                                 seed=request.seed, before=request.day))
    days = [request.day - timedelta(days=k) for k in range(1, ACTIVATION_DAYS + 1)]
    activation = {p.id: expected_activation(p.id, days, seed=request.seed) for p in products(catalogue, zone)
                  if isinstance(p.activation.value, FrequencyActivation)}
    orders = dso_orders(request.day, sorted(registry["grid_node"].dropna().astype(str).unique()), seed=request.seed)
    problem, markets = bidding_problem(request.day, zone, request.auction, now, catalogue,
                                       fleet_for_bidding(registry), availability, calibrations, prices, activation,
                                       orders)
    started = time.perf_counter()
    plan = with_orders_explained(plan_bids(problem, request.solve), markets)
    metrics.BID_SOLVE_SECONDS.observe(time.perf_counter() - started)
    stored = save_plan(conn, plan, zone, request.day, markets.auction, now,
                       {m.key: m.product.mtu_minutes.value for m in markets.markets}, forecast_id)
    _count_bids(plan.bids)
    return stored


def _count_bids(bids: Iterable[Bid]) -> None:
    """Bids and their MW per product, counted once per plan."""
    count: Counter[str] = Counter()
    mw: dict[str, float] = {}
    for b in bids:
        count[b.product_id] += 1
        mw[b.product_id] = mw.get(b.product_id, 0.0) + float(b.volume_mw)
    for product, n in count.items():
        metrics.BID_BIDS.labels(product).inc(n)
        metrics.BID_OFFERED_MW.labels(product).inc(mw[product])
