"""What the bidder is given and what it returns: typed, frozen, checked where they enter.

A bad input raises `BiddingInputError` naming the field; a market situation (gate closed, too
few cars, no price worth it) is not an error: it becomes a `Dropped` entry with its reason, so a
plan is never empty without saying why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from flexfleet.forecast.portfolio import Calibration
from flexfleet.markets.catalogue import Product

if TYPE_CHECKING:
    from flexfleet.bidding.availability import Availability

Direction = Literal["up", "down"]
DIRECTIONS: tuple[Direction, Direction] = ("up", "down")
FORECAST_ENDURANCE_MIN = 20.0  # the per-car held kW of the forecast (up_20_kw, down_20_kw)


class BiddingInputError(ValueError):
    """An input the bidder refuses; the message starts with the field at fault."""


def _aware_utc(ts: datetime, name: str) -> datetime:
    if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
        raise BiddingInputError(f"{name}: must be a timezone-aware datetime, got {ts!r}")
    return pd.Timestamp(ts).tz_convert("UTC").to_pydatetime()


@dataclass(frozen=True)
class Market:
    """One line the plan may bid into: a catalogue product in one direction, optionally tied to
    a grid node (a DSO's local flexibility order, which only that node's cars can serve).

    activation_mwh_per_mw_h: expected activation energy per MW h of capacity sold; it prices
        wear and counts against OEM caps.
    penalty_eur_per_mw_h: what falling short costs per MW h (payment withheld plus fees).
    endurance_min: minutes one activation must be held; defaults to the product's
        limited-energy-reservoir rule (FCR-D: 20), required for products without one.
    key: the row of this market in `PriceScenarios` (default the product id; an order at a
        node defaults to "product@node").
    """

    product: Product
    direction: Direction | None = None
    activation_mwh_per_mw_h: float = 0.0
    penalty_eur_per_mw_h: float = 0.0
    grid_node: str | None = None
    max_mw: float | None = None
    endurance_min: float | None = None
    auction: str | None = None
    key: str = ""

    def __post_init__(self) -> None:
        own = self.product.direction.value
        if own == "symmetric":   # both directions at once from one bid: not planned yet
            raise BiddingInputError(f"product: {self.product.id} is symmetric; only up or down products are planned")
        if self.direction is None:
            if own not in DIRECTIONS:
                raise BiddingInputError(f"direction: {self.product.id} is {own}; say up or down")
            object.__setattr__(self, "direction", own)
        elif self.direction not in DIRECTIONS or (own in DIRECTIONS and own != self.direction):
            raise BiddingInputError(f"direction: {self.direction!r} does not fit {self.product.id} ({own})")
        ler = self.product.endurance.value
        if self.endurance_min is None:
            if ler is None:
                raise BiddingInputError(f"endurance_min: {self.product.id} has no endurance rule; give the order's")
            object.__setattr__(self, "endurance_min", float(ler.min_full_activation_minutes))
        if not self.endurance_min > 0:
            raise BiddingInputError("endurance_min: must be positive")
        for name in ("activation_mwh_per_mw_h", "penalty_eur_per_mw_h"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise BiddingInputError(f"{name}: must be a finite number >= 0, got {v!r}")
        if self.max_mw is not None and not self.max_mw > 0:
            raise BiddingInputError("max_mw: must be positive")
        if not self.key:
            key = self.product.id + (f"@{self.grid_node}" if self.grid_node else "")
            object.__setattr__(self, "key", key)

    @property
    def opposite_share(self) -> float:
        """Share of C a reservoir holds the other way for its SoC manager (FCR-D: 0.2), 0 if none."""
        ler = self.product.endurance.value
        return float(ler.opposite_direction_share) if ler is not None else 0.0

    @property
    def one_way_endurance_min(self) -> float:
        """Endurance for a one-way (V1G) car, which cannot recharge the other way: the product's
        limited-energy-reservoir threshold (FCR-D: 2 h), or the plain endurance without one."""
        ler = self.product.endurance.value
        if ler is not None and ler.ler_threshold_hours is not None:
            return max(float(ler.ler_threshold_hours) * 60, float(self.endurance_min))
        return float(self.endurance_min)

    @property
    def pricing(self) -> str:
        p = self.product.pricing.value
        return p.capacity or p.energy or "marginal"


@dataclass(frozen=True)
class PriceScenarios:
    """prices[scenario, product, mtu] in EUR/MW/h, with the scenarios' probabilities.

    product_ids name the rows by `Market.key` (a catalogue product id unless an order at a node).
    """

    product_ids: tuple[str, ...]
    mtu_starts: tuple[datetime, ...]
    prices: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        prices = np.asarray(self.prices, dtype=np.float64)
        weights = np.asarray(self.weights, dtype=np.float64)
        starts = tuple(_aware_utc(t, "prices.mtu_starts") for t in self.mtu_starts)
        if len(set(self.product_ids)) != len(self.product_ids):
            raise BiddingInputError("prices.product_ids: a product appears twice")
        if prices.ndim != 3 or prices.shape[1:] != (len(self.product_ids), len(starts)):
            raise BiddingInputError(
                f"prices.prices: shape must be (scenarios, {len(self.product_ids)}, {len(starts)}), got {prices.shape}")
        if weights.shape != (prices.shape[0],) or prices.shape[0] == 0:
            raise BiddingInputError("prices.weights: one weight per scenario")
        if not np.isfinite(prices).all():
            raise BiddingInputError("prices.prices: NaN or infinite price")
        if (weights < 0).any() or not math.isclose(weights.sum(), 1.0, abs_tol=1e-6):
            raise BiddingInputError("prices.weights: must be >= 0 and sum to 1")
        if list(starts) != sorted(set(starts)):
            raise BiddingInputError("prices.mtu_starts: must be increasing and unique")
        object.__setattr__(self, "prices", prices)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "mtu_starts", starts)

    @classmethod
    def like(cls, other: object) -> PriceScenarios:
        """From any object with the same four fields (such as the market price history's
        scenario days), checked here."""
        try:
            fields = (other.product_ids, other.mtu_starts, other.prices, other.weights)  # type: ignore[attr-defined]
        except AttributeError:
            raise BiddingInputError("prices: needs product_ids, mtu_starts, prices and weights") from None
        return cls(tuple(fields[0]), tuple(fields[1]), fields[2], fields[3])

    def row(self, key: str) -> np.ndarray | None:
        """(scenarios, mtus) prices of one market, None if it has none."""
        return self.prices[:, self.product_ids.index(key), :] if key in self.product_ids else None


@dataclass(frozen=True)
class Fleet:
    """Per vehicle, what the forecast does not say: where it is, what it is, and what it costs.

    oem_cap_kwh: discharge the maker still allows on this delivery day (the caller spreads a
        yearly cap over the days; NaN: no cap). Hard: one full activation of every up
        obligation at once, and the day's expected activation energy, both fit inside it.
    wear_eur_per_kwh: battery wear per kWh cycled (`wear_rate_per_kwh` gives one per chemistry).
    """

    vehicle_ids: tuple[str, ...]
    grid_node: np.ndarray
    chemistry: np.ndarray
    wear_eur_per_kwh: np.ndarray
    oem_cap_kwh: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.vehicle_ids)
        if len(set(self.vehicle_ids)) != n:
            raise BiddingInputError("fleet.vehicle_ids: a vehicle appears twice")
        for name in ("grid_node", "chemistry"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=object))
        for name in ("wear_eur_per_kwh", "oem_cap_kwh"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        for name in ("grid_node", "chemistry", "wear_eur_per_kwh", "oem_cap_kwh"):
            if getattr(self, name).shape != (n,):
                raise BiddingInputError(f"fleet.{name}: one value per vehicle")
        wear = self.wear_eur_per_kwh
        if not (np.isfinite(wear) & (wear >= 0)).all():
            raise BiddingInputError("fleet.wear_eur_per_kwh: must be finite and >= 0")
        if (self.oem_cap_kwh < 0).any():
            raise BiddingInputError("fleet.oem_cap_kwh: must be >= 0 (NaN: no cap)")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Fleet:
        """From a frame indexed by vehicle_id with grid_node, chemistry, wear_eur_per_kwh and
        (optionally) oem_cap_kwh."""
        missing = [c for c in ("grid_node", "chemistry", "wear_eur_per_kwh") if c not in frame]
        if missing:
            raise BiddingInputError(f"fleet: missing column(s) {', '.join(missing)}")
        cap = frame["oem_cap_kwh"] if "oem_cap_kwh" in frame else np.full(len(frame), np.nan)
        return cls(tuple(str(v) for v in frame.index), frame["grid_node"].astype(str).to_numpy(),
                   frame["chemistry"].astype(str).to_numpy(), pd.to_numeric(frame["wear_eur_per_kwh"]).to_numpy(),
                   pd.to_numeric(pd.Series(cap)).to_numpy(np.float64))


@dataclass(frozen=True)
class NodeLimit:
    """A grid node's limits: for the node as a whole, shared by every car behind it."""

    grid_node: str
    max_export_kw: float = math.inf
    max_import_kw: float = math.inf

    def __post_init__(self) -> None:
        if not (self.max_export_kw >= 0 and self.max_import_kw >= 0):
            raise BiddingInputError(f"node_limits: {self.grid_node} limits must be >= 0")

    def kw(self, side: Direction) -> float:
        """Limit on the side an obligation loads: up (discharge) exports, down (charge) imports."""
        return self.max_export_kw if side == "up" else self.max_import_kw


@dataclass(frozen=True)
class SolveOptions:
    time_limit_s: float = 30.0
    max_clusters: int = 240
    max_passes: int = 3          # solve, verify each bundle's P90, re-solve with what it learned
    mip_rel_gap: float = 1e-4
    solver: Literal["highs", "greedy"] = "highs"
    method: Literal["per_mtu", "monolithic"] = "per_mtu"   # see highs_model.solve
    seed: int = 0


@dataclass(frozen=True)
class BiddingProblem:
    """One delivery day, bidding zone and auction.

    prices: a `PriceScenarios`, or any object with its four fields (converted and checked).
    vehicles: `FleetForecast.vehicles` rows (or an `Availability` built from them).
    calibrations: the forecaster's, by key ("up_20min", "down_20min", ...): each gives the
        fleet's correlation and the recalibrated level the P90 is asked at.
    """

    day: date
    zone: str
    auction: str
    now: datetime
    markets: tuple[Market, ...]
    prices: PriceScenarios
    fleet: Fleet
    vehicles: pd.DataFrame | Availability
    calibrations: Mapping[str, Calibration] = field(default_factory=dict)
    node_limits: tuple[NodeLimit, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.day, datetime) or not isinstance(self.day, date):
            raise BiddingInputError("day: must be a date (the local delivery day)")
        object.__setattr__(self, "now", _aware_utc(self.now, "now"))
        if not isinstance(self.prices, PriceScenarios):
            object.__setattr__(self, "prices", PriceScenarios.like(self.prices))
        keys = [m.key for m in self.markets]
        if len(set(keys)) != len(keys):
            raise BiddingInputError("markets: two markets share a key; give orders distinct keys")
        nodes = [n.grid_node for n in self.node_limits]
        if len(set(nodes)) != len(nodes):
            raise BiddingInputError("node_limits: a grid node appears twice")


# --- output ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bid:
    """One bid: product, MTU, volume and offer price, and the bundle of vehicles behind it.

    obligations_kw[i] is what vehicles[i] holds for this bid when activated (given plugged in)
    in its best quarter of the MTU; in the others it holds the same share of what it can there.
    p90_kw_backing: the bundle's P90 under the correlated portfolio model in the MTU's weakest
    quarter (>= the volume); shortfall_probability: the model's probability that the plugged-in
    bundle holds less than the volume in its likeliest quarter to fall short (`sampled_shortfall_rate`
    measures falling short in any quarter).
    """

    product_id: str
    auction: str
    mtu_start: datetime
    volume_mw: Decimal
    price_eur_per_mw_h: Decimal
    vehicles: tuple[str, ...]
    obligations_kw: tuple[float, ...]
    expected_value_eur: Decimal
    p90_kw_backing: float
    shortfall_probability: float
    direction: Direction
    market_key: str
    grid_node: str | None = None


@dataclass(frozen=True)
class Dropped:
    """A bid not made, and why (mtu_start None: the whole market for the day)."""

    product_id: str
    market_key: str
    mtu_start: datetime | None
    reason: str


@dataclass(frozen=True)
class ObjectiveParts:
    """Expected money of the plan (EUR): revenue minus wear minus penalties is its value."""

    revenue_eur: Decimal
    wear_eur: Decimal
    penalty_eur: Decimal

    @property
    def value_eur(self) -> Decimal:
        return self.revenue_eur - self.wear_eur - self.penalty_eur


@dataclass(frozen=True)
class BidPlan:
    """The bids of a day, what they are expected to earn, how they were found, what was left out."""

    bids: tuple[Bid, ...]
    objective: ObjectiveParts
    solve_seconds: float
    solver_status: str
    dropped: tuple[Dropped, ...]
    clusters: int = 0
    notes: tuple[str, ...] = ()
