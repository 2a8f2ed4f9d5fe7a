"""The realised availability /ops/forecast draws is the forecaster's own target: computed from
telemetry, it equals what the forecaster's input (the sessions ingest derives and stores, with
`database_sessions`' pair kW, spread by `session_grid`) gives for the same MTUs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from flexfleet.domain.time import MTU
from flexfleet.forecast.grid import session_grid
from services.api.dashboard_forecast import realised
from services.forecaster.cli import database_sessions
from services.sessions import derive_and_store_sessions
from services.simulator.fleet import generate_fleet
from services.simulator.registry import write_fleet

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)     # 00:00 CET on 21 November
END = START + timedelta(days=1)


def _stay(vid: str, charger: str | None, plug_in: datetime, plug_out: datetime, every_s: int = 60) -> list[tuple]:
    """Plugged readings every `every_s` from plug-in, then an unplugged one at plug-out."""
    rows, ts = [], plug_in
    while ts < plug_out:
        rows.append((vid, ts, True, charger, 7.0, 50.0))
        ts += timedelta(seconds=every_s)
    rows.append((vid, plug_out, False, None, 0.0, 60.0))
    return rows


def test_realised_kw_equals_the_forecasters_target_from_the_stored_sessions(db_url):
    fleet = generate_fleet(12, seed=5, zone="SE3")
    homed = [v for v in fleet.vehicles if v.home_charger_id]
    v2g = [v for v in homed if v.spec.v2g_capable]
    one_way = [v for v in homed if not v.spec.v2g_capable]
    assert len(v2g) >= 2 and one_way, "the simulated fleet changed: pick another seed"
    cars = [v2g[0], v2g[1], one_way[0]]
    readings = (_stay(cars[0].vehicle_id, cars[0].home_charger_id, START - timedelta(hours=3),
                      START + timedelta(hours=7, minutes=40))
                + _stay(cars[1].vehicle_id, cars[1].home_charger_id, START + timedelta(hours=17, minutes=5),
                        START + timedelta(hours=23, minutes=50), every_s=300)
                + _stay(cars[2].vehicle_id, cars[2].home_charger_id, START + timedelta(hours=9, minutes=10),
                        START + timedelta(hours=13, minutes=22)))
    now = START + timedelta(hours=20, minutes=7)          # MTUs up to 20:00 UTC have ended
    with psycopg.connect(db_url) as conn:
        write_fleet(conn, fleet)
        conn.execute("SELECT flexfleet_ensure_telemetry_partitions(%s, %s)", (START - timedelta(hours=6), END))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO telemetry (vehicle_id, ts, plugged_in, charger_id, power_kw, soc_pct) "
                            "VALUES (%s, %s, %s, %s, %s, %s)", [r for r in readings if r[1] < now])
        conn.commit()
        shown = realised(conn, START, END, now)
        # The forecaster's path: sessions derived and stored as ingest does, read back as it reads them.
        derive_and_store_sessions(conn, START - timedelta(hours=6), now)
        conn.commit()
    sessions, specs = database_sessions(db_url, START, now)
    grid = session_grid(sessions, list(specs.index), START, int((now - START) // MTU))
    assert len(shown.starts) == grid.n_mtus == 80 and shown.starts[0] == START
    for direction, kw in (("up", grid.up_kw), ("down", grid.down_kw)):
        np.testing.assert_allclose(shown.kw[direction], kw.sum(axis=0, dtype=np.float64), atol=1e-3)
    down = np.asarray(shown.kw["down"])
    assert down[0] > 0 and down[40] > 0 and down[4 * 15] == 0   # +10 h: the one-way car; +15 h: nobody
    assert down[30] == pytest.approx(down[29] * 2 / 3, rel=1e-4)        # the first car leaves at +7:40
    assert down[4 * 17] == pytest.approx(down[4 * 17 + 1] * 2 / 3, rel=1e-4)   # the second arrives at +17:05
