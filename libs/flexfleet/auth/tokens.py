"""The platform's bearer tokens: what an account's access token claims, issued and read back.
The one kind of token the whole API takes, the OpenADR VTN's operations included.

Claims: iss "flexfleet-api", sub (the username), role, owner_id (owners only), ven (a VEN's
venName, ven accounts only), scope (the scopes granted: the role's, or fewer if the client asked
for fewer; a scope the role lacks is dropped when read), iat, exp and jti.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flexfleet.auth.roles import ROLE_SCOPES, Principal, Role
from flexfleet.auth.signing import TokenError, check_unexpired, sign, signed_claims
from flexfleet.domain.errors import DomainError

ISSUER = "flexfleet-api"
MAX_TTL = timedelta(hours=24)
_REQUIRED = ("iss", "sub", "role", "iat", "exp")


@dataclass(frozen=True)
class AccessToken:
    """A token as issued: the string the client sends back and when it stops working."""

    token: str
    expires_at: datetime
    principal: Principal


def issue_access_token(principal: Principal, secret: str, now: datetime, ttl: timedelta) -> AccessToken:
    if not timedelta(0) < ttl <= MAX_TTL:
        raise DomainError("ttl", f"must be positive and at most {MAX_TTL}, got {ttl}")
    expires = now + ttl
    claims = {"iss": ISSUER, "sub": principal.username, "role": principal.role.value,
              "scope": " ".join(sorted(principal.scopes)), "iat": int(now.timestamp()),
              "exp": int(expires.timestamp()), "jti": uuid.uuid4().hex}
    if principal.owner_id is not None:
        claims["owner_id"] = principal.owner_id
    if principal.ven_name is not None:
        claims["ven"] = principal.ven_name
    return AccessToken(sign(claims, secret), expires, principal)


def read_access_token(token: str, secret: str, now: datetime) -> Principal:
    """The principal of a valid, unexpired token; TokenError (safe to show) for anything else."""
    principal, expires = read_signed_token(token, secret)
    check_unexpired(expires, now)
    return principal


def read_signed_token(token: str, secret: str) -> tuple[Principal, int]:
    """The principal of a token signed with `secret` and its expiry (epoch s), not yet checked
    against the clock: a verifier may keep this answer for the token's lifetime."""
    claims = signed_claims(token, secret, ISSUER, _REQUIRED)
    try:
        role = Role(claims["role"])
        owner_id, ven_name = claims.get("owner_id"), claims.get("ven")
        if not all(v is None or isinstance(v, str) for v in (owner_id, ven_name)):
            raise ValueError("owner_id or ven")
        granted = frozenset(str(claims.get("scope", "")).split()) & ROLE_SCOPES[role]
        principal = Principal(str(claims["sub"]), role, owner_id, ven_name, granted)
    except (ValueError, KeyError):       # DomainError is a ValueError
        raise TokenError("invalid token: bad role claims") from None
    return principal, int(claims["exp"])


__all__ = ["ISSUER", "MAX_TTL", "ROLE_SCOPES", "AccessToken", "TokenError", "issue_access_token",
           "read_access_token", "read_signed_token"]
