"""The API's bearer tokens: what an account's access token claims, issued and read back.

Claims: iss "flexfleet-api", sub (the username), role, owner_id (owners only), scope (the role's,
space-separated, for the client's information: the server derives scopes from the role), iat,
exp and jti. The VTN's tokens are signed the same way but name another issuer, so neither
service accepts the other's tokens.
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
    return AccessToken(sign(claims, secret), expires, principal)


def read_access_token(token: str, secret: str, now: datetime) -> Principal:
    """The principal of a valid, unexpired token; TokenError (safe to show) for anything else."""
    claims = signed_claims(token, secret, ISSUER, _REQUIRED)
    try:
        role = Role(claims["role"])
        owner_id = claims.get("owner_id")
        if owner_id is not None and not isinstance(owner_id, str):
            raise ValueError("owner_id")
        principal = Principal(str(claims["sub"]), role, owner_id)
    except (ValueError, KeyError):       # DomainError is a ValueError
        raise TokenError("invalid token: bad role claims") from None
    check_unexpired(int(claims["exp"]), now)
    return principal


__all__ = ["ISSUER", "MAX_TTL", "ROLE_SCOPES", "AccessToken", "TokenError", "issue_access_token",
           "read_access_token"]
