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

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

# Signing, expiry and secret hashing are the platform's one implementation (flexfleet.auth),
# shared with the API's account tokens; they are re-exported here for the VTN's callers.
from flexfleet.auth.passwords import hash_secret, verify_secret
from flexfleet.auth.signing import (ALGORITHM, MIN_SECRET_BYTES, TokenError, check_secret, check_unexpired, sign,
                                    signed_claims)

ISSUER = "flexfleet-vtn"
READ_ALL, WRITE_PROGRAMS, WRITE_EVENTS = "read_all", "write_programs", "write_events"
WRITE_REPORTS, WRITE_SUBSCRIPTIONS, WRITE_VENS = "write_reports", "write_subscriptions", "write_vens"
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "BL": frozenset({READ_ALL, WRITE_PROGRAMS, WRITE_EVENTS, WRITE_SUBSCRIPTIONS, WRITE_VENS}),
    "VEN": frozenset({READ_ALL, WRITE_REPORTS, WRITE_SUBSCRIPTIONS, WRITE_VENS}),
}
Role = Literal["BL", "VEN"]


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
    return sign(claims, secret)


def read_token(token: str, secret: str, now: datetime) -> Principal:
    """The principal of a valid token; TokenError for anything else."""
    principal, expires = read_signed(token, secret)
    return unexpired(principal, expires, now)


def read_signed(token: str, secret: str) -> tuple[Principal, int]:
    """The principal of a token signed with `secret` and its expiry (epoch s), not yet checked
    against the clock: a verifier may keep this answer for the token's lifetime."""
    claims = signed_claims(token, secret, ISSUER, ("exp", "iat", "sub", "iss"))
    role = claims.get("role")
    if role not in ROLE_SCOPES or (role == "VEN") != isinstance(claims.get("ven"), str):
        raise TokenError("invalid token: bad role claims")
    scopes = frozenset(str(claims.get("scope", "")).split()) & ROLE_SCOPES[role]
    return Principal(str(claims["sub"]), role, scopes, claims.get("ven")), int(claims["exp"])


def unexpired(principal: Principal, expires: int, now: datetime) -> Principal:
    check_unexpired(expires, now)
    return principal


__all__ = ["ALGORITHM", "ISSUER", "MIN_SECRET_BYTES", "READ_ALL", "ROLE_SCOPES", "WRITE_EVENTS", "WRITE_PROGRAMS",
           "WRITE_REPORTS", "WRITE_SUBSCRIPTIONS", "WRITE_VENS", "Principal", "Role", "ScopeError", "TokenError",
           "check_secret", "granted_scopes", "hash_secret", "issue_token", "read_signed", "read_token", "unexpired",
           "verify_secret"]
