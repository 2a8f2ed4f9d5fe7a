"""The newcomer's path: `flexfleet simulate` and `flexfleet demo` against real servers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from kafka import KafkaConsumer
from typer.testing import CliRunner

from services.cli import app
from services.simulator.fleet import generate_fleet
from services.simulator.telemetry import CLOCK_SYNC_S, simulate

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_simulate_registers_the_fleet_and_publishes_its_telemetry(db_url, kafka_server, topic_factory, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_server.bootstrap_servers)
    topic = topic_factory()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    args = ["simulate", "--vehicles", "25", "--days", "0.25", "--cadence-s", "300", "--seed", "4",
            "--end", end.isoformat(), "--topic", topic, "--bad-share", "0.05"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output

    fleet = generate_fleet(25, seed=4)
    expected = [(m.key, m.value) for m in simulate(fleet, end - timedelta(days=0.25), end, 300, 4, 0.05)]
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_server.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    got = [(r.key, r.value) for r in consumer]
    consumer.close()
    assert sorted(got) == sorted(expected)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM vehicles").fetchone()[0] == 25
        assert conn.execute("SELECT count(*) FROM chargers").fetchone()[0] == len(fleet.chargers)
    # Registering the same fleet again is harmless.
    assert runner.invoke(app, args[:-2] + ["--bad-share", "0"]).exit_code == 0


def test_simulate_without_servers_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    result = runner.invoke(app, ["simulate", "--vehicles", "2"])
    assert result.exit_code != 0
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.output


def test_demo_on_embedded_defaults_accounts_for_every_message(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("FLEXFLEET_STATE_DIR", str(tmp_path / "state"))
    result = runner.invoke(app, ["demo", "--vehicles", "30", "--days", "1", "--cadence-s", "300",
                                 "--history-weeks", "2", "--out", str(tmp_path / "out"), "--no-serve"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "demo" / "summary.json").read_text())
    assert {"produced", "stored", "rejected", "duplicates_dropped", "wall_seconds"} <= set(summary)
    refused = sum(summary["rejected"].values())
    assert summary["stored"] + refused + summary["duplicates_dropped"] == summary["produced"]
    assert summary["rejected"] == summary["broken_on_purpose"]
    assert summary["stored"] > 0.9 * summary["produced"]
    assert str(tmp_path / "out" / "demo") in result.output.replace("\n", "")

    # The history was imported and the streamed days' sessions derived; the forecast issued when
    # the streamed days began was stored, published, and scored against them.
    demo = tmp_path / "out" / "demo"
    assert summary["sessions_imported"] > 30 * 7 and summary["sessions_derived"] > 0
    forecast = summary["forecast"]
    assert forecast["published"] == 1 and forecast["hours_scored"] == 24
    assert set(forecast["p90_coverage"]) == {"up", "down"}
    scores = json.loads((demo / "forecast" / "scores.json").read_text())
    assert scores["model_versions"] == {"forecaster": forecast["forecaster_version"]}
    assert set(scores["endurance"]) == {"up_20min", "down_20min"}
    for name in ("report.html", "reliability.png", "forecast_vs_realised_up.png", "forecast_vs_realised_down.png"):
        assert (demo / "forecast" / name).stat().st_size > 1000
    history = pd.read_csv(demo / "sessions_history.csv")
    assert len(history) == summary["sessions_imported"]

    # Bids for the next open auction, from a forecast issued at the end, cleared against the
    # simulated market: every accepted bid is an obligation, and the files say the same.
    bids = summary["bids"]
    planned = json.loads((demo / "bids" / "bids.json").read_text())
    assert planned["delivery_day"] == bids["delivery_day"] and len(planned["bids"]) == bids["bids"]
    assert len(pd.read_csv(demo / "bids" / "bids.csv")) == bids["bids"]
    assert planned["bids"] or planned["dropped"], "a plan without bids says why"
    assert bids["obligations"] <= bids["bids"] and (demo / "bids" / "bids.png").stat().st_size > 1000

    # The obligations of the busiest hours went over OpenADR to the site agents; every event was
    # reported on, and each obligation verified and published on deliveries.v1.
    dispatch = summary["dispatch"]
    assert dispatch["delivery_day"] == bids["delivery_day"] and dispatch["obligations"] == bids["obligations"]
    if dispatch["obligations"]:
        assert 0 < dispatch["simulated"] <= dispatch["obligations"]
        assert dispatch["reports"] == dispatch["events"] > 0 and dispatch["published"] == dispatch["simulated"]
        report = json.loads((demo / "dispatch" / "report.json").read_text())
        assert len(report["obligations"]) == dispatch["simulated"] and not report["not_verified"]
        assert (demo / "dispatch" / "report.png").stat().st_size > 1000

    # The month is settled: a statement (HTML and PDF) for every owner, and every market's
    # reconciliation holds to the minor unit.
    months = summary["settlement"]["months"]
    assert months and all(m["statements"] == m["owners"] > 0 for m in months)
    for m in months:
        statements = Path(m["files"]) / "statements"
        assert len(list(statements.glob("*.pdf"))) == len(list(statements.glob("*.html"))) == m["owners"]
        assert m["reconciliation"] and all(
            r["revenue"] == r["owner_pay"] + r["wear_pay"] + r["penalties"] + r["margin"] for r in m["reconciliation"])


def test_the_demo_serves_the_dashboard_with_a_login_it_prints(db_url, tmp_path, kafka_server):
    """What `flexfleet demo` does after its batch (`--no-serve` skips it): an operator account with a
    fresh password, printed with the address, and the API serving the dashboard on the database,
    reading the demo's broker for the consumer lag, and the VTN for the operator's token."""
    import re
    import threading
    from types import SimpleNamespace

    import httpx
    from rich.console import Console

    from services.demo import dashboard_server

    console = Console(record=True, width=200)
    run = SimpleNamespace(platform=SimpleNamespace(database_url=db_url, bootstrap_servers=kafka_server.bootstrap_servers),
                          out_dir=tmp_path, console=console)
    server = dashboard_server(run, 0)
    printed = console.export_text()
    address = re.search(r"dashboard: (http://127\.0\.0\.1:\d+)/login", printed).group(1)
    user, password = re.search(r"operator: (\S+) / (\S+)", printed).groups()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            threading.Event().wait(0.05)
        with httpx.Client(base_url=address, follow_redirects=True) as client:
            page = client.post("/login", data={"username": user, "password": password},
                               headers={"Origin": address})
            assert page.status_code == 200 and str(page.url).endswith("/ops")
            assert "no broker configured" not in page.text
            assert client.get("/healthz").json() == {"status": "ok"}
            token = client.post("/v1/auth/token", data={"grant_type": "password", "username": user,
                                                         "password": password}).json()["access_token"]
            programs = client.get("/openadr3/3.0.1/programs", headers={"Authorization": f"Bearer {token}"})
            assert programs.status_code == 200           # the operator is the OpenADR business logic
    finally:
        server.should_exit = True
        thread.join(10)


def test_while_the_dashboard_is_served_the_fleet_keeps_reporting(db_url, kafka_server, topic_factory):
    """The live feed carries the simulation on from where the demo's stream ended: readings up to
    now arrive at once, stored by its own ingest worker; later ones as the clock passes them."""
    import time as clock
    from types import SimpleNamespace

    from services.demo import live_feed
    from services.simulator.registry import write_fleet

    fleet = generate_fleet(6, seed=5)
    with psycopg.connect(db_url) as conn:
        write_fleet(conn, fleet)
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    run = SimpleNamespace(options=SimpleNamespace(cadence_s=60, seed=5), fleet=fleet,
                          platform=SimpleNamespace(database_url=db_url, bootstrap_servers=kafka_server.bootstrap_servers),
                          history_start=end - timedelta(days=1), end=end)
    topic = topic_factory()
    dlq = topic_factory(f"{topic}.dlq", partitions=1)
    with live_feed(run, horizon=timedelta(minutes=10), topic=topic, dlq_topic=dlq):
        deadline = clock.monotonic() + 60
        while clock.monotonic() < deadline:
            with psycopg.connect(db_url) as conn:
                first, last, n = conn.execute("SELECT min(ts), max(ts), count(*) FROM telemetry").fetchone()
            if n and last >= end + timedelta(minutes=4):
                break
            clock.sleep(1)
    # Readings carry the cars' own clocks (up to CLOCK_SYNC_S + 90 s off), so times are compared loosely;
    # counts are exact: one reading per car and minute from the end, none for minutes still to come.
    assert first >= end - timedelta(seconds=CLOCK_SYNC_S + 90) and last >= end + timedelta(minutes=4)
    minutes_passed = int((datetime.now(UTC) - end).total_seconds() // 60) + 1
    assert 4 * len(fleet.vehicles) <= n <= minutes_passed * len(fleet.vehicles), (n, minutes_passed)
