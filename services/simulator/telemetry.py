"""The fleet simulation that produces telemetry.v1 messages, in time order, keyed by vehicle id.

A step-based simulation, vectorised over vehicles: events (departures, arrivals, plug-ins) are
handled per vehicle as they fall due, the physics in between (driving drains, charging fills,
batteries warm and cool) for all vehicles at once. What makes real telemetry awkward is kept:
gaps while a charger is offline, cars that only report through their charger, clocks that run
ahead, owners who charge at night, declare a departure (with a minimum and a target SoC) in the
app, or forget to plug in.

`bad_share` replaces that share of readings with a broken message of a known kind; each message
carries the rejection ingest must give it (`expected`), so tests and the demo can count exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
import orjson
import pandas as pd

from flexfleet.sessions import SESSION_COLUMNS
from services.simulator.fleet import Fleet, charge_kw
from services.simulator.plans import Movement, Place, base_place, build_plans

CHARGE_EFFICIENCY = 0.92   # grid to battery
LOW_SOC_PCT = 10.0         # below this a driver stops at a public fast charger on the way
OUTAGES_PER_DAY = 0.15     # per charger; 5 % of chargers are flaky and drop off 1.5 times a day
FLAKY_SHARE, FLAKY_OUTAGES_PER_DAY = 0.05, 1.5
CLOCK_RESET = "2000-01-01T00:00:00Z"
FUTURE_GLITCH_S = 366 * 86400  # a clock a year ahead: in the future for any recent simulation
# A drifting clock gains until the car's network time sync holds it there: without a bound, a
# month-long simulation ran clocks 15 minutes fast, and their last readings before `end`
# came in 'from the future' when ingested at once, unmarked as broken.
CLOCK_SYNC_S = 120

# Broken messages of every kind ingest must refuse, with the field and code it must name.
BAD_KINDS = ("soc_pct:out_of_range", "$:malformed_json", "vehicle_id:unknown_vehicle", "ts:missing",
             "power_kw:over_rating", "ts:in_future", "ts:too_old", "soc_pct:wrong_type",
             "speed_kmh:unknown_field")


class Message(NamedTuple):
    key: bytes
    value: bytes
    ts_s: int               # true simulation time, UTC epoch seconds
    expected: str | None    # "field:code" ingest must reject it with; None for a good reading


def ambient_c(t: float, tz_offset_s: float) -> float:
    """Nordic outdoor temperature: a seasonal swing from about -3 C in January to 17 C in July,
    warmest in the afternoon."""
    doy = (t / 86400.0) % 365.25
    hour = ((t + tz_offset_s) % 86400) / 3600.0
    return 7.0 - 10.0 * math.cos(2 * math.pi * (doy - 20) / 365.25) + 3.0 * math.cos(2 * math.pi * (hour - 15) / 24)


class _Ts:
    """RFC 3339 strings for epoch seconds; a fleet repeats the same few every step."""

    def __init__(self) -> None:
        self._cache: dict[int, str] = {}

    def __call__(self, s: int) -> str:
        text = self._cache.get(s)
        if text is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            text = self._cache[s] = datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return text


def _outage_gap(rng: np.random.Generator, rate_per_day: np.ndarray) -> np.ndarray:
    return rng.exponential(86400.0 / rate_per_day)


def simulate(fleet: Fleet, start: datetime, end: datetime, cadence_s: int = 60, seed: int = 7,
             bad_share: float = 0.0, emit_from: datetime | None = None) -> Iterator[Message]:
    """Readings of every vehicle from `start` to `end` (exclusive) every `cadence_s` seconds.

    60 s is the normal cadence; 1 s is FCR-D measurement mode. With `emit_from` the fleet is
    simulated from `start` but reports only from `emit_from` on: the continuation of the history
    `simulate_sessions(fleet, start, emit_from, cadence_s, seed)` gives, with no cold start
    (every car at home and plugged in) at `emit_from`.
    """
    if cadence_s < 1:
        raise ValueError("cadence_s: must be at least 1 second")
    if not 0.0 <= bad_share < 1.0:
        raise ValueError("bad_share: must be in [0, 1)")
    start_s, end_s = int(start.timestamp()), int(end.timestamp())
    emit_s = start_s if emit_from is None else int(emit_from.timestamp())
    tz = fleet.zone.tzinfo
    plans = build_plans(fleet, start, end, seed)
    sim = _State(fleet, plans, start_s, seed)
    bad_rng = np.random.default_rng([seed, 1])
    future_ts = _Ts()(end_s + FUTURE_GLITCH_S)
    ts_text = _Ts()
    for t in range(start_s, end_s, cadence_s):
        offset = datetime.fromtimestamp(t, tz).utcoffset().total_seconds()
        sim.handle_events(t, cadence_s)
        reporting = sim.reporting(t, cadence_s)
        if t < emit_s:
            sim.advance(t, cadence_s, offset)
            continue
        bad = bad_rng.random(len(reporting)) < bad_share if bad_share else None
        for j, i in enumerate(reporting):
            doc = sim.reading(i, t, ts_text)
            if bad is not None and bad[j]:
                yield _break(doc, sim.keys[i], t, bad_rng, future_ts, float(sim.charge_kw[i]))
            else:
                yield Message(sim.keys[i], orjson.dumps(doc), t, None)
        sim.advance(t, cadence_s, offset)


def _break(doc: dict, key: bytes, t: int, rng: np.random.Generator, future_ts: str,
           rating_kw: float) -> Message:
    """A broken version of a reading, as faulty firmware, gateways and integrations send them."""
    kind = BAD_KINDS[rng.integers(len(BAD_KINDS))]
    if kind == "soc_pct:out_of_range":
        doc["soc_pct"] = round(100.5 + 20 * rng.random(), 1)
    elif kind == "vehicle_id:unknown_vehicle":
        key = b"x" + key
        doc["vehicle_id"] = key.decode()
    elif kind == "ts:missing":
        del doc["ts"]
    elif kind == "power_kw:over_rating":
        doc["power_kw"] = round(2 * rating_kw + 5, 2) if doc["plugged_in"] else 3.7
    elif kind == "ts:in_future":
        doc["ts"] = future_ts
    elif kind == "ts:too_old":
        doc["ts"] = CLOCK_RESET
    elif kind == "soc_pct:wrong_type":
        doc["soc_pct"] = f"{doc.get('soc_pct') or 50}"
    elif kind == "speed_kmh:unknown_field":
        doc["speed_kmh"] = 0
    value = orjson.dumps(doc)
    if kind == "$:malformed_json":
        value = value[: len(value) // 2]
    return Message(key, value, t, kind)


class _State:
    """Every vehicle's and charger's state as numpy arrays, plus the event logic."""

    def __init__(self, fleet: Fleet, plans: list[list[Movement]], start_s: int, seed: int,
                 record_sessions: bool = False) -> None:
        n, m = len(fleet.vehicles), len(fleet.chargers)
        self.fleet, self.plans = fleet, plans
        self.rng = rng = np.random.default_rng([seed, 2])
        habits = fleet.habits
        self.keys = [v.vehicle_id.encode() for v in fleet.vehicles]
        self.ids = [v.vehicle_id for v in fleet.vehicles]
        self.charger_ids = [c.charger_id for c in fleet.chargers]
        self.charger_bidi = np.array([c.bidirectional for c in fleet.chargers], dtype=bool)
        self.cap = np.array([v.spec.battery_kwh for v in fleet.vehicles])
        self.kwh_per_km = np.array([v.spec.kwh_per_km for v in fleet.vehicles])
        self.limit = np.array([h.charge_limit_pct for h in habits])
        self.api = np.array([h.api_linked for h in habits], dtype=bool)
        self.sched = np.array([np.nan if h.scheduled_start_hour is None else h.scheduled_start_hour
                               for h in habits])
        self.clock0 = np.array([h.clock_offset_s for h in habits], dtype=np.int64)
        self.drift = np.array([h.clock_drift_s_per_day for h in habits], dtype=np.int64)
        self.start_s = start_s
        self.ambient = ambient_c(start_s, 0.0)
        self.sessions: list[tuple] | None = [] if record_sessions else None
        self.open_sessions: dict[int, tuple[int, float, float]] = {}

        self.place = np.array([base_place(h) for h in habits], dtype=np.int8)
        self.soc = rng.uniform(35, 85, n)
        self.odometer = rng.uniform(2_000, 120_000, n)
        self.temp = np.full(n, 10.0)
        self.driving = np.zeros(n, dtype=bool)
        self.drain = np.zeros(n)        # SoC percentage points per second while driving
        self.speed = np.zeros(n)        # km per second while driving
        self.dest = np.zeros(n, dtype=np.int8)
        self.charger = np.full(n, -1)
        self.charge_kw = np.zeros(n)
        self.power = np.zeros(n)
        self.declared = np.full(n, -1, dtype=np.int64)
        self.min_soc = np.full(n, np.nan)
        self.target_soc = np.full(n, np.nan)
        self.next_move = np.array([next((k for k, mv in enumerate(p) if mv.depart_s >= start_s), len(p))
                                   for p in plans])
        self.next_event = np.array([p[k].depart_s if k < len(p) else np.inf
                                    for p, k in zip(plans, self.next_move)], dtype=float)

        self.e_import = rng.uniform(300, 8000, m)
        self.e_export = np.where(self.charger_bidi, rng.uniform(0, 300, m), 0.0)
        rate = np.where(rng.random(m) < FLAKY_SHARE, FLAKY_OUTAGES_PER_DAY, OUTAGES_PER_DAY)
        self.outage_rate = rate
        self.outage_from = start_s + _outage_gap(rng, rate)
        self.outage_to = self.outage_from + rng.lognormal(np.log(2700), 1.0, m)
        for i in range(n):
            self._park(i, start_s)

    # -- events ---------------------------------------------------------------------------
    def handle_events(self, t: int, cadence_s: int) -> None:
        for i in np.flatnonzero(self.next_event <= t):
            if self.driving[i]:
                self._arrive(i, t)
            else:
                self._depart(i, t)
            # At most one event per vehicle and step: the car shows every state it passes through.
            self.next_event[i] = max(self.next_event[i], t + cadence_s)

    def _depart(self, i: int, t: int) -> None:
        mv = self.plans[i][self.next_move[i]]
        self.next_move[i] += 1
        if self.sessions is not None and self.charger[i] >= 0:
            self._close_session(i, t, complete=True)
        self.charger[i], self.charge_kw[i], self.power[i] = -1, 0.0, 0.0
        self.declared[i], self.min_soc[i], self.target_soc[i] = -1, np.nan, np.nan
        winter = 1.0 + 0.02 * max(0.0, 15.0 - self.ambient)
        self.driving[i], self.dest[i] = True, mv.dest
        self.drain[i] = mv.km * self.kwh_per_km[i] * winter / self.cap[i] * 100 / mv.leg_s
        self.speed[i] = mv.km / mv.leg_s
        self.next_event[i] = t + mv.leg_s

    def _arrive(self, i: int, t: int) -> None:
        self.driving[i], self.place[i] = False, self.dest[i]
        if self.soc[i] < LOW_SOC_PCT:  # topped up at a public fast charger on the way
            self.soc[i] = self.rng.uniform(55, 80)
        self._park(i, t)

    def _park(self, i: int, t: int) -> None:
        h = self.fleet.habits[i]
        place = Place(self.place[i])
        charger = h.home_charger if place is Place.HOME else h.away_charger if place in (Place.WORK, Place.HUB) else -1
        plan, k = self.plans[i], self.next_move[i]
        self.next_event[i] = plan[k].depart_s if k < len(plan) else np.inf
        if charger < 0 or not (self.rng.random() < h.plug_in_habit or self.soc[i] < 50):
            return
        self.charger[i], self.charge_kw[i] = charger, charge_kw(self.fleet, i, charger)
        # The same draws whether or not the plan goes on: a simulation that ends later repeats
        # one that ends earlier exactly.
        if self.rng.random() < h.declares_departure:
            # People declare a round time and a little early.
            early = 0 if place is Place.HUB else int(self.rng.choice([0, 900, 1800]))
            if k < len(plan):
                self.declared[i] = (plan[k].depart_s - early) // 900 * 900
                self.min_soc[i], self.target_soc[i] = h.min_soc_pct, h.target_soc_pct
        if self.sessions is not None:
            self.open_sessions[i] = (t, float(self.soc[i]), float(self.e_import[charger]))

    # -- sessions (the simulator's ground truth of plug-ins) ---------------------------------
    def _close_session(self, i: int, t: int, complete: bool) -> None:
        t_in, soc_in, e_in = self.open_sessions.pop(i)
        c = self.charger[i]
        self.sessions.append((self.ids[i], self.charger_ids[c], t_in, t, float(self.e_import[c]) - e_in,
                              soc_in, float(self.soc[i]), float(self.charge_kw[i]),
                              int(self.declared[i]) if self.declared[i] >= 0 else None,
                              None if np.isnan(self.min_soc[i]) else float(self.min_soc[i]),
                              None if np.isnan(self.target_soc[i]) else float(self.target_soc[i]), complete))

    def close_open_sessions(self, t: int) -> None:
        for i in list(self.open_sessions):
            self._close_session(i, t, complete=False)

    # -- telemetry ------------------------------------------------------------------------
    def reporting(self, t: int, cadence_s: int) -> np.ndarray:
        """Who reports now: plugged cars through an online charger, others through the maker's API."""
        ended = self.outage_to <= t
        if ended.any():
            gap = _outage_gap(self.rng, self.outage_rate[ended])
            self.outage_from[ended] = t + gap
            self.outage_to[ended] = self.outage_from[ended] + self.rng.lognormal(np.log(2700), 1.0, ended.sum())
        plugged = self.charger >= 0
        online = np.ones(len(self.charger), dtype=bool)
        online[plugged] = self.outage_from[self.charger[plugged]] > t
        return np.flatnonzero(np.where(plugged, online, self.api))

    def reading(self, i: int, t: int, ts_text: _Ts) -> dict:
        drifted = min(int(self.drift[i] * (t - self.start_s) // 86400), CLOCK_SYNC_S)
        clock = t + int(self.clock0[i]) + drifted
        c = self.charger[i]
        doc: dict = {"vehicle_id": self.ids[i], "ts": ts_text(clock), "plugged_in": bool(c >= 0)}
        if c >= 0:
            doc["charger_id"] = self.charger_ids[c]
        doc["power_kw"] = round(float(self.power[i]), 2)
        if self.api[i]:
            doc["soc_pct"], doc["soc_source"] = round(float(self.soc[i]), 1), "vehicle_api"
        elif c >= 0 and self.charger_bidi[c]:  # bidirectional chargers speak ISO 15118
            doc["soc_pct"], doc["soc_source"] = round(float(self.soc[i]), 1), "iso15118"
        if c >= 0:
            doc["energy_import_kwh"] = round(float(self.e_import[c]), 3)
            if self.charger_bidi[c]:
                doc["energy_export_kwh"] = round(float(self.e_export[c]), 3)
        if self.api[i]:
            doc["battery_temp_c"] = round(float(self.temp[i]), 1)
            doc["odometer_km"] = round(float(self.odometer[i]), 1)
        if self.declared[i] >= 0:
            doc["departure_at"] = datetime.fromtimestamp(int(self.declared[i]), self.fleet.zone.tzinfo).isoformat()
            doc["min_soc_pct"] = float(self.min_soc[i])
            doc["target_soc_pct"] = float(self.target_soc[i])
        return doc

    # -- physics --------------------------------------------------------------------------
    def advance(self, t: int, dt: int, tz_offset_s: float) -> None:
        """Integrate driving, charging and battery temperature over [t, t + dt)."""
        self.ambient = ambient = ambient_c(t, tz_offset_s)
        drv = self.driving
        self.soc[drv] = np.maximum(self.soc[drv] - self.drain[drv] * dt, LOW_SOC_PCT / 2)
        self.odometer[drv] += self.speed[drv] * dt

        hour = ((t + tz_offset_s) % 86400) / 3600.0
        # Scheduled owners charge from their start hour until 07:00, or at once below their floor.
        night = np.isnan(self.sched) | (hour >= self.sched) | (hour < 7.0)
        floor = np.where(np.isnan(self.min_soc), 20.0, self.min_soc)
        room = self.limit - self.soc
        on = (self.charger >= 0) & (room > 0) & (night | (self.soc < floor))
        # AC charging is flat until the last couple of percent, then tapers.
        kw = np.where(on, self.charge_kw * np.clip(room / 2.0, 0.3, 1.0), 0.0)
        kw *= 1.0 + self.rng.normal(0.0, 0.004, len(kw))
        kwh = np.minimum(kw * dt / 3600.0 * CHARGE_EFFICIENCY, np.maximum(room, 0) / 100 * self.cap)
        self.power = np.where(on, kwh / CHARGE_EFFICIENCY * 3600.0 / dt, 0.0)
        self.soc += kwh / self.cap * 100
        plugged = self.charger >= 0
        np.add.at(self.e_import, self.charger[plugged], self.power[plugged] * dt / 3600.0)

        target = ambient + np.where(drv | (self.power > 3), 12.0, 0.0) + np.where(self.place == Place.HOME, 4.0, 0.0)
        self.temp += (target - self.temp) * (1 - math.exp(-dt / 5400.0))


def simulate_sessions(fleet: Fleet, start: datetime, end: datetime, cadence_s: int = 60,
                      seed: int = 7) -> pd.DataFrame:
    """The plug-in sessions of the same simulation `simulate` reports on, without the messages:
    the ground truth that sessions derived from telemetry are checked against, and a quick way to
    get months of history for forecasting. Times are UTC; sessions still open at `end` have
    complete=False and end there."""
    start_s, end_s = int(start.timestamp()), int(end.timestamp())
    sim = _State(fleet, build_plans(fleet, start, end, seed), start_s, seed, record_sessions=True)
    for t in range(start_s, end_s, cadence_s):
        offset = datetime.fromtimestamp(t, fleet.zone.tzinfo).utcoffset().total_seconds()
        sim.handle_events(t, cadence_s)
        sim.reporting(t, cadence_s)  # draws the same random numbers as `simulate`
        sim.advance(t, cadence_s, offset)
    sim.close_open_sessions(end_s)
    df = pd.DataFrame(sim.sessions, columns=SESSION_COLUMNS)
    for column in ("plug_in_at", "plug_out_at", "departure_declared_at"):
        df[column] = pd.to_datetime(df[column], unit="s", utc=True)
    return df.sort_values(["vehicle_id", "plug_in_at"], ignore_index=True)


def estimate_messages(fleet: Fleet, start: datetime, end: datetime, cadence_s: int) -> int:
    """An upper bound for progress bars: every vehicle at every step (offline gaps make it less)."""
    return len(fleet.vehicles) * math.ceil((end - start) / timedelta(seconds=cadence_s))
