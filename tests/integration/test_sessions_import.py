"""Charging sessions against the real PostgreSQL: `flexfleet import sessions` and derivation from
stored telemetry in windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from typer.testing import CliRunner

from flexfleet.sessions import derive_sessions
from flexfleet.telemetry import COLUMNS, FleetLimits, Limits, Reading, parse_reading
from services.cli import app
from services.sessions import derive_and_store_sessions
from services.simulator.fleet import generate_fleet
from services.simulator.registry import write_fleet
from services.simulator.telemetry import simulate

pytestmark = pytest.mark.integration

runner = CliRunner()
HEADER = "vehicle_id,charger_id,plug_in_at,plug_out_at,energy_kwh,soc_start,soc_end,max_power_kw,departure_declared_at,min_soc"
ROWS = [
    "v000001,c000001,2026-11-02T17:45:00Z,2026-11-03T06:10:00Z,24.3,38,90,11,2026-11-03T06:30:00Z,40",  # 2
    "v000001,c000001,2026-11-03T17:20:00+01:00,2026-11-04T07:05:00+01:00,9.8,,,7.4,,",                 # 3
    "ghost,c000001,2026-11-02T17:45:00Z,2026-11-03T06:10:00Z,5,,,,,",                                 # 4
    "v000002,c000002,2026-11-02T17:45:00,2026-11-03T06:10:00Z,5,,,,,",                                # 5
    "v000002,c000002,2026-11-03T08:05:00Z,2026-11-03T15:40:00Z,12.1,55.5,80,11,,",                    # 6
    "v000001,c000001,2026-11-03T05:00:00Z,2026-11-03T08:00:00Z,3,,,,,",                               # 7
    "v000003,c000003w,2026-11-03T08:05:00Z,2026-11-03T10:05:00Z,31,,,11,,",                           # 8
]


@pytest.fixture
def fleet_db(db_url, monkeypatch):
    fleet = generate_fleet(12, seed=6)
    with psycopg.connect(db_url) as conn:
        write_fleet(conn, fleet)
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url, fleet


def write_csv(path: Path, *rows: str, header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def stored(db_url: str) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT vehicle_id, charger_id, plug_in_at, plug_out_at, energy_kwh, soc_start, "
                            "max_power_kw, min_soc, complete, source FROM charging_sessions "
                            "ORDER BY vehicle_id, plug_in_at").fetchall()


def test_import_stores_the_good_rows_names_the_bad_ones_and_is_idempotent(fleet_db, tmp_path):
    db_url, _ = fleet_db
    path = write_csv(tmp_path / "sessions.csv", *ROWS)
    result = runner.invoke(app, ["import", "sessions", str(path)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[:3] == ["inserted: 3", "already present: 0", "rejected: 4"]
    assert lines[3] == "line 4: vehicle_id: unknown vehicle 'ghost': not in the fleet registry"
    assert lines[4].startswith("line 5: plug_in_at: has no UTC offset")
    assert lines[5].startswith("line 7: plug_in_at: overlaps the session on line 2 of the same vehicle")
    assert lines[6].startswith("line 8: energy_kwh: 31 kWh is more than max_power_kw allows")
    rows = stored(db_url)
    assert [(r[0], r[2]) for r in rows] == [
        ("v000001", datetime(2026, 11, 2, 17, 45, tzinfo=UTC)), ("v000001", datetime(2026, 11, 3, 16, 20, tzinfo=UTC)),
        ("v000002", datetime(2026, 11, 3, 8, 5, tzinfo=UTC))]
    first, second = rows[0], rows[1]
    assert first[1:] == ("c000001", datetime(2026, 11, 2, 17, 45, tzinfo=UTC), datetime(2026, 11, 3, 6, 10, tzinfo=UTC),
                         24.3, 38.0, 11.0, 40.0, True, "import")
    assert second[3] == datetime(2026, 11, 4, 6, 5, tzinfo=UTC) and second[5] is None
    assert second[6] == pytest.approx(7.4)

    again = runner.invoke(app, ["import", "sessions", str(path)])
    assert again.exit_code == 1
    assert again.output.splitlines()[:3] == ["inserted: 0", "already present: 3", "rejected: 4"]
    assert stored(db_url) == rows

    # The rejected rows fixed: the whole file again adds just them.
    fixed = [ROWS[0], ROWS[1], ROWS[3].replace("17:45:00,", "17:45:00Z,"), ROWS[4],
             ROWS[5].replace("05:00:00Z", "07:00:00Z"), ROWS[6].replace(",31,", ",21,")]
    result = runner.invoke(app, ["import", "sessions", str(write_csv(tmp_path / "fixed.csv", *fixed))])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["inserted: 3", "already present: 3", "rejected: 0"]
    assert len(stored(db_url)) == 6


def test_an_unusable_file_imports_nothing(fleet_db, tmp_path):
    db_url, _ = fleet_db
    path = write_csv(tmp_path / "sessions.csv", *ROWS, header=HEADER.replace(",energy_kwh", ""))
    result = runner.invoke(app, ["import", "sessions", str(path)])
    assert result.exit_code == 1
    assert "header: missing required column(s): energy_kwh" in result.output
    path.write_bytes("vehicle_id\nv\xe9hicule\n".encode("latin-1"))
    result = runner.invoke(app, ["import", "sessions", str(path)])
    assert result.exit_code == 1 and "file: is not UTF-8 text" in result.output
    assert stored(db_url) == []


def test_only_the_first_fifty_rejections_are_listed(fleet_db, tmp_path):
    bad = [f"v000001,c1,2026-11-{d:02d}T10:00:00Z,2026-11-{d:02d}T11:00:00Z,-1,,,,," for d in range(1, 29)] * 2
    result = runner.invoke(app, ["import", "sessions", str(write_csv(tmp_path / "bad.csv", *bad))])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[2] == "rejected: 56" and len(lines) == 3 + 50 + 1 and lines[-1] == "... and 6 more rejected rows"


def test_the_command_needs_a_database(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    result = runner.invoke(app, ["import", "sessions", str(write_csv(tmp_path / "s.csv", ROWS[0]))])
    assert result.exit_code == 2 and "DATABASE_URL" in result.output


# --- derivation from stored telemetry ------------------------------------------------------------

START = datetime(2026, 11, 20, tzinfo=UTC)
END = START + timedelta(days=2)
MID = START + timedelta(hours=37)   # an evening: many cars plugged in across it


def store_telemetry(db_url: str, fleet) -> list[Reading]:
    limits = FleetLimits(
        {v.vehicle_id: Limits(v.spec.max_ac_charge_kw, v.spec.max_discharge_kw) for v in fleet.vehicles},
        {c.charger_id: Limits(c.max_charge_kw, c.max_discharge_kw) for c in fleet.chargers})
    rows = [parse_reading(m.value, limits, END) for m in simulate(fleet, START, END, cadence_s=300, seed=6)]
    assert all(isinstance(r, Reading) for r in rows)
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT flexfleet_ensure_telemetry_partitions(%s, %s)", (START, END))
        with cur.copy(f"COPY telemetry ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
    return rows


def stored_sessions(db_url: str) -> pd.DataFrame:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT vehicle_id, charger_id, plug_in_at, plug_out_at, energy_kwh, soc_start, soc_end, "
                            "complete, source FROM charging_sessions ORDER BY vehicle_id, plug_in_at").fetchall()
    frame = pd.DataFrame(rows, columns=["vehicle_id", "charger_id", "plug_in_at", "plug_out_at", "energy_kwh",
                                        "soc_start", "soc_end", "complete", "source"])
    for column in ("plug_in_at", "plug_out_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True).dt.as_unit("ns")
    return frame


def test_sessions_derived_window_by_window_equal_those_of_the_whole_period(fleet_db):
    db_url, fleet = fleet_db
    readings = pd.DataFrame(store_telemetry(db_url, fleet), columns=list(COLUMNS))
    readings["ts"] = pd.to_datetime(readings["ts"], utc=True)
    # Clocks that run behind put a few readings before START: outside every window read.
    expected = derive_sessions(readings[(readings["ts"] >= START) & (readings["ts"] < END)], data_end=END)
    assert (~expected["complete"]).any() and len(expected) > 30

    with psycopg.connect(db_url) as conn:
        first = derive_and_store_sessions(conn, START, MID, vehicles_per_batch=5)
        after_first = stored_sessions(db_url)
        assert first == len(after_first) and (~after_first["complete"]).sum() >= 3   # open at MID
        derive_and_store_sessions(conn, MID, END, vehicles_per_batch=5)
        after_second = stored_sessions(db_url)
        # A window derived again, and the whole period: the same sessions, no truncated copies.
        derive_and_store_sessions(conn, MID, END, vehicles_per_batch=5)
        derive_and_store_sessions(conn, START, END, vehicles_per_batch=7)
    got = stored_sessions(db_url)
    pd.testing.assert_frame_equal(got, after_second)
    assert (got["source"] == "telemetry").all()
    key = ["vehicle_id", "charger_id", "plug_in_at", "plug_out_at", "complete"]
    pd.testing.assert_frame_equal(got[key], expected[key].astype({"vehicle_id": object, "charger_id": object}),
                                  check_dtype=False)
    assert got["energy_kwh"].to_numpy() == pytest.approx(expected["energy_kwh"].to_numpy(), abs=1e-6)
    assert got["soc_end"].to_numpy() == pytest.approx(expected["soc_end"].to_numpy(), abs=0.05, nan_ok=True)
    # The sessions open at MID were taken up by the second window under the same key: extended
    # past MID, or closed by a silence of max_gap that began before it.
    reopened = after_first.loc[~after_first["complete"], ["vehicle_id", "plug_in_at"]].merge(got)
    assert len(reopened) == (~after_first["complete"]).sum()
    assert (reopened["complete"] | (reopened["plug_out_at"] > MID)).all()
    assert (reopened["plug_out_at"] > MID).sum() >= 3


def test_derivation_needs_an_ordered_window(db_url):
    with psycopg.connect(db_url) as conn, pytest.raises(ValueError, match="end: must be after start"):
        derive_and_store_sessions(conn, END, START)
