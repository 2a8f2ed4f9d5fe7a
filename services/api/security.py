"""One authentication scheme for the whole API, the OpenADR VTN included: OAuth2 bearer tokens
(RFC 6750) from POST /v1/auth/token, each naming an account and its role. People log in with
the password grant (RFC 6749 4.3); machine clients (VENs, the dispatcher's business logic) with
the client-credentials grant (4.4), their username and secret as client_id and client_secret,
in the form or by HTTP Basic (2.3.1). The VTN's own token URLs grant the same tokens
(services.dispatcher.vtn.auth).

A request's token is checked (signature, issuer, expiry) and then its account is looked up:
a disabled account, or one whose role or owner changed since the token was issued, is refused
at once rather than when the token expires. Scopes follow from the role (flexfleet.auth.roles).

Browsers log in at POST /login (services.api.dashboard) and get the same token in an HttpOnly,
SameSite=Strict cookie (`SESSION_COOKIE`). Every route takes either: the bearer header wins
when both come. A cookie-authenticated request with an unsafe method must come from our own
origin (`same_origin`), on top of SameSite=Strict, so no other site can make a browser write.
"""

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, Field

from flexfleet.auth import (ROLE_SCOPES, AccessToken, Principal, TokenError, decoy_hash, issue_access_token,
                            read_access_token, username, verify_secret)
from flexfleet.domain.errors import DomainError
from services.api.accounts import load_account
from services.api.problems import ApiProblem, problem_body
from services.api.settings import ApiSettings
from services.runtime.connection import PooledConnections

TOKEN_URL = "/v1/auth/token"
REALM = "flexfleet"
SESSION_COOKIE = "flexfleet_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False, scheme_name="OAuth2",
                              scopes={s: s for s in sorted(set().union(*ROLE_SCOPES.values()))},
                              description="Log in with an account's username and password (POST /v1/auth/token).")


class TokenOut(BaseModel):
    """RFC 6749 5.1: the access token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")
    scope: str = Field(description="The scopes granted: the account's role's, space-separated.")


class OAuthError(BaseModel):
    """RFC 6749 5.2 error, with the RFC 9457 problem members as well."""

    error: Literal["invalid_request", "invalid_client", "invalid_grant", "invalid_scope", "unauthorized_client",
                   "unsupported_grant_type"]
    error_description: str
    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    instance: str | None = None


class TokenRequestIn(BaseModel):
    """The token request's form (application/x-www-form-urlencoded): the password grant's
    username and password, or the client-credentials grant's client_id and client_secret (which
    may come by HTTP Basic instead). `scope` asks for fewer scopes than the role's (RFC 6749 3.3);
    the answer names those granted."""

    grant_type: Literal["password", "client_credentials"]
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None


TOKEN_REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
    "schema": TokenRequestIn.model_json_schema()}}}}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class Auth:
    settings: ApiSettings
    connections: PooledConnections


class OAuthFailure(Exception):
    """A token request refused: its RFC 6749 5.2 error code, the reason and the field at fault."""

    def __init__(self, status: int, error: str, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason, self.field = status, error, reason, field


def _oauth_error(request: Request, exc: OAuthFailure, basic: bool) -> JSONResponse:
    title = {400: "Invalid token request", 401: "Login failed"}[exc.status]
    body = {"error": exc.error, "error_description": f"{exc.field}: {exc.reason}" if exc.field else exc.reason,
            **problem_body(request, exc.status, exc.reason, exc.field, title=title)}
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = f'Basic realm="{REALM}"' if basic else f'Bearer realm="{REALM}"'
    return JSONResponse(body, status_code=exc.status, headers=headers)


def token_form(body: bytes, content_type: str) -> dict[str, str]:
    """A token request's form fields; OAuthFailure naming the field that is repeated, or the body
    when it is not a UTF-8 urlencoded form."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise OAuthFailure(400, "invalid_request", "must be application/x-www-form-urlencoded", "body")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body), errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise OAuthFailure(400, "invalid_request", "not a UTF-8 urlencoded form", "body") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:     # RFC 6749 3.1: a parameter must not be sent twice
            raise OAuthFailure(400, "invalid_request", "sent more than once", key)
        fields[key] = value
    return fields


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """HTTP Basic client credentials, taken as sent: RFC 6749 2.3.1 would have them form-encoded
    first, but requests (under openadr3-client) does not encode them."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (client_id, secret) if sep else None


class LoginFailed(Exception):
    """Unknown username, disabled account or wrong password: deliberately one failure."""


def authenticate(auth: Auth, name: str, password: str, scope: str | None = None,
                 within: frozenset[str] | None = None) -> AccessToken:
    """The account's token, or LoginFailed whether the user is unknown, disabled or the password
    wrong (one answer, one PBKDF2 time, so neither reveals which accounts exist). The one place a
    password or client secret is checked: both token endpoints and the browser login call it.

    `scope` asks for fewer scopes; `within` limits them to those an endpoint serves (the VTN's
    token URLs: OpenADR's). DomainError naming `scope` for one the role lacks or the endpoint
    does not serve, or `client_id` for an account holding none of `within`."""
    account = None
    try:
        name = username(name)
    except DomainError:
        name = None           # no account can have it: answered like an unknown one
    if name is not None:
        with auth.connections.connection() as conn:
            account = load_account(conn, name)
    stored = account.password_hash if account is not None else decoy_hash()
    if not verify_secret(password, stored) or account is None or account.disabled:
        raise LoginFailed("unknown username or wrong password")
    principal = account.principal.narrowed(scope)
    if within is not None:
        if scope and not principal.scopes <= within:
            raise DomainError("scope", f"not served here: {' '.join(sorted(principal.scopes - within))}")
        if not principal.scopes & within:
            raise DomainError("client_id", f"a {principal.role.value} account is not a client of this endpoint")
        principal = replace(principal, scopes=principal.scopes & within)
    return issue_access_token(principal, auth.settings.secret, datetime.now(UTC), auth.settings.token_ttl)


def grant(auth: Auth, fields: dict[str, str], basic: tuple[str, str] | None,
          grant_types: tuple[str, ...] = ("password", "client_credentials"),
          within: frozenset[str] | None = None) -> AccessToken:
    """The token a request's form (and Basic credentials) earns; OAuthFailure with the RFC 6749
    error otherwise. Runs in a worker thread: the secret's hash is deliberately slow."""
    kind = fields.get("grant_type")
    if not kind:
        raise OAuthFailure(400, "invalid_request", "is required", "grant_type")
    if kind not in grant_types:
        raise OAuthFailure(400, "unsupported_grant_type", f"only {' and '.join(grant_types)} are served here",
                           "grant_type")
    if kind == "password":
        name, secret, fields_named = fields.get("username"), fields.get("password"), ("username", "password")
    else:
        name, secret = basic or (fields.get("client_id"), fields.get("client_secret"))
        fields_named = ("client_id", "client_secret")
    for field, value in zip(fields_named, (name, secret)):
        if not value:
            raise OAuthFailure(400, "invalid_request", "is required", field)
    try:
        return authenticate(auth, name, secret, fields.get("scope"), within)
    except LoginFailed as exc:
        if kind == "password":
            raise OAuthFailure(401, "invalid_grant", str(exc)) from None
        # RFC 6749 5.2: invalid_client, and 401 when the client authenticated with Basic
        raise OAuthFailure(401 if basic else 400, "invalid_client", "unknown client or wrong secret") from None
    except DomainError as exc:
        error = "unauthorized_client" if exc.field == "client_id" else "invalid_scope"
        raise OAuthFailure(400, error, exc.reason, exc.field) from None


async def token_endpoint(request: Request, auth: Auth) -> JSONResponse:
    """POST /v1/auth/token. The account lookup and the secret's hash run in a worker thread, off
    the event loop."""
    basic = basic_credentials(request)
    try:
        fields = token_form(await request.body(), request.headers.get("content-type", ""))
        request.state.actor = fields.get("username") or (basic[0] if basic else fields.get("client_id"))
        token = await run_in_threadpool(grant, auth, fields, basic)
    except OAuthFailure as exc:
        return _oauth_error(request, exc, basic is not None)
    request.state.principal = token.principal
    out = TokenOut(access_token=token.token, expires_in=int(auth.settings.token_ttl.total_seconds()),
                   scope=" ".join(sorted(token.principal.scopes)))
    return JSONResponse(out.model_dump(), headers=NO_STORE)


def _unauthenticated(reason: str, error: str | None = None) -> ApiProblem:
    said = reason.replace('"', "'").replace("\\", "/")
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}", error_description="{said}"' if error else "")
    return ApiProblem(401, reason, headers={"WWW-Authenticate": challenge})


def same_origin(request: Request) -> bool:
    """Whether a browser request comes from a page of ours: its Origin (or, without one, its
    Referer) names this server. A request with neither is not a browser's cross-site one."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if not sent:
        return True
    here = f"{request.url.scheme}://{request.url.netloc}"
    return sent == here or sent.startswith(here + "/")


def resolve_principal(auth: Auth, request: Request, token: str | None) -> Principal:
    """The principal of the request's bearer token, else of its session cookie; a 401 problem
    when there is neither, or it is invalid, or its account is disabled or has changed."""
    if not token:
        token = request.cookies.get(SESSION_COOKIE)
        if token and request.method not in SAFE_METHODS and not same_origin(request):
            raise ApiProblem(403, "a cookie-authenticated write must come from this site's own pages",
                             "origin")
    if not token:
        raise _unauthenticated(f"a bearer token is required (POST {TOKEN_URL})")
    try:
        claimed = read_access_token(token, auth.settings.secret, datetime.now(UTC))
    except TokenError as exc:
        raise _unauthenticated(str(exc), "invalid_token") from None
    with auth.connections.connection() as conn:
        account = load_account(conn, claimed.username)
    if account is None or account.disabled or account.principal.account != claimed.account:
        raise _unauthenticated("the token's account is disabled or has changed", "invalid_token")
    request.state.principal = claimed
    return claimed


def principal_dependency(auth: Auth) -> Callable[..., Any]:
    """The dependency every protected route takes: the request's principal, or a 401 problem."""

    def principal(request: Request, token: Annotated[str | None, Depends(bearer)]) -> Principal:
        return resolve_principal(auth, request, token)

    return principal


def set_session_cookie(response: Response, request: Request, token: AccessToken) -> None:
    """The token as the browser's session: HttpOnly (no script reads it), SameSite=Strict (no other
    site's page sends it), Secure when served over https, and gone when the token expires."""
    max_age = max(int((token.expires_at - datetime.now(UTC)).total_seconds()), 0)
    response.set_cookie(SESSION_COOKIE, token.token, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


# (No `from __future__ import annotations` here: FastAPI evaluates the dependencies' annotations,
# which name the enclosing functions' locals.)
def requiring(scope: str, principal: Callable[..., Any], reason: str) -> Callable[..., Any]:
    """A dependency: the principal if its role has `scope`, else a 403 problem (RFC 6750 3.1)."""

    def allowed(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.may(scope):
            raise ApiProblem(403, reason, headers={"WWW-Authenticate": f'Bearer realm="{REALM}", '
                                                                       f'error="insufficient_scope", scope="{scope}"'})
        return who

    return allowed
