"""Delivery verification against the real PostgreSQL and a real Kafka-protocol broker: measured
power and frequency are stored, an FCR-D and a local flexibility obligation are verified with a
broken site, the results are stored once (a rerun adds nothing), and each is published on
deliveries.v1 as stored, also across a broker failure and a late correction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pandas as pd
import psycopg
import pytest
from kafka_support import read_topic
from typer.testing import CliRunner

from services.dispatcher.cli_deliveries import app
from services.dispatcher.deliveries import (delivery_messages, load_measurements, make_producer, publish_pending,
                                            verify_deliveries, write_frequency, write_measurements)

pytestmark = pytest.mark.integration

SCHEMA = json.loads((Path(__file__).parents[2] / "docs/schemas/deliveries.v1.json").read_text())
DAY = datetime(2026, 11, 20, tzinfo=UTC)                      # a Friday
FCR_AT = DAY + timedelta(hours=10)
FLEX_AT = DAY + timedelta(hours=16)                           # 17:00 in Stockholm
EVENT = FCR_AT + timedelta(minutes=20)
SITES = ("home-0", "home-1", "home-2")                        # home-2 is broken: it never responds
VEHICLES = [f"ev-{s}-{i}" for s in range(3) for i in range(2)]
KW = 4.0


def register(conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO owners (owner_id, display_name, currency) VALUES ('owner', 'Owner', 'EUR')")
    for s, site in enumerate(SITES):
        conn.execute("INSERT INTO sites (site_id, kind, grid_node, bidding_zone, timezone, max_import_kw, "
                     "max_export_kw) VALUES (%s, 'home', 'node-A', 'SE3', 'Europe/Stockholm', 17, 11)", (site,))
        conn.execute("INSERT INTO chargers (charger_id, site_id, current_type, bidirectional, max_charge_kw, "
                     "max_discharge_kw) VALUES (%s, %s, 'AC', false, 11, 0)", (f"ch-{s}", site))
    for v in VEHICLES:
        conn.execute("INSERT INTO vehicles (vehicle_id, owner_id, make, model, battery_kwh, chemistry, max_charge_kw, "
                     "max_discharge_kw, v2g_capable, home_charger_id) VALUES (%s, 'owner', 'Make', 'Model', 60, 'NMC', "
                     "11, 0, false, %s)", (v, f"ch-{v.split('-')[1]}"))
    plan = conn.execute("INSERT INTO bid_plans (zone, delivery_day, auction, planned_at, solver_status, solve_seconds, "
                        "revenue_eur, wear_eur, penalty_eur) VALUES ('SE3', %s, 'D-1', %s, 'optimal', 1, 0, 0, 0) "
                        "RETURNING plan_id::text", (DAY.date(), DAY - timedelta(days=1))).fetchone()[0]
    for n, (product, start, node) in enumerate((("FCR-D-up/SE_DK2", FCR_AT, None),
                                                ("local-flex/NODES", FLEX_AT, "node-A"))):
        bid = f"{plan}/{n}"
        conn.execute("INSERT INTO bids (bid_id, plan_id, product_id, market_key, auction, direction, grid_node, "
                     "mtu_start, mtu_minutes, volume_mw, price_eur_per_mw_h, expected_value_eur, p90_kw_backing, "
                     "shortfall_probability) VALUES (%s, %s, %s, %s, 'D-1', 'up', %s, %s, 60, 0.024, 10, 0, 24, 0.1)",
                     (bid, plan, product, product, node, start))
        conn.execute("INSERT INTO obligations (obligation_id, bid_id, zone, product_id, direction, grid_node, "
                     "mtu_start, mtu_end, volume_mw, price_eur_per_mw_h) "
                     "VALUES (%s, %s, 'SE3', %s, 'up', %s, %s, %s, 0.024, 10)",
                     (bid, bid, product, node, start, start + timedelta(hours=1)))
        conn.cursor().executemany("INSERT INTO obligation_vehicles (obligation_id, vehicle_id, kw) VALUES (%s, %s, %s)",
                                  [(bid, v, KW) for v in VEHICLES])


def broken(v: str) -> bool:
    return v.startswith("ev-2-")


def fcr_hour() -> tuple[pd.DataFrame, pd.Series]:
    """1 Hz: a step to 49.0 Hz for 5 minutes; each car charges 4 kW (its declared schedule) and
    stops charging while the frequency asks, except on the broken site."""
    secs = np.arange(-180, 3600 + 180)
    ts = pd.DatetimeIndex([FCR_AT + timedelta(seconds=int(s)) for s in secs])
    asked = (ts >= EVENT) & (ts < EVENT + timedelta(minutes=5))
    frequency = pd.Series(np.where(asked, 49.0, 50.0), index=ts)
    frame = pd.concat([pd.DataFrame({"vehicle_id": v, "ts": ts, "power_kw": np.where(asked & (not broken(v)), 0.0, KW),
                                     "baseline_kw": KW, "plugged_in": True, "charger_id": f"ch-{v.split('-')[1]}",
                                     "ven_name": f"ven-{v.split('-')[1]}", "report_id": "r-fcr"}) for v in VEHICLES])
    return frame, frequency


def flex_hour() -> pd.DataFrame:
    """One reading a minute: 2 kW instead of the usual 6, except on the broken site."""
    ts = pd.date_range(FLEX_AT - timedelta(minutes=2), FLEX_AT + timedelta(hours=1), freq="1min")
    return pd.concat([pd.DataFrame({"vehicle_id": v, "ts": ts, "power_kw": 6.0 if broken(v) else 2.0,
                                    "plugged_in": True}) for v in VEHICLES])


def history(conn: psycopg.Connection) -> None:
    """Telemetry of the 5 working days before: 6 kW from 16:00 to 17:00 UTC, 1 kW around it."""
    rows = []
    for day in (13, 16, 17, 18, 19):
        ts = pd.date_range(datetime(2026, 11, day, 15, tzinfo=UTC), datetime(2026, 11, day, 18, tzinfo=UTC),
                           freq="1min", inclusive="left")
        for v in VEHICLES:
            rows += [(v, t.to_pydatetime(), True, 6.0 if t.hour == 16 else 1.0) for t in ts]
    conn.execute("SELECT flexfleet_ensure_telemetry_partitions(%s, %s)", (DAY - timedelta(days=8), DAY))
    with conn.cursor() as cur, cur.copy("COPY telemetry (vehicle_id, ts, plugged_in, power_kw) FROM STDIN") as copy:
        for r in rows:
            copy.write_row(r)



class _Refused:
    """A broker that never acknowledges."""

    class _Future:
        def get(self, timeout=None):
            raise TimeoutError("no acknowledgement")

    def send(self, *args, **kwargs):
        return self._Future()

    def flush(self, timeout=None):
        pass


def test_verify_store_and_publish(db_url, kafka_server, topic_factory) -> None:
    topic = topic_factory()
    fcr, frequency = fcr_hour()
    with psycopg.connect(db_url, autocommit=True) as conn:
        register(conn)
        history(conn)
        assert write_measurements(conn, fcr) == len(fcr)
        assert write_measurements(conn, flex_hour()) == len(flex_hour())
        assert write_measurements(conn, fcr) == 0                      # a resent report adds nothing
        assert write_frequency(conn, frequency, source="test") == len(frequency)
        # Native path (no TimescaleDB here): every reading in its day's partition, none in the default.
        assert dict(conn.execute("SELECT tableoid::regclass::text, count(*) FROM measured_power GROUP BY 1")
                    .fetchall()) == {"measured_power_p20261120": len(fcr) + len(flex_hour())}
        stored = load_measurements(conn, ["ev-0-0"], EVENT, EVENT + timedelta(seconds=3))
        assert stored["power_kw"].tolist() == [0.0] * 3 and stored["baseline_kw"].tolist() == [KW] * 3

        result = verify_deliveries(conn, DAY, DAY + timedelta(days=1), now=DAY + timedelta(days=1))
        assert result.skipped == [] and (result.stored, result.unchanged) == (2, 0)
        fcr_d, flex_d = sorted(result.deliveries, key=lambda d: d.mtu_start)
        # FCR-D: capacity held all hour; the response is two thirds of what was asked.
        assert fcr_d.capacity_share == 1 and fcr_d.response_share == pytest.approx((2 / 3) / 0.95)
        assert fcr_d.activations[0].response_time_s is None and fcr_d.response_time_s is None   # never 86 %
        assert {s.site_id: s.response_time_s for s in fcr_d.sites} == {"home-0": 0, "home-1": 0, "home-2": None}
        # Local flexibility against the rolling baseline: 4 kW of 4 from two sites, nothing from one.
        assert flex_d.baseline_method.value == "rolling_5_working_days"
        assert flex_d.delivered_share == pytest.approx(2 / 3)
        for d in (fcr_d, flex_d):
            site = {s.site_id: s for s in d.sites}
            assert d.shortfall_mw > 0 and site["home-2"].shortfall_mw == pytest.approx(d.shortfall_mw)
            assert site["home-0"].shortfall_mw == 0 == site["home-1"].shortfall_mw
            assert site["home-0"].delivered_share == 1 and site["home-2"].delivered_share == 0

        again = verify_deliveries(conn, DAY, DAY + timedelta(days=1), now=DAY + timedelta(days=2))
        assert (again.stored, again.unchanged) == (0, 2)
        assert conn.execute("SELECT count(*), max(revision) FROM deliveries").fetchone() == (2, 1)
        assert conn.execute("SELECT count(*) FROM delivery_sites").fetchone()[0] == 6

        # The broker does not answer: nothing is marked published, nothing lost.
        with pytest.raises(TimeoutError):
            publish_pending(conn, _Refused(), topic, timeout_s=1)
        assert conn.execute("SELECT count(*) FROM deliveries WHERE published").fetchone()[0] == 0

        producer = make_producer(kafka_server.bootstrap_servers)
        try:
            assert publish_pending(conn, producer, topic) == 2
            assert publish_pending(conn, producer, topic) == 0
            records = read_topic(kafka_server.bootstrap_servers, topic, 2)
            assert len(records) == 2
            keys = conn.execute("SELECT obligation_id, mtu_start FROM deliveries ORDER BY mtu_start").fetchall()
            from_db = delivery_messages(conn, keys)
            got = sorted((json.loads(r.value) for r in records), key=lambda d: d["mtu_start"])
            validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
            for message, record in zip(got, sorted(records, key=lambda r: json.loads(r.value)["mtu_start"])):
                validator.validate(message)
                assert record.key.decode() == message["obligation_id"]
            assert got == json.loads(orjson.dumps(from_db))
            row = conn.execute("SELECT shortfall_mw, delivered_share FROM deliveries WHERE product_id = "
                               "'local-flex/NODES'").fetchone()
            assert (got[1]["shortfall_mw"], got[1]["delivered_share"]) == row
            assert {s["site_id"]: s["shortfall_mw"] > 0 for s in got[1]["sites"]} == {
                "home-0": False, "home-1": False, "home-2": True}

            # Late reports from the broken site: it did reduce for the second half hour.
            late = flex_hour()
            late = late[late.vehicle_id.str.startswith("ev-2-") & (late.ts >= FLEX_AT + timedelta(minutes=30))]
            late = late.assign(ts=late.ts + timedelta(seconds=30), power_kw=2.0)
            assert write_measurements(conn, late) == len(late)
            third = verify_deliveries(conn, DAY, DAY + timedelta(days=1), now=DAY + timedelta(days=3))
            assert (third.stored, third.unchanged) == (1, 1)
            assert publish_pending(conn, producer, topic) == 1
        finally:
            producer.close(timeout=5)
        records = read_topic(kafka_server.bootstrap_servers, topic, 3)
        latest = [json.loads(r.value) for r in records if json.loads(r.value)["revision"] == 2]
        assert len(records) == 3 and len(latest) == 1 and latest[0]["product_id"] == "local-flex/NODES"
        assert conn.execute("SELECT count(*), max(revision) FROM deliveries").fetchone() == (2, 2)
        assert conn.execute("SELECT count(*) FROM delivery_sites").fetchone()[0] == 6


def test_cli_verifies_a_day_and_reports_the_broken_site(db_url, kafka_server, topic_factory) -> None:
    topic = topic_factory()
    fcr, frequency = fcr_hour()
    with psycopg.connect(db_url, autocommit=True) as conn:
        register(conn)
        history(conn)
        write_measurements(conn, fcr)
        write_measurements(conn, flex_hour())
        write_frequency(conn, frequency, source="test")
    env = {"DATABASE_URL": db_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_server.bootstrap_servers}
    out = CliRunner().invoke(app, ["verify", "--day", "2026-11-20", "--topic", topic], env=env)
    assert out.exit_code == 0, out.output
    assert "shortfall" in out.output and "site home-2" in out.output and "published 2" in out.output
    assert len(read_topic(kafka_server.bootstrap_servers, topic, 2)) == 2
