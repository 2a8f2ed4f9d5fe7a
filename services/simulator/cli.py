"""`flexfleet simulate`: a simulated fleet registered in the database and streaming telemetry."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
import typer
from rich.console import Console
from rich.progress import Progress

from flexfleet.domain import mtu_floor, parse_rfc3339
from services.ingest.worker import TELEMETRY_TOPIC
from services.runtime.config import Settings
from services.simulator.fleet import generate_fleet
from services.simulator.publish import publish
from services.simulator.registry import write_fleet
from services.simulator.telemetry import estimate_messages, simulate


def simulate_command(
    vehicles: int = typer.Option(500, min=1, help="Fleet size."),
    days: float = typer.Option(2.0, min=0.001, help="Simulated days, ending at --end."),
    end: str = typer.Option("", help="End of the simulated period, RFC 3339 (default: now, to the MTU)."),
    cadence_s: int = typer.Option(60, min=1, help="Seconds between readings per vehicle (1 = FCR-D measurement mode)."),
    seed: int = typer.Option(7, help="The same seed gives the same fleet and the same telemetry."),
    zone: str = typer.Option("SE3", help="Bidding zone of the fleet."),
    bad_share: float = typer.Option(0.0, min=0.0, max=0.5, help="Share of readings replaced by broken messages."),
    topic: str = typer.Option(TELEMETRY_TOPIC, help="Topic to publish to."),
    register: bool = typer.Option(True, help="Write the fleet into the registry tables first."),
) -> None:
    """Simulate a fleet, register it and publish its telemetry to Kafka.

    Needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS (e.g. from `flexfleet up`). Runs as fast as it
    can: the clock is fast-forwarded."""
    settings = Settings.from_env()
    if not settings.kafka_bootstrap_servers or (register and not settings.database_url):
        raise typer.BadParameter("DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS must be set (see `flexfleet up`)")
    stop = parse_rfc3339(end, "--end") if end else mtu_floor(datetime.now(UTC))
    start = stop - timedelta(days=days)
    fleet = generate_fleet(vehicles, seed=seed, zone=zone)
    if register:
        with psycopg.connect(settings.database_url) as conn:
            write_fleet(conn, fleet)
    broken: Counter[str] = Counter()

    def counted(messages):
        for m in messages:
            if m.expected:
                broken[m.expected] += 1
            yield m

    console = Console()
    with Progress(console=console) as bar:
        task = bar.add_task(f"publishing to {topic}", total=estimate_messages(fleet, start, stop, cadence_s))
        sent = publish(counted(simulate(fleet, start, stop, cadence_s, seed, bad_share)),
                       settings.kafka_bootstrap_servers, topic, lambda n: bar.update(task, completed=n))
        bar.update(task, total=sent)
    console.print(f"published {sent:,} messages for {vehicles} vehicles from {start:%Y-%m-%d %H:%M} "
                  f"to {stop:%Y-%m-%d %H:%M} UTC; broken on purpose: {dict(broken) or 'none'}")
