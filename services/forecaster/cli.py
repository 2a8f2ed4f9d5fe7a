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
    """A simulated fleet's sessions with each pair's flexible kW, the vehicles' specs (indexed by
    vehicle_id, the fleet's order) and the start of the history."""
    from services.simulator.fleet import generate_fleet
    from services.simulator.telemetry import simulate_sessions

    fleet = generate_fleet(vehicles, seed=seed, zone=zone)
    start = end - timedelta(weeks=weeks)
    sessions = with_flexible_kw(fleet, simulate_sessions(fleet, start, end, cadence_s=300, seed=seed))
    return sessions, fleet_specs(fleet), start


def with_flexible_kw(fleet, sessions: pd.DataFrame) -> pd.DataFrame:
    """The simulated sessions with the kW each vehicle-charger pair could discharge (up_kw) and
    charge (down_kw), as the forecaster counts flexibility (in place, and returned)."""
    by_id = {v.vehicle_id: v for v in fleet.vehicles}
    chargers = {c.charger_id: c for c in fleet.chargers}
    limits = {pair: pair_limits(by_id[pair[0]], chargers[pair[1]])
              for pair in set(zip(sessions["vehicle_id"], sessions["charger_id"]))}
    sessions["up_kw"] = [limits[p].max_discharge_kw for p in zip(sessions["vehicle_id"], sessions["charger_id"])]
    sessions["down_kw"] = [limits[p].max_charge_kw for p in zip(sessions["vehicle_id"], sessions["charger_id"])]
    return sessions


def fleet_specs(fleet) -> pd.DataFrame:
    """The simulated vehicles' battery specs, indexed by vehicle_id in the fleet's order."""
    return pd.DataFrame(
        {"battery_kwh": [v.spec.battery_kwh for v in fleet.vehicles],
         "usable_soc_min_pct": [v.spec.usable_soc_min_pct for v in fleet.vehicles],
         "usable_soc_max_pct": [v.spec.usable_soc_max_pct for v in fleet.vehicles],
         # The simulated fleet has discharged nothing yet: the whole yearly cap is left.
         "oem_cap_remaining_kwh": [v.spec.oem_discharge_cap_kwh_per_year for v in fleet.vehicles]},
        index=pd.Index([v.vehicle_id for v in fleet.vehicles], name="vehicle_id"), dtype=float)


# Flexible kW of each stored session's vehicle-charger pair. The registry does not yet record
# through which current a V2G car discharges, so a V2G car on any bidirectional charger counts.
_DATABASE_SESSIONS = """
SELECT s.vehicle_id, s.charger_id, s.plug_in_at, s.plug_out_at, s.departure_declared_at,
       s.soc_start, s.soc_end, s.max_power_kw, s.min_soc,
       least(v.max_charge_kw, c.max_charge_kw) AS down_kw,
       CASE WHEN v.v2g_capable AND c.bidirectional
            THEN least(v.max_discharge_kw, c.max_discharge_kw, site.max_export_kw) ELSE 0 END AS up_kw
FROM charging_sessions s JOIN vehicles v USING (vehicle_id)
     JOIN chargers c ON c.charger_id = s.charger_id JOIN sites site ON site.site_id = c.site_id
WHERE s.plug_out_at > %(start)s AND s.plug_in_at < %(end)s
"""


def database_sessions(url: str, start: datetime, end: datetime):
    """Stored sessions overlapping [start, end) with each pair's flexible kW, and the specs of
    every registered vehicle (indexed by vehicle_id)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(_DATABASE_SESSIONS, {"start": start, "end": end})
        sessions = pd.DataFrame(rows.fetchall(), columns=[d.name for d in rows.description])
        # Nothing records the energy already discharged under a maker's yearly cap yet, so the
        # whole yearly cap counts as remaining: optimistic for cars that did V2G this year;
        # becomes cap minus discharged-this-year once settlement counts it.
        rows = conn.execute("SELECT vehicle_id, battery_kwh, usable_soc_min_pct, usable_soc_max_pct, "
                            "oem_discharge_cap_kwh_per_year AS oem_cap_remaining_kwh FROM vehicles ORDER BY 1")
        specs = pd.DataFrame(rows.fetchall(), columns=[d.name for d in rows.description])
    specs = specs.set_index("vehicle_id").astype(float)
    return sessions, specs


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
    """Rolling-origin backtest: pinball loss, coverage and P90 coverage against seasonal naive, of
    flexible power and of the power held for 20 minutes, and the SoC and departure models' scores.

    Writes report.html, summary.csv, forecasts.csv.gz, scores.json and PNG figures under OUT.
    The same inputs and seed give the same numbers."""
    console = Console()
    stop = datetime.fromisoformat(end).astimezone(UTC)
    began = time.perf_counter()
    with console.status("loading sessions") as status:
        if source is Source.simulated:
            sessions, specs, start = simulated_sessions(vehicles, weeks, seed, zone, stop)
        else:
            settings = Settings.from_env()
            if not settings.database_url:
                raise typer.BadParameter("DATABASE_URL must be set for --source database")
            start = stop - timedelta(weeks=weeks)
            sessions, specs = database_sessions(settings.database_url, start, stop)
        status.update(f"{len(sessions):,} sessions of {len(specs):,} vehicles")
        result = backtest_sessions(sessions, specs, zone, start, stop, test_days, seed,
                                   progress=lambda step: status.update(step))
    facts = {"source": source.value, "vehicles": len(specs), "sessions": len(sessions),
             "history": f"{start:%Y-%m-%d} to {stop:%Y-%m-%d}", "test_days": test_days,
             "seconds": round(time.perf_counter() - began, 1)}
    page = write_report(result, out, "Availability forecast backtest", facts)
    console.print(result.summary[["direction", "forecaster", "pinball_mean", "p90_coverage", "width_10_90"]]
                  .round(3).to_string(index=False))
    if not result.models.empty:
        console.print(result.models[["model", "unit", "pinball_mean", "below_q10", "coverage_q10", "coverage_q90"]]
                      .round(3).to_string(index=False))
    console.print(f"report: {page.resolve()}")


# -- the running service: `flexfleet forecast run | show | replay` --------------------------------
# service.py imports database_sessions from this module, so these commands import it lazily.

_DURATION_UNITS = {"s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}


def _duration(value: str, option: str) -> timedelta:
    """'90s', '15min', '1h', '2d' as a timedelta; a BadParameter naming the option otherwise."""
    text = value.strip().lower()
    for unit in sorted(_DURATION_UNITS, key=len, reverse=True):
        number = text.removesuffix(unit)
        if number != text and number.strip().isdigit() and int(number) > 0:
            return timedelta(seconds=int(number) * _DURATION_UNITS[unit])
    raise typer.BadParameter(f"{value!r} is not a duration like 15min, 1h or 24h", param_hint=option)


def _database_url() -> str:
    settings = Settings.from_env()
    if not settings.database_url:
        raise typer.BadParameter("DATABASE_URL must be set (see `flexfleet up`)")
    return settings.database_url


@app.command()
def run(
    once: bool = typer.Option(False, "--once", help="Do one pass (train and issue if due, publish), then exit."),
    every: str = typer.Option("1h", help="Issue schedule on the MTU grid: 15min, 30min, 1h, ..."),
    retrain_every: str = typer.Option("24h", help="Retrain when the forecaster's data is this old."),
    zone: str = typer.Option("SE3", help="Bidding zone of the fleet (local time, holidays)."),
    history_weeks: int = typer.Option(8, min=2, help="Weeks of sessions a forecaster is trained on."),
    poll_s: float = typer.Option(60.0, min=1.0, help="Seconds between looks for new sessions."),
    metrics_port: int = typer.Option(None, min=0, max=65535,
                                     help="Serve Prometheus GET /metrics on this port (an internal one)."),
    health_port: int = typer.Option(None, min=0, max=65535,
                                    help="Serve GET /healthz and /metrics on this port (0: any free port, logged)."),
    health_grace_s: float = typer.Option(900.0, min=0.1,
                                         help="/healthz answers 503 when no pass ended for --poll-s plus this many "
                                              "seconds; must cover a retrain (about 4 min per 2,000 vehicles)."),
) -> None:
    """Run the forecaster service until Ctrl-C (or one pass with --once).

    Retrains when due, issues a 48-hour forecast on the schedule and whenever new charging
    sessions were imported, stores every forecast with its issue time and forecaster version, and
    publishes it on Kafka topic forecasts.v1. A database or broker outage is retried, never fatal.
    Needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS (e.g. from `flexfleet up`).

    With --health-port, GET /healthz is 200 while passes end in time and the last one succeeded,
    503 naming the reason once none ended for --poll-s plus --health-grace-s (a pass hung on the
    database) or the last one failed and none succeeded since."""
    import logging
    import signal
    from threading import Event

    from flexfleet.domain import DomainError
    from flexfleet.domain.zones import BiddingZone
    from services.forecaster.health import PassHealth
    from services.forecaster.service import ForecasterService, ServiceConfig
    from services.runtime.health import HealthServer
    from services.runtime.logs import configure_logging
    from services.runtime.metrics import push_metrics, start_metrics_server

    if health_port is not None and once:
        raise typer.BadParameter("serves a running loop: leave it out with --once", param_hint="--health-port")
    if health_port is not None and health_port == metrics_port and health_port != 0:
        raise typer.BadParameter("the health port serves /metrics too: leave out --metrics-port",
                                 param_hint="--health-port")
    configure_logging("forecaster")
    settings = Settings.from_env()
    if not settings.database_url or not settings.kafka_bootstrap_servers:
        raise typer.BadParameter("DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS must be set (see `flexfleet up`)")
    try:
        config = ServiceConfig(settings.database_url, settings.kafka_bootstrap_servers,
                               zone=BiddingZone.parse(zone, "--zone"), every=_duration(every, "--every"),
                               retrain_every=_duration(retrain_every, "--retrain-every"),
                               history=timedelta(weeks=history_weeks), poll_s=poll_s)
    except DomainError as e:
        option = {"history": "history-weeks"}.get(e.field, e.field.strip("-").replace("_", "-"))
        raise typer.BadParameter(e.reason, param_hint=f"--{option}") from None
    service = ForecasterService(config)
    if once:
        try:
            result = service.run_once(datetime.now(UTC))
        except psycopg.OperationalError as e:
            typer.echo(f"database unavailable: {e}", err=True)
            raise typer.Exit(1) from None
        except ValueError as e:  # e.g. too little history to train on
            typer.echo(str(e), err=True)
            raise typer.Exit(1) from None
        finally:
            service.close()
        if result.trained:
            typer.echo(f"trained: {result.trained}")
        typer.echo(f"forecast: {result.forecast_id} ({result.reason})" if result.forecast_id
                   else f"forecast: none due at {result.issued_at:%Y-%m-%d %H:%M}Z")
        typer.echo(f"published: {result.published}")
        if result.publish_error:
            typer.echo(f"not published yet (the next pass retries): {result.publish_error}", err=True)
        push_metrics("forecaster")
        return
    stop = Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if metrics_port is not None:
        server = start_metrics_server(metrics_port)
        logging.getLogger(__name__).info("metrics on http://0.0.0.0:%d/metrics", server.server_port)
    health = PassHealth(poll_s, health_grace_s)
    health_server = None
    if health_port is not None:
        health_server = HealthServer(health.heartbeat, port=health_port, details=health.details,
                                     problem=health.problem).start()
        logging.getLogger(__name__).info("health and metrics on http://0.0.0.0:%d/healthz and /metrics "
                                         "(stale after %.0f s)", health_server.port,
                                         health.heartbeat.stale_after_s)
    try:
        service.run(stop, on_pass=health.record)
    finally:
        if health_server is not None:
            health_server.stop()
    typer.echo(f"forecaster stopped after {service.passes} passes ({service.failures} failed)")


@app.command()
def show(
    forecast_id: str = typer.Argument(None, help="A stored forecast; the latest of --zone by default."),
    zone: str = typer.Option("SE3", help="Bidding zone whose latest forecast to show."),
    hours: int = typer.Option(6, min=1, max=48, help="Hours from the issue time to show."),
    endurance: int = typer.Option(0, min=0, help="Endurance in minutes (0, 20, 60, 120)."),
) -> None:
    """Show a stored forecast (the latest by default) as a table.

    P10/P50/P90 of the fleet's flexible kW per direction and MTU, and the P90 volume a bid may
    offer, for the first hours after the issue time. Needs DATABASE_URL."""
    from rich.table import Table

    from flexfleet.domain import DomainError
    from flexfleet.domain.zones import BiddingZone
    from services.forecaster.store import NotFound, forecast_info, latest_forecast, load_forecast

    try:
        with psycopg.connect(_database_url()) as conn:
            if forecast_id:
                info = forecast_info(conn, forecast_id)
            else:
                info = latest_forecast(conn, BiddingZone.parse(zone, "--zone"))
            if info is None:
                typer.echo(f"no forecast of {zone} is stored yet (run `flexfleet forecast run --once`)", err=True)
                raise typer.Exit(1)
            forecast = load_forecast(conn, info.forecast_id, vehicles=False)
    except (DomainError, NotFound) as e:
        typer.echo(str(e).strip("'\""), err=True)
        raise typer.Exit(2) from None
    portfolio = forecast.portfolio
    if "endurance_min" in portfolio.columns:
        portfolio = portfolio[portfolio["endurance_min"] == endurance]
        if portfolio.empty:
            raise typer.BadParameter(f"this forecast has no rows for {endurance} min", param_hint="--endurance")
    elif endurance:
        raise typer.BadParameter("this forecast has no endurance rows", param_hint="--endurance")
    portfolio = portfolio[portfolio["target_start"] < pd.Timestamp(info.issued_at) + pd.Timedelta(hours=hours)]
    tz = info.zone.tzinfo
    table = Table(title=f"forecast {info.forecast_id}", caption=(
        f"{info.zone} issued {info.issued_at.astimezone(tz):%Y-%m-%d %H:%M %Z} by {info.forecaster_version}; "
        f"kW, endurance {endurance} min; {'published' if info.published else 'not yet published'}"))
    table.add_column("MTU", style="bold")
    for direction in ("up", "down"):
        for label in ("P10", "P50", "P90", "bid P90"):
            table.add_column(f"{direction} {label}", justify="right")
    by_direction = {d: frame.set_index("target_start") for d, frame in portfolio.groupby("direction")}
    for start in sorted(portfolio["target_start"].unique()):
        cells = [pd.Timestamp(start).tz_convert(tz).strftime("%a %H:%M")]
        for direction in ("up", "down"):
            row = by_direction[direction].loc[start] if direction in by_direction else None
            cells += ["" if row is None else f"{row[c]:,.0f}" for c in ("q10", "q50", "q90", "p90_kw")]
        table.add_row(*cells)
    Console(width=140).print(table)


@app.command("replay")
def replay_command(
    forecast_id: str = typer.Argument(..., help="The stored forecast to issue again."),
) -> None:
    """Issue a stored forecast again and compare it with the stored one.

    Uses the stored forecaster and the sessions known at the issue time. Prints `identical`, or
    `differs` with the largest difference and exits 1. Needs DATABASE_URL."""
    from flexfleet.domain import DomainError
    from services.forecaster.service import replay
    from services.forecaster.store import NotFound

    url = _database_url()
    try:
        with psycopg.connect(url) as conn:
            result = replay(conn, forecast_id, url)
    except (DomainError, NotFound) as e:
        typer.echo(str(e).strip("'\""), err=True)
        raise typer.Exit(2) from None
    info = result.stored
    known = ("no sessions" if info.sessions_known_at is None
             else f"sessions imported by {info.sessions_known_at:%Y-%m-%d %H:%M:%S}Z")
    facts = (f"forecast {info.forecast_id} issued {info.issued_at:%Y-%m-%d %H:%M}Z by {info.forecaster_version} "
             f"from {result.sessions} {known}" + ("; per-vehicle rows pruned, portfolio compared"
                                                  if result.vehicles_pruned else ""))
    if result.identical:
        typer.echo(f"identical: {facts}")
        return
    d = result.difference
    typer.echo(f"differs: {facts}")
    typer.echo(f"largest difference: {d.largest:.6g} in {d.where}: {d.detail}")
    raise typer.Exit(1)
