"""`flexfleet settle --month 2026-10 --zone SE3`: settle a month, print its reconciliation."""

from __future__ import annotations

from pathlib import Path

import psycopg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flexfleet.domain.errors import DomainError
from flexfleet.settlement import format_money
from services.runtime.config import Settings
from services.settlement import store
from services.settlement.service import settle, write_owner_statements

console = Console(width=160)


def settle_command(
    month: str = typer.Option(..., help="The month to settle, YYYY-MM (local time of the zone)."),
    zone: str = typer.Option("SE3", help="Bidding zone."),
    database_url: str = typer.Option(None, "--database-url", help="PostgreSQL URL (default: DATABASE_URL)."),
    out: Path = typer.Option(Path("out/settlement"), help="Folder for the month's files (ZONE/YYYY-MM/vN/)."),
    statements: bool = typer.Option(True, help="Write every owner's statement (HTML and PDF, needs Chromium) "
                                    "under the version's statements/."),
) -> None:
    """Settle a month: ledger, owner lines, reconciliation and statement versions. Idempotent: a
    rerun with the same inputs changes nothing; late meter data make a new version with adjustments."""
    url = database_url or Settings.from_env().database_url
    if not url:
        raise typer.BadParameter("--database-url or DATABASE_URL must be set (see `flexfleet up`)")
    with psycopg.connect(url) as conn:
        try:
            with console.status(f"settling {zone} {month}") as status:
                result = settle(conn, month, zone, out_dir=out, checkpoint=lambda step: status.update(
                    f"settling {zone} {month}: {step.replace('_', ' ')} written"))
        except DomainError as exc:
            console.print(f"[red]error[/red] {exc.field}: {exc.reason}")
            raise typer.Exit(2) from None
        if statements:
            owners = len(result.inputs.owners)
            with Progress(TextColumn("statements"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console, transient=True) as bar:
                task = bar.add_task("statements", total=owners)
                write_owner_statements(conn, result, on_written=lambda: bar.advance(task))
        rows = store.reconciliation(conn, zone, result.month.first_day, result.version)
    table = Table(title=f"{zone} {result.month.label} version {result.version} ({result.status})")
    for column in ("market", "revenue", "penalties", "owner pay", "wear pay", "margin"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r.market, *(format_money(a, r.currency) for a in (r.revenue, r.penalties, r.owner_pay,
                                                                         r.wear_pay, r.margin)))
    console.print(table)
    console.print(f"{result.entries_written} entries written; ledger sha256 {result.ledger_hash[:16]}; "
                  f"files in {result.files}" + (f", {len(result.inputs.owners)} owners' statements in "
                                                f"{result.files / 'statements'}" if statements else ""))
    if result.inputs.awaiting:
        console.print(f"{len(result.inputs.awaiting)} obligation(s) await a verified delivery and are not settled "
                      "in this version (operations/awaiting_verification.csv); settle again once they are verified")


app = typer.Typer(add_completion=False)
app.command("settle")(settle_command)
