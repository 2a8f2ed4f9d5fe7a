"""The dashboard's alert list stays readable when many chargers go quiet at once."""

from datetime import UTC, datetime, timedelta

from flexfleet.domain.zones import BiddingZone
from services.api import dashboard_queries as q
from services.api.dashboard import LISTED_CHARGERS, OFFLINE_LIST, Live
from services.api.dashboard_lag import GroupLag

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _live(offline: int, last_reading: datetime | None) -> Live:
    chargers = [q.OfflineCharger(f"c{i:03d}", "s1", NOW - timedelta(minutes=40), (f"v{i:03d}",)) for i in range(offline)]
    fleet = q.FleetNow(NOW, 500, 100, 400, 300, 60, ())
    lag = GroupLag("k:9092", "telemetry.v1", "ingest", 5000, NOW)          # reachable, nothing behind
    return Live(fleet, chargers, q.DlqGrowth(0, 0), [], q.today(BiddingZone.SE3, NOW), q.ResponseTimes(()), lag,
                last_reading)


def test_a_few_offline_chargers_are_listed_one_by_one() -> None:
    alerts = _live(3, NOW - timedelta(minutes=1)).alerts
    assert [a.title for a in alerts] == [f"Charger c{i:03d} offline" for i in range(3)]
    assert alerts[0].href == "/ops/alerts/charger/c000"


def test_many_offline_chargers_fold_into_one_line_leading_to_the_list() -> None:
    alerts = _live(LISTED_CHARGERS + 25, NOW - timedelta(minutes=1)).alerts
    assert len(alerts) == LISTED_CHARGERS + 1
    assert alerts[-1].title == "25 more chargers offline" and alerts[-1].href == OFFLINE_LIST


def test_a_silent_fleet_is_one_alert_about_the_stream_not_hundreds_about_chargers() -> None:
    for last in (NOW - q.OFFLINE_AFTER - timedelta(minutes=1), None):
        (alert,) = _live(405, last).alerts
        assert alert.title == "Telemetry stopped" and "405 chargers" in alert.text and alert.href == OFFLINE_LIST
