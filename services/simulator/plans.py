"""Daily movement plans: when each car leaves, where to, for how long and how far.

Times are drawn in the fleet's local time (people live by the wall clock, across DST too) and
kept as UTC epoch seconds. Weekdays and weekends differ; commuters drive to work, home-daytime
owners run errands, car-sharing cars are booked from a hub. Days share fleet-wide conditions
(`Day`), so vehicles are correlated the way real fleets are.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import IntEnum
from typing import NamedTuple
from zoneinfo import ZoneInfo

import holidays
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


class Day(NamedTuple):
    """What a day is like for the whole fleet: people are not independent. A public holiday
    keeps commuters at home, a flu wave or a school break raises working from home, bad weather
    delays everyone and cancels outings."""

    free: bool            # weekend or public holiday
    home_share: float     # commuters not commuting today
    outing_scale: float   # how many outings people make, relative to usual
    delay_h: float        # fleet-wide shift of departure times


def fleet_days(days: list[date], country: str, seed: int) -> dict[date, Day]:
    rng = np.random.default_rng([seed, 99])
    public = holidays.country_holidays(country, years=sorted({d.year for d in days}))
    return {d: Day(free=d.weekday() >= 5 or d in public,
                   home_share=float(np.clip(rng.beta(2, 18), 0.0, 0.5)),
                   outing_scale=float(np.exp(rng.normal(0, 0.25))),
                   delay_h=float(rng.normal(0, 0.2))) for d in days}


def _outings(h: Habits, day: Day, rng: np.random.Generator) -> list[tuple[float, Place, float, float]]:
    """(departure hour, destination, hours there, round-trip km) for one local day."""
    weekend = day.free
    if h.archetype is Archetype.SHARED:
        # Bookings arrive through the day; fewer at night, more on weekends.
        out, t = [], (8.0 if weekend else 6.5) + rng.exponential(1.5)
        while t < 21.5:
            hours = float(np.clip(rng.lognormal(np.log(2.0), 0.6), 0.5, 10.0))
            out.append((t, Place.AWAY, hours, float(rng.uniform(8, 16) * hours)))
            t += hours + rng.exponential((2.0 if weekend else 2.8) / day.outing_scale)
        return out
    commutes = h.archetype in (Archetype.COMMUTER, Archetype.WORKPLACE_ONLY)
    if commutes and not weekend and rng.random() > day.home_share:  # ill, on leave, working from home
        leave = h.leave_hour + day.delay_h + rng.normal(0, 0.25)
        back = h.return_hour + day.delay_h + rng.normal(0, 0.5)
        out = [(leave, Place.WORK, back - leave - 2 * h.commute_min / 60, 2 * h.commute_km)]
        if rng.random() < 0.3 * day.outing_scale:
            out.append((rng.uniform(18.0, 20.5), Place.AWAY, rng.uniform(0.5, 2.0), rng.uniform(5, 25)))
        return out
    k = min(rng.poisson((1.1 if weekend else 1.0) * day.outing_scale), 3)
    out = []
    for dep in np.sort(rng.uniform(9.0, 18.0, size=k)) + day.delay_h:
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
    days = fleet_days([first + timedelta(days=d) for d in range((last - first).days + 1)],
                      fleet.zone.country, seed)
    plans: list[list[Movement]] = []
    for i, h in enumerate(fleet.habits):
        rng = np.random.default_rng([seed, i])
        base = base_place(h)
        plan: list[Movement] = []
        for day, kind in days.items():
            for hour, dest, stay_h, km in _outings(h, kind, rng):
                leg_s = int(h.commute_min * 60) if dest is Place.WORK else int(
                    60 * max(5.0, km / 2 / rng.uniform(30, 60) * 60))
                out_s = _epoch(day, hour, tz)
                back_s = out_s + leg_s + int(max(0.25, stay_h) * 3600)
                plan.append(Movement(out_s, leg_s, km / 2, dest))
                plan.append(Movement(back_s, leg_s, km / 2, base))
        plans.append(plan)
    return plans
