"""The fleet registry model and the MTU time grid."""

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexfleet.domain import (
    MTU, BiddingZone, Charger, DomainError, Site, Vehicle, VehicleSpec, delivery_day_bounds,
    delivery_day_of, format_rfc3339, mtu_floor, mtus_of_delivery_day, pair_limits, parse_rfc3339,
    parse_vehicle_models, to_local,
)

MODELS = Path(__file__).resolve().parents[2] / "data" / "vehicles" / "models.csv"


def site(earthing="TN", export=11.0) -> Site:
    return Site("s1", "home", "SE3-N0001", "SE3", 17.0, export, earthing)


def spec(**kw) -> VehicleSpec:
    base = dict(make="VW", model="ID.4", battery_kwh=77, chemistry="NMC", max_ac_charge_kw=11,
                v2g_capable=True, max_discharge_kw=11, v2g_current="DC")
    return VehicleSpec(**(base | kw))


# -- registry values --------------------------------------------------------------------------
def test_errors_name_the_field():
    with pytest.raises(DomainError) as e:
        spec(battery_kwh=-5)
    assert e.value.field == "battery_kwh" and "above 0" in e.value.reason
    with pytest.raises(DomainError, match="bidding_zone: unknown bidding zone 'SE9'"):
        Site("s1", "home", "n1", "SE9", 11, 0)
    with pytest.raises(DomainError, match="kind: must be one of home, workplace"):
        Site("s1", "garage", "n1", "SE3", 11, 0)
    with pytest.raises(DomainError, match="vehicle_id"):
        Vehicle("v 1", "o1", spec())


def test_v2g_flags_must_agree():
    with pytest.raises(DomainError, match="max_discharge_kw: must be 0 for a vehicle that is not V2G"):
        spec(v2g_capable=False)
    with pytest.raises(DomainError, match="v2g_current"):
        spec(v2g_current=None)
    with pytest.raises(DomainError, match="max_discharge_kw: must be 0 for a charger"):
        Charger("c1", site(), "AC", False, 11, 11)


@pytest.mark.parametrize(("car", "charger", "earthing", "discharge", "reason"), [
    (dict(), ("DC", True, 11, 11), "TN", 11, None),
    (dict(), ("DC", True, 11, 11), "IT", 11, None),           # DC export is fine on IT earthing
    (dict(), ("AC", True, 11, 11), "TN", 0, "discharges over DC, charger is AC"),
    (dict(v2g_current="AC"), ("AC", True, 11, 11), "IT", 0, "AC export is not allowed on IT"),
    (dict(v2g_current="AC"), ("AC", True, 11, 7.4), "TN", 7.4, None),
    (dict(v2g_capable=False, max_discharge_kw=0, v2g_current=None), ("DC", True, 11, 11), "TN", 0,
     "is not V2G capable"),
    (dict(), ("AC", False, 22, 0), "TN", 0, "charger is not bidirectional"),
])
def test_pair_limits(car, charger, earthing, discharge, reason):
    current, bidi, charge_kw, discharge_kw = charger
    limits = pair_limits(spec(**car), Charger("c1", site(earthing), current, bidi, charge_kw, discharge_kw))
    assert limits.max_charge_kw == min(11, charge_kw)
    assert limits.max_discharge_kw == discharge
    assert (limits.discharge_block_reason is None) == (reason is None)
    if reason:
        assert reason in limits.discharge_block_reason


def test_site_export_limit_bounds_discharge():
    c = Charger("c1", site(export=5.0), "DC", True, 11, 11)
    assert pair_limits(spec(), c).max_discharge_kw == 5.0
    c = Charger("c1", site(export=0.0), "DC", True, 11, 11)
    assert pair_limits(spec(), c).discharge_block_reason == "site may not export"


# -- the vehicle model table ------------------------------------------------------------------
def test_the_shipped_model_table_parses_and_cites_sources():
    models = parse_vehicle_models(MODELS.read_text())
    assert len(models) >= 20
    assert all(m.source for m in models)
    v2g = [m for m in models if m.spec.v2g_capable]
    assert {m.spec.v2g_current.value for m in v2g} == {"AC", "DC"}
    assert any(m.spec.oem_discharge_cap_kwh_per_year for m in v2g)
    assert {m.spec.chemistry.value for m in models} >= {"NMC", "LFP", "NCA"}


def test_a_bad_model_row_names_line_and_column():
    text = MODELS.read_text().splitlines()
    header, row = text[0], text[1].replace(",39,NMC,", ",39,LiPo,", 1)
    with pytest.raises(DomainError) as e:
        parse_vehicle_models("\n".join([header, text[2], row]))
    assert e.value.field == "line 3: chemistry" and "NMC, LFP, NCA" in e.value.reason
    with pytest.raises(DomainError, match="line 2: usable_kwh"):
        parse_vehicle_models("\n".join([header, text[1].replace(",39,NMC,", ",,NMC,", 1)]))
    with pytest.raises(DomainError, match="header: missing column"):
        parse_vehicle_models("make,model\nA,B\n")


# -- time grid --------------------------------------------------------------------------------
def test_delivery_days_follow_local_time_across_dst():
    assert len(mtus_of_delivery_day(date(2026, 3, 29), "SE3")) == 92    # spring forward
    assert len(mtus_of_delivery_day(date(2026, 10, 25), "SE3")) == 100  # fall back
    assert len(mtus_of_delivery_day(date(2026, 11, 2), "FI")) == 96
    start, end = delivery_day_bounds(date(2026, 11, 2), BiddingZone.SE3)
    assert start == datetime(2026, 11, 1, 23, tzinfo=UTC) and end - start == timedelta(days=1)
    # Helsinki is an hour ahead of Stockholm: the same UTC instant can be another delivery day.
    ts = datetime(2026, 11, 2, 22, 30, tzinfo=UTC)
    assert delivery_day_of(ts, "SE3") == date(2026, 11, 2)
    assert delivery_day_of(ts, "FI") == date(2026, 11, 3)


def test_naive_datetimes_are_refused():
    with pytest.raises(DomainError, match="no UTC offset"):
        mtu_floor(datetime(2026, 11, 2, 12))
    with pytest.raises(DomainError, match="ts:"):
        parse_rfc3339("2026-11-02T12:00:00")


def test_rfc3339_round_trip():
    ts = parse_rfc3339("2026-11-03T07:30:00+01:00")
    assert format_rfc3339(ts) == "2026-11-03T07:30:00+01:00"
    assert format_rfc3339(ts.astimezone(UTC)) == "2026-11-03T06:30:00Z"
    assert to_local(ts, "NO1").hour == 7


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), BiddingZone.FI.tzinfo])))
def test_mtu_floor_is_the_start_of_the_quarter_hour(ts):
    floor = mtu_floor(ts)
    assert floor.tzinfo is UTC
    assert floor <= ts < floor + MTU
    assert floor.minute % 15 == 0 and floor.second == 0 and floor.microsecond == 0
    assert mtu_floor(floor) == floor
