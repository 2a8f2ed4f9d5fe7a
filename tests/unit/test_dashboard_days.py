"""A zone's delivery day for the dashboard: local midnight to local midnight, 23 or 25 hours on the
days the clocks change, and "today" by the zone's clock, not UTC's."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from flexfleet.domain.zones import BiddingZone
from services.api.dashboard_queries import local_day, today


@pytest.mark.parametrize(("day", "hours", "start"), [
    (date(2026, 3, 29), 23, datetime(2026, 3, 28, 23, tzinfo=UTC)),     # CET -> CEST
    (date(2026, 10, 25), 25, datetime(2026, 10, 24, 22, tzinfo=UTC)),   # CEST -> CET
    (date(2026, 11, 24), 24, datetime(2026, 11, 23, 23, tzinfo=UTC)),
])
def test_a_stockholm_day_runs_from_local_midnight_and_lasts_23_24_or_25_hours(day, hours, start):
    d = local_day(BiddingZone.SE3, day)
    assert d.start == start and d.hours == hours and d.end - d.start == timedelta(hours=hours)
    assert d.shifted(1).start == d.end and d.shifted(-1).end == d.start
    assert d.label == f"{day.isoformat()} SE3 (Europe/Stockholm)"


def test_today_is_the_zones_local_day_not_the_utc_day():
    late = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)                  # 00:30 on the 25th in Stockholm
    assert today(BiddingZone.SE3, late).day == date(2026, 11, 25)
    assert today(BiddingZone.FI, datetime(2026, 11, 24, 22, 30, tzinfo=UTC)).day == date(2026, 11, 25)
    assert today(BiddingZone.NO1, datetime(2026, 11, 24, 22, 30, tzinfo=UTC)).day == date(2026, 11, 24)
