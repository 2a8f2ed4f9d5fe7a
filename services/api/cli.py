"""`flexfleet accounts add`: create an API account (the password is prompted for, or read from
standard input with --password-stdin, never taken on the command line where `ps` would show it)."""

from __future__ import annotations

import getpass
import sys

import psycopg
import typer

from flexfleet.auth import Role
from flexfleet.domain.errors import DomainError
from services.api.accounts import create_account
from services.runtime.config import Settings


def accounts_add(
    username: str = typer.Argument(..., help="Login name (case-insensitive; an e-mail address fits)."),
    role: str = typer.Option(..., help=f"One of {', '.join(r.value for r in Role)}."),
    owner_id: str = typer.Option(None, "--owner-id", help="The owner an owner account is bound to (owners only)."),
    ven_name: str = typer.Option(None, "--ven-name", help="The OpenADR venName a ven account is bound to (vens only; "
                                                          "its password is the VEN's client_secret)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
    database_url: str = typer.Option(None, "--database-url", help="PostgreSQL URL (default: DATABASE_URL)."),
) -> None:
    """Create an account of the platform's API; the audit log records who created it."""
    url = database_url or Settings.from_env().database_url
    if not url:
        raise typer.BadParameter("--database-url or DATABASE_URL must be set (see `flexfleet up`)")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with psycopg.connect(url) as conn:
        try:
            account = create_account(conn, username, password, role, owner_id, actor=f"cli:{_os_user()}",
                                     ven_name=ven_name)
        except DomainError as exc:
            typer.echo(f"error {exc.field}: {exc.reason}", err=True)
            raise typer.Exit(2) from None
    bound = f" for owner {account.owner_id}" if account.owner_id else f" for VEN {account.ven_name}" if account.ven_name else ""
    typer.echo(f"account {account.username} ({account.role.value}{bound}) created")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.callback()
def accounts() -> None:
    """Accounts of the platform's API (more commands, such as disable, will join `add`)."""


app.command("add")(accounts_add)
