"""SoC and departure forecasts and endurance-limited flexibility: the SoC grid, the flexibility
arithmetic on hand-computed cases, the quantile models against a fleet whose truth is known,
and the issued forecast's contract."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from flexfleet.domain import BiddingZone
from flexfleet.forecast.availability import fit_availability
from flexfleet.forecast.departure import fit_departure
from flexfleet.forecast.features import HORIZON, MTUS_PER_DAY, WARM_UP, FeatureGrid
from flexfleet.forecast.flexibility import (ENDURANCES_MIN, VehicleLimits, declared_floor, down_kw, held_key,
                                            realised_endurance_kw, up_kw)
from flexfleet.forecast.grid import session_grid
from flexfleet.forecast.pipeline import Forecaster, issue_forecast
from flexfleet.forecast.portfolio import Calibration
from flexfleet.forecast.soc import StateFeatures, fit_soc, sample_plugged

T0 = datetime(2026, 11, 2, tzinfo=UTC)   # a Monday; no DST change in the four weeks after
QCOLS = ["q05", "q10", "q25", "q50", "q75", "q90", "q95"]


def _specs(ids, battery=60.0, lo=0.0, hi=100.0, cap=np.nan) -> pd.DataFrame:
    return pd.DataFrame({"battery_kwh": battery, "usable_soc_min_pct": lo, "usable_soc_max_pct": hi,
                         "oem_cap_remaining_kwh": cap}, index=pd.Index(ids, name="vehicle_id"))


# --- the SoC grid ---------------------------------------------------------------------------------

def test_soc_grid_follows_the_reference_trajectory_of_a_hand_made_session():
    # 10 kW x 0.25 h x 0.92 into 23 kWh: 10 SoC points per MTU, from 50 % until 75 %.
    s = pd.DataFrame({"vehicle_id": ["a", "b"], "plug_in_at": [T0 + timedelta(minutes=10), T0],
                      "plug_out_at": [T0 + timedelta(hours=2), T0 + timedelta(hours=1)],
                      "up_kw": [0.0, 0.0], "down_kw": [10.0, 7.0], "soc_start": [50.0, np.nan],
                      "soc_end": [75.0, np.nan], "max_power_kw": [10.0, 7.0], "min_soc": [30.0, np.nan]})
    g = session_grid(s, ["a", "b"], T0, 10, battery_kwh=np.array([23.0, 60.0]))
    np.testing.assert_allclose(g.soc[0, :8], [50, 50 + 10 / 3, 50 + 40 / 3, 50 + 70 / 3, 75, 75, 75, 75], atol=1e-4)
    assert np.isnan(g.soc[0, 8:]).all() and np.isnan(g.soc[1]).all()      # left; no SoC told
    np.testing.assert_allclose(g.remaining[0, :3], [8 - 2 / 3, 7, 6], atol=1e-5)
    np.testing.assert_allclose(g.remaining[1, :4], [4, 3, 2, 1])
    assert (g.min_soc[0, :8] == 30).all() and np.isnan(g.min_soc[1]).all()
    assert g.arrivals[["row", "soc"]].values.tolist() == [[0, 50.0]]


def test_soc_grid_moves_linearly_when_the_power_is_unknown():
    s = pd.DataFrame({"vehicle_id": ["a"], "plug_in_at": [T0], "plug_out_at": [T0 + timedelta(hours=1)],
                      "up_kw": [0.0], "down_kw": [7.0], "soc_start": [40.0], "soc_end": [60.0]})
    g = session_grid(s, ["a"], T0, 4, battery_kwh=np.array([50.0]))
    np.testing.assert_allclose(g.soc[0], [40, 45, 50, 55])


# --- flexibility arithmetic -----------------------------------------------------------------------

def test_up_is_limited_by_the_energy_above_the_floor():
    # 60 kWh, 30 % -> 20 %: 6 kWh. For an hour 6 kW, for 20 minutes the pair's 11 kW.
    args = dict(pair_kw=11.0, charge_kw=11.0, soc_pct=30.0, floor_pct=20.0, battery_kwh=60.0,
                oem_cap_kwh=np.nan, departure_min=600.0, efficiency=1.0)
    assert up_kw(**args, endurance_min=60) == pytest.approx(6.0)
    assert up_kw(**args, endurance_min=20) == pytest.approx(11.0)
    # At the grid it is 6 kWh x 0.92 over the hour.
    assert up_kw(**args | {"efficiency": 0.92}, endurance_min=60) == pytest.approx(6 * 0.92)


def test_up_is_zero_when_the_car_leaves_before_the_endurance_ends():
    args = dict(pair_kw=11.0, charge_kw=11.0, soc_pct=80.0, floor_pct=20.0, battery_kwh=60.0,
                oem_cap_kwh=np.nan, endurance_min=20, efficiency=1.0)
    assert up_kw(**args, departure_min=15.0) == 0.0
    assert up_kw(**args, departure_min=np.nan) == 0.0
    # 30 minutes left: 10 minutes at 11 kW put back 11/6 kWh, so 20 minutes at 5.5 kW.
    assert up_kw(**args, departure_min=30.0) == pytest.approx(5.5)
    assert down_kw(11.0, 50.0, 100.0, 60.0, departure_min=15.0, endurance_min=20) == 0.0


def test_the_oem_cap_binds():
    # 2 kWh left under the maker's cap: 6 kW for 20 minutes, whatever the battery holds.
    kw = up_kw(11.0, 11.0, 90.0, 20.0, 60.0, oem_cap_kwh=2.0, departure_min=600.0, endurance_min=20, efficiency=1.0)
    assert kw == pytest.approx(6.0)


def test_the_floor_is_the_declared_minimum_soc_or_the_default():
    s = pd.DataFrame({"vehicle_id": ["a", "b", "c"], "plug_in_at": [T0] * 3,
                      "plug_out_at": [T0 + timedelta(hours=1)] * 3, "up_kw": 10.0, "down_kw": 10.0,
                      "min_soc": [40.0, np.nan, 10.0]})
    specs = _specs(["a", "b", "c"], lo=[0.0, 25.0, 15.0])
    g = session_grid(s, ["a", "b", "c"], T0, 8)
    floor = declared_floor(g, VehicleLimits.from_specs(specs), tau=8)
    np.testing.assert_allclose(floor, [40.0, 25.0, 15.0])   # declared; usable min over the 20 % default; usable min
    assert declared_floor(g, VehicleLimits.from_specs(_specs(["a", "b", "c"])), tau=8)[1] == 20.0
    # 60 kWh at 50 % with a 40 % floor: 6 kWh, 6 kW for an hour.
    assert up_kw(11.0, 11.0, 50.0, floor[0], 60.0, np.nan, 600.0, 60, efficiency=1.0) == pytest.approx(6.0)


def test_down_is_limited_by_the_headroom():
    # 60 kWh at 95 % of 100 %: 3 kWh, 3 kW for an hour, the pair's 11 kW for 10 minutes.
    assert down_kw(11.0, 95.0, 100.0, 60.0, departure_min=600.0, endurance_min=60, efficiency=1.0) == pytest.approx(3.0)
    assert down_kw(11.0, 95.0, 100.0, 60.0, 600.0, 60) == pytest.approx(3.0 / 0.92)
    assert down_kw(11.0, 95.0, 95.0, 60.0, 600.0, 20) == 0.0


def test_specs_are_checked():
    with pytest.raises(ValueError, match="oem_cap_remaining_kwh"):
        VehicleLimits.from_specs(_specs(["a"]).drop(columns="oem_cap_remaining_kwh"))
    with pytest.raises(ValueError, match="battery_kwh"):
        VehicleLimits.from_specs(_specs(["a"], battery=0.0))


# --- models against a known fleet -----------------------------------------------------------------

N_VEHICLES, DAYS = 60, 28
ARRIVE_UTC_H, LEAVE_UTC_H, LEAVE_SD_MIN = 17, 6, 45


@pytest.fixture(scope="module")
def evening_fleet():
    """Cars plug in every evening and leave each morning at 07:00 local +- 45 min (normal); each
    arrives with a SoC drawn around its own mean and charges at 7.4 kW to a target drawn in
    80-95 %. The truth of each model is thus known: the departure and the arrival SoC are normal."""
    rng = np.random.default_rng(11)
    ids = [f"v{i:02d}" for i in range(N_VEHICLES)]
    mean_soc = rng.uniform(35, 60, N_VEHICLES)
    rows = []
    for i, vid in enumerate(ids):
        for d in range(DAYS):
            t_in = T0 + timedelta(days=d, hours=ARRIVE_UTC_H, minutes=float(rng.uniform(0, 60)))
            t_out = T0 + timedelta(days=d + 1, hours=LEAVE_UTC_H, minutes=float(rng.normal(0, LEAVE_SD_MIN)))
            declares = i % 3 == 0
            rows.append((vid, t_in, t_out, 7.4 if i % 2 else 0.0, 7.4, float(np.clip(rng.normal(mean_soc[i], 8), 12, 75)),
                         float(rng.uniform(80, 95)), 7.4, t_out.replace(second=0) if declares else pd.NaT,
                         30.0 if declares else np.nan))
    s = pd.DataFrame(rows, columns=["vehicle_id", "plug_in_at", "plug_out_at", "up_kw", "down_kw", "soc_start",
                                    "soc_end", "max_power_kw", "departure_declared_at", "min_soc"])
    s["departure_declared_at"] = pd.to_datetime(s["departure_declared_at"], utc=True)
    specs = _specs(ids, cap=[2.0 if i % 10 == 1 else np.nan for i in range(N_VEHICLES)])
    grid = session_grid(s, ids, T0, DAYS * MTUS_PER_DAY, specs["battery_kwh"].to_numpy())
    return s, specs, grid


@pytest.fixture(scope="module")
def fitted(evening_fleet):
    _, _, grid = evening_fleet
    fg = {d: FeatureGrid(grid, BiddingZone.SE3, d) for d in ("up", "down")}
    state = StateFeatures(fg["down"])
    last = 21 * MTUS_PER_DAY - HORIZON
    times = list(range(WARM_UP, last, 20))
    sample = sample_plugged(state, times, rows_per_issue=2000)
    soc, dep = fit_soc(state, sample, times, rounds=60), fit_departure(state, sample, times, rounds=60)
    avail = {d: fit_availability(fg[d], list(range(WARM_UP, last, 32)), rows_per_issue=2000, rounds=20) for d in fg}
    return state, soc, dep, avail


def _coverage(model, state, y_of):
    """Share of held-out plugged-in targets at or below each quantile, over four days' origins."""
    grid, v = state.grid, state.vehicles
    ys, qs = [], []
    for tau in range(22 * MTUS_PER_DAY + 32, 26 * MTUS_PER_DAY, MTUS_PER_DAY):
        q = model.predict(state.frame(tau)).reshape(len(v), HORIZON, 3)
        on = grid.plugged[v, tau:tau + HORIZON] >= 0.5
        ys.append(y_of(grid)[v, tau:tau + HORIZON][on])
        qs.append(q[on])
    y, q = np.concatenate(ys), np.concatenate(qs)
    return [(y <= q[:, i]).mean() for i in range(3)], q


def test_soc_quantiles_cover_about_as_they_should(fitted):
    state, soc, _, _ = fitted
    cover, q = _coverage(soc, state, lambda g: g.soc)
    assert 0.04 <= cover[0] <= 0.18 and 0.38 <= cover[1] <= 0.62 and 0.82 <= cover[2] <= 0.96
    assert np.all(np.diff(q, axis=1) >= 0) and q.min() >= 0 and q.max() <= 100


def test_departure_quantiles_cover_about_as_they_should(fitted):
    state, _, dep, _ = fitted
    cover, q = _coverage(dep, state, lambda g: np.minimum(g.remaining, HORIZON))
    assert 0.04 <= cover[0] <= 0.18 and 0.38 <= cover[1] <= 0.62 and 0.82 <= cover[2] <= 0.96


def test_realised_endurance_is_zero_in_the_last_minutes_before_leaving(evening_fleet):
    _, specs, grid = evening_fleet
    held = realised_endurance_kw("up", grid, VehicleLimits.from_specs(specs), 20, (50.0, 90.0))
    soon = (grid.remaining < 20 / 15) & (grid.plugged >= 0.99)
    assert soon.any() and (held[soon] == 0).all()
    assert (held <= grid.up_kw + 1e-6).all() and held[1].max() <= 6.0 + 1e-6  # v01's 2 kWh cap: 6 kW


# --- the issued forecast --------------------------------------------------------------------------

def test_an_issued_forecast_keeps_the_contract_and_replays_exactly(evening_fleet, fitted):
    sessions, specs, _ = evening_fleet
    _, soc, dep, avail = fitted
    keys = [*avail, *(held_key(d, e) for d in avail for e in ENDURANCES_MIN)]
    forecaster = Forecaster(BiddingZone.SE3, T0 + timedelta(days=21), avail,
                            {k: Calibration(rho=0.05) for k in keys}, soc, dep)
    issued = T0 + timedelta(days=23, hours=7)
    live = issue_forecast(forecaster, sessions, specs, issued, history_start=T0)
    replay = issue_forecast(Forecaster.from_json(forecaster.to_json()), sessions[sessions["plug_in_at"] < issued],
                            specs, issued, history_start=T0)
    pd.testing.assert_frame_equal(replay.portfolio, live.portfolio)
    pd.testing.assert_frame_equal(replay.vehicles, live.vehicles)
    assert replay.forecaster_version == live.forecaster_version

    p = live.portfolio
    assert list(p.columns) == ["direction", "endurance_min", "target_start", *QCOLS, "p90_kw", "p90_kwh"]
    assert len(p) == 2 * 4 * HORIZON and set(p["endurance_min"]) == {0, *ENDURANCES_MIN}
    assert str(p["target_start"].dt.tz) == "UTC" and p["target_start"].min() == issued
    assert np.all(np.diff(p[QCOLS].to_numpy(), axis=1) >= -1e-6)
    assert (p["p90_kw"] == p["q10"]).all()
    np.testing.assert_allclose(p["p90_kwh"], p["p90_kw"] * p["endurance_min"] / 60)
    for _, g in p.groupby("direction"):   # held longer, never more
        by_e = g.pivot(index="target_start", columns="endurance_min", values="q50")
        assert np.all(np.diff(by_e[[0, *ENDURANCES_MIN]].to_numpy(), axis=1) <= 1e-9)
    assert p.loc[(p["endurance_min"] == 20) & (p["direction"] == "down"), "q50"].max() > 0

    v = live.vehicles
    assert list(v.columns) == ["vehicle_id", "target_start", "p_up", "p_down", "capacity_up_kw", "capacity_down_kw",
                               "soc_p10", "soc_p50", "soc_p90", "departure_p10_at", "up_20_kw", "down_20_kw",
                               "up_60_kw", "down_60_kw", "up_120_kw", "down_120_kw"]
    assert len(v) == N_VEHICLES * HORIZON
    assert (v["soc_p10"] <= v["soc_p50"]).all() and (v["soc_p50"] <= v["soc_p90"]).all()
    assert (v["departure_p10_at"] >= v["target_start"]).all() and str(v["departure_p10_at"].dt.tz) == "UTC"
    assert (v["up_20_kw"] <= v["capacity_up_kw"] + 1e-9).all() and (v["down_20_kw"] <= v["capacity_down_kw"] + 1e-9).all()
    assert (v.loc[v["capacity_up_kw"] == 0, "up_20_kw"] == 0).all() and v["up_20_kw"].max() > 0
    for d in ("up", "down"):   # what is held for longer is held for shorter
        assert (v[f"{d}_120_kw"] <= v[f"{d}_60_kw"] + 1e-9).all() and (v[f"{d}_60_kw"] <= v[f"{d}_20_kw"] + 1e-9).all()
