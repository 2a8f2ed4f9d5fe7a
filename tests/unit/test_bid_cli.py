"""`flexfleet markets show` and `flexfleet bid plan`: the catalogue printed, bad input refused
with the field at fault before anything is planned."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from services.cli import app

runner = CliRunner(env={"COLUMNS": "220"})
CATALOGUE = Path(__file__).resolve().parents[2] / "data" / "markets" / "nordic_products.json"


def test_markets_show_prints_each_zone_s_products_with_gate_closures():
    result = runner.invoke(app, ["markets", "show", "--zone", "SE3"])
    assert result.exit_code == 0, result.output
    assert "FCR-D-up/SE_DK2" in result.output and "auction D-1 first: closes D-1 00:30 Europe/Stockholm" in result.output
    assert "FCR-D-up/NO" not in result.output


def test_markets_show_refuses_an_unknown_zone():
    result = runner.invoke(app, ["markets", "show", "--zone", "SE9"])
    assert result.exit_code == 2 and "zone" in result.output


def test_a_rule_file_with_a_typo_is_refused_naming_the_place(tmp_path):
    raw = json.loads(CATALOGUE.read_text("utf-8"))
    raw["products"][0]["min_bid_mw"]["valeu"] = raw["products"][0]["min_bid_mw"].pop("value")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(raw), "utf-8")
    result = runner.invoke(app, ["markets", "show", "--rules", str(rules)])
    assert result.exit_code == 2
    assert "min_bid_mw" in result.output and "--rules" in result.output


def test_bid_plan_refuses_an_unknown_zone_before_touching_a_database(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = runner.invoke(app, ["bid", "plan", "--day", "2026-12-01", "--zone", "SE9", "--now", "2026-11-29T00:00:00+00:00"])
    assert result.exit_code == 2 and "zone:" in result.output


def test_bid_plan_refuses_a_day_past_gate_closure_and_says_what_is_still_open(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = runner.invoke(app, ["bid", "plan", "--day", "2026-12-01", "--auction", "D-1 first",
                                 "--now", "2026-11-30T12:00:00+00:00"])
    assert result.exit_code == 2
    assert "day: gate closure of D-1 first" in result.output and "still open: D-1 second" in result.output


def test_bid_plan_refuses_an_unknown_auction(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = runner.invoke(app, ["bid", "plan", "--day", "2026-12-01", "--auction", "intraday",
                                 "--now", "2026-11-29T00:00:00+00:00"])
    assert result.exit_code == 2 and "auction:" in result.output
