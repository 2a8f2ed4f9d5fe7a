"""`flexfleet dispatch send|left|vtn`: obligations to OpenADR events in the VTN, re-dispatch when
a car leaves, and the VTN itself. The VTN and the business-logic client's credentials come from options or from
FLEXFLEET_VTN_URL, FLEXFLEET_BL_CLIENT_ID and FLEXFLEET_BL_CLIENT_SECRET; the database from
DATABASE_URL."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

import psycopg
import requests
import typer
from rich.console import Console
from rich.table import Table

from flexfleet.domain.errors import DomainError
from flexfleet.domain.time import delivery_day_bounds, parse_rfc3339
from services.dispatcher.bl import Dispatcher, DispatchReport, bl_client
from services.api.settings import SECRET_ENV
from services.runtime.config import Settings
from services.runtime.metrics import push_metrics

app = typer.Typer(name="dispatch", help="Send obligations to the sites as OpenADR events; re-dispatch.",
                  no_args_is_help=True)
console = Console(width=160)

VTN = typer.Option(..., "--vtn", envvar="FLEXFLEET_VTN_URL", help="The VTN's base URL (…/openadr3/3.0.1).")
CLIENT_ID = typer.Option(..., "--client-id", envvar="FLEXFLEET_BL_CLIENT_ID", help="Business-logic client id.")
SECRET = typer.Option(..., "--client-secret", envvar="FLEXFLEET_BL_CLIENT_SECRET", help="Its secret.")
TOKEN_URL = typer.Option(None, "--token-url", help="Token endpoint (default: the VTN's /auth/token).")


def _database_url() -> str:
    url = Settings.from_env().database_url
    if not url:
        raise typer.BadParameter("DATABASE_URL must be set (see `flexfleet up`)")
    return url


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_rfc3339(value, name)
    except DomainError as exc:
        raise typer.BadParameter(exc.reason, param_hint=f"--{name}") from None


def _show(report: DispatchReport) -> None:
    console.print(f"{len(report.obligations)} obligation(s) sent, {len(report.skipped)} sent before; events: "
                  f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged; "
                  f"{len(report.programs)} program(s)")
    if report.moves:
        table = Table(title="shares moved")
        for column in ("obligation", "vehicle", "from (UTC)", "reason", "share kW", "uncovered kW"):
            table.add_column(column, justify="right")
        for m in report.moves:
            table.add_row(m.obligation_id, m.vehicle_id, f"{m.from_ts:%Y-%m-%d %H:%M:%S}", m.reason,
                          f"{m.share_kw:.3f}", f"[red]{m.uncovered_kw:.3f}[/red]" if m.uncovered_kw else "0")
        console.print(table)


def _run(vtn: str, client_id: str, client_secret: str, token_url: str | None, call) -> DispatchReport:
    try:
        with psycopg.connect(_database_url(), autocommit=True) as conn:
            report = call(Dispatcher(conn, bl_client(vtn, client_id, client_secret, token_url)))
    except DomainError as exc:
        console.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from None
    except requests.RequestException as exc:       # the VTN is down or refused the request
        console.print(f"[red]error[/red] the VTN at {vtn}: {exc}")
        raise typer.Exit(1) from None
    _show(report)
    push_metrics("dispatch")
    return report


@app.command()
def send(
    day: datetime = typer.Option(..., formats=["%Y-%m-%d"], help="Local delivery day."),
    zone: str = typer.Option("SE3", help="Bidding zone whose local day it is."),
    vtn: str = VTN, client_id: str = CLIENT_ID, client_secret: str = SECRET, token_url: str = TOKEN_URL,
) -> None:
    """Programs for the products and events for the day's obligations not sent yet."""
    try:
        start, end = delivery_day_bounds(day.date(), zone)
    except DomainError as exc:
        raise typer.BadParameter(exc.reason, param_hint="--zone") from None
    _run(vtn, client_id, client_secret, token_url, lambda d: d.dispatch_window(start, end))


@app.command()
def left(
    vehicle: str = typer.Argument(..., help="The vehicle that left (or went offline)."),
    at: str = typer.Option(None, help="When, RFC 3339 with an offset (default: now)."),
    until: str = typer.Option(None, help="When it is expected back: every obligation until then moves too."),
    offline: bool = typer.Option(False, help="It went offline rather than left."),
    vtn: str = VTN, client_id: str = CLIENT_ID, client_secret: str = SECRET, token_url: str = TOKEN_URL,
) -> None:
    """Move the vehicle's share to the rest of its bundles and update the sites' events."""
    when = _time(at, "at") or datetime.now(UTC)
    back = _time(until, "until")
    _run(vtn, client_id, client_secret, token_url,
         lambda d: d.vehicle_left(vehicle, when, back, "offline" if offline else "left"))


@app.command()
def vtn(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8081, help="Port; the API is under /openadr3/3.0.1 and /openadr3/3.1.0."),
    workers: int = typer.Option(1, min=1, help="Processes: about one per core (see docs/benchmarks.md)."),
) -> None:
    """Serve the OpenADR 3 VTN on DATABASE_URL; access tokens are signed with $FLEXFLEET_VTN_SECRET."""
    _database_url()
    if len(os.environ.get(SECRET_ENV, "").encode()) < 32:
        raise typer.BadParameter(f"{SECRET_ENV} must be set to a signing secret of at least 32 bytes")
    # uvicorn's own command line, in place of this process: each worker process then imports the
    # VTN alone, not the whole `flexfleet` command (seconds, past uvicorn's worker health check).
    os.execv(sys.executable, [sys.executable, "-m", "uvicorn", "services.dispatcher.vtn.app:app_from_env", "--factory",
                              "--host", host, "--port", str(port), "--workers", str(workers), "--no-access-log"])
