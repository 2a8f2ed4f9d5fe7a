"""A simulated dispatch day, end to end, against a real VTN and a real database.

The day's cleared obligations go to the VTN as OpenADR 3.0.1 programs and events (the business
logic, `services.dispatcher.bl`); the agents of the sites those events reach register their
VENs and resources, read their events, control the simulated chargers through the simulated
grid frequency and post their reports (`services.ven_agent`); the business logic reads the
reports back into `measured_power` (`services.dispatcher.reports`), and delivery is verified,
stored and attributed per site (`services.dispatcher.deliveries`). `run_day` returns what an
operator reads the next morning: per obligation the delivered share, the FCR response time
against the product's requirement and the shortfall with the payment it costs, and per site
its part of the shortfall.

A thin shell: the parts are the platform's own; what a day adds around them is said here once.

- **Day-ahead dispatch.** Every event is sent before the agents start, as `flexfleet dispatch
  send --day` does, so each agent reads its events in its first poll; later polls would only
  read them again, hence one every `POLL_S` wall-clock seconds.
- **The frequency** is the simulator's normal operation plus one disturbance in every MTU with
  an FCR obligation, in its direction (a lost unit for up, lost load for down), with a nadir or
  peak from the simulator's range. A natural day has a few a week (`FrequencyModel`), so it
  would show no response time for almost every obligation; this way each one is tested, as the
  TSO's prequalification tests it.
- **The local-flexibility baseline** is the telemetry of the 5 working days before (the DSO's
  rolling average). Reference days the telemetry table has nothing of for the bundle's cars (a
  fresh database; the demo streams only two days) are simulated by the fleet simulator for
  those cars and stored as ingest stores readings.
- **Credentials.** The simulated sites' VEN clients share one secret hashed once: a hash per
  site (PBKDF2, deliberately slow) would be most of the set-up (as in benchmarks/vtn.py).
- **No re-dispatch.** A car that is not plugged in where its event went keeps its share: moving
  it (`Dispatcher.vehicle_left`) updates the event of every site of the bundle, one request
  each, per car. What such cars held is reported as `away_kw`, to tell that shortfall apart.
- **Windows.** With `windows`, only the obligations in them are dispatched and simulated (the
  demo simulates its busiest hours; every obligation is one hourly MTU, as bids are); each
  window starts `WARM_UP_S` early so the agents have read a SoC before the first MTU (no
  discharge on a missing SoC).
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from flexfleet.bidding.backtest import foresight_availability, realised
from flexfleet.bidding.models import DIRECTIONS
from flexfleet.dispatch.baselines import BaselineMethod, baseline_method_for, working_days_before
from flexfleet.dispatch.signals import parse_event
from flexfleet.dispatch.verification import ActivationCheck, Delivery
from flexfleet.domain.errors import DomainError
from flexfleet.domain.time import delivery_day_bounds, mtus_of_delivery_day
from flexfleet.forecast.flexibility import ENDURANCES_MIN, VehicleLimits, held_key
from flexfleet.forecast.grid import session_grid
from flexfleet.forecast.portfolio import Calibration
from flexfleet.markets import default_catalogue
from flexfleet.markets.catalogue import Catalogue, FrequencyActivation
from flexfleet.markets.clearing import FrequencyEvent, FrequencyModel, FrequencyTrace, generate_frequency
from flexfleet.auth import hash_secret
from flexfleet.telemetry import Reading, parse_reading
from services.bidder.clearing import clear_simulated
from services.bidder.problem import day_gate_closure
from services.bidder.service import PlanRequest, plan_from_availability
from services.bidder.store import ClearingIn, Obligation, StoredPlan, record_clearing
from services.dispatcher.bl import Dispatcher, DispatchReport, bl_client
from services.dispatcher.deliveries import VerifyResult, verify_deliveries, write_frequency
from services.dispatcher.reports import CollectResult, collect_reports
from services.dispatcher.vtn import BASE_PATH, register_client
from services.api.accounts import register_ven_clients
from services.api.settings import SECRET_ENV
from services.forecaster.cli import fleet_specs, with_flexible_kw
from services.ingest.worker import load_fleet_limits, write_readings
from services.runtime.embedded import _wait_port, free_port
from services.sessions import import_sessions_csv
from services.simulator.fleet import Fleet, generate_fleet
from services.simulator.registry import write_fleet
from services.simulator.telemetry import simulate, simulate_sessions
from services.ven_agent import Broken, RunStats, SimSite, Simulation, SiteAgent, VenLink, World, sites_from_fleet

log = logging.getLogger(__name__)

POLL_S = 600.0                  # wall-clock seconds between an agent's polls (see the module docstring)
WARM_UP_S = 300                 # simulated seconds before each window
HISTORY_CADENCE_S = 300         # simulated telemetry of reference days: a reading every 5 minutes
HISTORY_WORKING_DAYS = 5        # NODES' rolling baseline (flexfleet.dispatch.baselines)
FREQUENCY_SOURCE = "simulated day"


@dataclass(frozen=True)
class Vtn:
    """A VTN's 3.0.1 base URL and the business logic's client there."""

    url: str
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class Window:
    """A span of the day that is dispatched and simulated, [start, end) in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise DomainError(f"windows.{name}", f"must be a timezone-aware datetime, got {value!r}")
        if self.end <= self.start:
            raise DomainError("windows.end", f"must be after start ({self.end.isoformat()} <= "
                                             f"{self.start.isoformat()})")

    def overlaps(self, o: Obligation) -> bool:
        return o.mtu_start < self.end and o.mtu_end > self.start


@dataclass(frozen=True)
class ObligationOutcome:
    """One obligation in one MTU as verified: what was committed, what was delivered, how fast
    the bundle answered the frequency, and what the shortfall costs."""

    obligation_id: str
    product_id: str
    direction: str
    kind: str                           # frequency | dso_order
    baseline_method: str
    mtu_start: datetime
    mtu_end: datetime
    committed_kw: float
    delivered_share: float
    capacity_share: float | None        # FCR: lowest quarter of capacity held
    response_share: float | None        # FCR: the weakest assessed activation
    activations: tuple[ActivationCheck, ...]   # the assessed FCR activations, each with its response time
    response_time_s: float | None       # slowest of them; None: none assessed, or never reached
    required_response_s: float | None   # the product's (FCR-D: 7.5 s)
    response_ok: bool | None            # reached in time; None: nothing to answer
    shortfall_kw: float
    shortfall_kwh: float
    away_kw: float                      # committed kW of cars not plugged in at the site their event went to (MTU mean)
    price_eur_per_mw_h: float
    withheld_eur: float                 # the payment settlement withholds: shortfall MW h x price
    sites: int
    worst_site: str | None              # the site carrying most of the shortfall
    vehicles: int
    vehicles_without_data: int
    notes: tuple[str, ...]


@dataclass(frozen=True)
class SiteOutcome:
    """One site over the day: its part of the obligations' shortfall."""

    site_id: str
    broken: str | None                  # how it was broken on purpose; None: healthy
    obligations: int                    # obligation MTUs it had cars in
    committed_kwh: float                # its cars' obligation kW x hours
    shortfall_kwh: float                # its attributed part of the shortfall
    away_kwh: float                     # committed kW h of its cars while not plugged in there
    withheld_eur: float
    lowest_share: float                 # its own worst delivered share
    slowest_response_s: float | None    # its slowest response over assessed activations
    never_responded: int                # activations it never reached 86 % of what was asked


@dataclass(frozen=True)
class DayResult:
    """A simulated day, as `run_day` leaves it (also in the database: deliveries, delivery_sites)."""

    windows: tuple[Window, ...]
    obligations: tuple[ObligationOutcome, ...]
    sites: tuple[SiteOutcome, ...]            # every site in an obligation; shortfall first
    broken: dict[str, str]                    # site -> mode, as asked
    broken_without_events: tuple[str, ...]    # broken sites no event reached (nothing to break)
    frequency_events: tuple[FrequencyEvent, ...]
    history_days: tuple[date, ...]            # reference days whose telemetry was simulated
    dispatched: dict[str, int]                # obligations, events created, updated, moves
    simulation: dict[str, float]              # sites, resources, reports, ... (RunStats)
    reports: dict[str, int]                   # read back from the VTN (CollectResult)
    not_verified: tuple[tuple[str, str], ...]  # (obligation_id, why)
    seconds: dict[str, float]                 # wall time per step

    def by_product(self) -> dict[str, dict[str, float]]:
        """Per product: obligation MTUs, committed MW h, delivered share (volume-weighted),
        worst share, slowest response, shortfall MWh, committed MW h at cars away from where their
        event went, and withheld EUR."""
        out: dict[str, dict[str, float]] = {}
        for p in sorted({o.product_id for o in self.obligations}):
            mine = [o for o in self.obligations if o.product_id == p]
            committed = sum(o.committed_kw * _hours(o) for o in mine)
            times = [o.response_time_s for o in mine if o.response_time_s is not None]
            out[p] = {"obligations": len(mine), "committed_mwh": committed / 1000,
                      "delivered_share": (sum(o.delivered_share * o.committed_kw * _hours(o) for o in mine) / committed
                                          if committed else float("nan")),
                      "lowest_share": min(o.delivered_share for o in mine),
                      "activations": sum(len(o.activations) for o in mine),
                      "slowest_response_s": max(times) if times else None,
                      "late_or_never": sum(o.response_ok is False for o in mine),
                      "shortfall_mwh": sum(o.shortfall_kwh for o in mine) / 1000,
                      "away_mwh": sum(o.away_kw * _hours(o) for o in mine) / 1000,
                      "withheld_eur": sum(o.withheld_eur for o in mine)}
        return out

    def to_json(self) -> dict:
        """JSON-ready: times as RFC 3339 strings."""
        doc = asdict(self)
        doc["by_product"] = self.by_product()
        return _jsonable(doc)


def _hours(o: ObligationOutcome) -> float:
    return (o.mtu_end - o.mtu_start).total_seconds() / 3600


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, datetime):
        return x.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(x, date):
        return x.isoformat()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return x.item()
    return x


# ----------------------------------------------------------------------------------- the VTN


@contextmanager
def serve_vtn(database_url: str, *, host: str = "127.0.0.1", workers: int = 1) -> Iterator[Vtn]:
    """The VTN served on `database_url` as `flexfleet dispatch vtn` serves it (uvicorn processes
    of their own, so that it has a core beside the agents'), with a business-logic client
    registered for this run."""
    port = free_port()
    bl_secret = secrets.token_urlsafe(24)
    client_id = f"dispatch-day-{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        register_client(conn, client_id, bl_secret)
    env = {**os.environ, "DATABASE_URL": database_url, SECRET_ENV: secrets.token_urlsafe(32)}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "services.dispatcher.vtn.app:app_from_env", "--factory",
                             "--host", host, "--port", str(port), "--workers", str(workers), "--no-access-log",
                             "--log-level", "warning"], env=env)
    try:
        _wait_port(port, 60, "the VTN", proc)
        yield Vtn(f"http://{host}:{port}{BASE_PATH}", client_id, bl_secret)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------- the frequency


def fcr_disturbances(obligations: Sequence[Obligation], catalogue: Catalogue, seed: int,
                      model: FrequencyModel = FrequencyModel()) -> list[FrequencyEvent]:
    """One disturbance in each MTU with an FCR obligation, in its direction: a lost unit early in
    the MTU for up, lost load late in it for down (so that both of one MTU are assessed apart)."""
    rng = np.random.default_rng([seed, 0x0FC])
    wanted = sorted({(o.mtu_start, o.mtu_end, o.direction) for o in obligations
                     if isinstance(catalogue.by_id(o.product_id).activation.value, FrequencyActivation)})
    events = []
    for start, end, direction in wanted:
        span = (end - start).total_seconds()
        at, (lo, hi) = ((0.15, 0.35), model.under_nadir_hz) if direction == "up" else ((0.6, 0.8), model.over_peak_hz)
        events.append(FrequencyEvent(start + timedelta(seconds=round(float(rng.uniform(*at)) * span)),
                                     float(rng.uniform(lo, hi)), float(rng.uniform(*model.time_to_nadir_s)),
                                     float(rng.uniform(*model.recovery_s))))
    return sorted(events, key=lambda e: e.start)


def day_frequency(start: datetime, end: datetime, obligations: Sequence[Obligation], catalogue: Catalogue,
                  seed: int) -> FrequencyTrace:
    """The grid frequency over [start, end) at 1 Hz: normal operation and the test disturbances."""
    return generate_frequency(start, duration_s=(end - start).total_seconds(), seed=[seed, 0xF0],
                              events=fcr_disturbances(obligations, catalogue, seed))


# ------------------------------------------------------------------ the local-flexibility history


def ensure_history(conn: psycopg.Connection, fleet: Fleet, obligations: Sequence[Obligation], catalogue: Catalogue,
                   seed: int, holidays: Sequence[date] = ()) -> tuple[date, ...]:
    """Telemetry of the reference days the rolling baseline of the local-flexibility obligations
    reads: days without a reading of their cars are simulated for those cars (the fleet
    simulator, one reading every HISTORY_CADENCE_S), validated and stored as ingest would.
    Returns the days simulated."""
    local = [o for o in obligations
             if baseline_method_for(catalogue.by_id(o.product_id)) is BaselineMethod.ROLLING_WORKING_DAYS]
    if not local:
        return ()
    tz = ZoneInfo(catalogue.by_id(local[0].product_id).delivery_timezone.value)
    vehicles = sorted({v for o in local for v in o.vehicles})
    days = sorted({d for o in local for d in working_days_before(o.mtu_start.astimezone(tz).date(),
                                                                 HISTORY_WORKING_DAYS, holidays)})
    lo = datetime.combine(days[0], datetime.min.time(), tz)
    hi = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), tz)
    have = {r[0] for r in conn.execute(
        "SELECT DISTINCT (ts AT TIME ZONE %s)::date FROM telemetry WHERE vehicle_id = ANY(%s) AND ts >= %s AND ts < %s",
        (tz.key, vehicles, lo, hi))}
    missing = [d for d in days if d not in have]
    if not missing:
        return ()
    first = datetime.combine(missing[0], datetime.min.time(), tz)
    last = datetime.combine(missing[-1] + timedelta(days=1), datetime.min.time(), tz)
    wanted = set(vehicles)
    keep = [i for i, v in enumerate(fleet.vehicles) if v.vehicle_id in wanted]
    cars = replace(fleet, vehicles=tuple(fleet.vehicles[i] for i in keep), habits=tuple(fleet.habits[i] for i in keep))
    limits = load_fleet_limits(conn)
    gap = set(missing)
    readings: list[Reading] = []
    for m in simulate(cars, first - timedelta(days=1), last, cadence_s=HISTORY_CADENCE_S, seed=seed, emit_from=first):
        r = parse_reading(m.value, limits, last)
        if isinstance(r, Reading) and r.ts.astimezone(tz).date() in gap:
            readings.append(r)
    with conn.transaction():
        write_readings(conn, readings)
    return tuple(missing)


# ------------------------------------------------------------------------ the simulated world


def simulated_fleet(conn: psycopg.Connection, vehicles: int, day: date, zone: str, seed: int, sessions_csv: Path
                    ) -> tuple[Fleet, pd.DataFrame]:
    """The simulated fleet, registered, and its sessions from two days before the local `day`
    to six hours after it. Those that begin before the day ends are imported as a charge-point
    management system's export (`sessions_csv`), the day's own included: the plan knows what
    the fleet will do (`plan_with_foresight`), and so does the dispatcher, which places each car
    on the charger it will be plugged into at the MTU's start."""
    start, end = delivery_day_bounds(day, zone)
    fleet = generate_fleet(vehicles, seed=seed, zone=zone)
    write_fleet(conn, fleet)
    sessions = simulate_sessions(fleet, start - timedelta(days=2), end + timedelta(hours=6), seed=seed)
    known = sessions[sessions["plug_in_at"] < pd.Timestamp(end)]
    sessions_csv.parent.mkdir(parents=True, exist_ok=True)
    known.drop(columns="complete").to_csv(sessions_csv, index=False, date_format="%Y-%m-%dT%H:%M:%SZ",
                                          float_format="%.3f")
    imported = import_sessions_csv(conn, sessions_csv)
    if imported.errors:
        raise RuntimeError(f"{sessions_csv}: {len(imported.errors)} rows refused, first: {imported.errors[0]}")
    return fleet, sessions


def plan_with_foresight(conn: psycopg.Connection, fleet: Fleet, sessions: pd.DataFrame, day: date, zone: str,
                        seed: int, catalogue: Catalogue | None = None) -> tuple[StoredPlan, list[Obligation]]:
    """The day's bids (FCR-D up and down, and the DSO's local orders at the fleet's nodes) planned
    by the bidder on what the simulated fleet will really do: the availability a perfect
    forecaster would issue (`flexfleet.bidding.backtest.foresight_availability`, the bid
    backtest's upper bound), cleared against the simulated market and recorded as obligations.

    Not the forecaster: training it on 2,000 cars takes about four minutes, and a forecast's
    misses would blur what a dispatch day is for, whether the dispatch chain delivers what was
    sold. (The demo's dispatch stage runs on obligations planned from its forecast.)"""
    catalogue = catalogue or default_catalogue()
    specs = fleet_specs(fleet)
    limits = VehicleLimits.from_specs(specs)
    quarters = pd.DatetimeIndex(mtus_of_delivery_day(day, zone))
    first = quarters[0] - timedelta(days=1)
    n = int((quarters[-1] + timedelta(days=1) - first) / timedelta(minutes=15))
    grid = session_grid(with_flexible_kw(fleet, sessions.copy()), limits.vehicle_ids, first.to_pydatetime(), n,
                        limits.battery_kwh)
    exact = {held_key(d, e): Calibration(rho=0.0) for d in DIRECTIONS for e in ENDURANCES_MIN}
    gate = day_gate_closure(catalogue, zone, day, "D-1")
    stored = plan_from_availability(conn, PlanRequest(day, zone, "D-1", now=gate - timedelta(minutes=1), seed=seed),
                                    foresight_availability(realised(grid, limits), quarters), exact, None, catalogue)
    cleared = clear_simulated(stored.bids, seed=seed)
    obligations = record_clearing(conn, [ClearingIn(b.bid_id, mw, price, "simulated market")
                                         for b, mw, price in cleared])
    return stored, obligations


# ------------------------------------------------------------------------------------ the day


def windows_of(obligations: Sequence[Obligation]) -> list[Window]:
    """The obligations' MTUs merged into contiguous spans."""
    spans: list[list[datetime]] = []
    for start, end in sorted({(o.mtu_start, o.mtu_end) for o in obligations}):
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return [Window(a, b) for a, b in spans]


def busiest_hours(obligations: Sequence[Obligation], car_hours: int, catalogue: Catalogue | None = None
                  ) -> list[Window]:
    """The hours with the most committed MW whose obligations together list at most `car_hours`
    cars (what a simulated hour costs: a car's reports on its events are most of the VTN's work),
    the busiest local-flexibility hour that fits first, so that a short run shows every kind of
    obligation; merged into windows. Empty when not even one hour fits."""
    catalogue = catalogue or default_catalogue()
    load: dict[datetime, float] = defaultdict(float)
    cars: dict[datetime, int] = defaultdict(int)
    local: set[datetime] = set()
    for o in obligations:
        for k in range(int(np.ceil((o.mtu_end - o.mtu_start) / timedelta(hours=1)))):
            hour = o.mtu_start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=k)
            load[hour] += float(o.volume_mw)
            cars[hour] += len(o.vehicles)
            if baseline_method_for(catalogue.by_id(o.product_id)) is BaselineMethod.ROLLING_WORKING_DAYS:
                local.add(hour)
    ranked = sorted(load, key=lambda h: (-load[h], h))
    chosen: list[datetime] = []
    left = car_hours
    first_local = next((h for h in ranked if h in local and cars[h] <= left), None)
    for h in ([first_local] if first_local else []) + ranked:
        if h not in chosen and cars[h] <= left:
            chosen.append(h)
            left -= cars[h]
    merged: list[Window] = []
    for h in sorted(chosen):
        if merged and merged[-1].end == h:
            merged[-1] = Window(merged[-1].start, h + timedelta(hours=1))
        else:
            merged.append(Window(h, h + timedelta(hours=1)))
    return merged


def busiest_site(fleet: Fleet, sessions: pd.DataFrame, obligations: Sequence[Obligation], windows: Sequence[Window],
                 catalogue: Catalogue | None = None) -> str | None:
    """The site whose cars hold the most FCR kW h in the windows, each car at the charger it is
    plugged into at the MTU's start (else its home charger): the one to break on purpose for the
    clearest attribution. None when no FCR obligation falls in the windows."""
    catalogue = catalogue or default_catalogue()
    site_of = {c.charger_id: c.site_id for c in fleet.chargers}
    home = {v.vehicle_id: site_of.get(v.home_charger_id or "") for v in fleet.vehicles}
    plugged = sessions[["vehicle_id", "charger_id", "plug_in_at", "plug_out_at"]]
    held: dict[str, float] = defaultdict(float)
    for o in obligations:
        if not any(w.overlaps(o) for w in windows) or not isinstance(
                catalogue.by_id(o.product_id).activation.value, FrequencyActivation):
            continue
        at = pd.Timestamp(o.mtu_start)
        there = plugged[(plugged["plug_in_at"] <= at) & (plugged["plug_out_at"] > at)]
        charger = dict(zip(there["vehicle_id"], there["charger_id"]))
        for v, kw in zip(o.vehicles, o.kw):
            site = site_of.get(charger[v]) if v in charger else home.get(v)
            if site:
                held[site] += kw
    return max(held, key=lambda s: (held[s], s)) if held else None


def check_broken(fleet: Fleet, broken: Mapping[str, Broken]) -> None:
    """Refuse a broken site that is not a site of the fleet, naming it (before any work)."""
    known = {s.site_id for s in fleet.sites}
    for site in broken:
        if site not in known:
            raise DomainError("broken", f"{site!r} is not a site of the simulated fleet "
                                        f"(sites are named like {min(known)})")


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


def run_day(database_url: str, vtn: Vtn, fleet: Fleet, sessions: pd.DataFrame, obligations: Sequence[Obligation], *,
            windows: Sequence[Window] | None = None, broken: Mapping[str, Broken] | None = None, seed: int = 0,
            batch_s: int = 3600, workers: int = 4, catalogue: Catalogue | None = None,
            console: Console | None = None) -> DayResult:
    """Dispatch `obligations` (stored ones: cleared bids) through the VTN, run the site agents of
    the sites their events reach on the simulated sessions (`sessions`: the fleet simulator's,
    covering the windows) and frequency, read their reports back, verify, store and attribute.

    windows: the spans to run (default: the obligations' own); obligations outside are left out.
    broken: sites broken on purpose (`services.ven_agent.sim.Broken`).
    batch_s: seconds of measurements per report: an hour, one report per hourly event."""
    catalogue = catalogue or default_catalogue()
    console = console or Console()
    broken = dict(broken or {})
    check_broken(fleet, broken)
    windows = sorted(windows or windows_of(obligations), key=lambda w: w.start)
    chosen = [o for o in obligations if any(w.overlaps(o) for w in windows)]
    if not chosen:
        raise DomainError("obligations", "none falls in the windows to simulate")
    if vtn.url.startswith("http://"):         # oauthlib refuses plain-HTTP token URLs otherwise (a local VTN)
        os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
    lap = _Laps()
    with psycopg.connect(database_url, autocommit=True) as conn:
        with console.status("local-flexibility history and the day's frequency"):
            history = ensure_history(conn, fleet, chosen, catalogue, seed)
            span = (windows[0].start - timedelta(seconds=WARM_UP_S), windows[-1].end + timedelta(minutes=5))
            frequency = day_frequency(*span, chosen, catalogue, seed)
            write_frequency(conn, frequency, source=FREQUENCY_SOURCE)
        lap("history_and_frequency")
        bl = bl_client(vtn.url, vtn.client_id, vtn.client_secret)
        sent = _dispatch(Dispatcher(conn, bl, catalogue), chosen, console)
        lap("dispatch")
        reached = {r[0] for r in conn.execute("SELECT DISTINCT ven_name FROM dispatch_events "
                                              "WHERE obligation_id = ANY(%s)", ([o.obligation_id for o in chosen],))}
        sites = [s for s in sites_from_fleet(fleet, sessions, broken=broken) if s.site_id in reached]
        if reached - {s.site_id for s in sites}:
            log.warning("sites with events that are not simulated: %s", sorted(reached - {s.site_id for s in sites}))
        stats = _run_agents(conn, vtn, sites, frequency, windows, batch_s, workers, console, lap)
        hours = [(w.start + timedelta(hours=k), min(w.end, w.start + timedelta(hours=k + 1)))
                 for w in windows for k in range(int(np.ceil((w.end - w.start) / timedelta(hours=1))))]
        collected, verified = _read_back(conn, bl, hours, {o.obligation_id for o in chosen}, catalogue, console, lap)
        away = _away(conn, chosen, sessions, {c.charger_id: c.site_id for c in fleet.chargers})
    return _result(windows, chosen, verified, broken, history, frequency, sent, stats, collected, sites, away,
                   lap.seconds)


class _Laps:
    """Wall seconds per step, each from the end of the one before."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(now - self._clock, 1)
        self._clock = now


def _dispatch(dispatcher: Dispatcher, obligations: Sequence[Obligation], console: Console) -> DispatchReport:
    """Programs, then each obligation's events (one call each, for the progress bar)."""
    sent = DispatchReport()
    with _progress(console) as bar:
        task = bar.add_task("dispatch: events to the VTN", total=len(obligations))
        sent.programs = dispatcher.ensure_programs({o.product_id for o in obligations})
        for o in obligations:
            r = dispatcher.dispatch([o])
            sent.obligations += r.obligations
            sent.skipped += r.skipped
            sent.created += r.created
            sent.updated += r.updated
            sent.unchanged += r.unchanged
            sent.moves += r.moves
            bar.advance(task)
    return sent


def _run_agents(conn: psycopg.Connection, vtn: Vtn, sites: Sequence[SimSite], frequency: FrequencyTrace,
                windows: Sequence[Window], batch_s: int, workers: int, console: Console, lap: _Laps) -> RunStats:
    """Register and start the sites' agents, then run each window (from WARM_UP_S before it)."""
    agents = _agents(conn, vtn, sites)
    sim = Simulation(World(sites), agents, frequency, batch_s=batch_s, workers=workers, poll_every_s=POLL_S)
    stats = RunStats()
    try:
        with _progress(console) as bar:
            task = bar.add_task("agents: register, read events", total=len(agents))
            sim.start(on_started=lambda a: bar.advance(task))
            lap("agents_start")
            task = bar.add_task("agents: control, report (sim. s)",
                                total=sum(int((w.end - w.start).total_seconds()) + WARM_UP_S for w in windows))
            done = 0
            for w in windows:
                a, b = int(w.start.timestamp()) - WARM_UP_S, int(w.end.timestamp())
                stats = _add(stats, sim.run(a, b, on_batch=lambda t, a=a, base=done: bar.update(
                    task, completed=base + t - a)))
                done += b - a
                bar.update(task, completed=done)
    finally:
        sim.close()
    lap("simulation")
    return stats


def _read_back(conn: psycopg.Connection, bl, hours: Sequence[tuple[datetime, datetime]], wanted: set[str],
               catalogue: Catalogue, console: Console, lap: _Laps) -> tuple[CollectResult, VerifyResult]:
    """The agents' reports into measured_power, then delivery verified and stored, hour by hour."""
    collected, verified = CollectResult(), VerifyResult()
    with _progress(console) as bar:
        task = bar.add_task("reports: read back from the VTN", total=len(hours))
        for a, b in hours:
            c = collect_reports(conn, bl, a, b)
            collected.events += c.events
            collected.reports += c.reports
            collected.samples += c.samples
            collected.stored += c.stored
            collected.refused += c.refused
            bar.advance(task)
        lap("reports")
        task = bar.add_task("delivery: verify and store", total=len(hours))
        for a, b in hours:
            v = verify_deliveries(conn, a, b, catalogue=catalogue)
            verified.deliveries += [d for d in v.deliveries if d.obligation_id in wanted]
            verified.stored += v.stored
            verified.unchanged += v.unchanged
            verified.skipped += v.skipped
            bar.advance(task)
    lap("verify")
    return collected, verified


def _away(conn: psycopg.Connection, obligations: Sequence[Obligation], sessions: pd.DataFrame,
          site_of: Mapping[str, str]) -> dict[tuple[str, str], float]:
    """Per (obligation, site): the committed kW h its events gave cars while they were not
    plugged in at any charger of the site the event went to (the sessions the world played;
    the site's agent follows a car to whichever of its chargers it takes)."""
    stays: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for v, c, a, b in sessions[["vehicle_id", "charger_id", "plug_in_at", "plug_out_at"]].itertuples(index=False):
        stays[(site_of.get(c, ""), v)].append((pd.Timestamp(a).timestamp(), pd.Timestamp(b).timestamp()))
    out: dict[tuple[str, str], float] = defaultdict(float)
    rows = conn.execute("SELECT obligation_id, ven_name, body FROM dispatch_events WHERE obligation_id = ANY(%s)",
                        ([o.obligation_id for o in obligations],)).fetchall()
    for oid, ven, body in rows:
        for x in parse_event(body).assignments():
            a, b = x.start.timestamp(), x.end.timestamp()
            there = sum(max(0.0, min(b, out_s) - max(a, in_s)) for in_s, out_s in stays.get((ven, x.vehicle_id), ()))
            out[(oid, ven)] += x.kw * (b - a - there) / 3600
    return out


def _agents(conn: psycopg.Connection, vtn: Vtn, sites: Sequence[SimSite]) -> list[SiteAgent]:
    """One VEN client per site (one shared secret, hashed once: see the module docstring) and
    its agent."""
    secret = secrets.token_urlsafe(24)
    hashed = hash_secret(secret)
    register_ven_clients(conn, [(f"{s.site_id}-ven", s.site_id) for s in sites], hashed, actor="dispatch day")
    return [SiteAgent(s.site_id, s.resources, VenLink(vtn.url, f"{s.site_id}-ven", secret), broken=s.broken)
            for s in sites]


def _add(a: RunStats, b: RunStats) -> RunStats:
    out = RunStats()
    for name in ("simulated_s", "wall_s", "control_wall_s", "io_wall_s", "reports", "intervals", "polls", "too_slow_s",
                 "departure_at_risk_s", "below_min_s", "departures", "departures_short", "departures_below_min"):
        setattr(out, name, getattr(a, name) + getattr(b, name))
    out.resources, out.sites = max(a.resources, b.resources), max(a.sites, b.sites)
    out.unknown_resources = a.unknown_resources | b.unknown_resources
    return out


def _result(windows: Sequence[Window], chosen: Sequence[Obligation], verified: VerifyResult,
            broken: Mapping[str, Broken], history: tuple[date, ...], frequency: FrequencyTrace, sent: DispatchReport,
            stats: RunStats, collected: CollectResult, sites: Sequence[SimSite], away: Mapping[tuple[str, str], float],
            seconds: dict[str, float]) -> DayResult:
    price = {o.obligation_id: float(o.price_eur_per_mw_h) for o in chosen}
    outcomes = []
    per_site: dict[str, dict] = defaultdict(lambda: {"obligations": 0, "committed_kwh": 0.0, "shortfall_kwh": 0.0,
                                                     "away_kwh": 0.0, "withheld_eur": 0.0, "lowest_share": 1.0,
                                                     "slowest": None, "never": 0})
    away_by_obligation: dict[str, float] = defaultdict(float)
    for (oid, site), kwh in away.items():
        away_by_obligation[oid] += kwh
        per_site[site]["away_kwh"] += kwh
    for d in sorted(verified.deliveries, key=lambda d: (d.mtu_start, d.product_id, d.obligation_id)):
        outcomes.append(_outcome(d, price[d.obligation_id], away_by_obligation[d.obligation_id] / d.hours))
        for s in d.sites:
            x = per_site[s.site_id]
            x["obligations"] += 1
            x["committed_kwh"] += s.required_mw * 1000 * d.hours
            x["shortfall_kwh"] += s.shortfall_mwh * 1000
            x["withheld_eur"] += s.shortfall_mwh * price[d.obligation_id]
            x["lowest_share"] = min(x["lowest_share"], s.delivered_share)
            if d.activations:
                if s.response_time_s is None:
                    x["never"] += 1
                else:
                    x["slowest"] = max(x["slowest"] or 0.0, s.response_time_s)
    site_outcomes = sorted(
        (SiteOutcome(site, broken[site].mode.value if site in broken else None, x["obligations"], x["committed_kwh"],
                     x["shortfall_kwh"], x["away_kwh"], x["withheld_eur"], x["lowest_share"], x["slowest"], x["never"])
         for site, x in per_site.items() if x["obligations"]), key=lambda s: (-s.shortfall_kwh, s.site_id))
    reached = {s.site_id for s in sites}
    return DayResult(
        windows=tuple(windows), obligations=tuple(outcomes), sites=tuple(site_outcomes),
        broken={k: v.mode.value for k, v in broken.items()},
        broken_without_events=tuple(sorted(set(broken) - reached)),
        frequency_events=frequency.events, history_days=history,
        dispatched={"obligations": len(sent.obligations), "sent_before": len(sent.skipped),
                    "events_created": sent.created, "events_updated": sent.updated, "moves": len(sent.moves),
                    "uncovered_kw": round(sum(m.uncovered_kw for m in sent.moves), 3)},
        simulation={"sites": stats.sites, "resources": stats.resources, "simulated_s": stats.simulated_s,
                    "wall_s": round(stats.wall_s, 1), "control_wall_s": round(stats.control_wall_s, 1),
                    "io_wall_s": round(stats.io_wall_s, 1), "reports": stats.reports,
                    "resource_intervals": stats.intervals, "polls": stats.polls,
                    "too_slow_resource_s": stats.too_slow_s,
                    "departures": stats.departures, "departures_below_min": stats.departures_below_min,
                    "departures_short_of_target": stats.departures_short,
                    "unknown_resources": len(stats.unknown_resources)},
        reports={"events": collected.events, "reports": collected.reports, "samples": collected.samples,
                 "stored": collected.stored, "refused": len(collected.refused)},
        not_verified=tuple(verified.skipped), seconds=seconds)


def _outcome(d: Delivery, price: float, away_kw: float) -> ObligationOutcome:
    worst = max(d.sites, key=lambda s: s.shortfall_mw, default=None)
    ok = None
    if d.activations:
        ok = d.response_time_s is not None and d.response_time_s <= (d.required_response_s or float("inf"))
    return ObligationOutcome(
        obligation_id=d.obligation_id, product_id=d.product_id, direction=d.direction, kind=d.kind,
        baseline_method=d.baseline_method.value, mtu_start=d.mtu_start, mtu_end=d.mtu_end,
        committed_kw=d.required_mw * 1000, delivered_share=d.delivered_share, capacity_share=d.capacity_share,
        response_share=d.response_share, activations=d.activations, response_time_s=d.response_time_s,
        required_response_s=d.required_response_s, response_ok=ok, shortfall_kw=d.shortfall_mw * 1000,
        shortfall_kwh=d.shortfall_mwh * 1000, away_kw=away_kw, price_eur_per_mw_h=price,
        withheld_eur=d.shortfall_mwh * price, sites=len(d.sites),
        worst_site=worst.site_id if worst is not None and worst.shortfall_mw > 0 else None,
        vehicles=d.vehicles, vehicles_without_data=d.vehicles_without_data, notes=d.notes)


__all__ = ["DayResult", "ObligationOutcome", "SiteOutcome", "Vtn", "Window", "busiest_hours", "busiest_site",
           "check_broken", "day_frequency", "ensure_history", "fcr_disturbances", "plan_with_foresight", "run_day",
           "serve_vtn", "simulated_fleet", "windows_of"]
