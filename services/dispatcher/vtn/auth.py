"""OAuth2 client credentials for the VTN: registering clients, the token endpoint, and the
bearer token check every OpenADR operation runs first.

The token endpoint takes the client's credentials from the form body (as the spec's
clientCredentialRequest has them) or from HTTP Basic authentication (RFC 6749 2.3.1, which is
how openadr3-client's OAuth2 session sends them). Its errors are RFC 6749 5.2 bodies.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import psycopg
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from flexfleet.openadr.tokens import (
    READ_ALL,
    ROLE_SCOPES,
    Principal,
    ScopeError,
    TokenError,
    check_secret,
    granted_scopes,
    hash_secret,
    issue_token,
    read_signed,
    unexpired,
    verify_secret,
)
from services.dispatcher.vtn import store
from services.runtime.connection import PooledConnections


class Unauthorized(Exception):
    """No valid bearer token: 401."""


class Forbidden(Exception):
    """A valid token that may not do this: 403. `field` names the member at fault, if any."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


def register_client(conn: psycopg.Connection, client_id: str, client_secret: str, role: str,
                    ven_name: str | None = None) -> None:
    """Allow a client to fetch tokens: the business logic ("BL"), or a VEN bound to its venName."""
    if role not in ROLE_SCOPES:
        raise ValueError(f"role must be one of {sorted(ROLE_SCOPES)}, got {role!r}")
    if (role == "VEN") != (ven_name is not None):
        raise ValueError("a VEN client needs its ven_name; a BL client has none")
    if not client_id or not client_secret:
        raise ValueError("client_id and client_secret must not be empty")
    store.save_client(conn, client_id, hash_secret(client_secret), role, ven_name)


@dataclass(frozen=True)
class TokenPolicy:
    """The signing secret and the tokens' lifetime. Tokens whose signature was checked are kept
    with their expiry: a VEN polls with one token for an hour, and checking the signature again
    on each poll cost a tenth of the VTN's time (benchmarks/vtn.py)."""

    secret: str
    ttl: timedelta = timedelta(hours=1)
    verified: dict[str, tuple[Principal, int]] = field(default_factory=dict, repr=False, compare=False)

    KEPT = 100_000      # tokens; when full, the cache starts over

    def __post_init__(self) -> None:
        check_secret(self.secret)

    def principal(self, token: str, now: datetime) -> Principal:
        known = self.verified.get(token)
        if known is None:
            known = read_signed(token, self.secret)
            if len(self.verified) >= self.KEPT:
                self.verified.clear()
            self.verified[token] = known
        return unexpired(*known, now)


def _auth_error(error: str, description: str, status: int = 400, basic: bool = False) -> JSONResponse:
    response = JSONResponse({"error": error, "error_description": description}, status_code=status,
                            headers={"Cache-Control": "no-store"})
    if basic and status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="openadr-vtn"'
    return response


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """HTTP Basic credentials, taken as sent: RFC 6749 2.3.1 would have them form-encoded first,
    but requests (under openadr3-client) does not encode them."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (client_id, secret) if sep else None


def _form(body: bytes, content_type: str) -> dict[str, str] | None:
    """The form's fields (the first of a repeated one), or None when it is not a form."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return None
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    fields: dict[str, str] = {}
    for k, v in pairs:
        fields.setdefault(k, v)
    return fields


async def token_endpoint(request: Request, connections: PooledConnections, policy: TokenPolicy) -> JSONResponse:
    """POST /auth/token: an access token for valid client credentials. The database lookup and
    the secret's hash (deliberately slow) run in a worker thread, off the event loop."""
    fields = _form(await request.body(), request.headers.get("content-type", ""))
    if fields is None:
        return _auth_error("invalid_request", "the body must be application/x-www-form-urlencoded UTF-8")
    return await run_in_threadpool(_grant, fields, _basic_credentials(request), connections, policy)


def _grant(fields: dict[str, str], basic: tuple[str, str] | None, connections: PooledConnections,
           policy: TokenPolicy) -> JSONResponse:
    client_id, secret = basic or (fields.get("client_id"), fields.get("client_secret"))
    if not fields.get("grant_type"):
        return _auth_error("invalid_request", "grant_type is missing")
    if fields["grant_type"] != "client_credentials":
        return _auth_error("unsupported_grant_type", "only client_credentials is supported")
    if not client_id or not secret:
        return _auth_error("invalid_request", "client_id and client_secret are required")
    client = None
    if "\x00" not in client_id:
        with connections.connection() as conn:
            client = store.load_client(conn, client_id)
    if client is None or not verify_secret(secret, client.secret_hash):
        # RFC 6749 5.2: 401 when the client authenticated with the Authorization header.
        return _auth_error("invalid_client", "unknown client or wrong secret", 401 if basic else 400, basic is not None)
    try:
        scopes = granted_scopes(client.role, _unaliased(fields.get("scope")))
    except ScopeError as exc:
        return _auth_error("invalid_scope", str(exc))
    principal = Principal(client.client_id, client.role, scopes, client.ven_name)
    token = issue_token(principal, policy.secret, datetime.now(UTC), policy.ttl)
    return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": int(policy.ttl.total_seconds()),
                         "scope": " ".join(sorted(scopes))}, headers={"Cache-Control": "no-store"})


# 3.1.0 split read_all into read_targets (programs, events) and read_ven_objects (reports,
# subscriptions, vens, resources). This VTN confines every VEN to exactly those reads by its
# rules (targets granted to it, objects it owns), so either name is granted as read_all, which
# both versions' tokens carry: RFC 6749 3.3 lets a server grant another scope than asked, and
# the answer's `scope` says which.
READ_ALIASES = {"read_targets": READ_ALL, "read_ven_objects": READ_ALL}


def _unaliased(requested: str | None) -> str | None:
    return None if requested is None else " ".join(READ_ALIASES.get(s, s) for s in requested.split())


def principal_of(request: Request, policy: TokenPolicy) -> Principal:
    """The caller, from its bearer token; Unauthorized without a valid one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer token is required (POST /auth/token)")
    try:
        return policy.principal(token.strip(), datetime.now(UTC))
    except TokenError as exc:
        raise Unauthorized(str(exc)) from None


def require(principal: Principal, scope: str) -> Principal:
    if scope not in principal.scopes:
        raise Forbidden(f"the token lacks the {scope} scope")
    return principal
