"""`flexfleet bid backtest`: replay delivery days with what was known at each gate closure.

For each day: the forecast issued just before the auction's gate closure (from sessions known
then), price scenarios drawn only from earlier days, the plan, clearing against the simulated
market (the realised day's prices and TSO demand), and delivery by what the fleet really held.
Two baselines meet the same market on the same days: the rule-of-thumb bidder (a fixed share
of the fleet's usual plugged-in power, for each share given; the one to beat is the best share
in hindsight among those that kept the P90 promise, since a bidder that breaks it loses its
prequalification) and the perfect-foresight optimum (the same optimiser told the realised
availability and prices: the upper bound of what P90-compliant bidding could have earned).

The default period is the 28 days to 30 November 2025, inside the shipped 2025 price history,
so the realised prices are the real ones and the scenarios never include the delivery day.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from time import perf_counter

import numpy as np
import pandas as pd

from flexfleet.bidding import Availability, Bid, Fleet, Market, PriceScenarios, SolveOptions, plan_bids
from flexfleet.bidding.backtest import PROMISE, Award, Realised, Score, deliver, foresight_availability, realised, \
    rule_of_thumb_bids, score
from flexfleet.bidding.models import DIRECTIONS
from flexfleet.domain.time import delivery_day_bounds, mtu_floor, mtus_of_delivery_day
from flexfleet.forecast.flexibility import ENDURANCES_MIN, VehicleLimits, held_key
from flexfleet.forecast.grid import session_grid
from flexfleet.forecast.pipeline import Forecaster, issue_forecast, train_forecaster
from flexfleet.forecast.portfolio import Calibration
from flexfleet.markets import default_catalogue
from flexfleet.markets.catalogue import FrequencyActivation
from flexfleet.markets.clearing import activated_energy
from services.bidder.clearing import clear_simulated
from services.bidder.problem import bidding_problem, day_gate_closure, fleet_for_bidding, products, resolve_auction
from services.simulator.market import frequency_day, price_scenarios, realised_prices

PLANNED, FORESIGHT, RULE = "optimiser", "perfect foresight", "rule of thumb"
SHARE_DAYS = 14   # history days before the first delivery day on which the plain bidder's share is chosen


def rule_name(share: float) -> str:
    return f"{RULE} {share:.0%}"


@dataclass(frozen=True)
class BacktestOptions:
    vehicles: int = 2000
    days: int = 28
    last_day: date = date(2025, 11, 30)
    history_weeks: int = 8
    zone: str = "SE3"
    auction: str = "D-1"
    regime: str = "low"
    scenarios: int = 20
    shares: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    seed: int = 0
    fit_options: Mapping[str, int] = field(default_factory=dict)   # smaller models for tests
    solve: SolveOptions = SolveOptions()


@dataclass(frozen=True)
class BacktestResult:
    """Per day and bidder the score; `seconds` what each part took."""

    days: pd.DataFrame          # day, bidder, revenue_eur, penalty_eur, wear_eur, net_eur, ...
    totals: pd.DataFrame        # one row per bidder, the same columns summed over the days
    seconds: dict[str, float]
    options: BacktestOptions
    rule_share: float           # the plain bidder's share, chosen on the history before the first day


def run_backtest(options: BacktestOptions, progress: Callable[[str, int, int], None] = lambda step, i, n: None
                 ) -> BacktestResult:
    """progress(step, done, total) is called as days complete (for a progress bar)."""
    from services.forecaster.cli import simulated_sessions

    seconds: dict[str, float] = {}
    days = [options.last_day - timedelta(days=options.days - 1 - i) for i in range(options.days)]
    first_start, _ = delivery_day_bounds(days[0], options.zone)
    _, end = delivery_day_bounds(days[-1], options.zone)
    weeks = options.history_weeks + -(-(options.days + 2) // 7)
    began = perf_counter()
    progress("simulating the fleet", 0, options.days)
    sessions, specs, start = simulated_sessions(options.vehicles, weeks, options.seed, options.zone, end)
    seconds["simulate"] = perf_counter() - began
    fleet = fleet_for_bidding(_registry_frame(options))
    catalogue = default_catalogue()
    limits = VehicleLimits.from_specs(specs)
    grid_start = mtu_floor(first_start - timedelta(days=SHARE_DAYS + 8))
    grid = session_grid(sessions, limits.vehicle_ids, grid_start,
                        int((end - grid_start).total_seconds() // 900), limits.battery_kwh)
    real = realised(grid, limits)

    began = perf_counter()
    progress("training the forecaster", 0, options.days)
    first_gate = day_gate_closure(catalogue, options.zone, days[0], options.auction)
    forecaster = train_forecaster(sessions, specs, options.zone, start, mtu_floor(first_gate), options.seed,
                                  **dict(options.fit_options))
    seconds["train"] = perf_counter() - began

    share = rule_share(options, real, fleet, [days[0] - timedelta(days=k) for k in range(SHARE_DAYS, 0, -1)])
    activation = _activation(options, [days[0] - timedelta(days=k) for k in range(7, 0, -1)] + days)
    rows = []
    for i, day in enumerate(days):
        progress(f"bidding {day}", i, options.days)
        rows += _day(options, day, forecaster, sessions, specs, fleet, real, activation, share, seconds)
    progress("done", options.days, options.days)
    frame = pd.DataFrame(rows)
    totals = frame.drop(columns=["day"]).groupby("bidder", sort=False).sum()
    totals["full_share"] = totals["full_mtus"] / totals["accepted_mtus"].where(totals["accepted_mtus"] > 0)
    return BacktestResult(frame, totals.reset_index(), seconds, options, share)


def rule_share(options: BacktestOptions, real: Realised, fleet: Fleet, days: Sequence[date]) -> float:
    """The plain bidder's share, chosen as an operator would without this backtest: the largest
    of `options.shares` whose bids the fleet would have delivered in full in at least 90 % of
    MTUs over `days` of history (every bid taken as accepted)."""
    catalogue = default_catalogue()
    markets = [Market(p, auction=resolve_auction(p, options.auction)) for p in products(catalogue, options.zone)]
    by_key = {m.key: m for m in markets}
    for share in sorted(options.shares, reverse=True):
        bids = []
        for d in days:
            bids += rule_of_thumb_bids(markets, real, mtus_of_delivery_day(d, options.zone)[::4],
                                       _issued_at(options, d), share, markets[0].auction)
        outcomes = deliver([Award(b, b.volume_mw, Decimal(0)) for b in bids], by_key, fleet, real, {}, {})
        if score(bids, outcomes, by_key).full_share >= PROMISE:
            return share
    return min(options.shares)


def _issued_at(options: BacktestOptions, day: date) -> datetime:
    """The last MTU start before the day's gate closure: when the bidders decide."""
    return mtu_floor(day_gate_closure(default_catalogue(), options.zone, day, options.auction) - timedelta(minutes=15))


def _registry_frame(options: BacktestOptions) -> pd.DataFrame:
    """The simulated fleet's registry as the bidder reads it (grid node of the home charger)."""
    from services.simulator.fleet import generate_fleet

    fleet = generate_fleet(options.vehicles, seed=options.seed, zone=options.zone)
    node = {c.charger_id: c.site.grid_node for c in fleet.chargers}
    return pd.DataFrame(
        {"grid_node": [node.get(v.home_charger_id) for v in fleet.vehicles],
         "chemistry": [v.spec.chemistry.value for v in fleet.vehicles],
         "oem_discharge_cap_kwh_per_year": [v.spec.oem_discharge_cap_kwh_per_year or np.nan for v in fleet.vehicles]},
        index=pd.Index([v.vehicle_id for v in fleet.vehicles], name="vehicle_id"))


def _activation(options: BacktestOptions, days: Sequence[date]) -> dict[date, dict[str, float]]:
    """Per day, the activated energy per MW h sold of each product, from the simulated frequency."""
    out = {}
    for d in days:
        trace = frequency_day(d, seed=options.seed)
        out[d] = {p.id: activated_energy(trace, p.activation.value).expected_mwh_per_mw_h
                  for p in products(default_catalogue(), options.zone)
                  if isinstance(p.activation.value, FrequencyActivation)}
    return out


def _mean(daily: Mapping[date, Mapping[str, float]], days: Sequence[date]) -> dict[str, float]:
    keys = daily[days[0]]
    return {k: float(np.mean([daily[d][k] for d in days])) for k in keys}


def _day(options: BacktestOptions, day: date, forecaster: Forecaster, sessions: pd.DataFrame, specs: pd.DataFrame,
         fleet: Fleet, real: Realised, activation: Mapping[date, Mapping[str, float]], share: float,
         seconds: dict[str, float]) -> list[dict]:
    catalogue = default_catalogue()
    issued_at = _issued_at(options, day)
    quarters = pd.DatetimeIndex(mtus_of_delivery_day(day, options.zone))

    began = perf_counter()
    forecast = issue_forecast(forecaster, sessions, specs, issued_at)
    _add(seconds, "forecast", perf_counter() - began)
    prices = PriceScenarios.like(price_scenarios(day, options.scenarios, regime=options.regime, seed=options.seed,
                                                 before=day))
    # What the planner expects of activation: the week before; what delivery costs: the day's own.
    expected = _mean(activation, [day - timedelta(days=k) for k in range(1, 8)])
    problem, dm = bidding_problem(day, options.zone, options.auction, issued_at, catalogue, fleet,
                                  Availability.from_vehicle_rows(forecast.vehicles, quarters),
                                  forecaster.calibrations, prices, expected)
    actual = activation[day]
    by_key = {m.key: m for m in dm.markets}

    def outcome(name: str, bids: Sequence[Bid]) -> dict:
        awards = [Award(b, mw, price or Decimal(0))
                  for b, mw, price in clear_simulated(bids, options.regime, options.seed)]
        outcomes = deliver(awards, by_key, fleet, real, actual, dm.surcharge_eur_per_mw_h)
        return {"day": day, "bidder": name, **_flat(score(bids, outcomes, by_key))}

    began = perf_counter()
    plan = plan_bids(problem, options.solve)
    _add(seconds, "plan", perf_counter() - began)
    rows = [outcome(PLANNED, plan.bids)]

    truth = PriceScenarios.like(realised_prices(day, regime=options.regime, seed=options.seed))
    exact = {held_key(d, e): Calibration(rho=0.0) for d in DIRECTIONS for e in ENDURANCES_MIN}
    foresight, _ = bidding_problem(day, options.zone, options.auction, issued_at, catalogue, fleet,
                                    foresight_availability(real, quarters), exact, truth, actual)
    rows.append(outcome(FORESIGHT, plan_bids(foresight, options.solve).bids))
    for name, k in ((RULE, share), *((rule_name(k), k) for k in options.shares)):
        rows.append(outcome(name, rule_of_thumb_bids(dm.markets, real, list(quarters[::4]), issued_at, k, dm.auction)))
    return rows


def _flat(s: Score) -> dict:
    return {"revenue_eur": s.revenue_eur, "penalty_eur": s.penalty_eur, "wear_eur": s.wear_eur, "net_eur": s.net_eur,
            "offered_mwh": s.offered_mwh, "accepted_mwh": s.accepted_mwh, "delivered_mwh": s.delivered_mwh,
            "accepted_mtus": s.accepted_mtus, "full_mtus": s.full_mtus}


def _add(seconds: dict[str, float], key: str, value: float) -> None:
    seconds[key] = seconds.get(key, 0.0) + value


