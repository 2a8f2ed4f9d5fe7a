"""`flexfleet import sessions FILE.csv`: load a charge-point management system's session export."""

from __future__ import annotations

from pathlib import Path

import psycopg
import typer

from flexfleet.domain import DomainError
from services.runtime.config import Settings
from services.sessions import import_sessions_csv

SHOWN_ERRORS = 50

app = typer.Typer(name="import", no_args_is_help=True, add_completion=False,
                  help="Import history from other systems (charging sessions, ...) into the database.")


@app.command("sessions")
def sessions(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="CSV export; the format is in docs/sessions-csv.md."),
) -> None:
    """Import charging sessions from a CSV export into the charging_sessions table.

    Good rows are stored even when others are refused; each refused row is printed as
    `line N: field: reason`. Importing the same file again adds nothing. Exits 1 when any row
    (or the whole file) was refused. Needs DATABASE_URL (e.g. from `flexfleet up`)."""
    settings = Settings.from_env()
    if not settings.database_url:
        raise typer.BadParameter("DATABASE_URL must be set (see `flexfleet up`)")
    try:
        with psycopg.connect(settings.database_url) as conn:
            result = import_sessions_csv(conn, file)
    except DomainError as e:
        typer.echo(f"{file}: {e.field}: {e.reason}; nothing was imported", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"inserted: {result.inserted}")
    typer.echo(f"already present: {result.already_present}")
    typer.echo(f"rejected: {len(result.errors)}")
    for error in result.errors[:SHOWN_ERRORS]:
        typer.echo(str(error))
    if len(result.errors) > SHOWN_ERRORS:
        typer.echo(f"... and {len(result.errors) - SHOWN_ERRORS} more rejected rows")
    if result.errors:
        raise typer.Exit(1)
