"""`flexfleet forecast backtest` end to end: on a simulated fleet, and on sessions imported from
the CSV format into the real database."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from services.cli import app
from services.simulator.fleet import generate_fleet
from services.simulator.registry import write_fleet
from services.simulator.telemetry import simulate_sessions

pytestmark = pytest.mark.integration
runner = CliRunner()
END = "2026-11-23T00:00:00+01:00"
SMALL = ["--weeks", "3", "--test-days", "3", "--end", END]


def check_report(out) -> dict:
    for name in ("report.html", "summary.csv", "forecasts.csv.gz", "reliability.png",
                 "forecast_vs_realised_up.png", "forecast_vs_realised_down.png"):
        assert (out / name).stat().st_size > 0, name
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores["p90_coverage"]) == {"up", "down"}
    # Power held for 20 minutes, and the SoC and departure models on their own targets.
    assert set(scores["endurance"]) == {"up_20min", "down_20min"}
    assert {m["model"] for m in scores["state_models"]} == {"soc", "departure"}
    assert (out / "models.csv").stat().st_size > 0
    page = (out / "report.html").read_text()
    assert "reliability.png" in page and "SoC and departure models" in page
    return scores


def test_backtest_on_a_simulated_fleet_replays_identically(tmp_path):
    args = ["forecast", "backtest", "--vehicles", "60", "--seed", "3", *SMALL]
    first = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    a, b = check_report(tmp_path / "a"), check_report(tmp_path / "b")
    assert a["model_versions"] == b["model_versions"]
    assert (tmp_path / "a" / "summary.csv").read_bytes() == (tmp_path / "b" / "summary.csv").read_bytes()


def test_backtest_on_sessions_imported_from_csv(db_url, tmp_path, monkeypatch):
    fleet = generate_fleet(40, seed=5)
    with psycopg.connect(db_url) as conn:
        write_fleet(conn, fleet)
    end = datetime.fromisoformat(END)
    sessions = simulate_sessions(fleet, end - timedelta(weeks=3), end, cadence_s=300, seed=5)
    sessions = sessions[sessions["complete"]].drop(columns="complete")
    csv = tmp_path / "cpms_export.csv"
    sessions.to_csv(csv, index=False, date_format="%Y-%m-%dT%H:%M:%SZ", float_format="%.3f")
    monkeypatch.setenv("DATABASE_URL", db_url)
    imported = runner.invoke(app, ["import", "sessions", str(csv)])
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(app, ["forecast", "backtest", "--source", "database", *SMALL,
                                 "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    scores = check_report(tmp_path / "report")
    assert scores["facts"]["sessions"] == len(sessions)
