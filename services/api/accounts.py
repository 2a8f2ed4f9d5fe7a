"""Accounts and the audit log in PostgreSQL (tables of migration 0011_accounts.sql)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from flexfleet.auth import Principal, Role, hash_secret, new_password, role as parse_role, username as parse_username
from flexfleet.domain.errors import DomainError


@dataclass(frozen=True)
class Account:
    username: str
    password_hash: str
    role: Role
    owner_id: str | None
    created_at: datetime
    disabled: bool
    ven_name: str | None = None

    @property
    def principal(self) -> Principal:
        return Principal(self.username, self.role, self.owner_id, self.ven_name)


_COLUMNS = "username, password_hash, role, owner_id, created_at, disabled, ven_name"
_ACCOUNT = f"SELECT {_COLUMNS} FROM accounts WHERE username = %s"


def _account(row: tuple | None) -> Account | None:
    return None if row is None else Account(row[0], row[1], Role(row[2]), *row[3:])


def load_account(conn: psycopg.Connection, username: str) -> Account | None:
    return _account(conn.execute(_ACCOUNT, (username,)).fetchone())


async def aload_account(conn: psycopg.AsyncConnection, username: str) -> Account | None:
    return _account(await (await conn.execute(_ACCOUNT, (username,))).fetchone())


def record_audit(conn: psycopg.Connection, actor: str, action: str, object_: str | None = None,
                 role: Role | None = None, status: int | None = None, detail: dict[str, Any] | None = None) -> None:
    """Append one row to the audit log, in the caller's transaction (a write and its audit row
    commit together or not at all)."""
    conn.execute("INSERT INTO audit_log (actor, role, action, object, status, detail) VALUES (%s, %s, %s, %s, %s, %s)",
                 (actor, None if role is None else role.value, action, object_, status, Jsonb(detail or {})))


def create_account(conn: psycopg.Connection, username: str, password: str, role: str | Role,
                   owner_id: str | None = None, actor: str = "cli", ven_name: str | None = None) -> Account:
    """Create an account and its audit row together (committed, or a savepoint when the caller
    holds a transaction open); DomainError naming the field for a bad username or password, an
    unknown role, a missing, unknown or superfluous owner_id or ven_name, or a taken username."""
    principal = Principal(parse_username(username), parse_role(role), owner_id or None, ven_name or None)
    new_password(password)
    with conn.transaction():
        if principal.owner_id is not None and conn.execute(
                "SELECT 1 FROM owners WHERE owner_id = %s", (principal.owner_id,)).fetchone() is None:
            raise DomainError("owner_id", f"no owner {principal.owner_id!r}")
        account = _account(conn.execute(
            "INSERT INTO accounts (username, password_hash, role, owner_id, ven_name) VALUES (%s, %s, %s, %s, %s) "
            f"ON CONFLICT (username) DO NOTHING RETURNING {_COLUMNS}",
            (principal.username, hash_secret(password), principal.role.value, principal.owner_id,
             principal.ven_name)).fetchone())
        if account is None:
            raise DomainError("username", f"{principal.username!r} is taken")
        record_audit(conn, actor, "accounts add", f"accounts/{principal.username}",
                     detail={"role": principal.role.value, "owner_id": principal.owner_id,
                             **({"ven_name": principal.ven_name} if principal.ven_name else {})})
    return account


def register_client(conn: psycopg.Connection, client_id: str, client_secret: str, ven_name: str | None = None,
                    actor: str = "cli") -> Account:
    """An OpenADR client's account, made or given a new secret (rotating a secret is registering
    again): a VEN bound to `ven_name`, or without one the business logic, an operator account.
    It fetches tokens with the client-credentials grant, `client_id` being its username.
    DomainError naming the field for a bad id or secret, or an id taken by another role's account."""
    principal = Principal(parse_username(client_id, "client_id"), Role.VEN if ven_name else Role.OPERATOR,
                          ven_name=ven_name or None)
    new_password(client_secret, "client_secret")
    with conn.transaction():
        # no row back: the update was skipped, the name belongs to another role's account
        account = _account(conn.execute(
            "INSERT INTO accounts (username, password_hash, role, ven_name) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, "
            f"ven_name = EXCLUDED.ven_name WHERE accounts.role = EXCLUDED.role RETURNING {_COLUMNS}",
            (principal.username, hash_secret(client_secret), principal.role.value, principal.ven_name)).fetchone())
        if account is None:
            raise DomainError("client_id", f"{principal.username!r} is taken by an account of another role")
        record_audit(conn, actor, "accounts register-client", f"accounts/{principal.username}",
                     detail={"role": principal.role.value, "ven_name": principal.ven_name})
    return account


def register_ven_clients(conn: psycopg.Connection, clients: Iterable[tuple[str, str]], secret_hash: str,
                         actor: str = "cli") -> int:
    """Many VEN clients at once, `(client_id, ven_name)` each, sharing one secret's hash: a
    simulated fleet's thousands of sites, where a PBKDF2 hash each would be most of the set-up.
    Registering again gives the secret anew, as register_client does. Returns how many."""
    vens = [Principal(parse_username(cid, "client_id"), Role.VEN, ven_name=ven) for cid, ven in clients]
    rows = [(v.username, secret_hash, v.ven_name) for v in vens]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany("INSERT INTO accounts (username, password_hash, role, ven_name) VALUES (%s, %s, 'ven', %s) "
                        "ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, "
                        "ven_name = EXCLUDED.ven_name WHERE accounts.role = 'ven'", rows)
        record_audit(conn, actor, "accounts register-clients", None, detail={"role": "ven", "clients": len(rows)})
    return len(rows)
