"""`flexfleet bid backtest` on a small fleet: every bidder meets the same market, the perfect
forecaster keeps every promise, the report is written."""

from __future__ import annotations

import json
from datetime import date

import pytest

from services.bidder.backtest import FORESIGHT, PLANNED, RULE, BacktestOptions, rule_name, run_backtest
from services.bidder.report import write_report

pytestmark = pytest.mark.integration
SMALL = {"rounds": 30, "rows_per_issue": 5000, "quantile_rounds": 30, "quantile_rows_per_issue": 500}


def test_a_small_backtest_scores_every_bidder_on_every_day(tmp_path):
    options = BacktestOptions(vehicles=80, days=2, last_day=date(2025, 11, 30), history_weeks=3,
                              shares=(0.3, 0.6), fit_options=SMALL)
    result = run_backtest(options)
    names = [PLANNED, FORESIGHT, RULE, rule_name(0.3), rule_name(0.6)]
    assert list(result.totals["bidder"]) == names
    assert sorted(result.days.groupby("bidder").size().unique()) == [2]
    assert result.rule_share in (0.3, 0.6)
    t = result.totals.set_index("bidder")
    assert t.loc[FORESIGHT, "accepted_mtus"] > 0 and t.loc[FORESIGHT, "full_share"] == 1.0
    assert (t["delivered_mwh"] <= t["accepted_mwh"] + 1e-9).all() and (t["accepted_mwh"] <= t["offered_mwh"] + 1e-9).all()
    assert (t["penalty_eur"] >= 0).all() and (t["wear_eur"] >= 0).all()
    rule = t.loc[rule_name(result.rule_share)]
    assert t.loc[RULE, "net_eur"] == pytest.approx(rule["net_eur"])      # the same bidder twice

    page = write_report(result, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rule_of_thumb_share"] == result.rule_share
    assert "perfect foresight" in page.read_text()
    for name in ("net_value.png", "delivered.png", "days.csv", "totals.csv"):
        assert (tmp_path / name).stat().st_size > 100
