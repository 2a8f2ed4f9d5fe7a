"""A realistic simulated fleet: who owns which car, where it charges, and how each owner behaves.

The registry part (owners, sites, chargers, vehicles) uses the domain model, so the simulator
cannot invent a car that the registry would refuse; contracts are registry rows whose terms
settlement reads (`ContractRow`). The behaviour part (`Habits`) is
what only the simulator knows: when people leave and come home, whether they plug in, what they
declare in the app, how their chargers and clocks misbehave.

>>> fleet = generate_fleet(20, seed=1)
>>> len(fleet.vehicles), fleet.zone.value
(20, 'SE3')
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

import numpy as np

from flexfleet.domain import (
    BiddingZone, Charger, Currency, CurrentType, Earthing, Language, Owner, Site, SiteKind, Vehicle,
    VehicleModel, pair_limits, parse_vehicle_models,
)

MODELS_CSV = Path(__file__).resolve().parents[2] / "data" / "vehicles" / "models.csv"


@lru_cache(maxsize=1)
def vehicle_models() -> tuple[VehicleModel, ...]:
    return parse_vehicle_models(MODELS_CSV.read_text("utf-8"))


class Archetype(StrEnum):
    """How a car is used; decides its daily plan (services/simulator/plans.py)."""

    COMMUTER = "commuter"            # home charger, drives to work on weekdays
    HOME_DAYTIME = "home_daytime"    # home charger, retired or working from home: short daytime trips
    WORKPLACE_ONLY = "workplace_only"  # no home charger: charges at work on weekdays
    SHARED = "shared"                # car-sharing car parked at a hub between bookings


ARCHETYPE_SHARE = {Archetype.COMMUTER: 0.50, Archetype.HOME_DAYTIME: 0.22,
                   Archetype.WORKPLACE_ONLY: 0.10, Archetype.SHARED: 0.18}
LANGUAGE = {"SE": Language.SV, "NO": Language.NB, "DK": Language.DA, "FI": Language.FI,
            "NL": Language.NL}
# Share of homes on IT or TT earthing, where a car may not feed AC back (Norwegian report).
IT_TT_SHARE = {"NO": 0.7}
WORKPLACE_SIZE = 20   # chargers per workplace site
HUB_SIZE = 10         # cars per car-sharing hub
HOMES_PER_GRID_NODE = 40


# The offers owners can sign (DESIGN.md, "Compensation"; SOURCES.md: Mobilize Power, Octopus Power
# Pack, MyWheels), as settlement terms (flexfleet.settlement.contracts.contract_from_mapping).
# Rates are EUR list prices, quoted in the owner's currency at a round price-list factor: a
# price list is set in each currency, not converted daily.
_PLANS = ("flex_availability", "flex_revenue_share", "flex_power_pack")
_PLAN_SHARE = (0.5, 0.3, 0.2)
_LIST_FACTOR = {Currency.EUR: Decimal(1), Currency.SEK: Decimal(11), Currency.NOK: Decimal("11.5"),
                Currency.DKK: Decimal("7.5")}
_PLAN_RATES_EUR = {
    # Mobilize-style: a bonus per plugged-in, controllable hour (about 0.10 EUR/h at 16 h a day).
    "flex_availability": {"availability_per_hour": Decimal("0.05")},
    # A share of the capacity revenue the car's committed kW earned.
    "flex_revenue_share": {"revenue_share_pct": Decimal(50)},
    # Octopus Power Pack-style: pay by plugged-in time, at least 12 h a day on 20 days (240 h a
    # month), capped at about 620 GBP (720 EUR) a year.
    "flex_power_pack": {"availability_per_hour": Decimal("0.10"), "min_plugged_in_hours": Decimal(240),
                        "annual_cap": Decimal(720)},
}
_CREDITS_EUR = {"credit_per_broken_departure": Decimal(2), "credit_per_broken_min_soc": Decimal(1)}
_V2G_ENERGY_EUR = Decimal("0.05")   # per kWh discharged (Mobilize's fixed price per kWh)
_REFUND_EUR = Decimal("0.20")       # per kWh the platform made the car charge (refills after discharge)


def _plain(d: Decimal) -> str:
    return format(d.normalize(), "f")


def contract_terms(plan: str, valid_from: datetime, currency: Currency, v2g: bool) -> dict[str, object]:
    """The registry's `terms` for one vehicle: {"terms": [one dated term]}, rates as decimal
    strings in `currency`. Every plan pays battery wear (factor 1) and credits broken promises;
    a V2G car is also paid per kWh discharged and refunded the charging the platform caused."""
    factor = _LIST_FACTOR[currency]
    term: dict[str, object] = {"term_id": f"{plan}-{valid_from:%Y%m%d}", "valid_from": valid_from.isoformat(),
                               "wear_factor": "1"}
    for name, eur in {**_PLAN_RATES_EUR[plan], **_CREDITS_EUR}.items():
        unscaled = name in ("revenue_share_pct", "min_plugged_in_hours")
        term[name] = _plain(eur if unscaled else eur * factor)
    if v2g:
        term["energy_per_kwh"] = _plain(_V2G_ENERGY_EUR * factor)
        term["charging_refund"] = {"scope": "platform_caused", "per_kwh": _plain(_REFUND_EUR * factor)}
    return {"terms": [term]}


@dataclass(frozen=True, slots=True)
class Habits:
    """One owner's behaviour, as the simulator plays it."""

    archetype: Archetype
    home_charger: int          # index into Fleet.chargers, -1 when none
    away_charger: int          # workplace or hub charger, -1 when none
    commute_km: float
    commute_min: float
    leave_hour: float          # usual departure to work, local
    return_hour: float
    plug_in_habit: float       # probability of plugging in at home when SoC is comfortable
    charge_limit_pct: float    # the car's charge limit
    scheduled_start_hour: float | None  # charges from this local hour (cheap night prices), None: at once
    declares_departure: float  # probability of setting a departure time, minimum and target SoC in the app
    min_soc_pct: float
    target_soc_pct: float      # SoC asked for by the departure; never above the car's charge limit
    api_linked: bool           # the maker's cloud API reports SoC, temperature and odometer
    clock_offset_s: int
    clock_drift_s_per_day: int  # only forward, so readings never swap order; up to CLOCK_SYNC_S in all


@dataclass(frozen=True)
class ContractRow:
    """A registry `contracts` row: what an owner signed for one car. Its `terms` are settlement's
    (services.settlement.inputs.contract_from_row is the one reader of them)."""

    contract_id: str
    owner_id: str
    vehicle_id: str
    kind: str                   # the plan's name
    valid_from: datetime
    valid_to: datetime | None
    terms: dict[str, object]


@dataclass(frozen=True)
class Fleet:
    zone: BiddingZone
    owners: tuple[Owner, ...]
    sites: tuple[Site, ...]
    chargers: tuple[Charger, ...]
    vehicles: tuple[Vehicle, ...]
    contracts: tuple[ContractRow, ...]
    habits: tuple[Habits, ...]

    def __post_init__(self) -> None:
        assert len(self.vehicles) == len(self.habits)


def _pick_model(rng: np.random.Generator, models: tuple[VehicleModel, ...], shared: bool) -> VehicleModel:
    """Owners who join a V2G aggregator skew towards bidirectional cars; car-sharing operators
    run the AC-bidirectional cars their hubs were built for (the Utrecht pattern)."""
    if shared:
        pool = [m for m in models if m.spec.v2g_current is CurrentType.AC]
        if pool:
            return pool[rng.integers(len(pool))]
    weights = np.array([3.0 if m.spec.v2g_capable else 1.0 for m in models])
    return models[rng.choice(len(models), p=weights / weights.sum())]


def _home_charger(rng: np.random.Generator, cid: str, site: Site, model: VehicleModel) -> Charger:
    """A wallbox sized like Nordic homes; half the V2G car owners bought a bidirectional one that
    matches their car's path (DC for CHAdeMO/CCS cars, AC for AC-bidirectional cars)."""
    spec = model.spec
    if spec.v2g_capable and rng.random() < 0.5:
        if spec.v2g_current is CurrentType.DC:
            kw = 7.4 if "chademo" in model.bidirectional.value else 11.0
            return Charger(cid, site, CurrentType.DC, True, kw, kw)
        if site.ac_export_allowed:
            return Charger(cid, site, CurrentType.AC, True, 11.0, 11.0)
    kw = float(rng.choice([7.4, 11.0, 22.0], p=[0.25, 0.65, 0.10]))
    return Charger(cid, site, CurrentType.AC, False, kw, 0.0)


def generate_fleet(n: int, seed: int = 7, zone: str | BiddingZone = "SE3",
                   start: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> Fleet:
    """A reproducible fleet of `n` vehicles in one bidding zone."""
    if n < 1:
        raise ValueError("n: a fleet needs at least one vehicle")
    zone = BiddingZone.parse(zone)
    rng = np.random.default_rng(seed)
    models = vehicle_models()
    country = zone.country
    kinds = rng.choice(list(ARCHETYPE_SHARE), size=n, p=list(ARCHETYPE_SHARE.values()))
    offers = np.random.default_rng([seed, 0x5E77])  # its own stream: the fleet itself stays as it was
    targets = np.random.default_rng([seed, 0x7A26])  # likewise for the departure targets

    owners: dict[str, Owner] = {}
    sites: list[Site] = []
    chargers: list[Charger] = []
    vehicles: list[Vehicle] = []
    contracts: list[ContractRow] = []
    habits: list[Habits] = []
    shared_sites: dict[int, Site] = {}
    shared_in_hub = 0
    work_sites: dict[int, Site] = {}

    def grid_node(i: int) -> str:
        return f"{zone.value}-N{i // HOMES_PER_GRID_NODE:04d}"

    def add_charger(charger: Charger) -> int:
        chargers.append(charger)
        return len(chargers) - 1

    for i, kind in enumerate(kinds):
        kind = Archetype(kind)
        vid, oid = f"v{i:06d}", f"o{i:06d}"
        shared = kind is Archetype.SHARED
        model = _pick_model(rng, models, shared)
        home, away = -1, -1
        if shared:
            hub = len(shared_sites) - 1 if shared_sites and shared_in_hub < HUB_SIZE else len(shared_sites)
            shared_in_hub = shared_in_hub + 1 if hub == len(shared_sites) - 1 else 1
            site = shared_sites.get(hub)
            if site is None:
                site = shared_sites[hub] = Site(f"hub{hub:04d}", SiteKind.SHARED_FLEET, f"{zone.value}-H{hub:04d}",
                                                zone, max_import_kw=HUB_SIZE * 11.0, max_export_kw=HUB_SIZE * 11.0)
                sites.append(site)
            # Hub chargers are bidirectional AC where the car can use it (We Drive Solar style).
            bidi = model.spec.v2g_current is CurrentType.AC
            away = add_charger(Charger(f"c{i:06d}h", site, CurrentType.AC, bidi, 11.0, 11.0 if bidi else 0.0))
            oid = f"o-hub{hub:04d}"
            owner = Owner(oid, f"Car-sharing operator, hub {hub}", LANGUAGE.get(country, Language.EN), zone.currency)
        else:
            owner = Owner(oid, f"Owner {i}", LANGUAGE.get(country, Language.EN), zone.currency)
            if kind is not Archetype.WORKPLACE_ONLY:
                earthing = Earthing.IT if rng.random() < IT_TT_SHARE.get(country, 0.0) else Earthing.TN
                fuse_kw = float(rng.choice([11.0, 17.0, 24.0], p=[0.3, 0.5, 0.2]))
                site = Site(f"home{i:06d}", SiteKind.HOME, grid_node(i), zone, fuse_kw, fuse_kw, earthing)
                sites.append(site)
                home = add_charger(_home_charger(rng, f"c{i:06d}", site, model))
            if kind is Archetype.WORKPLACE_ONLY or (kind is Archetype.COMMUTER and rng.random() < 0.3):
                w = int(rng.integers(max(1, n // (WORKPLACE_SIZE * 5))))
                site = work_sites.get(w)
                if site is None:
                    site = work_sites[w] = Site(f"work{w:04d}", SiteKind.WORKPLACE, f"{zone.value}-W{w:04d}",
                                                zone, max_import_kw=WORKPLACE_SIZE * 11.0, max_export_kw=0.0)
                    sites.append(site)
                away = add_charger(Charger(f"c{i:06d}w", site, CurrentType.AC, False, 11.0, 0.0))
        owners.setdefault(owner.owner_id, owner)
        vehicle = Vehicle(vid, oid, model.spec, chargers[home].charger_id if home >= 0 else None)
        vehicles.append(vehicle)
        plan = _PLANS[int(offers.choice(len(_PLANS), p=_PLAN_SHARE))]
        contracts.append(ContractRow(f"k{i:06d}", oid, vid, plan, start, None,
                                     contract_terms(plan, start, owner.currency, model.spec.v2g_capable)))
        commute_km = float(np.clip(rng.lognormal(np.log(18), 0.6), 2, 90))
        scheduled = None if shared or rng.random() < 0.55 else float(rng.choice([22.0, 23.0, 1.0]))
        # Drawn for every owner (hub cars too), so each one's target is the same whatever the
        # others are; capped at the car's charge limit, where the car would stop short of it.
        drawn_target = float(targets.choice([70.0, 80.0, 90.0, 100.0], p=[0.2, 0.5, 0.2, 0.1]))
        habits.append(Habits(
            archetype=kind, home_charger=home, away_charger=away,
            commute_km=commute_km, commute_min=float(np.clip(commute_km * rng.uniform(1.1, 1.8), 5, 90)),
            leave_hour=float(np.clip(rng.normal(7.4, 0.6), 5.5, 9.5)),
            return_hour=float(np.clip(rng.normal(16.4, 0.7), 14.0, 19.0)),
            plug_in_habit=1.0 if shared else float(rng.choice([0.95, 0.7, 0.4], p=[0.6, 0.3, 0.1])),
            charge_limit_pct=(limit := float(rng.choice([80.0, 90.0, 100.0], p=[0.55, 0.35, 0.10]))),
            scheduled_start_hour=scheduled,
            declares_departure=1.0 if shared else float(rng.choice([0.0, 0.5, 0.9], p=[0.35, 0.35, 0.3])),
            min_soc_pct=60.0 if shared else float(rng.choice([20.0, 30.0, 40.0, 50.0])),
            target_soc_pct=min(80.0 if shared else drawn_target, limit),
            api_linked=bool(rng.random() < 0.85),
            clock_offset_s=int(rng.choice([0, 0, 0, 1, -1, 2, 5, -3, 30, 90])),
            clock_drift_s_per_day=int(rng.random() < 0.03) * int(rng.integers(1, 20)),
        ))
    return Fleet(zone, tuple(owners.values()), tuple(sites), tuple(chargers), tuple(vehicles),
                 tuple(contracts), tuple(habits))


def charge_kw(fleet: Fleet, vehicle: int, charger: int) -> float:
    """Charging power of a vehicle on a charger: the smaller rating of the pair."""
    return pair_limits(fleet.vehicles[vehicle], fleet.chargers[charger]).max_charge_kw
