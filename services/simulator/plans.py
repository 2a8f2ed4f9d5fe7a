"""Daily movement plans: when each car leaves, where to, for how long and how far.

Times are drawn in the fleet's local time (people live by the wall clock, across DST too) and
kept as UTC epoch seconds. Weekdays and weekends differ; commuters drive to work, home-daytime
owners run errands, car-sharing cars are booked from a hub.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import IntEnum
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np

from services.simulator.fleet import Archetype, Fleet, Habits


class Place(IntEnum):
    HOME = 0
    WORK = 1
    HUB = 2
    AWAY = 3   # errands, trips, a booking: no charger of ours


class Movement(NamedTuple):
    depart_s: int   # planned departure, UTC epoch seconds
    leg_s: int      # driving time
    km: float
    dest: Place


def base_place(h: Habits) -> Place:
    return Place.HUB if h.archetype is Archetype.SHARED else Place.HOME


def _outings(h: Habits, weekday: int, rng: np.random.Generator) -> list[tuple[float, Place, float, float]]:
    """(departure hour, destination, hours there, round-trip km) for one local day."""
    weekend = weekday >= 5
    if h.archetype is Archetype.SHARED:
        # Bookings arrive through the day; fewer at night, more on weekends.
        out, t = [], (8.0 if weekend else 6.5) + rng.exponential(1.5)
        while t < 21.5:
            hours = float(np.clip(rng.lognormal(np.log(2.0), 0.6), 0.5, 10.0))
            out.append((t, Place.AWAY, hours, float(rng.uniform(8, 16) * hours)))
            t += hours + rng.exponential(2.0 if weekend else 2.8)
        return out
    commutes = h.archetype in (Archetype.COMMUTER, Archetype.WORKPLACE_ONLY)
    if commutes and not weekend and rng.random() > 0.08:  # 8 %: ill, on leave or working from home
        leave = h.leave_hour + rng.normal(0, 0.25)
        back = h.return_hour + rng.normal(0, 0.5)
        out = [(leave, Place.WORK, back - leave - 2 * h.commute_min / 60, 2 * h.commute_km)]
        if rng.random() < 0.3:
            out.append((rng.uniform(18.0, 20.5), Place.AWAY, rng.uniform(0.5, 2.0), rng.uniform(5, 25)))
        return out
    k = rng.choice([0, 1, 2], p=[0.2, 0.5, 0.3] if weekend else [0.25, 0.5, 0.25])
    out = []
    for dep in np.sort(rng.uniform(9.0, 18.0, size=k)):
        if rng.random() < 0.04:  # a long trip: to the cabin, to relatives
            out.append((dep, Place.AWAY, rng.uniform(4, 10), rng.uniform(150, 350)))
        else:
            out.append((dep, Place.AWAY, float(np.clip(rng.lognormal(np.log(1.5), 0.6), 0.3, 6)),
                        float(np.clip(rng.lognormal(np.log(20), 0.7), 2, 120))))
    return out


def _epoch(day: date, hour: float, tz: ZoneInfo) -> int:
    # Aware-datetime arithmetic is wall-clock arithmetic: 07:30 stays 07:30 across DST.
    return int((datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(hours=float(hour))).timestamp())


def build_plans(fleet: Fleet, start: datetime, end: datetime, seed: int) -> list[list[Movement]]:
    """Every vehicle's movements from the local day before `start` to the day after `end`
    (the day after gives evening plug-ins a next departure to declare)."""
    tz = fleet.zone.tzinfo
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    days = [first + timedelta(days=d) for d in range((last - first).days + 1)]
    plans: list[list[Movement]] = []
    for i, h in enumerate(fleet.habits):
        rng = np.random.default_rng([seed, i])
        base = base_place(h)
        plan: list[Movement] = []
        for day in days:
            for hour, dest, stay_h, km in _outings(h, day.weekday(), rng):
                leg_s = int(h.commute_min * 60) if dest is Place.WORK else int(
                    60 * max(5.0, km / 2 / rng.uniform(30, 60) * 60))
                out_s = _epoch(day, hour, tz)
                back_s = out_s + leg_s + int(max(0.25, stay_h) * 3600)
                plan.append(Movement(out_s, leg_s, km / 2, dest))
                plan.append(Movement(back_s, leg_s, km / 2, base))
        plans.append(plan)
    return plans
