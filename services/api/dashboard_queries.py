"""The operations dashboard's reads: SQL over the fleet registry, telemetry, sessions, obligations,
deliveries, forecasts and settlement, each answered as small frozen dataclasses.

Every read takes `now` from the caller, so a page and its tests agree on what "now" is. The rules
that are choices, not facts of the data, are constants here and are printed on the pages:

- reporting: a vehicle with a reading in the last `REPORTING_WINDOW`; its latest reading says
  whether it is plugged in and its SoC;
- charger offline: a charger that a car is plugged in at (the car's latest reading of the last
  `LOOKBACK` was plugged in there, or its charging session is still open) while no reading from
  any car has named that charger for more than `OFFLINE_AFTER`. Telemetry comes from the car, so
  this cannot tell a dead charger from a car that lost its link: the page says so;
- DLQ growth: more telemetry rejects in the last hour than in the hour before;
- obligation at risk: the committed vehicles' P90 kW, from the latest forecast of the zone that
  covers the obligation's MTU and under the forecaster's own correlation (the bidder's model,
  `flexfleet.bidding.p90.bundle_p90_kw`), is below the volume in some quarter hour.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from statistics import median
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from flexfleet.bidding.p90 import bundle_p90_kw, p90_level
from flexfleet.domain.model import Currency
from flexfleet.domain.time import MTU
from flexfleet.domain.zones import BiddingZone
from flexfleet.forecast.flexibility import held_key
from flexfleet.forecast.portfolio import Calibration
from flexfleet.settlement import Month
from flexfleet.settlement.statement import Promise
from services.settlement.inputs import read_promises

REPORTING_WINDOW = timedelta(minutes=15)
OFFLINE_AFTER = timedelta(minutes=15)
LOOKBACK = timedelta(hours=24)
CONFIDENCE = 0.9                     # P90: the default for every product (DESIGN.md)
SOC_TRACE_DAYS = 3


# -- fleet now ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FleetNow:
    at: datetime
    registered: int
    v2g_registered: int
    reporting: int                   # a reading within REPORTING_WINDOW
    plugged_in: int
    v2g_plugged_in: int
    plugged_soc: tuple[float, ...]   # the SoC of each plugged-in car that reported one

    @property
    def v2g_share(self) -> float | None:
        """V2G-capable share of the plugged-in cars (None when none is plugged in)."""
        return self.v2g_plugged_in / self.plugged_in if self.plugged_in else None


def fleet_now(conn: psycopg.Connection, now: datetime) -> FleetNow:
    rows = conn.execute(
        "SELECT v.v2g_capable, l.vehicle_id IS NOT NULL, coalesce(l.plugged_in, false), l.soc_pct FROM vehicles v "
        "LEFT JOIN (SELECT DISTINCT ON (vehicle_id) vehicle_id, plugged_in, soc_pct FROM telemetry "
        "           WHERE ts > %s AND ts <= %s ORDER BY vehicle_id, ts DESC) l USING (vehicle_id)",
        (now - REPORTING_WINDOW, now)).fetchall()
    plugged = [r for r in rows if r[2]]
    return FleetNow(at=now, registered=len(rows), v2g_registered=sum(1 for r in rows if r[0]),
                    reporting=sum(1 for r in rows if r[1]), plugged_in=len(plugged),
                    v2g_plugged_in=sum(1 for r in plugged if r[0]),
                    plugged_soc=tuple(float(r[3]) for r in plugged if r[3] is not None))


def soc_histogram(values: tuple[float, ...], width: int = 10) -> list[tuple[str, int]]:
    """Counts per SoC band of `width` points, 100 % in the top band: ("0-10 %", n), ..."""
    counts = [0] * (100 // width)
    for v in values:
        counts[min(int(max(v, 0.0) // width), len(counts) - 1)] += 1
    return [(f"{i * width}-{(i + 1) * width} %", n) for i, n in enumerate(counts)]


# -- chargers offline ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OfflineCharger:
    charger_id: str
    site_id: str | None              # None: a charger the registry does not know
    last_seen: datetime | None       # the last reading naming it within LOOKBACK
    vehicles: tuple[str, ...]        # the cars plugged in there, by their last reading or open session


_OFFLINE = """
WITH at_charger AS (
    SELECT charger_id, max(ts) AS last_seen FROM telemetry
    WHERE ts > %(lookback)s AND ts <= %(now)s AND charger_id IS NOT NULL GROUP BY charger_id),
latest AS (
    SELECT DISTINCT ON (vehicle_id) vehicle_id, plugged_in, charger_id FROM telemetry
    WHERE ts > %(lookback)s AND ts <= %(now)s ORDER BY vehicle_id, ts DESC),
claimed AS (
    SELECT charger_id, vehicle_id FROM latest WHERE plugged_in AND charger_id IS NOT NULL
    UNION
    SELECT charger_id, vehicle_id FROM charging_sessions
    WHERE NOT complete AND charger_id IS NOT NULL AND plug_out_at > %(lookback)s AND plug_in_at <= %(now)s)
SELECT c.charger_id, ch.site_id, a.last_seen, array_agg(DISTINCT c.vehicle_id ORDER BY c.vehicle_id)
FROM claimed c LEFT JOIN at_charger a USING (charger_id) LEFT JOIN chargers ch USING (charger_id)
WHERE (a.last_seen IS NULL OR a.last_seen < %(bound)s) AND (%(charger)s::text IS NULL OR c.charger_id = %(charger)s)
GROUP BY c.charger_id, ch.site_id, a.last_seen ORDER BY c.charger_id
"""


def last_reading(conn: psycopg.Connection, now: datetime) -> datetime | None:
    """The fleet's latest reading within LOOKBACK (bounded, so partitions prune)."""
    return conn.execute("SELECT max(ts) FROM telemetry WHERE ts > %s AND ts <= %s", (now - LOOKBACK, now)).fetchone()[0]


def offline_chargers(conn: psycopg.Connection, now: datetime, charger_id: str | None = None) -> list[OfflineCharger]:
    rows = conn.execute(_OFFLINE, {"now": now, "lookback": now - LOOKBACK, "bound": now - OFFLINE_AFTER,
                                   "charger": charger_id}).fetchall()
    return [OfflineCharger(r[0], r[1], r[2], tuple(r[3])) for r in rows]


@dataclass(frozen=True)
class Charger:
    charger_id: str
    site_id: str
    bidding_zone: str
    bidirectional: bool
    max_charge_kw: float
    max_discharge_kw: float


@dataclass(frozen=True)
class ChargerReading:
    vehicle_id: str
    ts: datetime
    plugged_in: bool
    charger_id: str | None
    power_kw: float
    soc_pct: float | None


def charger(conn: psycopg.Connection, charger_id: str) -> Charger | None:
    row = conn.execute("SELECT c.charger_id, c.site_id, s.bidding_zone, c.bidirectional, c.max_charge_kw, "
                       "c.max_discharge_kw FROM chargers c JOIN sites s USING (site_id) WHERE c.charger_id = %s",
                       (charger_id,)).fetchone()
    return None if row is None else Charger(*row)


def charger_readings(conn: psycopg.Connection, charger_id: str, now: datetime, limit: int = 20) -> list[ChargerReading]:
    """The latest readings naming the charger within LOOKBACK, newest first."""
    return [ChargerReading(*r) for r in conn.execute(
        "SELECT vehicle_id, ts, plugged_in, charger_id, power_kw, soc_pct FROM telemetry WHERE charger_id = %s "
        "AND ts > %s AND ts <= %s ORDER BY ts DESC LIMIT %s", (charger_id, now - LOOKBACK, now, limit))]


# -- DLQ ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RejectCount:
    field: str
    code: str
    count: int


@dataclass(frozen=True)
class Reject:
    rejected_at: datetime
    topic: str
    partition: int
    offset: int
    field: str
    code: str
    reason: str


@dataclass(frozen=True)
class DlqGrowth:
    last_hour: int
    hour_before: int

    @property
    def growing(self) -> bool:
        return self.last_hour > self.hour_before


def dlq_growth(conn: psycopg.Connection, now: datetime) -> DlqGrowth:
    last, before = conn.execute(
        "SELECT count(*) FILTER (WHERE rejected_at > %(h1)s), count(*) FILTER (WHERE rejected_at <= %(h1)s) "
        "FROM telemetry_rejects WHERE rejected_at > %(h2)s AND rejected_at <= %(now)s",
        {"now": now, "h1": now - timedelta(hours=1), "h2": now - timedelta(hours=2)}).fetchone()
    return DlqGrowth(last, before)


def dlq_by_reason(conn: psycopg.Connection, now: datetime) -> list[RejectCount]:
    """Rejects of the last hour by field and code, the most frequent first."""
    return [RejectCount(*r) for r in conn.execute(
        "SELECT field, code, count(*) FROM telemetry_rejects WHERE rejected_at > %s AND rejected_at <= %s "
        "GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2", (now - timedelta(hours=1), now))]


def latest_rejects(conn: psycopg.Connection, now: datetime, limit: int = 20) -> list[Reject]:
    return [Reject(*r) for r in conn.execute(
        'SELECT rejected_at, topic, partition, "offset", field, code, reason FROM telemetry_rejects '
        "WHERE rejected_at <= %s ORDER BY rejected_at DESC, topic, partition, \"offset\" LIMIT %s", (now, limit))]


# -- obligations --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Obligation:
    obligation_id: str
    zone: str
    product_id: str
    direction: str
    mtu_start: datetime
    mtu_end: datetime
    volume_mw: float
    vehicles: int
    verified_mtus: int
    delivered_share: float | None    # required-weighted over the verified MTUs; None before any


_OBLIGATIONS = """
SELECT o.obligation_id, o.zone, o.product_id, o.direction, o.mtu_start, o.mtu_end, o.volume_mw::float8,
       (SELECT count(*) FROM obligation_vehicles v WHERE v.obligation_id = o.obligation_id),
       d.verified, d.share
FROM obligations o
LEFT JOIN LATERAL (
    SELECT count(*) AS verified,
           sum(delivered_share * required_mw * extract(epoch FROM mtu_end - mtu_start))
             / nullif(sum(required_mw * extract(epoch FROM mtu_end - mtu_start)), 0) AS share
    FROM deliveries d WHERE d.obligation_id = o.obligation_id) d ON true
WHERE o.mtu_start < %(end)s AND o.mtu_end > %(start)s AND (%(id)s::text IS NULL OR o.obligation_id = %(id)s)
ORDER BY o.mtu_start, o.obligation_id
"""


# The zone whose clock counts "today" when no site is registered: the forecaster's and the
# bidder's default zone.
DEFAULT_ZONE = BiddingZone.SE3


@dataclass(frozen=True)
class LocalDay:
    """One delivery day of a bidding zone: local midnight to local midnight, in UTC (23 or 25 h on
    the days the clocks change). Markets count delivery days this way, not by the UTC day."""

    zone: BiddingZone
    day: date
    start: datetime
    end: datetime

    @property
    def tz(self) -> ZoneInfo:
        return self.zone.tzinfo

    @property
    def hours(self) -> float:
        return (self.end - self.start) / timedelta(hours=1)

    @property
    def label(self) -> str:
        return f"{self.day.isoformat()} {self.zone.value} ({self.zone.timezone})"

    def shifted(self, days: int) -> LocalDay:
        return local_day(self.zone, self.day + timedelta(days=days))


def local_day(zone: BiddingZone, day: date) -> LocalDay:
    """The zone's delivery day `day`, its bounds in UTC."""
    tz = zone.tzinfo
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
    return LocalDay(zone, day, start, end)


def today(zone: BiddingZone, now: datetime) -> LocalDay:
    """The zone's delivery day that holds `now`."""
    return local_day(zone, now.astimezone(zone.tzinfo).date())


def fleet_zone(conn: psycopg.Connection) -> BiddingZone:
    """The bidding zone most of the fleet's sites are in (DEFAULT_ZONE when none is registered):
    its clock decides which obligations, bids and forecasts are "today"."""
    row = conn.execute("SELECT bidding_zone FROM sites GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1").fetchone()
    return DEFAULT_ZONE if row is None else BiddingZone.parse(row[0], "sites.bidding_zone")


def obligations_between(conn: psycopg.Connection, start: datetime, end: datetime) -> list[Obligation]:
    """The obligations whose delivery overlaps [start, end)."""
    return [_obligation(r) for r in conn.execute(_OBLIGATIONS, {"start": start, "end": end, "id": None})]


def obligation(conn: psycopg.Connection, obligation_id: str) -> Obligation | None:
    row = conn.execute(_OBLIGATIONS, {"start": datetime.min.replace(tzinfo=UTC),
                                      "end": datetime.max.replace(tzinfo=UTC), "id": obligation_id}).fetchone()
    return None if row is None else _obligation(row)


def _obligation(r: tuple) -> Obligation:
    return Obligation(r[0], r[1], r[2], r[3], r[4], r[5], float(r[6]), r[7], r[8],
                      None if r[9] is None else float(r[9]))


# -- response times ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Activation:
    """One assessed FCR activation in a verified delivery (deliveries.activations, written by
    services.dispatcher.deliveries): when the frequency asked, and how fast the fleet answered."""

    obligation_id: str
    mtu_start: datetime
    start: datetime
    response_time_s: float | None      # to the required share of what was asked; None: never reached
    required_response_s: float         # the checkpoint (FCR-D 7.5 s, FCR-N 60 s)
    required_share: float              # of what was asked at the checkpoint (FCR-D 0.86)
    passed: bool

    @property
    def in_time(self) -> bool:
        return self.response_time_s is not None and self.response_time_s <= self.required_response_s


@dataclass(frozen=True)
class ResponseTimes:
    """The activations of a set of deliveries, summarised for the page."""

    activations: tuple[Activation, ...]

    @property
    def count(self) -> int:
        return len(self.activations)

    @property
    def passed(self) -> int:
        return sum(1 for a in self.activations if a.passed)

    @property
    def never(self) -> int:
        """Activations the fleet never answered to the required share."""
        return sum(1 for a in self.activations if a.response_time_s is None)

    @property
    def median_s(self) -> float | None:
        times = [a.response_time_s for a in self.activations if a.response_time_s is not None]
        return median(times) if times else None

    @property
    def slowest_s(self) -> float | None:
        times = [a.response_time_s for a in self.activations if a.response_time_s is not None]
        return max(times) if times else None


def _activations(obligation_id: str, mtu_start: datetime, raw: list[dict]) -> list[Activation]:
    return [Activation(obligation_id, mtu_start, datetime.fromisoformat(a["start"].replace("Z", "+00:00")),
                       None if a.get("response_time_s") is None else float(a["response_time_s"]),
                       float(a["required_response_s"]), float(a["required_share"]), bool(a["passed"]))
            for a in raw]


def response_times(conn: psycopg.Connection, start: datetime, end: datetime,
                   obligation_id: str | None = None) -> ResponseTimes:
    """The activations of the deliveries verified for MTUs starting in [start, end) (of one
    obligation when given), oldest first."""
    out: list[Activation] = []
    for oid, mtu_start, raw in conn.execute(
            "SELECT obligation_id, mtu_start, activations FROM deliveries WHERE mtu_start >= %s AND mtu_start < %s "
            "AND (%s::text IS NULL OR obligation_id = %s) AND jsonb_array_length(activations) > 0 "
            "ORDER BY mtu_start, obligation_id", (start, end, obligation_id, obligation_id)):
        out += _activations(oid, mtu_start, raw)
    return ResponseTimes(tuple(sorted(out, key=lambda a: (a.start, a.obligation_id))))


@dataclass(frozen=True)
class CommittedVehicle:
    vehicle_id: str
    kw: float                               # its share of the obligation
    p90_weakest_p: float | None             # its forecast probability of being plugged in, weakest quarter


@dataclass(frozen=True)
class Coverage:
    """The committed vehicles' P90 kW per quarter hour of an obligation, from one forecast."""

    forecast_id: str
    issued_at: datetime
    rho: float
    quarters: tuple[tuple[datetime, float], ...]    # (quarter start, P90 kW)
    vehicles: tuple[CommittedVehicle, ...]
    required_kw: float

    @property
    def weakest_kw(self) -> float:
        return min((kw for _, kw in self.quarters), default=0.0)

    @property
    def at_risk(self) -> bool:
        return self.weakest_kw < self.required_kw - 1e-6


_COLUMNS = {"up": ("p_up", "coalesce(fv.up_20_kw, fv.capacity_up_kw)"),
            "down": ("p_down", "coalesce(fv.down_20_kw, fv.capacity_down_kw)")}


@functools.lru_cache(maxsize=32)
def _calibration(body: str, direction: str) -> Calibration:
    found = json.loads(body).get("calibrations", {})
    for key in (held_key(direction, 20), direction):      # as the bidder picks it
        if key in found:
            c = found[key]
            return Calibration(float(c["rho"]), tuple(c["levels"]), tuple(c["model_levels"]))
    from flexfleet.bidding.planner import FALLBACK_RHO     # the planner is slow to import: only when needed
    return Calibration(rho=FALLBACK_RHO)


def p90_coverage(conn: psycopg.Connection, o: Obligation, now: datetime) -> Coverage | None:
    """The obligation's committed P90 kW from the latest forecast issued by `now` with rows for its
    MTU; None when no such forecast exists (the page then says the coverage is unknown)."""
    found = conn.execute(
        "SELECT f.forecast_id::text, f.issued_at, r.body FROM forecasts f JOIN forecasters r "
        "ON r.version = f.forecaster_version WHERE f.zone = %s AND f.issued_at <= %s AND EXISTS ("
        "SELECT 1 FROM forecast_vehicles fv WHERE fv.forecast_id = f.forecast_id AND fv.target_start >= %s "
        "AND fv.target_start < %s) ORDER BY f.issued_at DESC, f.created_at DESC LIMIT 1",
        (o.zone, now, o.mtu_start, o.mtu_end)).fetchone()
    if found is None:
        return None
    forecast_id, issued_at, body = found
    calibration = _calibration(body, o.direction)
    p_col, kw_col = _COLUMNS[o.direction]
    rows = conn.execute(
        f"SELECT ov.vehicle_id, ov.kw, fv.target_start, fv.{p_col}, {kw_col} FROM obligation_vehicles ov "
        "LEFT JOIN forecast_vehicles fv ON fv.forecast_id = %s::uuid AND fv.vehicle_id = ov.vehicle_id "
        "AND fv.target_start >= %s AND fv.target_start < %s WHERE ov.obligation_id = %s ORDER BY ov.vehicle_id",
        (forecast_id, o.mtu_start, o.mtu_end, o.obligation_id)).fetchall()
    quarters = [o.mtu_start + i * MTU for i in range((o.mtu_end - o.mtu_start) // MTU)]
    cars = sorted({r[0] for r in rows})
    committed = {r[0]: float(r[1]) for r in rows}
    p = np.zeros((len(cars), len(quarters)))
    kw = np.zeros((len(cars), len(quarters)))
    index = {q: i for i, q in enumerate(quarters)}
    for vid, share, start, prob, held in rows:
        if start is None or start not in index:
            continue                  # no forecast row: the car counts for nothing there
        i, q = cars.index(vid), index[start]
        p[i, q] = 0.0 if prob is None else float(prob)
        kw[i, q] = min(committed[vid], 0.0 if held is None else float(held))
    level = p90_level(calibration, CONFIDENCE)
    per_quarter = tuple((q, bundle_p90_kw(p[:, i], kw[:, i], calibration.rho, level)) for i, q in enumerate(quarters))
    vehicles = tuple(CommittedVehicle(v, committed[v], float(p[i].min()) if len(quarters) else None)
                     for i, v in enumerate(cars))
    return Coverage(forecast_id, issued_at, calibration.rho, per_quarter, vehicles, o.volume_mw * 1000.0)


# -- one vehicle --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Vehicle:
    vehicle_id: str
    owner_id: str
    make: str
    model: str
    battery_kwh: float
    v2g_capable: bool
    home_charger_id: str | None
    zone: str | None                 # its home charger's bidding zone


@dataclass(frozen=True)
class Session:
    charger_id: str | None
    plug_in_at: datetime
    plug_out_at: datetime
    energy_kwh: float
    soc_start: float | None
    soc_end: float | None
    departure_declared_at: datetime | None
    min_soc: float | None
    target_soc: float | None
    complete: bool


@dataclass(frozen=True)
class SocPoint:
    mtu_start: datetime
    soc_pct: float
    plugged_share: float


@dataclass(frozen=True)
class Earning:
    month: date
    zone: str
    version: int
    currency: Currency
    source: str
    amount: int                      # minor units


def vehicle(conn: psycopg.Connection, vehicle_id: str) -> Vehicle | None:
    row = conn.execute("SELECT v.vehicle_id, v.owner_id, v.make, v.model, v.battery_kwh, v.v2g_capable, "
                       "v.home_charger_id, s.bidding_zone FROM vehicles v LEFT JOIN chargers c "
                       "ON c.charger_id = v.home_charger_id LEFT JOIN sites s ON s.site_id = c.site_id "
                       "WHERE v.vehicle_id = %s", (vehicle_id,)).fetchone()
    return None if row is None else Vehicle(*row)


def sessions(conn: psycopg.Connection, vehicle_id: str, limit: int = 20) -> list[Session]:
    return [Session(*r) for r in conn.execute(
        "SELECT charger_id, plug_in_at, plug_out_at, energy_kwh, soc_start, soc_end, departure_declared_at, "
        "min_soc, target_soc, complete FROM charging_sessions WHERE vehicle_id = %s ORDER BY plug_in_at DESC "
        "LIMIT %s", (vehicle_id, limit))]


def soc_trace(conn: psycopg.Connection, vehicle_id: str, now: datetime,
              days: int = SOC_TRACE_DAYS) -> list[SocPoint]:
    """Mean SoC per 15-minute MTU over the last `days` (fleet_state_15min), oldest first."""
    return [SocPoint(r[0], float(r[1]), float(r[2])) for r in conn.execute(
        "SELECT mtu_start, soc_pct_mean, plugged_share FROM fleet_state_15min WHERE vehicle_id = %s "
        "AND mtu_start >= %s AND mtu_start <= %s AND soc_pct_mean IS NOT NULL ORDER BY mtu_start",
        (vehicle_id, now - timedelta(days=days), now))]


def promises(conn: psycopg.Connection, v: Vehicle, now: datetime, months: int = 2) -> list[Promise]:
    """Departure and minimum-SoC promises of the stays that ended in this and the previous months,
    judged exactly as settlement judges them (services.settlement.inputs.read_promises), newest first."""
    zone = v.zone or "UTC"
    first = now.astimezone(UTC).date().replace(day=1)
    out: list[Promise] = []
    for _ in range(months):
        out += read_promises(conn, Month(first, zone), {v.vehicle_id})
        first = (first - timedelta(days=1)).replace(day=1)
    return sorted(out, key=lambda p: p.due, reverse=True)


def earnings(conn: psycopg.Connection, vehicle_id: str) -> list[Earning]:
    """The vehicle's settlement lines summed per source, of each month's latest posted version."""
    return [Earning(r[0], r[1], r[2], Currency(r[3]), r[4], int(r[5])) for r in conn.execute(
        "SELECT l.month, l.zone, l.version, l.currency, l.source, sum(l.amount) FROM settlement_lines l "
        "WHERE l.vehicle_id = %s AND l.version = (SELECT max(r.version) FROM settlement_runs r "
        "WHERE r.zone = l.zone AND r.month = l.month AND r.status = 'posted') "
        "GROUP BY 1, 2, 3, 4, 5 ORDER BY 1 DESC, 2, 4, 5", (vehicle_id,))]


def earnings_by_month(rows: list[Earning]) -> list[tuple[tuple[date, str, int, Currency], list[Earning], int]]:
    """(month, zone, version, currency), its lines and their total, newest month first."""
    groups: dict[tuple[date, str, int, Currency], list[Earning]] = defaultdict(list)
    for e in rows:
        groups[(e.month, e.zone, e.version, e.currency)].append(e)
    return [(k, lines, sum(e.amount for e in lines)) for k, lines in groups.items()]
