"""The forecaster service against the real PostgreSQL and a real Kafka-protocol broker: it trains,
issues on schedule and on new sessions, stores every forecast so that it replays exactly, and
publishes each one once on forecasts.v1, also across a broker outage."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import psycopg
import pytest
from kafka_support import read_topic
from typer.testing import CliRunner

from flexfleet.domain import DomainError
from flexfleet.domain.zones import BiddingZone
from flexfleet.forecast.pipeline import FleetForecast
from services.cli import app
from services.forecaster.service import ForecasterService, ServiceConfig, forecast_difference, replay
from services.forecaster.store import (forecast_info, forecast_message, latest_forecast, load_forecast,
                                       prune_vehicle_rows, save_forecast)
from services.runtime.embedded import EmbeddedKafka, EmbeddedPostgres
from services.runtime.migrate import migrate
from services.sessions import import_sessions_csv
from services.simulator.fleet import generate_fleet
from services.simulator.registry import write_fleet
from services.simulator.telemetry import simulate_sessions

pytestmark = pytest.mark.integration
runner = CliRunner()

SCHEMA = json.loads((Path(__file__).parents[2] / "docs/schemas/forecasts.v1.json").read_text())
END = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 10, 7, tzinfo=UTC)   # first pass; issues for 10:00
FAST = {"rounds": 30, "rows_per_issue": 5000, "quantile_rounds": 30, "quantile_rows_per_issue": 5000}


def validate(message: bytes) -> dict:
    doc = json.loads(message)
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)
    return doc



def import_sessions(db_url: str, sessions: pd.DataFrame, path: Path) -> int:
    """Through the CSV import of `flexfleet import sessions`."""
    sessions.drop(columns="complete").to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ",
                                             float_format="%.3f")
    with psycopg.connect(db_url) as conn:
        result = import_sessions_csv(conn, path)
    assert not result.errors, result.errors[:3]
    return result.inserted


def count(db_url: str, sql: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql).fetchone()[0]


def test_the_service_trains_issues_stores_publishes_and_replays(db_url, tmp_path, monkeypatch):
    fleet = generate_fleet(40, seed=5)
    with psycopg.connect(db_url) as conn:
        write_fleet(conn, fleet)
    sessions = simulate_sessions(fleet, END - timedelta(weeks=3), END, cadence_s=300, seed=5)
    sessions = sessions[sessions["complete"]]
    ended = lambda lo, hi: sessions[(sessions["plug_out_at"] > lo) & (sessions["plug_out_at"] <= hi)]  # noqa: E731
    assert import_sessions(db_url, ended(END - timedelta(weeks=4), NOW), tmp_path / "a.csv") > 500

    broker = EmbeddedKafka(tmp_path / "kafka").start()
    config = ServiceConfig(db_url, broker.bootstrap_servers, zone=BiddingZone.SE3, history=timedelta(days=18),
                           fit_options=FAST, kafka_timeout_s=3)
    service = ForecasterService(config)
    try:
        # First pass: trains, issues, stores, publishes.
        first = service.run_once(NOW)
        assert first.trained and first.forecast_id and first.reason == "first forecast"
        assert first.published == 1 and first.publish_error is None
        assert first.next_due == datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
        assert count(db_url, "SELECT count(*) FROM forecasters") == 1
        assert count(db_url, "SELECT count(*) FROM forecasts WHERE published") == 1
        records = read_topic(broker.bootstrap_servers, "forecasts.v1", 1)
        assert len(records) == 1 and records[0].key == b"SE3"
        doc = validate(records[0].value)
        assert doc["forecast_id"] == first.forecast_id and doc["issued_at"] == "2026-11-20T10:00:00Z"
        assert doc["forecaster_version"] == first.trained
        assert len(doc["portfolio"]) == count(db_url, "SELECT count(*) FROM forecast_portfolio")

        # A later MTU, nothing new and not yet 11:00: nothing happens.
        idle = service.run_once(NOW + timedelta(minutes=20))
        assert (idle.trained, idle.forecast_id, idle.published) == (None, None, 0)
        assert count(db_url, "SELECT count(*) FROM forecasts") == 1

        # New sessions arrive: a forecast at the next MTU, with the same forecaster.
        assert import_sessions(db_url, ended(NOW, NOW + timedelta(hours=3)), tmp_path / "b.csv") > 0
        fresh = service.run_once(NOW + timedelta(minutes=25))
        assert fresh.trained is None and fresh.forecast_id and fresh.reason == "new sessions"
        assert fresh.published == 1
        with psycopg.connect(db_url) as conn:
            info = forecast_info(conn, fresh.forecast_id)
            assert latest_forecast(conn, "SE3") == info
            assert info.issued_at == datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
            assert info.forecaster_version == first.trained and info.published
            assert info.sessions_known_at > forecast_info(conn, first.forecast_id).sessions_known_at

            # Replay: the stored forecaster and the sessions known then give the same numbers,
            # and what was stored is what was issued, dtypes and all.
            again = replay(conn, fresh.forecast_id, db_url)
            assert again.identical, again.difference
            stored = load_forecast(conn, fresh.forecast_id)
            pd.testing.assert_frame_equal(stored.portfolio, again.forecast.portfolio, check_exact=True)
            pd.testing.assert_frame_equal(stored.vehicles, again.forecast.vehicles, check_exact=True)
            assert len(stored.vehicles) == 40 * 192

            # Saving the same issue again stores nothing.
            rows = count(db_url, "SELECT count(*) FROM forecast_vehicles")
            assert save_forecast(conn, again.forecast, info.sessions_known_at) == (fresh.forecast_id, False)
            assert count(db_url, "SELECT count(*) FROM forecast_vehicles") == rows
            assert count(db_url, "SELECT count(*) FROM forecasts") == 2

        # The commands.
        monkeypatch.setenv("DATABASE_URL", db_url)
        shown = runner.invoke(app, ["forecast", "show", "--hours", "2"])
        assert shown.exit_code == 0, shown.output
        assert fresh.forecast_id in shown.output and "up P50" in shown.output
        assert "Fri 11:30" in shown.output and "Fri 13:30" not in shown.output  # local time, 2 hours
        same = runner.invoke(app, ["forecast", "replay", fresh.forecast_id])
        assert same.exit_code == 0 and same.output.startswith("identical: "), same.output
        for bad, message in ((str(uuid.uuid4()), "is stored"), ("nope", "forecast_id: 'nope' is not a UUID")):
            result = runner.invoke(app, ["forecast", "replay", bad])
            assert result.exit_code == 2 and message in result.output, result.output
        with psycopg.connect(db_url) as conn:  # tamper with the record: replay notices
            conn.execute("UPDATE forecast_portfolio SET q50 = q50 + 0.5 WHERE forecast_id = %s AND row_no = 3",
                         (fresh.forecast_id,))
        differs = runner.invoke(app, ["forecast", "replay", fresh.forecast_id])
        assert differs.exit_code == 1, differs.output
        assert "largest difference: 0.5 in portfolio.q50: row 3" in differs.output

        # Old forecasts keep their portfolio only; the portfolio still replays exactly.
        with psycopg.connect(db_url, autocommit=True) as conn:
            assert prune_vehicle_rows(conn, "SE3", info.issued_at) == 40 * 192
            assert count(db_url, f"SELECT count(*) FROM forecast_vehicles WHERE forecast_id = '{first.forecast_id}'") == 0
            assert count(db_url, f"SELECT count(*) FROM forecast_vehicles WHERE forecast_id = '{fresh.forecast_id}'") > 0
            pruned = replay(conn, first.forecast_id, db_url)
            assert pruned.identical and pruned.vehicles_pruned, pruned.difference
            assert len(load_forecast(conn, first.forecast_id).portfolio) == 2 * 4 * 192

        # The broker goes away: the next forecast is stored and waits in the outbox ...
        assert len(read_topic(broker.bootstrap_servers, "forecasts.v1", 2)) == 2
        broker.stop()
        assert import_sessions(db_url, ended(NOW + timedelta(hours=3), NOW + timedelta(hours=6)), tmp_path / "c.csv")
        stranded = service.run_once(NOW + timedelta(minutes=40))
        assert stranded.forecast_id and stranded.published == 0 and stranded.publish_error
        assert count(db_url, "SELECT count(*) FROM forecasts WHERE NOT published") == 1
        # ... and is published once when it is back (a restarted Tansu starts empty).
        broker = EmbeddedKafka(tmp_path / "kafka", port=broker.port).start()
        relayed = service.run_once(NOW + timedelta(minutes=42))
        assert (relayed.forecast_id, relayed.published, relayed.publish_error) == (None, 1, None)
        assert service.run_once(NOW + timedelta(minutes=43)).published == 0
        records = read_topic(broker.bootstrap_servers, "forecasts.v1", 1)
        assert [validate(r.value)["forecast_id"] for r in records] == [stranded.forecast_id]
        assert count(db_url, "SELECT count(*) FROM forecasts WHERE NOT published") == 0
    finally:
        service.close()
        broker.stop()


def synthetic_forecast(issued_at: datetime, version: str, vehicles: int = 30) -> FleetForecast:
    """A forecast with every column of the contract, NaN and NaT included."""
    rng = np.random.default_rng(1)
    targets = pd.date_range(issued_at, periods=192, freq="15min")
    portfolio = pd.concat([pd.DataFrame({"direction": d, "endurance_min": e, "target_start": targets})
                           for d in ("up", "down") for e in (0, 20, 60, 120)], ignore_index=True)
    for q in ("q05", "q10", "q25", "q50", "q75", "q90", "q95", "p90_kw", "p90_kwh"):
        portfolio[q] = rng.random(len(portfolio)) * 500
    ids = np.array([f"v{i:06d}" for i in range(vehicles)], dtype=object)
    per = pd.DataFrame({"vehicle_id": np.repeat(ids, 192), "target_start": np.tile(targets, vehicles)})
    for c in ("p_up", "p_down", "capacity_up_kw", "capacity_down_kw", "soc_p10", "soc_p50", "soc_p90"):
        per[c] = rng.random(len(per))
    per.loc[::7, ["soc_p10", "soc_p50", "soc_p90"]] = np.nan
    per["departure_p10_at"] = per["target_start"] + pd.to_timedelta(rng.integers(0, 10**6, len(per)), unit="s")
    per.loc[::5, "departure_p10_at"] = pd.NaT
    per["up_20_kw"] = -0.0
    per["down_20_kw"] = rng.random(len(per)) * 11
    per["vehicle_id"] = per["vehicle_id"].astype("str")
    portfolio["direction"] = portfolio["direction"].astype("str")
    return FleetForecast(issued_at, BiddingZone.SE3, version, portfolio, per)


def test_a_stored_forecast_loads_exactly_as_issued(db_url):
    forecast = synthetic_forecast(datetime(2026, 11, 20, 10, 0, tzinfo=UTC), "ff-000000000001")
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(DomainError, match="forecaster_version: 'ff-000000000001' is not stored"):
            save_forecast(conn, forecast, None)
        conn.execute("INSERT INTO forecasters (version, zone, trained_until, body) "
                     "VALUES ('ff-000000000001', 'SE3', '2026-11-20T00:00Z', '{}')")
        saved = save_forecast(conn, forecast, None)
        assert saved.created and save_forecast(conn, forecast, None) == (saved.forecast_id, False)
        loaded = load_forecast(conn, saved.forecast_id)
        for part in ("portfolio", "vehicles"):
            pd.testing.assert_frame_equal(getattr(loaded, part), getattr(forecast, part), check_exact=True)
        assert np.signbit(loaded.vehicles["up_20_kw"]).all()  # -0.0 stays -0.0
        assert forecast_difference(forecast, loaded) is None
        assert (loaded.issued_at, loaded.zone, loaded.forecaster_version) == (
            forecast.issued_at, forecast.zone, forecast.forecaster_version)
        light = load_forecast(conn, saved.forecast_id, vehicles=False)
        assert light.vehicles.empty and list(light.vehicles.columns) == list(forecast.vehicles.columns)

        changed = forecast.vehicles.copy()
        changed.loc[100, "p_up"] += 0.25
        difference = forecast_difference(FleetForecast(forecast.issued_at, forecast.zone, forecast.forecaster_version,
                                                       forecast.portfolio, changed), loaded)
        assert difference.where == "vehicles.p_up" and difference.largest == pytest.approx(0.25)

        doc = validate(forecast_message(conn, forecast_info(conn, saved.forecast_id)))
        assert len(doc["portfolio"]) == 2 * 4 * 192 and doc["sessions_known_at"] is None
        assert doc["portfolio"][0]["q50"] == forecast.portfolio["q50"].iloc[0]

        # A frame with a column the tables do not have is refused, naming it.
        odd = FleetForecast(forecast.issued_at + timedelta(minutes=15), forecast.zone, forecast.forecaster_version,
                            forecast.portfolio.assign(q99=1.0), forecast.vehicles)
        with pytest.raises(DomainError, match=r"portfolio\.q99: has no column in forecast_portfolio"):
            save_forecast(conn, odd, None)


def test_the_loop_outlives_a_database_outage(tmp_path, kafka_server):
    server = EmbeddedPostgres(tmp_path / "pg").start()
    migrate(server.url)
    service = ForecasterService(ServiceConfig(server.url, kafka_server.bootstrap_servers, poll_s=0.2,
                                              max_backoff_s=0.5, kafka_timeout_s=3))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,))
    thread.start()
    try:
        def wait_for(check, timeout_s=30):
            deadline = time.monotonic() + timeout_s
            while not check():
                assert time.monotonic() < deadline and thread.is_alive()
                time.sleep(0.1)

        wait_for(lambda: service.passes >= 2)     # no sessions yet: passes that find nothing to do
        server.stop()
        wait_for(lambda: service.failures >= 3)
        assert thread.is_alive()
        server.start()
        passes = service.passes
        wait_for(lambda: service.passes > passes + 1)
    finally:
        stop.set()
        thread.join(30)
        server.stop()
    assert not thread.is_alive()
