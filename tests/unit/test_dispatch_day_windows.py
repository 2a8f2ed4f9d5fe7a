"""The pure parts of a simulated dispatch day (services/dispatcher/day.py): which hours a short
run simulates, and the disturbance each FCR obligation is tested with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from flexfleet.domain.errors import DomainError
from flexfleet.markets import default_catalogue
from services.bidder.store import Obligation
from services.dispatcher.day import Window, busiest_hours, fcr_disturbances, windows_of

T = datetime(2026, 12, 1, tzinfo=UTC)


def obligation(product: str, hour: int, mw: float, cars: int, direction: str = "up") -> Obligation:
    start = T + timedelta(hours=hour)
    return Obligation(f"{product}@{hour}", f"{product}@{hour}", "SE3", product, direction, None, start,
                      start + timedelta(hours=1), Decimal(str(mw)), Decimal("5"),
                      tuple(f"v{i}" for i in range(cars)), (1.0,) * cars)


def test_busiest_hours_fit_the_budget_and_keep_a_local_order_hour() -> None:
    day = [obligation("FCR-D-up/SE_DK2", 2, 1.3, 180), obligation("FCR-D-down/SE_DK2", 2, 2.1, 490, "down"),
           obligation("FCR-D-up/SE_DK2", 16, 0.6, 180), obligation("FCR-D-up/SE_DK2", 17, 0.5, 140),
           obligation("local-flex/NODES", 17, 0.01, 7), obligation("FCR-D-up/SE_DK2", 18, 0.4, 100)]
    # 02:00 is the busiest but lists 670 cars; the local order's hour goes first, then what fits.
    assert busiest_hours(day, 300) == [Window(T + timedelta(hours=17), T + timedelta(hours=19))]
    assert busiest_hours(day, 700) == [Window(T + timedelta(hours=16), T + timedelta(hours=19))]
    assert busiest_hours(day, 900) == [Window(T + timedelta(hours=2), T + timedelta(hours=3)),
                                       Window(T + timedelta(hours=17), T + timedelta(hours=18))]
    assert busiest_hours(day, 50) == []
    assert windows_of(day) == [Window(T + timedelta(hours=2), T + timedelta(hours=3)),
                               Window(T + timedelta(hours=16), T + timedelta(hours=19))]


def test_each_fcr_obligation_meets_one_disturbance_in_its_direction_inside_its_mtu() -> None:
    day = [obligation("FCR-D-up/SE_DK2", 2, 1.0, 10), obligation("FCR-D-down/SE_DK2", 2, 1.0, 10, "down"),
           obligation("FCR-D-up/SE_DK2", 5, 1.0, 10), obligation("local-flex/NODES", 17, 0.01, 3)]
    events = fcr_disturbances(day, default_catalogue(), seed=3)
    assert [(e.start.hour, e.direction) for e in events] == [(2, "under"), (2, "over"), (5, "under")]
    up, down = events[0], events[1]
    assert 49.4 <= up.extreme_hz <= 49.8 and 50.2 <= down.extreme_hz <= 50.5
    # Up early in the MTU, down late: the two of one hour are assessed apart.
    assert up.start - T - timedelta(hours=2) < timedelta(minutes=25) < down.start - T - timedelta(hours=2)
    assert fcr_disturbances(day, default_catalogue(), seed=3) == events      # seeded


def test_a_window_must_be_aware_and_forward() -> None:
    with pytest.raises(DomainError, match="windows.end"):
        Window(T, T)
    with pytest.raises(DomainError, match="windows.start"):
        Window(datetime(2026, 12, 1), T)
