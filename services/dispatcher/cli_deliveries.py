"""`flexfleet dispatch verify`: verify a delivery day's obligations, store and publish the results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from flexfleet.dispatch.baselines import VerificationInputError
from flexfleet.markets.packaged import default_catalogue
from services.dispatcher.deliveries import (DELIVERIES_TOPIC, make_producer, publish_pending, shortfall_by_site,
                                            verify_deliveries, write_frequency)
from services.runtime.config import Settings
from services.runtime.metrics import push_metrics
from services.simulator.market import frequency_day

app = typer.Typer(name="dispatch", help="Dispatch: delivery verification.", no_args_is_help=True)
console = Console(width=160)


@app.callback()
def dispatch() -> None:
    """Dispatch: delivery verification (a group, so that `verify` is a subcommand on its own too)."""


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


@app.command()
def verify(
    day: datetime = typer.Option(..., formats=["%Y-%m-%d"], help="Delivery day (local)."),
    timezone: str = typer.Option("Europe/Stockholm", help="The delivery day's timezone."),
    simulate_frequency: bool = typer.Option(
        False, "--simulate-frequency", help="Store the simulator's frequency for the day first (demo and tests)."),
    seed: int = typer.Option(0, help="Seed of the simulated frequency."),
    publish: bool = typer.Option(True, help="Relay the results to deliveries.v1 (needs KAFKA_BOOTSTRAP_SERVERS)."),
    topic: str = typer.Option(DELIVERIES_TOPIC, help="Topic to publish on."),
) -> None:
    """Verify every obligation of the day: delivered share, response times, shortfall per site."""
    settings = Settings.from_env()
    if not settings.database_url:
        raise typer.BadParameter("DATABASE_URL must be set (see `flexfleet up`)")
    tz = ZoneInfo(timezone)
    start = datetime.combine(day.date(), datetime.min.time(), tz).astimezone(UTC)
    end = datetime.combine(day.date() + timedelta(days=1), datetime.min.time(), tz).astimezone(UTC)
    with psycopg.connect(settings.database_url) as conn:
        if simulate_frequency:
            written = write_frequency(conn, frequency_day(day.date(), seed=seed), source=f"simulator seed {seed}")
            console.print(f"stored {written} frequency samples")
        try:
            result = verify_deliveries(conn, start, end, catalogue=default_catalogue())
        except VerificationInputError as exc:
            console.print(f"[red]error[/red] {exc}")
            raise typer.Exit(2) from None
        sent = 0
        if publish and settings.kafka_bootstrap_servers:
            producer = make_producer(settings.kafka_bootstrap_servers)
            try:
                sent = publish_pending(conn, producer, topic)
            finally:
                producer.close(timeout=5)
    table = Table(title=f"Deliveries on {day.date()} ({len(result.deliveries)} obligation MTUs)")
    for column in ("obligation", "product", "MTU (UTC)", "MW", "delivered", "capacity", "response",
                   "response s", "short MWh", "worst site"):
        table.add_column(column, justify="right")
    for d in result.deliveries:
        worst = max(d.sites, key=lambda s: s.shortfall_mw)
        table.add_row(d.obligation_id[-12:], d.product_id, f"{d.mtu_start:%H:%M}", f"{d.required_mw:.3f}",
                      f"{d.delivered_share:.1%}", _fmt(d.capacity_share, ".1%"), _fmt(d.response_share, ".1%"),
                      "never" if d.activations and d.response_time_s is None else _fmt(d.response_time_s, ".0f"),
                      f"{d.shortfall_mwh:.3f}",
                      worst.site_id if worst.shortfall_mw > 0 else "-")
    console.print(table)
    for site, mwh in list(shortfall_by_site(result.deliveries).items())[:10]:
        console.print(f"shortfall {mwh:.3f} MWh at site {site}")
    for oid, why in result.skipped:
        console.print(f"[yellow]not verified[/yellow] {oid}: {why}")
    console.print(f"stored {result.stored} new or changed, {result.unchanged} unchanged; published {sent}")
    push_metrics("dispatch-verify")
