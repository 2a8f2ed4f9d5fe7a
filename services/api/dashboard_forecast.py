"""Forecast against realised availability for /ops/forecast: the portfolio quantiles the forecaster
stored (forecast_portfolio, migration 0003) beside what the fleet turned out to offer.

The realised series is the forecaster's own target, computed the forecaster's way: sessions are
derived from telemetry with `flexfleet.sessions.derive_sessions` (what ingest's derivation stores
in charging_sessions), each gets its pair's flexible kW by the forecaster's rule
(services.forecaster.cli `_DATABASE_SESSIONS`: down = the lesser of car and charger charge kW; up
= the least of car, charger and site export kW when car and charger are bidirectional, else 0),
and `flexfleet.forecast.grid.session_grid` spreads them over the MTUs (plugged-in share x kW,
partial MTUs by their share). The sum over the registered vehicles per MTU is what the
forecast's endurance-0 rows predict. Telemetry rather than the stored sessions: derivation runs
in batches, so the stored sessions lag the last hours.

Which forecast: for each delivery day, the latest one issued by the day's local midnight (what
the day was planned on); a day with none then takes the first issued during it, and its MTUs
before that issue time have no band.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import psycopg

from flexfleet.domain.time import MTU
from flexfleet.forecast.grid import session_grid
from flexfleet.sessions import DEFAULT_MAX_GAP, derive_sessions
from services.api.dashboard_queries import LocalDay

DIRECTIONS = ("up", "down")
QUANTILES = ("q05", "q10", "q25", "q50", "q75", "q90", "q95")


@dataclass(frozen=True)
class Band:
    """The forecast's quantiles (kW) of one MTU."""

    target_start: datetime
    q: dict[str, float]


@dataclass(frozen=True)
class DayForecast:
    day: LocalDay
    direction: str
    forecast_id: str | None          # None: no forecast covers the day
    issued_at: datetime | None
    bands: tuple[Band, ...]


@dataclass(frozen=True)
class Realised:
    """Flexible kW per MTU as it turned out, for the MTUs that have ended."""

    starts: tuple[datetime, ...]
    kw: dict[str, tuple[float, ...]]  # direction -> kW per MTU


def day_forecast(conn: psycopg.Connection, day: LocalDay, direction: str) -> DayForecast:
    """The portfolio quantiles (endurance 0: flexible power) of the forecast the day was planned on."""
    picked = conn.execute(
        "SELECT forecast_id::text, issued_at FROM forecasts f WHERE zone = %(zone)s AND EXISTS ("
        "  SELECT 1 FROM forecast_portfolio p WHERE p.forecast_id = f.forecast_id AND p.direction = %(d)s "
        "  AND p.endurance_min = 0 AND p.target_start >= %(start)s AND p.target_start < %(end)s) "
        "AND issued_at < %(end)s "
        "ORDER BY issued_at <= %(start)s DESC, "
        "  CASE WHEN issued_at <= %(start)s THEN -extract(epoch FROM issued_at) "
        "       ELSE extract(epoch FROM issued_at) END, "
        "  created_at DESC LIMIT 1",
        {"zone": day.zone.value, "d": direction, "start": day.start, "end": day.end}).fetchone()
    if picked is None:
        return DayForecast(day, direction, None, None, ())
    forecast_id, issued_at = picked
    rows = conn.execute(
        f"SELECT target_start, {', '.join(QUANTILES)} FROM forecast_portfolio WHERE forecast_id = %s::uuid "
        "AND direction = %s AND endurance_min = 0 AND target_start >= %s AND target_start < %s ORDER BY target_start",
        (forecast_id, direction, day.start, day.end)).fetchall()
    bands = tuple(Band(r[0], {name: float(v) for name, v in zip(QUANTILES, r[1:], strict=True)}) for r in rows)
    return DayForecast(day, direction, forecast_id, issued_at, bands)


_PAIRS = """
SELECT p.vehicle_id, p.charger_id, least(v.max_charge_kw, c.max_charge_kw) AS down_kw,
       CASE WHEN v.v2g_capable AND c.bidirectional
            THEN least(v.max_discharge_kw, c.max_discharge_kw, site.max_export_kw) ELSE 0 END AS up_kw
FROM unnest(%s::text[], %s::text[]) AS p(vehicle_id, charger_id)
JOIN vehicles v ON v.vehicle_id = p.vehicle_id JOIN chargers c ON c.charger_id = p.charger_id
JOIN sites site ON site.site_id = c.site_id
"""


def _readings(conn: psycopg.Connection, start: datetime, stop: datetime) -> pd.DataFrame:
    """Telemetry's plug state in [start, stop) as columns: one row of arrays in binary, times as
    integer microseconds. Two days of a 500-car fleet (1.3 M readings) took 4.5 s as Python
    tuples of datetimes, most of it building the DataFrame; this way under a second. The
    subquery's order is what derive_sessions wants; it sorts itself if it gets another."""
    found = conn.execute(
        "SELECT array_agg(vehicle_id), array_agg(ts_us), array_agg(plugged_in), array_agg(charger_id) FROM ("
        "  SELECT vehicle_id, (extract(epoch FROM ts) * 1000000)::int8 AS ts_us, plugged_in, charger_id "
        '  FROM telemetry WHERE ts >= %s AND ts < %s ORDER BY vehicle_id COLLATE "C", ts) r',
        (start, stop), binary=True).fetchone()
    vehicles, ts_us, plugged, chargers = (a or [] for a in found)
    return pd.DataFrame({"vehicle_id": pd.array(vehicles, dtype=object),
                         "ts": pd.to_datetime(np.array(ts_us, dtype=np.int64), unit="us", utc=True),
                         "plugged_in": np.array(plugged, dtype=bool),
                         "charger_id": pd.array(chargers, dtype=object)})


def realised(conn: psycopg.Connection, start: datetime, end: datetime, now: datetime) -> Realised:
    """Flexible kW per MTU of [start, min(end, now)) that ended by `now`, from telemetry."""
    stop = min(end, now)
    n = max(0, int((stop - start) // MTU))
    starts = tuple(start + i * MTU for i in range(n))
    if n == 0:
        return Realised((), {d: () for d in DIRECTIONS})
    ids = [r[0] for r in conn.execute('SELECT vehicle_id FROM vehicles ORDER BY vehicle_id COLLATE "C"')]
    readings = _readings(conn, start - DEFAULT_MAX_GAP, stop)
    sessions = derive_sessions(readings, data_end=stop) if len(readings) else pd.DataFrame(
        columns=["vehicle_id", "charger_id", "plug_in_at", "plug_out_at"])
    sessions = sessions[sessions["charger_id"].notna()]
    if sessions.empty:
        return Realised(starts, {d: (0.0,) * n for d in DIRECTIONS})
    pairs = sessions[["vehicle_id", "charger_id"]].drop_duplicates()
    kw = pd.DataFrame(conn.execute(_PAIRS, (list(pairs["vehicle_id"]), list(pairs["charger_id"]))).fetchall(),
                      columns=["vehicle_id", "charger_id", "down_kw", "up_kw"])
    # An unregistered charger carries no flexibility (the forecaster's join drops it too).
    sessions = sessions.merge(kw, on=["vehicle_id", "charger_id"], how="inner")
    grid = session_grid(sessions, ids, start, n)
    return Realised(starts, {"up": tuple(float(x) for x in grid.up_kw.sum(axis=0, dtype=np.float64)),
                             "down": tuple(float(x) for x in grid.down_kw.sum(axis=0, dtype=np.float64))})


@dataclass(frozen=True)
class Score:
    """How the realised MTUs fell in the forecast's band."""

    mtus: int                         # MTUs with both a band and a realised value
    inside_10_90: int
    below_10: int                     # the P90 volume (10 % quantile) not reached

    @property
    def inside_share(self) -> float | None:
        return self.inside_10_90 / self.mtus if self.mtus else None

    @property
    def below_share(self) -> float | None:
        return self.below_10 / self.mtus if self.mtus else None


def score(forecast: DayForecast, real: Realised, direction: str) -> Score:
    actual = dict(zip(real.starts, real.kw[direction], strict=True))
    pairs = [(b, actual[b.target_start]) for b in forecast.bands if b.target_start in actual]
    eps = 1e-6
    return Score(len(pairs), sum(1 for b, y in pairs if b.q["q10"] - eps <= y <= b.q["q90"] + eps),
                 sum(1 for b, y in pairs if y < b.q["q10"] - eps))
