"""The VTN's objects in PostgreSQL (migrations 0006 and 0009): one table per object type, the
body as JSONB next to the columns searches and access rules filter on.

Both API versions share the tables: a body is stored in the shape of the version that wrote it
(`version`), and `view` shows it as the reader's version has it (flexfleet.openadr.models310).
The derived columns (typed target_keys for 3.0.1, untyped target_values for 3.1.0, an event's
end) are computed from either shape, so access rules and filters work whoever wrote the object.

The VTN provisions id, objectType and the two timestamps here, so every write path sets them
the same way. Constraint violations become the API's errors: a duplicate name is a Conflict,
a reference to a missing object a BadReference, both naming the body member at fault.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from flexfleet.openadr import models310
from flexfleet.openadr.models310 import V301, event_end, target_texts, targets_as_301
from flexfleet.openadr.paging import Page
from flexfleet.openadr.targets import VEN_NAME, target_key, target_keys, target_types


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


def _targeting(body: dict, version: str) -> dict[str, Any]:
    """The target columns of a body of either version: 3.1.0's strings count as 3.0.1 pairs of
    type TARGET, 3.0.1's pairs as 3.1.0 strings (their values)."""
    targets = body.get("targets")
    typed = targets if version == V301 else targets_as_301(targets)
    values = target_texts(targets) if version == V301 else list(dict.fromkeys(targets or ()))
    return {"target_keys": target_keys(typed), "target_types": target_types(typed), "target_values": sorted(values)}


@dataclass(frozen=True, eq=False)
class Kind:
    """One object type: its table and the columns derived from its body (of a version). Each is
    a module constant, equal only to itself."""

    object_type: str
    table: str
    path_name: str                                  # the spec's name of its id in paths
    columns: Callable[[dict, str], dict[str, Any]]
    unique: dict[str, str] = field(default_factory=dict)      # constraint -> body member
    references: dict[str, str] = field(default_factory=dict)  # constraint -> body member


PROGRAMS = Kind("PROGRAM", "oadr_programs", "programID",
                lambda b, v: {"program_name": b["programName"], **_targeting(b, v)},
                unique={"oadr_programs_program_name_key": "programName"})
EVENTS = Kind("EVENT", "oadr_events", "eventID",
              lambda b, v: {"program_id": b["programID"], "event_name": b.get("eventName"), "ends_at": event_end(b),
                            **_targeting(b, v)},
              unique={"oadr_events_event_name_key": "eventName"},
              references={"oadr_events_program_id_fkey": "programID"})
# A 3.1.0 report names no program: its writer passes the event's as the program_id column.
REPORTS = Kind("REPORT", "oadr_reports", "reportID",
               lambda b, v: {"program_id": b.get("programID"), "event_id": b["eventID"],
                             "client_name": b["clientName"]},
               references={"oadr_reports_event_id_fkey": "eventID"})
SUBSCRIPTIONS = Kind("SUBSCRIPTION", "oadr_subscriptions", "subscriptionID",
                     lambda b, v: {"program_id": b.get("programID"), "client_name": b["clientName"],
                                   "object_types": sorted({o for op in b["objectOperations"] for o in op["objects"]}),
                                   **_targeting(b, v)},
                     references={"oadr_subscriptions_program_id_fkey": "programID"})
VENS = Kind("VEN", "oadr_vens", "venID", lambda b, v: {"ven_name": b["venName"], **_targeting(b, v)},
            unique={"oadr_vens_ven_name_key": "venName"})
RESOURCES = Kind("RESOURCE", "oadr_resources", "resourceID",
                 lambda b, v: {"ven_id": b["venID"], "resource_name": b["resourceName"], **_targeting(b, v)},
                 unique={"oadr_resources_resource_name_key": "resourceName"},
                 references={"oadr_resources_ven_id_fkey": "venID"})
OWNED = (REPORTS, SUBSCRIPTIONS)   # written by a client, which owns them


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
           now: datetime | None = None, *, version: str = V301, owner_client: str | None = None,
           columns: dict[str, Any] | None = None) -> dict:
    """Store a new object in the shape of `version`; return its body with the VTN's members set.
    A report or subscription records its writer (owner_ven: the VEN's name, None for the
    business logic; owner_client: the client). `columns` sets derived columns the body lacks."""
    stamp = timestamp(now or datetime.now(UTC))
    body = {**body, "id": str(uuid.uuid4()), "objectType": kind.object_type,
            "createdDateTime": stamp, "modificationDateTime": stamp}
    cols = kind.columns(body, version) | (columns or {})
    if kind in OWNED:
        cols |= {"owner_ven": owner_ven, "owner_client": owner_client}
    cols |= {"id": body["id"], "version": version, "body": Jsonb(body), "created_at": stamp, "modified_at": stamp}
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(kind.table), sql.SQL(", ").join(map(sql.Identifier, cols)),
        sql.SQL(", ").join(sql.Placeholder() * len(cols)))
    _write(conn, kind, query, list(cols.values()), body)
    return body


def replace(conn: psycopg.Connection, kind: Kind, object_id: str, body: dict, now: datetime | None = None, *,
            version: str = V301, columns: dict[str, Any] | None = None) -> dict:
    """PUT: the new body (of `version`) replaces the old; id and createdDateTime stay."""
    old = get(conn, kind, object_id)
    body = {**body, "id": object_id, "objectType": kind.object_type, "createdDateTime": old["createdDateTime"],
            "modificationDateTime": timestamp(now or datetime.now(UTC))}
    cols = kind.columns(body, version) | (columns or {})
    cols |= {"version": version, "body": Jsonb(body), "modified_at": body["modificationDateTime"]}
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
    """An object's stored body with what access rules and the other version's view need."""

    body: dict
    owner_ven: str | None = None
    target_keys: tuple[str, ...] = ()
    version: str = V301
    target_values: tuple[str, ...] = ()
    program_id: str | None = None     # the program it belongs to (a report's, which 3.1.0 omits)
    client_id: str | None = None      # its owner's client: 3.1.0's clientID
    resources: tuple[Stored, ...] = ()   # a ven's, which 3.0.1 lists in the ven

    @property
    def targeted(self) -> bool:
        return bool(self.target_keys)


# the VEN clients are the platform's ven accounts (migration 0014)
_REGISTERED = "(SELECT min(a.username) FROM accounts a WHERE a.role = 'ven' AND a.ven_name = {})"
_CLIENT = {
    "oadr_reports": "COALESCE(t.owner_client, t.client_name)",
    "oadr_subscriptions": "COALESCE(t.owner_client, t.client_name)",
    # a ven's or resource's clientID is the one its writer gave, else the client registered for
    # the ven's name, else (no client registered yet) the ven's name
    "oadr_vens": "COALESCE(t.body ->> 'clientID', " + _REGISTERED.format("t.ven_name") + ", t.ven_name)",
    "oadr_resources": "COALESCE(t.body ->> 'clientID', (SELECT COALESCE(" + _REGISTERED.format("v.ven_name")
                      + ", v.ven_name) FROM oadr_vens v WHERE v.id = t.ven_id))",
}
_PROGRAM = {"oadr_programs": "t.id", "oadr_events": "t.program_id", "oadr_reports": "t.program_id",
            "oadr_subscriptions": "t.program_id"}


def _columns(kind: Kind) -> sql.Composable:
    """body, version, owner_ven, target_keys, target_values, program_id, client_id, resources."""
    owned, targeted = kind in OWNED, kind is not REPORTS
    resources = ("(SELECT jsonb_agg(jsonb_build_array(r.version, r.body) ORDER BY r.seq) FROM oadr_resources r "
                 "WHERE r.ven_id = t.id)" if kind is VENS else "NULL::jsonb")
    return sql.SQL(", ".join((
        "t.body", "t.version", "t.owner_ven" if owned else "NULL::text",
        "t.target_keys" if targeted else "'{}'::text[]", "t.target_values" if targeted else "'{}'::text[]",
        _PROGRAM.get(kind.table, "NULL::text"), _CLIENT.get(kind.table, "NULL::text"), resources)))


def _stored(row: Sequence[Any]) -> Stored:
    body, version, owner, keys, values, program_id, client_id, resources = row
    nested = tuple(Stored(b, version=v) for v, b in resources or ())
    return Stored(body, owner, tuple(keys), version, tuple(values), program_id, client_id, nested)


def fetch(conn: psycopg.Connection, kind: Kind, object_id: str) -> Stored:
    row = conn.execute(sql.SQL("SELECT {} FROM {} t WHERE id = %s").format(
        _columns(kind), sql.Identifier(kind.table)), (object_id,)).fetchone()
    if row is None:
        raise NotFound(f"{kind.path_name}: no {kind.object_type.lower()} {object_id}")
    return _stored(row)


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


@functools.lru_cache(maxsize=256)
def _search_sql(kind: Kind, clauses: tuple[str, ...]) -> str:
    """A search's text, kept per shape: composing it anew cost more than a poll's own query."""
    return sql.SQL("SELECT {} FROM {} t WHERE {} ORDER BY seq OFFSET %s LIMIT %s").format(
        _columns(kind), sql.Identifier(kind.table), sql.SQL(" AND ".join(clauses) or "TRUE")).as_string(None)


def _search(kind: Kind, where: Where, page: Page) -> tuple[str, list[Any]]:
    return _search_sql(kind, tuple(where.clauses)), [*where.params, page.skip, page.limit]


def search(conn: psycopg.Connection, kind: Kind, where: Where, page: Page) -> list[Stored]:
    return [_stored(r) for r in conn.execute(*_search(kind, where, page))]


async def asearch(conn: psycopg.AsyncConnection, kind: Kind, where: Where, page: Page) -> list[Stored]:
    """`search` on an asyncio connection: the VEN polling searches (no worker thread per poll)."""
    cursor = await conn.execute(*_search(kind, where, page))
    return [_stored(r) for r in await cursor.fetchall()]


def view(kind: Kind, stored: Stored, version: str) -> dict:
    """The object as `version` shows it (a 3.0.1 ven with its resources)."""
    body = models310.view(kind.object_type, stored.body, stored.version, version, client_id=stored.client_id,
                          program_id=stored.program_id)
    if kind is VENS and version == V301:
        body["resources"] = [view(RESOURCES, r, V301) for r in stored.resources]
    return body


def _ven_array(column: str) -> str:
    """SQL for an array of one target column over a VEN's ven object and its resources; its
    parameters are the ven_name, twice."""
    assert column in ("target_keys", "target_values")
    return (f"ARRAY(SELECT unnest({column}) FROM oadr_vens WHERE ven_name = %s UNION ALL SELECT unnest(r.{column}) "
            "FROM oadr_resources r JOIN oadr_vens v ON v.id = r.ven_id WHERE v.ven_name = %s)")


def identity_sql(ven_name: str) -> tuple[str, tuple[str, ...]]:
    """3.0.1: SQL (and its parameters) for the target keys that reach this VEN, its VEN_NAME and
    those of its ven object and resources (flexfleet.openadr.targets.ven_identity, from the
    columns, whoever wrote them). A search embeds it to filter in one round trip."""
    return f"(ARRAY[%s::text] || {_ven_array('target_keys')})", (target_key(VEN_NAME, ven_name), ven_name, ven_name)


def identity(conn: psycopg.Connection, ven_name: str) -> frozenset[str]:
    query, params = identity_sql(ven_name)
    return frozenset(conn.execute(f"SELECT {query}", params).fetchone()[0])


_GRANTED = f"SELECT {_ven_array('target_values')}"


def granted(conn: psycopg.Connection, ven_name: str) -> frozenset[str]:
    """3.1.0: the targets the business logic granted a VEN, on its ven object and resources
    (none without a ven object: 3.1.0 has no implicit target)."""
    return frozenset(conn.execute(_GRANTED, (ven_name, ven_name)).fetchone()[0])


async def agranted(conn: psycopg.AsyncConnection, ven_name: str) -> frozenset[str]:
    cursor = await conn.execute(_GRANTED, (ven_name, ven_name))
    return frozenset((await cursor.fetchone())[0])


def ven_name_of(conn: psycopg.Connection, ven_id: str) -> str | None:
    row = conn.execute("SELECT ven_name FROM oadr_vens WHERE id = %s", (ven_id,)).fetchone()
    return None if row is None else row[0]


def subscriptions_for(conn: psycopg.Connection, object_type: str, program_id: str | None) -> list[Stored]:
    """Subscriptions that may hear of a change (flexfleet.openadr.notifications and
    models310.callbacks decide): to the object's program, or (3.1.0) to none in particular."""
    where = Where().add("%s = ANY(object_types)", object_type)
    if program_id is not None:
        where.add("(program_id = %s OR program_id IS NULL)", program_id)
    return search(conn, SUBSCRIPTIONS, where, Page(0, 2**31 - 1))
