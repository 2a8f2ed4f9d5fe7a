"""Departure promises with the owner's target SoC, on the real PostgreSQL: the platform is held to
the target as far as plain charging could have reached it, and to the stay's peak without one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import orjson
import psycopg
import pytest

from flexfleet.settlement import Month
from flexfleet.settlement.statement import Promise, PromiseKind
from flexfleet.telemetry import FleetLimits, Limits, Reading, parse_reading
from services.ingest.worker import write_readings
from services.sessions import derive_and_store_sessions
from services.settlement.inputs import read_promises
from services.simulator.fleet import generate_fleet
from services.simulator.registry import write_fleet

pytestmark = pytest.mark.integration

MONTH = Month(date(2026, 10, 1), "SE3")
DAY = datetime(2026, 10, 5, tzinfo=UTC)
H = timedelta(hours=1)
# 63 kWh and 7 kW at 90 % efficiency: two hours of plain charging add 20 SoC points.
BATTERY_KWH, CHARGE_KW = 63.0, 7.0


@pytest.fixture
def car(db_url):
    """One car with a home charger, its pack and ratings set to round numbers."""
    fleet = generate_fleet(4, seed=3, zone="SE3")
    vehicle = next(v for v in fleet.vehicles if v.home_charger_id)
    with psycopg.connect(db_url) as conn:
        write_fleet(conn, fleet)
        conn.execute("UPDATE vehicles SET battery_kwh = %s, max_charge_kw = 11 WHERE vehicle_id = %s",
                     (BATTERY_KWH, vehicle.vehicle_id))
        conn.execute("UPDATE chargers SET max_charge_kw = %s WHERE charger_id = %s",
                     (CHARGE_KW, vehicle.home_charger_id))
    return db_url, vehicle.vehicle_id, vehicle.home_charger_id


def _stay(conn: psycopg.Connection, vehicle: str, charger: str, day: int, hours: float, declared_after: float,
          socs: list[tuple[float, float]], target: float | None, max_power_kw: float | None = CHARGE_KW,
          min_soc: float | None = None) -> None:
    """A stay from 16:00 UTC on DAY + `day`, with readings (hours after plug-in, SoC)."""
    plug_in = DAY + timedelta(days=day, hours=16)
    rows = [(vehicle, plug_in + h * H, True, charger, CHARGE_KW, soc) for h, soc in socs]
    conn.execute("SELECT flexfleet_ensure_telemetry_partitions(%s, %s)", (plug_in, plug_in + hours * H))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO telemetry (vehicle_id, ts, plugged_in, charger_id, power_kw, soc_pct) "
                        "VALUES (%s, %s, %s, %s, %s, %s)", rows)
    conn.execute("INSERT INTO charging_sessions (vehicle_id, charger_id, plug_in_at, plug_out_at, energy_kwh, "
                 "max_power_kw, departure_declared_at, min_soc, target_soc, source) "
                 "VALUES (%s, %s, %s, %s, 10, %s, %s, %s, %s, 'telemetry')",
                 (vehicle, charger, plug_in, plug_in + hours * H, max_power_kw, plug_in + declared_after * H,
                  min_soc, target))


def test_a_departure_is_judged_against_the_target_the_car_could_have_reached(car):
    url, v, c = car
    with psycopg.connect(url) as conn:
        # Overnight: the target was easily reachable. Made it; fell short of it.
        _stay(conn, v, c, 0, 14.5, 14, [(0, 40), (6, 70), (14, 80), (14.5, 81)], target=80)
        _stay(conn, v, c, 1, 14.5, 14, [(0, 40), (6, 70), (14, 60)], target=90)
        # Two hours from 20 %: only 40 % was reachable, so that is what the car is held to.
        _stay(conn, v, c, 2, 2.2, 2, [(0, 20), (2, 39.5)], target=80)
        _stay(conn, v, c, 3, 2.2, 2, [(0, 20), (2, 38.5)], target=80)
        # The platform never let it charge (max power 0): the pair's rating (7 kW) says what was reachable.
        _stay(conn, v, c, 4, 2.2, 2, [(0, 20), (2, 20)], target=80, max_power_kw=0.0)
        # Left an hour after plugging in, three hours before the declared departure: 30 % was reachable.
        _stay(conn, v, c, 5, 1, 4, [(0, 20), (1, 29.5)], target=80)
        # No target: held to the highest SoC of the stay, as before; the minimum is judged as before.
        _stay(conn, v, c, 6, 14.5, 14, [(0, 40), (4, 58), (14, 30)], target=None, min_soc=20)
        promises = read_promises(conn, MONTH, {v})

    departures = [p for p in promises if p.kind is PromiseKind.DEPARTURE]
    assert [(p.due, p.promised_soc_pct, p.reached_soc_pct, p.kept) for p in departures] == [
        (DAY + timedelta(days=1, hours=6), 80.0, 80.0, True),
        (DAY + timedelta(days=2, hours=6), 90.0, 60.0, False),
        (DAY + timedelta(days=2, hours=18), 40.0, 39.5, True),
        (DAY + timedelta(days=3, hours=18), 40.0, 38.5, False),
        (DAY + timedelta(days=4, hours=18), 40.0, 20.0, False),
        (DAY + timedelta(days=5, hours=20), 30.0, 29.5, True),
        (DAY + timedelta(days=7, hours=6), 58.0, 30.0, False),
    ]
    assert all(p.vehicle_id == v for p in promises)
    assert [p for p in promises if p.kind is PromiseKind.MIN_SOC] == [
        Promise(v, PromiseKind.MIN_SOC, DAY + timedelta(days=6, hours=30, minutes=30), 20.0, 30.0, True)]


def test_the_target_travels_from_telemetry_through_sessions_into_the_promise(car):
    """A declared target in telemetry.v1 readings, stored by the ingest writer, derived into the
    stay's session and judged by settlement."""
    url, v, c = car
    plug_in = DAY + timedelta(hours=16)
    departure = plug_in + 2 * H
    docs = [{"vehicle_id": v, "ts": (plug_in + k * 10 * timedelta(minutes=1)).isoformat(), "plugged_in": True,
             "charger_id": c, "power_kw": CHARGE_KW, "soc_pct": 20.0 + k * 1.5, "departure_at": departure.isoformat(),
             "min_soc_pct": 20.0, "target_soc_pct": 80.0} for k in range(13)]
    docs.append({"vehicle_id": v, "ts": (departure + 10 * timedelta(minutes=1)).isoformat(), "plugged_in": False,
                 "power_kw": 0.0, "soc_pct": 38.0})
    limits = FleetLimits({v: Limits(11.0, 11.0)}, {c: Limits(CHARGE_KW, 0.0)})
    readings = [parse_reading(orjson.dumps(d), limits, departure + H) for d in docs]
    assert all(isinstance(r, Reading) for r in readings)
    with psycopg.connect(url) as conn:
        with conn.transaction():
            assert write_readings(conn, readings) == len(readings)
        assert conn.execute("SELECT count(*) FROM telemetry WHERE target_soc_pct = 80").fetchone()[0] == 13
        derive_and_store_sessions(conn, DAY, DAY + timedelta(days=1))
        assert conn.execute("SELECT min_soc, target_soc, max_power_kw FROM charging_sessions").fetchall() == [
            (20.0, 80.0, CHARGE_KW)]
        (promise,) = [p for p in read_promises(conn, MONTH, {v}) if p.kind is PromiseKind.DEPARTURE]
    # 20 % at plug-in, two hours at 7 kW: 40 % reachable; 38 % at the declared departure is short of it.
    assert (promise.due, promise.promised_soc_pct, promise.reached_soc_pct, promise.kept) == (
        departure, 40.0, 38.0, False)
