"""OAuth2 client-credentials access tokens of the VTN: who may do what, and the signed token
that carries it.

Roles and scopes come from the spec's securitySchemes: the business logic (BL) writes programs,
events, subscriptions and vens; a VEN writes reports, subscriptions and its own ven and
resources; both read. A VEN's token names its venName: venName is unique within a VTN and is
known before the VEN object exists, so a VEN can register itself with it (the object's id is
the VTN's to assign).

Tokens are JWTs signed with HS256: the VTN is the only party that issues and checks them.
Client secrets are stored as salted PBKDF2 hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import jwt

ISSUER = "flexfleet-vtn"
ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32          # RFC 7518 3.2: an HS256 key at least as long as the hash
READ_ALL, WRITE_PROGRAMS, WRITE_EVENTS = "read_all", "write_programs", "write_events"
WRITE_REPORTS, WRITE_SUBSCRIPTIONS, WRITE_VENS = "write_reports", "write_subscriptions", "write_vens"
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "BL": frozenset({READ_ALL, WRITE_PROGRAMS, WRITE_EVENTS, WRITE_SUBSCRIPTIONS, WRITE_VENS}),
    "VEN": frozenset({READ_ALL, WRITE_REPORTS, WRITE_SUBSCRIPTIONS, WRITE_VENS}),
}
Role = Literal["BL", "VEN"]
_PBKDF2_ITERATIONS = 100_000


class TokenError(ValueError):
    """A token that is missing, malformed, forged or expired: the reason is safe to show."""


class ScopeError(ValueError):
    """A token request for a scope the client's role does not have."""


@dataclass(frozen=True)
class Principal:
    """Who a request comes from, as its token says."""

    client_id: str
    role: Role
    scopes: frozenset[str]
    ven_name: str | None = None

    @property
    def is_ven(self) -> bool:
        return self.role == "VEN"


def check_secret(secret: str) -> str:
    if len(secret.encode("utf-8", "surrogatepass")) < MIN_SECRET_BYTES:
        raise ValueError(f"the token signing secret needs at least {MIN_SECRET_BYTES} bytes")
    return secret


def granted_scopes(role: Role, requested: str | None) -> frozenset[str]:
    """The role's scopes, or the requested subset of them (space-separated, RFC 6749 3.3)."""
    allowed = ROLE_SCOPES[role]
    wanted = frozenset((requested or "").split())
    if not wanted:
        return allowed
    if not wanted <= allowed:
        raise ScopeError(f"not granted to a {role} client: {' '.join(sorted(wanted - allowed))}")
    return wanted


def issue_token(principal: Principal, secret: str, now: datetime, ttl: timedelta) -> str:
    claims = {"iss": ISSUER, "sub": principal.client_id, "role": principal.role,
              "scope": " ".join(sorted(principal.scopes)), "iat": int(now.timestamp()),
              "exp": int((now + ttl).timestamp()), "jti": uuid.uuid4().hex}
    if principal.ven_name is not None:
        claims["ven"] = principal.ven_name
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_token(token: str, secret: str, now: datetime) -> Principal:
    """The principal of a valid token; TokenError for anything else."""
    principal, expires = read_signed(token, secret)
    return unexpired(principal, expires, now)


def read_signed(token: str, secret: str) -> tuple[Principal, int]:
    """The principal of a token signed with `secret` and its expiry (epoch s), not yet checked
    against the clock: a verifier may keep this answer for the token's lifetime."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"require": ["exp", "iat", "sub", "iss"], "verify_exp": False})
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid token: {exc}") from None
    role = claims.get("role")
    if role not in ROLE_SCOPES or (role == "VEN") != isinstance(claims.get("ven"), str):
        raise TokenError("invalid token: bad role claims")
    scopes = frozenset(str(claims.get("scope", "")).split()) & ROLE_SCOPES[role]
    return Principal(str(claims["sub"]), role, scopes, claims.get("ven")), int(claims["exp"])


def unexpired(principal: Principal, expires: int, now: datetime) -> Principal:
    if expires <= now.timestamp():
        raise TokenError("the token has expired")
    return principal


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8", "surrogatepass"), salt, _PBKDF2_ITERATIONS)
    return "$".join(("pbkdf2_sha256", str(_PBKDF2_ITERATIONS), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()))


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8", "surrogatepass"), base64.b64decode(salt),
                                     int(iterations))
    except (ValueError, TypeError):
        return False
    return scheme == "pbkdf2_sha256" and hmac.compare_digest(actual, expected)
