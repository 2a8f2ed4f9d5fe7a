"""The `flexfleet` command line: one entry point for every service and the demo."""

from __future__ import annotations

from pathlib import Path

import typer

from services.api.cli import app as accounts_app
from services.bidder.cli import app as bid_app
from services.bidder.cli import markets_app
from services.demo import DemoOptions, run_demo
from services.dispatcher.cli_bl import app as dispatch_app
from services.dispatcher.cli_day import dispatch_day
from services.dispatcher.cli_deliveries import verify as dispatch_verify
from services.forecaster.cli import app as forecast_app
from services.ingest.cli import ingest
from services.runtime.cli import app as runtime_app
from services.sessions_cli import app as import_app
from services.settlement.cli import settle_command
from services.simulator.cli import simulate_command
from services.ven_agent.cli import app as ven_app

app = typer.Typer(
    help="flexfleet: pool EVs (V1G and V2G) into a virtual power plant.",
    no_args_is_help=True, add_completion=False)
app.add_typer(runtime_app)
app.command("simulate")(simulate_command)
app.command("ingest")(ingest)
app.add_typer(import_app, name="import")
app.add_typer(forecast_app)
app.add_typer(bid_app)
app.add_typer(markets_app)
dispatch_app.command("verify")(dispatch_verify)
dispatch_app.command("day")(dispatch_day)
app.add_typer(dispatch_app)
app.add_typer(ven_app)
app.command("settle")(settle_command)
app.add_typer(accounts_app, name="accounts")


@app.command()
def demo(
    vehicles: int = typer.Option(500, min=1, help="Fleet size."),
    days: int = typer.Option(2, min=1, help="Simulated days, ending now."),
    seed: int = typer.Option(7, help="Seed: the same seed gives the same fleet and telemetry."),
    out: Path = typer.Option(Path("out"), help="Output directory (the demo writes under out/demo)."),
    cadence_s: int = typer.Option(60, min=1, help="Seconds between readings per vehicle."),
    ingest_workers: int = typer.Option(1, min=1, help="Ingest processes in the consumer group."),
    history_weeks: int = typer.Option(8, min=2, help="Weeks of imported charging sessions before the streamed days."),
    serve: bool = typer.Option(True, help="Serve the dashboard afterwards until Ctrl-C (--no-serve: exit)."),
    port: int = typer.Option(8000, min=0, max=65535, help="The dashboard's port (0: any free one)."),
) -> None:
    """Run the platform's main job on embedded defaults, then serve the dashboard.

    A simulated fleet streams through Kafka into the database; outputs and a summary land under
    OUT/demo; the dashboard's address and logins are printed at the end. DATABASE_URL and
    KAFKA_BOOTSTRAP_SERVERS, when set, are used instead."""
    run_demo(DemoOptions(vehicles=vehicles, days=days, seed=seed, out=out, cadence_s=cadence_s,
                         ingest_workers=ingest_workers, history_weeks=history_weeks,
                         serve_port=port if serve else None))


if __name__ == "__main__":
    app()
