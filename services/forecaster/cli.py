"""`flexfleet forecast backtest`: train on history, score 48-hour forecasts on the last days."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import pandas as pd
import psycopg
import typer
from rich.console import Console

from flexfleet.domain import pair_limits
from flexfleet.forecast.pipeline import backtest_sessions
from services.forecaster.report import write_report
from services.runtime.config import Settings

app = typer.Typer(name="forecast", help="Availability and flexibility forecasts.", no_args_is_help=True)


class Source(StrEnum):
    simulated = "simulated"
    database = "database"


def simulated_sessions(vehicles: int, weeks: int, seed: int, zone: str, end: datetime):
    """A simulated fleet's sessions with each pair's flexible kW."""
    from services.simulator.fleet import generate_fleet
    from services.simulator.telemetry import simulate_sessions

    fleet = generate_fleet(vehicles, seed=seed, zone=zone)
    start = end - timedelta(weeks=weeks)
    sessions = simulate_sessions(fleet, start, end, cadence_s=300, seed=seed)
    by_id = {v.vehicle_id: v for v in fleet.vehicles}
    chargers = {c.charger_id: c for c in fleet.chargers}
    limits = {pair: pair_limits(by_id[pair[0]], chargers[pair[1]])
              for pair in set(zip(sessions["vehicle_id"], sessions["charger_id"]))}
    sessions["up_kw"] = [limits[p].max_discharge_kw for p in zip(sessions["vehicle_id"], sessions["charger_id"])]
    sessions["down_kw"] = [limits[p].max_charge_kw for p in zip(sessions["vehicle_id"], sessions["charger_id"])]
    return sessions, [v.vehicle_id for v in fleet.vehicles], start


# Flexible kW of each stored session's vehicle-charger pair. The registry does not yet record
# through which current a V2G car discharges, so a V2G car on any bidirectional charger counts.
_DATABASE_SESSIONS = """
SELECT s.vehicle_id, s.charger_id, s.plug_in_at, s.plug_out_at, s.departure_declared_at,
       least(v.max_charge_kw, c.max_charge_kw) AS down_kw,
       CASE WHEN v.v2g_capable AND c.bidirectional
            THEN least(v.max_discharge_kw, c.max_discharge_kw, site.max_export_kw) ELSE 0 END AS up_kw
FROM charging_sessions s JOIN vehicles v USING (vehicle_id)
     JOIN chargers c ON c.charger_id = s.charger_id JOIN sites site ON site.site_id = c.site_id
WHERE s.plug_out_at > %(start)s AND s.plug_in_at < %(end)s
"""


def database_sessions(url: str, start: datetime, end: datetime):
    with psycopg.connect(url) as conn:
        rows = conn.execute(_DATABASE_SESSIONS, {"start": start, "end": end})
        sessions = pd.DataFrame(rows.fetchall(), columns=[d.name for d in rows.description])
        vehicle_ids = [r[0] for r in conn.execute("SELECT vehicle_id FROM vehicles ORDER BY 1")]
    return sessions, vehicle_ids


@app.command()
def backtest(
    source: Source = typer.Option(Source.simulated, help="Sessions of a simulated fleet, or those stored in DATABASE_URL."),
    vehicles: int = typer.Option(2000, min=10, help="Simulated fleet size."),
    weeks: int = typer.Option(8, min=3, help="Weeks of history, ending at --end."),
    test_days: int = typer.Option(14, min=1, help="Last days kept for scoring; the models never see them."),
    end: str = typer.Option("2026-11-23T00:00:00+01:00", help="End of the history, RFC 3339."),
    zone: str = typer.Option("SE3", help="Bidding zone (local time, holidays)."),
    seed: int = typer.Option(7, help="Seed of the simulated fleet and of the models."),
    out: Path = typer.Option(Path("out/forecast"), help="Where the report goes."),
) -> None:
    """Rolling-origin backtest: pinball loss, coverage and P90 coverage against seasonal naive.

    Writes report.html, summary.csv, forecasts.csv.gz, scores.json and PNG figures under OUT.
    The same inputs and seed give the same numbers."""
    console = Console()
    stop = datetime.fromisoformat(end).astimezone(UTC)
    began = time.perf_counter()
    with console.status("loading sessions") as status:
        if source is Source.simulated:
            sessions, vehicle_ids, start = simulated_sessions(vehicles, weeks, seed, zone, stop)
        else:
            settings = Settings.from_env()
            if not settings.database_url:
                raise typer.BadParameter("DATABASE_URL must be set for --source database")
            start = stop - timedelta(weeks=weeks)
            sessions, vehicle_ids = database_sessions(settings.database_url, start, stop)
        status.update(f"{len(sessions):,} sessions of {len(vehicle_ids):,} vehicles")
        result = backtest_sessions(sessions, vehicle_ids, zone, start, stop, test_days, seed,
                                   progress=lambda step: status.update(step))
    facts = {"source": source.value, "vehicles": len(vehicle_ids), "sessions": len(sessions),
             "history": f"{start:%Y-%m-%d} to {stop:%Y-%m-%d}", "test_days": test_days,
             "seconds": round(time.perf_counter() - began, 1)}
    page = write_report(result, out, "Availability forecast backtest", facts)
    console.print(result.summary[["direction", "forecaster", "pinball_mean", "p90_coverage", "width_10_90"]]
                  .round(3).to_string(index=False))
    console.print(f"report: {page.resolve()}")
