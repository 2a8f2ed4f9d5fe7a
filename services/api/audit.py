"""The audit log of every write: one audit_log row (migration 0011) per POST, PUT, PATCH or DELETE
the API answers, whoever sent it and whatever the answer, the refused ones included.

An ASGI middleware rather than a line in each route, so a new route cannot forget it. It learns
who wrote from `request.state.principal` (set by the token check: services.api.security and the
VTN's services.dispatcher.vtn.auth) or `request.state.actor` (the name a token request tried),
and writes after the answer is sent: the row is not in the write's transaction, so a database
that fails between the two loses the row, which is logged. Routes that audit in their own
transaction (accounts, browser login) set `request.state.audited`. Mounted apps share the
request's state, so a request is audited once, by the innermost app that audits.
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg.types.json import Jsonb
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flexfleet.auth import Principal, username
from flexfleet.domain.errors import DomainError
from services.runtime.connection import PooledConnections

log = logging.getLogger(__name__)

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_INSERT = ("INSERT INTO audit_log (actor, role, action, object, status, detail) "
           "VALUES (%s, %s, %s, %s, %s, %s)")


def _actor(state: dict[str, Any]) -> tuple[str, str | None]:
    who = state.get("principal")
    if isinstance(who, Principal):
        return who.username, who.role.value
    try:
        return username(state.get("actor")), None
    except DomainError:
        return "anonymous", None


class AuditWrites:
    """Audits each write request of the app it wraps (see the module's docstring)."""

    def __init__(self, app: ASGIApp, connections: PooledConnections) -> None:
        self.app, self.connections = app, connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def answered(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, answered)
        finally:
            state = scope.setdefault("state", {})
            if not state.get("audited"):
                state["audited"] = True
                await self._write(scope, state, status)

    async def _write(self, scope: Scope, state: dict[str, Any], status: int | None) -> None:
        actor, role = _actor(state)
        path = scope["path"]          # the whole path, in a mounted app too
        client = scope.get("client")
        detail = {"client": client[0]} if client else {}
        try:
            async with self.connections.aconnection() as conn:
                await conn.execute(_INSERT, (actor, role, f"{scope['method']} {path}", path, status, Jsonb(detail)))
        except Exception:
            log.exception("audit row lost: %s %s %s by %s", scope["method"], path, status, actor)
