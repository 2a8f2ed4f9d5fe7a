"""Availability forecasting: the MTU grid, the correlated portfolio model, calibration against
known truth, and backtests that replay to the same numbers."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from flexfleet.domain import BiddingZone
from flexfleet.forecast.availability import fit_availability
from flexfleet.forecast.backtest import calibrate_portfolio, predictions, run_backtest
from flexfleet.forecast.features import HORIZON, MTUS_PER_DAY, MTUS_PER_WEEK, WARM_UP, FeatureGrid
from flexfleet.forecast.grid import session_grid
from flexfleet.forecast.pipeline import (QUANTILE_COLUMNS, FleetForecast, Forecaster, issue_forecast, score_forecast,
                                        train_forecaster)
from flexfleet.forecast.portfolio import LEVELS, calibrate, portfolio_quantiles

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def test_sessions_spread_over_mtus_by_share():
    s = pd.DataFrame({"vehicle_id": ["a", "b"], "plug_in_at": [T0 + timedelta(minutes=40), T0],
                      "plug_out_at": [T0 + timedelta(minutes=80), T0 + timedelta(minutes=5)],
                      "up_kw": [10.0, 0.0], "down_kw": [11.0, 7.4],
                      "departure_declared_at": [T0 + timedelta(hours=2), pd.NaT]})
    g = session_grid(s, ["a", "b", "c"], T0, 8)
    np.testing.assert_allclose(g.plugged[0, :7], [0, 0, 1 / 3, 1, 1, 1 / 3, 0], atol=1e-6)
    np.testing.assert_allclose(g.up_kw[0, 2:4], [10 / 3, 10], atol=1e-5)
    np.testing.assert_allclose(g.plugged[1, :2], [1 / 3, 0], atol=1e-6)
    assert g.plugged[2].sum() == 0
    assert np.all(g.declared_departure[0, 2:6] == 8) and np.isnan(g.declared_departure[0, 0])
    assert np.isnan(g.declared_departure[1]).all()


def _copula_draws(p: np.ndarray, kw: np.ndarray, rho: float, n: int, rng) -> np.ndarray:
    from scipy.special import ndtri
    f = rng.standard_normal((n, 1, 1))
    e = rng.standard_normal((n,) + p.shape)
    plugged = np.sqrt(rho) * f + np.sqrt(1 - rho) * e < ndtri(p)[None]
    return (plugged * kw[None]).sum(axis=1)


@pytest.mark.parametrize("rho", [0.0, 0.1])
def test_portfolio_quantiles_match_monte_carlo(rho):
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, (400, 6))
    kw = rng.choice([7.4, 11.0], (400, 1))
    q = portfolio_quantiles(p, kw, rho)
    draws = _copula_draws(p, kw, rho, 4000, rng)
    empirical = np.quantile(draws, LEVELS, axis=0).T
    spread = draws.std(axis=0)[:, None]
    assert np.all(np.abs(q - empirical) < 0.1 * spread + 1.0)


def test_correlation_widens_the_portfolio():
    p = np.full((1000, 1), 0.6)
    kw = np.full((1000, 1), 10.0)
    narrow, wide = portfolio_quantiles(p, kw, 0.0)[0], portfolio_quantiles(p, kw, 0.1)[0]
    assert wide[-1] - wide[0] > 3 * (narrow[-1] - narrow[0])


def test_calibration_recovers_a_known_fleet():
    """Days drawn from a fleet with known probabilities and correlation: the calibrated 10 %
    quantile (the P90 volume) is reached on about 92 % of fresh days."""
    rng = np.random.default_rng(7)
    p = rng.uniform(0.1, 0.9, (300, 24))
    kw = np.full((300, 1), 11.0)
    cases = [(p, kw, _copula_draws(p, kw, 0.05, 1, rng)[0]) for _ in range(60)]
    cal = calibrate(cases)
    assert 0.02 <= cal.rho <= 0.1
    fresh = _copula_draws(p, kw, 0.05, 400, rng)
    q10 = cal.quantiles(p, kw)[:, 1]
    assert 0.87 <= (fresh >= q10[None]).mean() <= 0.97


@pytest.fixture(scope="module")
def known_fleet():
    """150 vehicles over five weeks, each plugged in each hour with a probability that depends
    only on its kind and the hour of day: the truth a model should find."""
    rng = np.random.default_rng(3)
    n_v, n_t = 150, 5 * MTUS_PER_WEEK
    hour = (np.arange(n_t) // 4) % 24
    night = ((hour >= 18) | (hour < 7)).astype(float)
    truth = np.where(np.arange(n_v)[:, None] % 2 == 0, 0.15 + 0.75 * night, 0.5)  # two kinds
    plugged = (rng.random((n_v, n_t)) < np.repeat(truth[:, ::4], 4, axis=1)).astype(float)
    rows, starts = np.nonzero(plugged)
    s = pd.DataFrame({"vehicle_id": [f"v{r}" for r in rows],
                      "plug_in_at": [T0 + timedelta(minutes=15 * int(t)) for t in starts]})
    s["plug_out_at"] = s["plug_in_at"] + timedelta(minutes=15)
    s["up_kw"], s["down_kw"] = 10.0, 11.0
    grid = session_grid(s, [f"v{i}" for i in range(n_v)], T0, n_t)
    return grid, truth, s


def _specs(n: int) -> pd.DataFrame:
    return pd.DataFrame({"battery_kwh": 60.0, "usable_soc_min_pct": 0.0, "usable_soc_max_pct": 100.0,
                         "oem_cap_remaining_kwh": np.nan}, index=pd.Index([f"v{i}" for i in range(n)], name="vehicle_id"))


def test_availability_model_finds_the_true_probabilities(known_fleet):
    grid, truth, _ = known_fleet
    fg = FeatureGrid(grid, BiddingZone.SE3, "up")
    train = list(range(WARM_UP, grid.n_mtus - MTUS_PER_WEEK - HORIZON, 16))
    model = fit_availability(fg, train, rows_per_issue=8000, rounds=120)
    tau = grid.n_mtus - MTUS_PER_WEEK
    p = model.predict(fg, tau)
    true = truth[:, tau:tau + HORIZON]
    # Per kind and MTU, the mean predicted probability is within a few points of the truth.
    for kind in (0, 1):
        assert np.abs(p[kind::2].mean(axis=0) - true[kind::2].mean(axis=0)).max() < 0.08
    assert abs(p.mean() - true.mean()) < 0.02


def test_a_replayed_backtest_gives_identical_numbers(known_fleet):
    grid, _, _ = known_fleet
    origins = [grid.n_mtus - MTUS_PER_WEEK + k * MTUS_PER_DAY for k in range(3)]

    def run():
        fg = FeatureGrid(grid, BiddingZone.SE3, "down")
        model = fit_availability(fg, list(range(WARM_UP, origins[0] - HORIZON, 48)), rows_per_issue=5000, rounds=40)
        cal = calibrate_portfolio(predictions(model, fg, list(range(WARM_UP, origins[0] - HORIZON, 96))), fg)
        return run_backtest({"down": model}, {"down": fg}, origins, {"down": cal})

    a, b = run(), run()
    assert a.model_versions == b.model_versions
    pd.testing.assert_frame_equal(a.rows, b.rows)
    assert set(a.summary["forecaster"]) == {"model", "seasonal_naive"}


def test_an_issued_forecast_uses_only_what_was_known_and_replays_from_the_stored_models(known_fleet):
    _, _, sessions = known_fleet
    specs = _specs(150)
    issued = T0 + timedelta(weeks=4, hours=8)
    forecaster = train_forecaster(sessions, specs, "SE3", T0, issued - timedelta(days=2),
                                  rows_per_issue=3000, rounds=30, quantile_rows_per_issue=1000, quantile_rounds=10)
    live = issue_forecast(forecaster, sessions, specs, issued)
    known_then = sessions[sessions["plug_in_at"] < issued]
    replay = issue_forecast(Forecaster.from_json(forecaster.to_json()), known_then, specs, issued)
    assert replay.forecaster_version == live.forecaster_version
    pd.testing.assert_frame_equal(replay.portfolio, live.portfolio)
    pd.testing.assert_frame_equal(replay.vehicles, live.vehicles)
    power = live.portfolio[live.portfolio["endurance_min"] == 0]
    q = power[["q05", "q10", "q25", "q50", "q75", "q90", "q95"]].to_numpy()
    assert np.all(np.diff(q, axis=1) >= -1e-6) and len(power) == 2 * HORIZON
    assert (live.portfolio["p90_kw"] == live.portfolio["q10"]).all()
    assert power["target_start"].iloc[0] == issued and len(live.vehicles) == 150 * HORIZON
    # These sessions tell no SoC: no SoC model, and nothing offered for any endurance.
    assert forecaster.soc is None and live.vehicles["soc_p50"].isna().all()
    assert (live.portfolio.loc[live.portfolio["endurance_min"] > 0, "q95"] < 1e-3).all()


def test_a_stored_forecast_is_scored_against_the_same_mtus_it_was_issued_for(known_fleet):
    """An oracle forecast (every quantile the realised value) scores zero pinball loss and full
    coverage; a forecast one MTU off would not."""
    grid, _, sessions = known_fleet
    issued = T0 + timedelta(weeks=4, hours=8)
    tau = int((issued - T0) / timedelta(minutes=15))
    targets = pd.date_range(issued, periods=HORIZON, freq="15min", tz="UTC")
    frames = []
    for direction, kw in (("up", grid.up_kw), ("down", grid.down_kw)):
        for endurance in (0, 20):
            y = kw.sum(axis=0)[tau:tau + HORIZON] if endurance == 0 else np.zeros(HORIZON)
            frame = pd.DataFrame({c: y for c in QUANTILE_COLUMNS})
            frame.insert(0, "target_start", targets)
            frame.insert(0, "endurance_min", endurance)
            frame.insert(0, "direction", direction)
            frames.append(frame)
    oracle = FleetForecast(issued, BiddingZone.SE3, "oracle", pd.concat(frames, ignore_index=True), pd.DataFrame())
    scored = score_forecast(oracle, sessions, _specs(150), issued + timedelta(days=1))
    s = scored.summary.set_index(["direction", "forecaster"])
    for direction in ("up", "down"):
        assert s.loc[(direction, "model"), "pinball_mean"] < 1e-3
        assert s.loc[(direction, "model"), "p90_coverage"] == 1.0
        assert s.loc[(direction, "seasonal_naive"), "pinball_mean"] > 1.0
    assert (scored.rows.groupby(["direction", "forecaster"]).size() == MTUS_PER_DAY).all()
    assert scored.rows["target"].min() == issued
