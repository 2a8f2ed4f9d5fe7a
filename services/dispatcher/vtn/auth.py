"""The VTN's side of the platform's one authentication scheme (services.api.security): its token
URLs, and the bearer token check every OpenADR operation runs first.

VENs (ven accounts, each bound to its venName) and the business logic (operator accounts) fetch
tokens at `<base>/auth/token` with the client-credentials grant, client_id and client_secret in
the form (the spec's clientCredentialRequest) or by HTTP Basic (RFC 6749 2.3.1, as openadr3-client
sends them). The token is the platform's, carrying only the OpenADR scopes of the account's
role; the answer is the spec's clientCredentialResponse, errors are RFC 6749 5.2 bodies. A
token from POST /v1/auth/token works here too, and one from here at the rest of the API, as far
as its scopes go.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from flexfleet.auth import Principal, TokenError, read_signed_token
from flexfleet.auth.signing import check_unexpired
from flexfleet.openadr.scopes import OPENADR_SCOPES, unaliased
from services.api.accounts import aload_account, register_client
from services.api.security import Auth, OAuthFailure, basic_credentials, grant, token_form
from services.runtime.connection import PooledConnections


class Unauthorized(Exception):
    """No valid bearer token: 401."""


class Forbidden(Exception):
    """A valid token that may not do this: 403. `field` names the member at fault, if any."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


@dataclass
class TokenPolicy:
    """Checks bearer tokens fast enough for thousands of polling VENs. A token whose signature
    was checked is kept with its expiry: a VEN polls with one token for an hour, and checking the
    signature on each poll cost a tenth of the VTN's time (benchmarks/vtn.py). Its account is
    looked up again at most every ACCOUNT_RECHECK_S, so a disabled or changed account is refused
    within that time rather than at once as on the rest of the API (one query per poll)."""

    secret: str
    verified: dict[str, tuple[Principal, int]] = field(default_factory=dict, repr=False)
    accounts: dict[str, tuple[tuple | None, float]] = field(default_factory=dict, repr=False)

    KEPT = 100_000      # tokens and accounts; when full, a cache starts over
    ACCOUNT_RECHECK_S = 30.0

    def principal(self, token: str, now: datetime) -> Principal:
        known = self.verified.get(token)
        if known is None:
            known = read_signed_token(token, self.secret)
            if len(self.verified) >= self.KEPT:
                self.verified.clear()
            self.verified[token] = known
        check_unexpired(known[1], now)
        return known[0]

    async def account_current(self, who: Principal, connections: PooledConnections) -> bool:
        """Whether the token's account still exists, is enabled and is what the token says."""
        key, checked = self.accounts.get(who.username, (None, -self.ACCOUNT_RECHECK_S))
        if time.monotonic() - checked >= self.ACCOUNT_RECHECK_S:
            async with connections.aconnection() as conn:
                account = await aload_account(conn, who.username)
            key = None if account is None or account.disabled else account.principal.account
            if len(self.accounts) >= self.KEPT:
                self.accounts.clear()
            self.accounts[who.username] = (key, time.monotonic())
        return key == who.account


def _auth_error(exc: OAuthFailure, basic: bool) -> JSONResponse:
    description = f"{exc.field}: {exc.reason}" if exc.field else exc.reason
    response = JSONResponse({"error": exc.error, "error_description": description}, status_code=exc.status,
                            headers={"Cache-Control": "no-store"})
    if basic and exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="openadr-vtn"'
    return response


async def token_endpoint(request: Request, auth: Auth) -> JSONResponse:
    """POST <base>/auth/token: the client-credentials grant, for the OpenADR scopes only."""
    basic = basic_credentials(request)
    try:
        fields = token_form(await request.body(), request.headers.get("content-type", ""))
        request.state.actor = basic[0] if basic else fields.get("client_id")
        fields["scope"] = unaliased(fields.get("scope")) or ""
        token = await run_in_threadpool(grant, auth, fields, basic, ("client_credentials",), OPENADR_SCOPES)
    except OAuthFailure as exc:
        return _auth_error(exc, basic is not None)
    request.state.principal = token.principal
    return JSONResponse({"access_token": token.token, "token_type": "Bearer",
                         "expires_in": int(auth.settings.token_ttl.total_seconds()),
                         "scope": " ".join(sorted(token.principal.scopes))}, headers={"Cache-Control": "no-store"})


async def principal_of(request: Request, policy: TokenPolicy, connections: PooledConnections) -> Principal:
    """The caller, from its bearer token; Unauthorized without a valid one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer token is required (POST /auth/token)")
    try:
        who = policy.principal(token.strip(), datetime.now(UTC))
    except TokenError as exc:
        raise Unauthorized(str(exc)) from None
    if not await policy.account_current(who, connections):
        raise Unauthorized("the token's account is disabled or has changed")
    request.state.principal = who
    return who


def require(principal: Principal, scope: str) -> Principal:
    if scope not in principal.scopes:
        raise Forbidden(f"the token lacks the {scope} scope")
    return principal


__all__ = ["Forbidden", "TokenPolicy", "Unauthorized", "principal_of", "register_client", "require", "token_endpoint"]
