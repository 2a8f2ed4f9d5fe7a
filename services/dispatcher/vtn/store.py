"""The VTN's objects in PostgreSQL (migration 0006): one table per object type, the body as
JSONB next to the columns searches and access rules filter on.

The VTN provisions id, objectType and the two timestamps here, so every write path sets them
the same way. Constraint violations become the API's errors: a duplicate name is a Conflict,
a reference to a missing object a BadReference, both naming the body member at fault.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from flexfleet.openadr.paging import Page
from flexfleet.openadr.targets import target_keys, target_types, ven_identity


class NotFound(LookupError):
    """No such object; the message names it."""


class Conflict(ValueError):
    """The write would duplicate a name that must be unique, or orphan dependent objects."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class BadReference(ValueError):
    """The body refers to an object that does not exist."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def _targeting(body: dict) -> dict[str, Any]:
    return {"target_keys": target_keys(body.get("targets")), "target_types": target_types(body.get("targets"))}


@dataclass(frozen=True)
class Kind:
    """One object type: its table and the columns derived from its body."""

    object_type: str
    table: str
    path_name: str                                  # the spec's name of its id in paths
    columns: Callable[[dict], dict[str, Any]]
    unique: dict[str, str] = field(default_factory=dict)      # constraint -> body member
    references: dict[str, str] = field(default_factory=dict)  # constraint -> body member


PROGRAMS = Kind("PROGRAM", "oadr_programs", "programID",
                lambda b: {"program_name": b["programName"], **_targeting(b)},
                unique={"oadr_programs_program_name_key": "programName"})
EVENTS = Kind("EVENT", "oadr_events", "eventID",
              lambda b: {"program_id": b["programID"], "event_name": b.get("eventName"), **_targeting(b)},
              unique={"oadr_events_event_name_key": "eventName"},
              references={"oadr_events_program_id_fkey": "programID"})
REPORTS = Kind("REPORT", "oadr_reports", "reportID",
               lambda b: {"program_id": b["programID"], "event_id": b["eventID"], "client_name": b["clientName"]},
               references={"oadr_reports_event_id_fkey": "eventID"})
SUBSCRIPTIONS = Kind("SUBSCRIPTION", "oadr_subscriptions", "subscriptionID",
                     lambda b: {"program_id": b["programID"], "client_name": b["clientName"],
                                "object_types": sorted({o for op in b["objectOperations"] for o in op["objects"]}),
                                **_targeting(b)},
                     references={"oadr_subscriptions_program_id_fkey": "programID"})
VENS = Kind("VEN", "oadr_vens", "venID", lambda b: {"ven_name": b["venName"], **_targeting(b)},
            unique={"oadr_vens_ven_name_key": "venName"})
RESOURCES = Kind("RESOURCE", "oadr_resources", "resourceID",
                 lambda b: {"ven_id": b["venID"], "resource_name": b["resourceName"], **_targeting(b)},
                 unique={"oadr_resources_resource_name_key": "resourceName"})


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _constraint(exc: psycopg.Error) -> str:
    return (exc.diag.constraint_name or "") if exc.diag else ""


def _write(conn: psycopg.Connection, kind: Kind, query: sql.Composed, params: Sequence[Any], body: dict) -> None:
    try:
        with conn.transaction():
            if conn.execute(query, params).rowcount == 0:
                raise NotFound(f"{kind.path_name}: no {kind.object_type.lower()} {body['id']}")
    except psycopg.errors.UniqueViolation as exc:
        member = kind.unique.get(_constraint(exc), "id")
        raise Conflict(member, f"a {kind.object_type.lower()} with this {member} exists: {body.get(member)!r}"
                       ) from None
    except psycopg.errors.ForeignKeyViolation as exc:
        constraint = _constraint(exc)
        if constraint == "oadr_reports_event_id_fkey" and kind is EVENTS:
            raise Conflict("programID", "the event has reports under its program; delete them first") from None
        member = kind.references.get(constraint, "id")
        raise BadReference(member, f"no such object: {body.get(member)!r}") from None


def insert(conn: psycopg.Connection, kind: Kind, body: dict, owner_ven: str | None = None,
           now: datetime | None = None) -> dict:
    """Store a new object; return its body with the VTN's members set."""
    stamp = timestamp(now or datetime.now(UTC))
    body = {**body, "id": str(uuid.uuid4()), "objectType": kind.object_type,
            "createdDateTime": stamp, "modificationDateTime": stamp}
    cols = kind.columns(body)
    if kind in (REPORTS, SUBSCRIPTIONS):
        cols["owner_ven"] = owner_ven
    cols |= {"id": body["id"], "body": Jsonb(body), "created_at": stamp, "modified_at": stamp}
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(kind.table), sql.SQL(", ").join(map(sql.Identifier, cols)),
        sql.SQL(", ").join(sql.Placeholder() * len(cols)))
    _write(conn, kind, query, list(cols.values()), body)
    return body


def replace(conn: psycopg.Connection, kind: Kind, object_id: str, body: dict, now: datetime | None = None) -> dict:
    """PUT: the new body replaces the old; id and createdDateTime stay."""
    old = get(conn, kind, object_id)
    body = {**body, "id": object_id, "objectType": kind.object_type, "createdDateTime": old["createdDateTime"],
            "modificationDateTime": timestamp(now or datetime.now(UTC))}
    cols = kind.columns(body) | {"body": Jsonb(body), "modified_at": body["modificationDateTime"]}
    query = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
        sql.Identifier(kind.table),
        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in cols))
    _write(conn, kind, query, [*cols.values(), object_id], body)
    return body


def delete(conn: psycopg.Connection, kind: Kind, object_id: str) -> dict:
    row = conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s RETURNING body").format(sql.Identifier(kind.table)),
                       (object_id,)).fetchone()
    if row is None:
        raise NotFound(f"{kind.path_name}: no {kind.object_type.lower()} {object_id}")
    return row[0]


@dataclass(frozen=True)
class Stored:
    """An object's body with the columns access rules need."""

    body: dict
    owner_ven: str | None = None
    target_keys: tuple[str, ...] = ()


def _owner(kind: Kind) -> sql.Composable:
    return sql.SQL("owner_ven") if kind in (REPORTS, SUBSCRIPTIONS) else sql.SQL("NULL::text")


def _keys(kind: Kind) -> sql.Composable:
    return sql.SQL("target_keys") if kind not in (REPORTS,) else sql.SQL("'{}'::text[]")


def _body(kind: Kind) -> sql.Composable:
    """A VEN's body lists its resources, read from their own table."""
    if kind is VENS:
        return sql.SQL("body || jsonb_build_object('resources', COALESCE((SELECT jsonb_agg(r.body ORDER BY r.seq) "
                       "FROM oadr_resources r WHERE r.ven_id = t.id), '[]'::jsonb))")
    return sql.SQL("body")


def fetch(conn: psycopg.Connection, kind: Kind, object_id: str) -> Stored:
    row = conn.execute(sql.SQL("SELECT {}, {}, {} FROM {} t WHERE id = %s").format(
        _body(kind), _owner(kind), _keys(kind), sql.Identifier(kind.table)), (object_id,)).fetchone()
    if row is None:
        raise NotFound(f"{kind.path_name}: no {kind.object_type.lower()} {object_id}")
    return Stored(row[0], row[1], tuple(row[2]))


def get(conn: psycopg.Connection, kind: Kind, object_id: str) -> dict:
    return fetch(conn, kind, object_id).body


@dataclass
class Where:
    """Search conditions, AND'ed: SQL fragments over the kind's table, with their parameters."""

    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, clause: str, *params: Any) -> Where:
        self.clauses.append(clause)
        self.params.extend(params)
        return self


def search(conn: psycopg.Connection, kind: Kind, where: Where, page: Page) -> list[dict]:
    condition = sql.SQL(" AND ".join(where.clauses) or "TRUE")
    query = sql.SQL("SELECT {} FROM {} t WHERE {} ORDER BY seq OFFSET %s LIMIT %s").format(
        _body(kind), sql.Identifier(kind.table), condition)
    return [r[0] for r in conn.execute(query, [*where.params, page.skip, page.limit])]


def ven_by_name(conn: psycopg.Connection, ven_name: str) -> dict | None:
    row = conn.execute(sql.SQL("SELECT {} FROM oadr_vens t WHERE ven_name = %s").format(_body(VENS)),
                       (ven_name,)).fetchone()
    return None if row is None else row[0]


def identity(conn: psycopg.Connection, ven_name: str) -> frozenset[str]:
    """The target keys that reach this VEN (flexfleet.openadr.targets.ven_identity)."""
    ven = ven_by_name(conn, ven_name)
    if ven is None:
        return ven_identity(ven_name)
    return ven_identity(ven_name, ven.get("targets"), [r.get("targets") for r in ven.get("resources", ())])


def subscriptions_for(conn: psycopg.Connection, object_type: str, program_id: str | None) -> list[Stored]:
    """Subscriptions that may hear of a change (flexfleet.openadr.notifications decides)."""
    query = ("SELECT body, owner_ven FROM oadr_subscriptions WHERE %s = ANY(object_types)"
             + ("" if program_id is None else " AND program_id = %s") + " ORDER BY seq")
    params = (object_type,) if program_id is None else (object_type, program_id)
    return [Stored(body, owner) for body, owner in conn.execute(query, params)]


# -- OAuth2 clients -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Client:
    client_id: str
    secret_hash: str
    role: str
    ven_name: str | None


def save_client(conn: psycopg.Connection, client_id: str, secret_hash: str, role: str,
                ven_name: str | None) -> None:
    """Add a client, or replace its secret and binding (rotating a secret is re-registering)."""
    conn.execute("INSERT INTO oadr_clients (client_id, secret_hash, role, ven_name) VALUES (%s, %s, %s, %s) "
                 "ON CONFLICT (client_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash, role = EXCLUDED.role, "
                 "ven_name = EXCLUDED.ven_name", (client_id, secret_hash, role, ven_name))


def load_client(conn: psycopg.Connection, client_id: str) -> Client | None:
    row = conn.execute("SELECT client_id, secret_hash, role, ven_name FROM oadr_clients WHERE client_id = %s",
                       (client_id,)).fetchone()
    return None if row is None else Client(*row)
