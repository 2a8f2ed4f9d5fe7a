"""`flexfleet dispatch day`: a simulated dispatch day end to end (services/dispatcher/day.py).

Without --database-url (or DATABASE_URL) an embedded PostgreSQL is started and removed; without
--vtn a VTN is served on that database in a process of its own. The fleet is the simulator's;
the day's bids are planned by the bidder on what the simulated fleet will really do (perfect
foresight: see `plan_with_foresight`), cleared against the simulated market, and dispatched.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import psycopg
import typer
from rich.console import Console

from flexfleet.domain.errors import DomainError
from flexfleet.domain.zones import BiddingZone
from services.dispatcher.day import (Vtn, busiest_hours, check_broken, plan_with_foresight, run_day, serve_vtn,
                                     simulated_fleet)
from services.dispatcher.day_report import print_report, write_report
from services.dispatcher.deliveries import DELIVERIES_TOPIC, make_producer, publish_pending
from services.runtime.config import Settings
from services.runtime.services import database, ensure_topics
from services.ven_agent.cli import _broken

console = Console(width=160)


def dispatch_day(
    day: datetime = typer.Option(..., "--date", formats=["%Y-%m-%d"], help="The local delivery day to simulate."),
    vehicles: int = typer.Option(2000, min=1, help="Size of the simulated fleet."),
    zone: str = typer.Option("SE3", help="Bidding zone (its local day and products)."),
    broken: list[str] = typer.Option([], "--broken", help="SITE=MODE, a site broken on purpose; MODE one of "
                                     "ignores-events, slow, offline (or offline@EPOCH_S: from then on); repeatable."),
    out: Path = typer.Option(Path("out/dispatch-day"), help="Where report.json, report.png and the history go."),
    seed: int = typer.Option(7, help="Fleet, sessions, clearing and frequency seed."),
    car_hours: int = typer.Option(None, min=1, help="Simulate only the busiest hours whose obligations list at "
                                  "most this many cars in all (default: the whole day)."),
    database_url: str = typer.Option(None, "--database-url", envvar="DATABASE_URL",
                                     help="PostgreSQL to use (default: an embedded one, removed afterwards)."),
    vtn: str = typer.Option(None, "--vtn", envvar="FLEXFLEET_VTN_URL",
                            help="A VTN on that database (…/openadr3/3.0.1); default: one served here."),
    client_id: str = typer.Option(None, "--client-id", envvar="FLEXFLEET_BL_CLIENT_ID",
                                  help="The business logic's client at --vtn."),
    client_secret: str = typer.Option(None, "--client-secret", envvar="FLEXFLEET_BL_CLIENT_SECRET",
                                      help="Its secret."),
) -> None:
    """Plan, clear and dispatch a day's obligations to the simulated fleet's site agents over
    OpenADR, verify delivery and attribute the shortfall per site; prints the report and
    writes OUT/report.json and OUT/report.png."""
    began = time.perf_counter()
    try:
        zone = BiddingZone.parse(zone).value
    except ValueError as exc:
        raise typer.BadParameter(getattr(exc, "reason", str(exc)), param_hint="--zone") from None
    if vtn and not (client_id and client_secret):
        raise typer.BadParameter("give the business logic's --client-id and --client-secret with --vtn",
                                 param_hint="--vtn")
    if vtn and not database_url:
        raise typer.BadParameter("a VTN given with --vtn must be on --database-url (the site agents' clients are "
                                 "registered there)", param_hint="--database-url")
    faults = _broken(broken)
    settings = Settings.from_env()
    settings = Settings(database_url, settings.kafka_bootstrap_servers, settings.state_dir)
    with ExitStack() as stack:
        with console.status("starting PostgreSQL" if not database_url else "migrating the database"):
            url = stack.enter_context(database(settings))
        with psycopg.connect(url, autocommit=True) as conn:
            with console.status(f"simulating {vehicles:,} vehicles around {day.date()}"):
                fleet, sessions = simulated_fleet(conn, vehicles, day.date(), zone, seed, out / "sessions_history.csv")
            try:
                check_broken(fleet, faults)
            except DomainError as exc:
                raise typer.BadParameter(exc.reason, param_hint="--broken") from None
            with console.status(f"planning and clearing the bids of {day.date()}"):
                stored, obligations = plan_with_foresight(conn, fleet, sessions, day.date(), zone, seed)
        console.print(f"{len(stored.bids)} bids planned, {len(obligations)} accepted as obligations "
                      f"({sum(len(o.vehicles) for o in obligations):,} cars listed)")
        if not obligations:
            console.print("[red]error[/red] no bid was accepted: nothing to dispatch")
            raise typer.Exit(1)
        windows = None
        if car_hours is not None:
            windows = busiest_hours(obligations, car_hours)
            if not windows:
                raise typer.BadParameter(f"no hour's obligations list at most {car_hours} cars",
                                         param_hint="--car-hours")
        server = Vtn(vtn, client_id, client_secret) if vtn else stack.enter_context(serve_vtn(url))
        result = run_day(url, server, fleet, sessions, obligations, windows=windows, broken=faults, seed=seed,
                         console=console)
        published = 0
        if settings.kafka_bootstrap_servers:
            ensure_topics(settings.kafka_bootstrap_servers, {DELIVERIES_TOPIC: 1})
            producer = make_producer(settings.kafka_bootstrap_servers)
            try:
                with psycopg.connect(url) as conn:
                    published = publish_pending(conn, producer)
            finally:
                producer.close(timeout=5)
    print_report(result, console, BiddingZone.parse(zone).timezone)
    paths = write_report(result, out, f"Simulated dispatch day {day.date()}: {vehicles:,} vehicles ({zone}), "
                                      f"local time")
    console.print(f"steps (s): {result.seconds}; published {published} on {DELIVERIES_TOPIC}")
    console.print(f"{len(result.obligations)} obligation MTUs verified in {time.perf_counter() - began:.0f} s; "
                  f"{paths['json']}, {paths['png']}")
