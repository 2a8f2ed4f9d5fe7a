"""Accounts and the audit log in PostgreSQL (tables of migration 0011_accounts.sql)."""

from __future__ import annotations

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

    @property
    def principal(self) -> Principal:
        return Principal(self.username, self.role, self.owner_id)


def load_account(conn: psycopg.Connection, username: str) -> Account | None:
    row = conn.execute("SELECT username, password_hash, role, owner_id, created_at, disabled FROM accounts "
                       "WHERE username = %s", (username,)).fetchone()
    return None if row is None else Account(row[0], row[1], Role(row[2]), row[3], row[4], row[5])


def record_audit(conn: psycopg.Connection, actor: str, action: str, object_: str | None = None,
                 role: Role | None = None, status: int | None = None, detail: dict[str, Any] | None = None) -> None:
    """Append one row to the audit log, in the caller's transaction (a write and its audit row
    commit together or not at all)."""
    conn.execute("INSERT INTO audit_log (actor, role, action, object, status, detail) VALUES (%s, %s, %s, %s, %s, %s)",
                 (actor, None if role is None else role.value, action, object_, status, Jsonb(detail or {})))


def create_account(conn: psycopg.Connection, username: str, password: str, role: str | Role,
                   owner_id: str | None = None, actor: str = "cli") -> Account:
    """Create an account and its audit row together (committed, or a savepoint when the caller
    holds a transaction open); DomainError naming the field for a bad username or password, an
    unknown role, a missing, unknown or superfluous owner_id, or a taken username."""
    principal = Principal(parse_username(username), parse_role(role), owner_id or None)
    new_password(password)
    with conn.transaction():
        if principal.owner_id is not None and conn.execute(
                "SELECT 1 FROM owners WHERE owner_id = %s", (principal.owner_id,)).fetchone() is None:
            raise DomainError("owner_id", f"no owner {principal.owner_id!r}")
        row = conn.execute("INSERT INTO accounts (username, password_hash, role, owner_id) VALUES (%s, %s, %s, %s) "
                           "ON CONFLICT (username) DO NOTHING RETURNING created_at",
                           (principal.username, hash_secret(password), principal.role.value,
                            principal.owner_id)).fetchone()
        if row is None:
            raise DomainError("username", f"{principal.username!r} is taken")
        record_audit(conn, actor, "accounts add", f"accounts/{principal.username}",
                     detail={"role": principal.role.value, "owner_id": principal.owner_id})
    account = load_account(conn, principal.username)
    assert account is not None
    return account
