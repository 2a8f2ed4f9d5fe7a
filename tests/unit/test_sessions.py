"""Charging sessions: derived from telemetry (hand-built and simulated) and parsed from CSV exports."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexfleet.domain import DomainError
from flexfleet.sessions import (
    OPTIONAL_CSV_COLUMNS, REQUIRED_CSV_COLUMNS, SESSION_COLUMNS, RowError, Session, derive_sessions,
    parse_sessions_csv,
)
from services.simulator.fleet import generate_fleet
from services.simulator.telemetry import simulate

T0 = datetime(2026, 11, 2, 16, tzinfo=UTC)
MIN = timedelta(minutes=1)


def readings(*rows: tuple) -> pd.DataFrame:
    """(vehicle, minute, plugged, charger, power_kw, soc_pct, register_kwh) per reading."""
    frame = pd.DataFrame(rows, columns=["vehicle_id", "minute", "plugged_in", "charger_id", "power_kw",
                                        "soc_pct", "energy_import_kwh"])
    frame["ts"] = [T0 + m * MIN for m in frame.pop("minute")]
    frame["departure_at"] = None
    frame["min_soc_pct"] = np.nan
    frame["target_soc_pct"] = np.nan
    return frame


def plugged(vehicle: str, charger: str, minutes, kw: float = 7.0, soc=None, register=None) -> list[tuple]:
    return [(vehicle, m, True, charger, kw, soc, None if register is None else register + i)
            for i, m in enumerate(minutes)]


def unplugged(vehicle: str, minutes) -> list[tuple]:
    return [(vehicle, m, False, None, 0.0, None, None) for m in minutes]


def spans(sessions: pd.DataFrame) -> list[tuple]:
    """(vehicle, charger, plug-in minute, plug-out minute, complete) per session."""
    return [(s.vehicle_id, s.charger_id, (s.plug_in_at - T0) / MIN, (s.plug_out_at - T0) / MIN, s.complete)
            for s in sessions.itertuples()]


# --- derive_sessions on hand-built readings ------------------------------------------------------

def test_a_charger_offline_for_less_than_max_gap_does_not_split_the_session():
    rows = plugged("v1", "c1", range(0, 35, 5)) + plugged("v1", "c1", range(120, 155, 5)) + unplugged("v1", [155, 160])
    assert spans(derive_sessions(readings(*rows))) == [("v1", "c1", 0, 155, True)]


def test_a_silence_of_max_gap_or_more_splits_and_ends_the_first_stay_one_cadence_after_its_last_reading():
    rows = plugged("v1", "c1", range(0, 35, 5)) + plugged("v1", "c1", range(330, 350, 5)) + unplugged("v1", [350])
    assert spans(derive_sessions(readings(*rows))) == [("v1", "c1", 0, 350, True)]          # 5 h < 6 h
    assert spans(derive_sessions(readings(*rows), max_gap=timedelta(hours=3))) == [
        ("v1", "c1", 0, 35, True), ("v1", "c1", 330, 350, True)]
    # The same after a silence without readings of the car at all: an unplugged reading after
    # max_gap does not say when the stay ended either.
    rows = plugged("v1", "c1", range(0, 35, 5)) + unplugged("v1", [400, 405])
    assert spans(derive_sessions(readings(*rows))) == [("v1", "c1", 0, 35, True)]


def test_an_unplugged_reading_in_a_gap_splits_the_session():
    rows = plugged("v1", "c1", [0, 5, 10]) + unplugged("v1", [40]) + plugged("v1", "c1", [90, 95]) + unplugged("v1", [100])
    assert spans(derive_sessions(readings(*rows))) == [("v1", "c1", 0, 40, True), ("v1", "c1", 90, 100, True)]


def test_a_vehicle_on_another_charger_ends_the_stay_when_it_appears_there():
    rows = plugged("v1", "c1", [0, 5, 10]) + plugged("v1", "c2", [45, 50]) + unplugged("v1", [55])
    assert spans(derive_sessions(readings(*rows))) == [("v1", "c1", 0, 45, True), ("v1", "c2", 45, 55, True)]
    # After a long silence nothing says when it left the first charger.
    rows = plugged("v1", "c1", [0, 5, 10]) + plugged("v1", "c2", [600, 605]) + unplugged("v1", [610])
    assert spans(derive_sessions(readings(*rows))) == [("v1", "c1", 0, 15, True), ("v1", "c2", 600, 610, True)]


def test_a_session_still_plugged_at_the_end_of_the_data_is_open_and_ends_one_median_cadence_later():
    rows = unplugged("v1", [0, 2]) + plugged("v1", "c1", [4, 6, 8, 10]) + plugged("v2", "c2", [0, 3, 6, 9])
    sessions = derive_sessions(readings(*rows))
    assert spans(sessions) == [("v1", "c1", 4, 12, False), ("v2", "c2", 0, 12, False)]
    # Told where the data ends: a vehicle silent for max_gap before that end has left.
    sessions = derive_sessions(readings(*rows), max_gap=timedelta(minutes=30), data_end=T0 + 40 * MIN)
    assert list(sessions["complete"]) == [True, True]
    sessions = derive_sessions(readings(*rows), max_gap=timedelta(minutes=30), data_end=T0 + 38 * MIN)
    assert list(sessions["complete"]) == [False, False]


def test_energy_comes_from_the_import_register_where_read_and_from_power_otherwise():
    minutes = range(0, 65, 5)    # 60 minutes at 10 kW: 10 kWh by the trapezoid
    power_only = plugged("v1", "c1", minutes, kw=10.0)
    # The register says 12 x 1 kWh, and is believed over the power readings.
    with_register = plugged("v2", "c2", minutes, kw=10.0, register=500.0)
    # A register that runs backwards (a replaced meter) is not believed.
    reset = [r[:6] + (100.0 - i,) for i, r in enumerate(plugged("v3", "c3", minutes, kw=10.0))]
    # One register reading alone gives no difference.
    single = plugged("v4", "c4", minutes, kw=10.0)
    single[3] = single[3][:6] + (42.0,)
    # Discharging (V2G) imports nothing.
    discharging = plugged("v5", "c5", minutes, kw=-5.0)
    sessions = derive_sessions(readings(*power_only, *with_register, *reset, *single, *discharging))
    assert sessions.set_index("vehicle_id")["energy_kwh"].to_dict() == pytest.approx(
        {"v1": 10.0, "v2": 12.0, "v3": 10.0, "v4": 10.0, "v5": 0.0})
    assert sessions["max_power_kw"].tolist() == [10.0, 10.0, 10.0, 10.0, 0.0]


def test_soc_power_and_the_owners_declaration_are_summarised():
    frame = readings(*plugged("v1", "c1", range(0, 30, 5)), *unplugged("v1", [30]))
    frame["soc_pct"] = [np.nan, 41.0, 45.0, 49.0, np.nan, np.nan, 60.0]
    frame["power_kw"] = [0.0, 7.2, 11.1, 7.3, 0.0, 0.0, 0.0]
    frame["departure_at"] = [None, None, T0 + 900 * MIN, T0 + 960 * MIN, None, None, None]
    frame["min_soc_pct"] = [np.nan, np.nan, np.nan, 40.0, 50.0, np.nan, np.nan]
    frame["target_soc_pct"] = [np.nan, np.nan, 80.0, 80.0, 90.0, np.nan, np.nan]
    s = derive_sessions(frame).iloc[0]
    assert (s.soc_start, s.soc_end, s.max_power_kw, s.min_soc, s.target_soc) == (41.0, 49.0, 11.1, 40.0, 80.0)
    assert s.departure_declared_at == T0 + 900 * MIN
    assert list(derive_sessions(frame).columns) == list(SESSION_COLUMNS)


def test_readings_without_a_target_column_give_sessions_without_a_target():
    frame = readings(*plugged("v1", "c1", range(0, 30, 5)), *unplugged("v1", [30])).drop(columns="target_soc_pct")
    assert derive_sessions(frame)["target_soc"].isna().all()


def test_reading_order_and_redelivered_readings_do_not_matter():
    rows = (plugged("v1", "c1", range(0, 60, 5)) + unplugged("v1", [60, 65]) + plugged("v2", "c2", range(10, 40, 5))
            + unplugged("v2", [40]) + plugged("v1", "c1", range(200, 230, 5)))
    frame = readings(*rows)
    expected = derive_sessions(frame)
    shuffled = pd.concat([frame, frame.iloc[::3]]).sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(derive_sessions(shuffled), expected)
    assert spans(expected) == [("v1", "c1", 0, 60, True), ("v1", "c1", 200, 230, False), ("v2", "c2", 10, 40, True)]


def test_bad_input_is_refused_and_no_plug_in_gives_no_sessions():
    frame = readings(*plugged("v1", "c1", [0, 5]))
    with pytest.raises(DomainError) as e:
        derive_sessions(frame.assign(ts=frame["ts"].dt.tz_localize(None)))
    assert e.value.field == "ts"
    with pytest.raises(DomainError) as e:
        derive_sessions(frame.drop(columns="plugged_in"))
    assert e.value.field == "plugged_in"
    assert derive_sessions(readings(*unplugged("v1", [0, 5]))).empty
    assert list(derive_sessions(frame.iloc[:0]).columns) == list(SESSION_COLUMNS)


def test_ten_times_fewer_readings_than_the_target_take_well_under_a_tenth_of_a_minute():
    """10 million readings must take well under a minute; 1 million in a few seconds keeps a
    per-reading Python loop from creeping in."""
    rng = np.random.default_rng(0)
    n_vehicles, per_vehicle = 1000, 1000
    n = n_vehicles * per_vehicle
    is_plugged = (np.cumsum(rng.random(n) < 0.01) % 2).astype(bool)
    frame = pd.DataFrame({
        "vehicle_id": np.repeat([f"v{i:06d}" for i in range(n_vehicles)], per_vehicle),
        "ts": pd.to_datetime(np.tile(np.arange(per_vehicle) * 60, n_vehicles) + 1_790_000_000, unit="s", utc=True),
        "plugged_in": is_plugged,
        "charger_id": np.where(is_plugged, "c1", None),
        "power_kw": np.where(is_plugged, 7.0, 0.0),
        "soc_pct": np.where(rng.random(n) < 0.2, np.nan, 50.0),
        "energy_import_kwh": np.where(is_plugged, np.arange(n) * 0.1, np.nan),
    }).sample(frac=0.98, random_state=1).sort_values("ts", kind="stable")   # gaps, in arrival order
    started = time.perf_counter()
    sessions = derive_sessions(frame)
    assert time.perf_counter() - started < 6.0
    assert len(sessions) > 4000


# --- derive_sessions on simulated telemetry ------------------------------------------------------

SIM_END = datetime(2026, 11, 23, tzinfo=UTC)   # a Monday
SIM_START = SIM_END - timedelta(days=3)
CADENCE = 300


@pytest.fixture(scope="module")
def simulated():
    fleet = generate_fleet(80, seed=4)
    docs = [orjson.loads(m.value) for m in simulate(fleet, SIM_START, SIM_END, cadence_s=CADENCE, seed=4)]
    frame = pd.DataFrame(docs)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["departure_at"] = pd.to_datetime(frame["departure_at"], utc=True)
    return fleet, frame, derive_sessions(frame, data_end=SIM_END)


def test_simulated_every_session_is_plugged_in_on_its_charger_for_its_whole_span(simulated):
    _, frame, sessions = simulated
    assert len(sessions) > 150 and 0 < (~sessions["complete"]).sum() < len(sessions)
    by_vehicle = {v: g for v, g in frame.sort_values("ts").groupby("vehicle_id")}
    covered = 0
    for s in sessions.itertuples():
        r = by_vehicle[s.vehicle_id]
        inside = r[(r["ts"] >= s.plug_in_at) & (r["ts"] < s.plug_out_at)]
        assert inside["ts"].iloc[0] == s.plug_in_at
        assert inside["plugged_in"].all() and (inside["charger_id"] == s.charger_id).all(), s
        covered += len(inside)
    assert covered == frame["plugged_in"].sum()     # and every plugged reading is in a session


def test_simulated_sessions_of_a_vehicle_never_overlap_and_are_plausible(simulated):
    fleet, _, sessions = simulated
    for _, g in sessions.groupby("vehicle_id"):
        assert (g["plug_out_at"].iloc[:-1].to_numpy() <= g["plug_in_at"].iloc[1:].to_numpy()).all()
    assert (sessions["plug_out_at"] > sessions["plug_in_at"]).all()
    assert (sessions["energy_kwh"] >= 0).all()
    battery = {v.vehicle_id: v.spec.battery_kwh for v in fleet.vehicles}
    assert (sessions["energy_kwh"] <= 1.1 * sessions["vehicle_id"].map(battery)).all()  # grid side: losses
    assert not sessions.loc[sessions["complete"], "plug_out_at"].gt(SIM_END).any()


def test_simulated_sessions_of_reporting_cars_lie_inside_the_simulators_own_sessions(simulated):
    """Against the simulator's ground truth. Cars with the maker's API report while unplugged,
    so their sessions must match; cars that only report through their charger cannot show a
    short errand apart from a charger outage, and are left out."""
    telemetry = pytest.importorskip("services.simulator.telemetry")
    if not hasattr(telemetry, "simulate_sessions"):
        pytest.skip("the simulator does not record its sessions")
    fleet, _, sessions = simulated
    truth = telemetry.simulate_sessions(fleet, SIM_START, SIM_END, cadence_s=CADENCE, seed=4)
    api = {v.vehicle_id for v, h in zip(fleet.vehicles, fleet.habits) if h.api_linked}
    slack = pd.Timedelta(seconds=CADENCE)       # clocks run up to 90 s ahead, a few drift
    mine = sessions[sessions["vehicle_id"].isin(api)]
    exact = 0
    for s in mine.itertuples():
        t = truth[(truth["vehicle_id"] == s.vehicle_id) & (truth["plug_in_at"] - slack <= s.plug_in_at)
                  & (truth["plug_out_at"] + slack >= s.plug_out_at)]
        assert len(t) == 1, s
        t = t.iloc[0]
        assert t["charger_id"] == s.charger_id and s.energy_kwh <= t["energy_kwh"] + 0.01
        # Exact unless the charger was offline when the car was plugged in or out.
        if abs(s.plug_in_at - t["plug_in_at"]) <= slack and abs(s.plug_out_at - t["plug_out_at"]) <= slack:
            exact += 1
            # The register misses at most the last interval before unplugging.
            assert t["energy_kwh"] <= s.energy_kwh + 1.05 * t["max_power_kw"] * CADENCE / 3600
    assert exact >= 0.95 * len(mine) and len(mine) > 100


def test_simulated_sessions_carry_the_owners_departure_target(simulated):
    fleet, _, sessions = simulated
    target = {v.vehicle_id: h.target_soc_pct for v, h in zip(fleet.vehicles, fleet.habits)}
    declared = sessions[sessions["departure_declared_at"].notna()]
    assert len(declared) > 20
    assert (declared["target_soc"] == declared["vehicle_id"].map(target)).all()
    assert (declared["target_soc"] >= declared["min_soc"]).all()
    assert sessions.loc[sessions["departure_declared_at"].isna(), "target_soc"].isna().all()


# --- parse_sessions_csv --------------------------------------------------------------------------

# Rows without a target_soc column: an optional column may be missing (its own tests are below).
HEADER = ",".join(c for c in REQUIRED_CSV_COLUMNS + OPTIONAL_CSV_COLUMNS if c != "target_soc")
GOOD = "v1,c1,2026-11-02T17:45:00Z,2026-11-03T06:10:00Z,24.3,38,90,11,2026-11-03T06:30:00Z,40"
KNOWN = {"v1", "v2", "v3"}


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def test_good_rows_are_kept_next_to_bad_ones_with_physical_line_numbers():
    text = csv_text(
        GOOD,                                                                         # line 2
        "v2,c2,2026-11-02T18:00:00,2026-11-03T06:00:00Z,5,,,,,",                      # line 3: naive
        "",                                                                           # line 4: blank
        'v2,"c2",2026-11-03T18:00:00+01:00,2026-11-04T06:00:00+01:00,"5.5",,,,,',     # line 5
        'v3,c3,2026-11-03T18:00:00Z,2026-11-04T06:00:00Z,-1,,,,,',                     # line 6
    ).replace("\n", "\r\n")
    sessions, errors = parse_sessions_csv(text, KNOWN)
    assert [(s.vehicle_id, s.energy_kwh) for s in sessions] == [("v1", 24.3), ("v2", 5.5)]
    assert [(e.line, e.field) for e in errors] == [(3, "plug_in_at"), (6, "energy_kwh")]
    assert "no UTC offset" in errors[0].reason
    assert str(errors[1]) == "line 6: energy_kwh: must be at least 0; got -1"
    s = sessions[0]
    assert s == Session("v1", "c1", datetime(2026, 11, 2, 17, 45, tzinfo=UTC), datetime(2026, 11, 3, 6, 10, tzinfo=UTC),
                        24.3, 38.0, 90.0, 11.0, datetime(2026, 11, 3, 6, 30, tzinfo=UTC), 40.0, "import")
    assert sessions[1].plug_in_at.tzinfo is UTC and sessions[1].plug_in_at.hour == 17


def test_a_quoted_cell_over_several_lines_counts_them_all_and_the_row_is_named_by_its_first():
    text = csv_text(GOOD + ',"multi\nline"',                              # lines 2-3
                    GOOD.replace("v1", "v2").replace(",40", ",101") + ",x",  # line 4
                    GOOD.replace("v1", "v3") + ',"a\n\nb"',                  # lines 5-7
                    GOOD.replace("24.3", "x") + ",",                         # line 8
                    header=HEADER + ",note")
    sessions, errors = parse_sessions_csv(text)
    assert [s.vehicle_id for s in sessions] == ["v1", "v3"]
    assert [(e.line, e.field) for e in errors] == [(4, "min_soc"), (8, "energy_kwh")]


RULES = [
    # (what is changed in GOOD, field, words in the reason)
    (("v1,", ","), "vehicle_id", "is required"),
    (("v1,", "v 1,"), "vehicle_id", "1-64 characters"),
    (("v1,", "v9,"), "vehicle_id", "unknown vehicle 'v9'"),
    ((",c1,", ",,"), "charger_id", "is required"),
    (("2026-11-02T17:45:00Z", "2026-11-02T17:45:00"), "plug_in_at", "no UTC offset"),
    (("2026-11-02T17:45:00Z", "02/11/2026 17:45"), "plug_in_at", "not an RFC 3339"),
    (("2026-11-02T17:45:00Z", "2026-02-30T17:45:00Z"), "plug_in_at", "not a valid date-time"),
    (("2026-11-03T06:10:00Z", ""), "plug_out_at", "is required"),
    (("2026-11-03T06:10:00Z", "2026-11-02T17:45:00Z"), "plug_out_at", "must be after plug_in_at"),
    (("2026-11-03T06:10:00Z", "2026-11-02T18:45:00+01:00"), "plug_out_at", "must be after plug_in_at"),
    ((",24.3,", ",-0.5,"), "energy_kwh", "at least 0"),
    ((",24.3,", ',"24,3",'), "energy_kwh", "decimal point"),
    ((",24.3,", ",nan,"), "energy_kwh", "finite"),
    ((",24.3,", ",,"), "energy_kwh", "is required"),
    ((",24.3,", ",250,"), "energy_kwh", "not plausible"),
    ((",24.3,", ",150.6,"), "energy_kwh", "150.6 kWh is more than max_power_kw allows (11 kW × 12.42 h + 10 % = 150.24 kWh)"),
    ((",38,", ",101,"), "soc_start", "at most 100"),
    ((",90,", ",-1,"), "soc_end", "at least 0"),
    ((",11,", ",401,"), "max_power_kw", "at most 400"),
    ((",11,", ",fast,"), "max_power_kw", "not a number"),
    (("2026-11-03T06:30:00Z", "2026-11-03 06:30"), "departure_declared_at", "not an RFC 3339"),
    (("2026-11-03T06:30:00Z", "2026-11-03T06:30:00"), "departure_declared_at", "no UTC offset"),
    ((",40", ",100.5"), "min_soc", "at most 100"),
    ((",40", ",40,extra"), "row", "has 11 fields, the header has 10"),
    ((",40", ""), "row", "has 9 fields"),
]


@pytest.mark.parametrize(("change", "field", "words"), RULES, ids=[f"{f}:{w}" for _, f, w in RULES])
def test_every_rule_names_the_line_and_field(change, field, words):
    old, new = change
    assert old in GOOD
    bad = GOOD.replace(old, new, 1)
    sessions, errors = parse_sessions_csv(csv_text(GOOD.replace("v1", "v2"), bad, GOOD.replace("v1", "v3")), KNOWN)
    assert [s.vehicle_id for s in sessions] == ["v2", "v3"]
    assert [(e.line, e.field) for e in errors] == [(3, field)], errors
    assert words in errors[0].reason


def test_a_target_soc_column_is_read_and_checked_against_the_minimum():
    header = HEADER + ",target_soc"
    rows = [GOOD + ",80", GOOD.replace("v1", "v2") + ",", GOOD.replace("v1", "v3") + ",39.5",
            GOOD.replace("v1", "v3").replace("2026-11-02T17:45:00Z", "2026-11-01T17:45:00Z", 1) + ",101",
            GOOD.replace("v1", "v3").replace("2026-11-02T17:45:00Z", "2026-10-31T17:45:00Z", 1)
            .replace(",40", ",") + ",30"]
    sessions, errors = parse_sessions_csv(csv_text(*rows, header=header), KNOWN)
    assert [(s.vehicle_id, s.min_soc, s.target_soc) for s in sessions] == [
        ("v1", 40.0, 80.0), ("v2", 40.0, None), ("v3", None, 30.0)]
    assert [str(e) for e in errors] == ["line 4: target_soc: must be at least min_soc (40); got 39.5",
                                        "line 5: target_soc: must be at most 100; got 101"]


def test_energy_up_to_the_power_limit_with_margin_is_accepted():
    # 11 kW for 12 h 25 min is 136.58 kWh; with 10 % 150.24 kWh.
    sessions, errors = parse_sessions_csv(csv_text(GOOD.replace(",24.3,", ",150.2,")))
    assert errors == [] and sessions[0].energy_kwh == 150.2
    sessions, errors = parse_sessions_csv(csv_text(GOOD.replace(",24.3,", ",150.2,").replace(",11,", ",,")))
    assert errors == []


def test_every_fault_of_a_row_is_reported():
    bad = "v9,,2026-11-02T17:45:00,2026-11-03T06:10:00Z,-1,38,190,11,,"
    _, errors = parse_sessions_csv(csv_text(bad), KNOWN)
    assert [e.field for e in errors] == ["charger_id", "plug_in_at", "energy_kwh", "soc_end", "vehicle_id"]
    assert {e.line for e in errors} == {2}


def test_duplicates_and_overlaps_of_a_vehicle_are_refused_against_the_accepted_rows_above():
    rows = [
        "v1,c1,2026-11-02T10:00:00Z,2026-11-02T12:00:00Z,5,,,,,",        # 2 accepted
        "v1,c1,2026-11-02T11:00:00+01:00,2026-11-02T13:00:00Z,5,,,,,",   # 3 same instant as line 2
        "v1,c1,2026-11-02T11:00:00Z,2026-11-02T13:00:00Z,5,,,,,",        # 4 begins inside line 2
        "v1,c1,2026-11-02T09:00:00Z,2026-11-02T10:30:00Z,5,,,,,",        # 5 ends inside line 2
        "v1,c1,2026-11-02T09:00:00Z,2026-11-02T13:00:00Z,5,,,,,",        # 6 ends inside line 2 too
        "v1,c1,2026-11-02T12:00:00Z,2026-11-02T14:00:00Z,5,,,,,",        # 7 touches: accepted
        "v1,c2,2026-11-02T08:00:00Z,2026-11-02T10:00:00Z,5,,,,,",        # 8 touches: accepted
        "v2,c2,2026-11-02T10:00:00Z,2026-11-02T12:00:00Z,5,,,,,",        # 9 another vehicle
        "v2,c2,2026-11-02T10:00:00Z,2026-11-02T12:00:00Z,-5,,,,,",       # 10 bad itself
        "v3,c3,2026-11-02T10:00:00Z,2026-11-02T12:00:00Z,-5,,,,,",       # 11 bad ...
        "v3,c3,2026-11-02T10:00:00Z,2026-11-02T12:00:00Z,5,,,,,",        # 12 ... does not block this one
        "v1,c1,2026-11-02T13:59:59Z,2026-11-02T15:00:00Z,5,,,,,",        # 13 begins inside line 7
    ]
    sessions, errors = parse_sessions_csv(csv_text(*rows), KNOWN)
    assert [(s.vehicle_id, s.plug_in_at.hour) for s in sessions] == [("v1", 10), ("v1", 12), ("v1", 8), ("v2", 10),
                                                                    ("v3", 10)]
    assert [(e.line, e.field) for e in errors] == [(3, "plug_in_at"), (4, "plug_in_at"), (5, "plug_out_at"),
                                                   (6, "plug_out_at"), (10, "energy_kwh"), (11, "energy_kwh"),
                                                   (13, "plug_in_at")]
    assert errors[0].reason == "duplicates line 2 (same vehicle_id and plug_in_at)"
    assert errors[1].reason == ("overlaps the session on line 2 of the same vehicle "
                                "(2026-11-02T10:00:00Z to 2026-11-02T12:00:00Z)")
    assert "line 2" in errors[2].reason and "line 2" in errors[3].reason and "line 7" in errors[6].reason


def test_the_header_decides_whether_the_file_is_usable():
    with pytest.raises(DomainError) as e:
        parse_sessions_csv(csv_text(GOOD, header=HEADER.replace("energy_kwh,", "")))
    assert e.value.field == "header" and "energy_kwh" in e.value.reason
    for text in ("", "\n"):
        with pytest.raises(DomainError) as e:
            parse_sessions_csv(text)
        assert e.value.field == "header"
    with pytest.raises(DomainError, match="soc_end appears twice"):
        parse_sessions_csv(csv_text(header=HEADER + ",soc_end"))
    # Case, spaces, a byte-order mark, other order, unknown and missing optional columns: fine.
    header = "\ufeffNote, Plug_Out_At ,vehicle_id,charger_id,plug_in_at,ENERGY_KWH,note"
    sessions, errors = parse_sessions_csv(csv_text("x,2026-11-02T20:00:00Z,v1,c1,2026-11-02T18:00:00Z,3,y",
                                                   header=header))
    assert errors == [] and sessions[0].plug_out_at.hour == 20 and sessions[0].soc_start is None
    assert parse_sessions_csv(csv_text()) == ([], [])


def test_the_example_in_the_documentation_is_valid():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "sessions-csv.md").read_text()
    example = re.search(r"```csv\n(.*?)```", doc, re.S).group(1)
    sessions, errors = parse_sessions_csv(example, {"v000001", "v000002"})
    assert errors == [] and len(sessions) == 3


def test_a_session_checks_its_own_invariants():
    t = datetime(2026, 11, 2, 18, tzinfo=timezone(timedelta(hours=1)))
    assert Session("v1", "c1", t, t + MIN, 1.0).plug_in_at == datetime(2026, 11, 2, 17, tzinfo=UTC)
    for kwargs, field in [({"plug_out_at": t}, "plug_out_at"), ({"energy_kwh": -1.0}, "energy_kwh"),
                          ({"soc_end": 101.0}, "soc_end"), ({"plug_in_at": t.replace(tzinfo=None)}, "plug_in_at"),
                          ({"target_soc": 100.5}, "target_soc"), ({"min_soc": 50.0, "target_soc": 49.0}, "target_soc")]:
        with pytest.raises(DomainError) as e:
            Session(**({"vehicle_id": "v1", "charger_id": "c1", "plug_in_at": t, "plug_out_at": t + MIN,
                        "energy_kwh": 1.0} | kwargs))
        assert e.value.field == field
    assert Session("v1", "c1", t, t + MIN, 1.0, min_soc=50.0, target_soc=50.0).target_soc == 50.0


# --- round trip ----------------------------------------------------------------------------------

OFFSETS = [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30)), timezone(timedelta(hours=14))]
ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
percent = st.none() | st.floats(0, 100)


@st.composite
def valid_sessions(draw) -> list[Session]:
    sessions = []
    for vehicle in draw(st.lists(ids, min_size=1, max_size=3, unique=True)):
        t = draw(st.datetimes(datetime(2000, 1, 1), datetime(2090, 1, 1), timezones=st.just(UTC)))
        for _ in range(draw(st.integers(1, 4))):
            t += timedelta(microseconds=draw(st.integers(0, 3 * 86400 * 10**6)))      # 0: touching
            out = t + timedelta(microseconds=draw(st.integers(1, 2 * 86400 * 10**6)))
            max_kw = draw(st.none() | st.floats(0, 400))
            min_soc = draw(percent)
            cap = 200.0 if max_kw is None else min(200.0, max_kw * ((out - t) / timedelta(hours=1)) * 1.1)
            sessions.append(Session(
                vehicle, draw(ids), t, out, draw(st.floats(0, cap)), draw(percent), draw(percent), max_kw,
                draw(st.none() | st.datetimes(datetime(2000, 1, 1), datetime(2090, 1, 1), timezones=st.just(UTC))),
                min_soc, target_soc=draw(st.none() | st.floats(0 if min_soc is None else min_soc, 100))))
            t = out
    return draw(st.permutations(sessions))


def _time(ts: datetime | None, tz) -> str:
    if ts is None:
        return ""
    text = ts.astimezone(tz).isoformat()
    return text.replace("+00:00", "Z") if tz is UTC and text.endswith("+00:00") else text


@settings(max_examples=150, deadline=None)
@given(valid_sessions(), st.permutations(REQUIRED_CSV_COLUMNS + OPTIONAL_CSV_COLUMNS + ("comment",)),
       st.sampled_from(OFFSETS), st.sampled_from(["\n", "\r\n"]))
def test_any_csv_of_valid_sessions_round_trips(sessions, columns, tz, newline):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for s in sessions:
        cell = {"comment": 'said "hi",\nthen left', "energy_kwh": repr(s.energy_kwh)}
        for name in ("plug_in_at", "plug_out_at", "departure_declared_at"):
            cell[name] = _time(getattr(s, name), tz)
        for name in ("soc_start", "soc_end", "max_power_kw", "min_soc", "target_soc"):
            cell[name] = "" if getattr(s, name) is None else repr(getattr(s, name))
        writer.writerow([cell.get(name, getattr(s, name, None)) for name in columns])
    parsed, errors = parse_sessions_csv(out.getvalue(), {s.vehicle_id for s in sessions})
    assert errors == []
    assert parsed == sessions


def test_row_errors_read_as_the_command_prints_them():
    assert str(RowError(7, "energy_kwh", "must be at least 0; got -1")) == "line 7: energy_kwh: must be at least 0; got -1"
