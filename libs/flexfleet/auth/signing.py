"""Signed bearer tokens (JWT, HS256): the platform is the only party that issues and checks its
tokens, so a shared secret suffices."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import jwt

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32          # RFC 7518 3.2: an HS256 key at least as long as the hash


class TokenError(ValueError):
    """A token that is missing, malformed, forged or expired: the reason is safe to show."""


def check_secret(secret: str) -> str:
    if len(secret.encode("utf-8", "surrogatepass")) < MIN_SECRET_BYTES:
        raise ValueError(f"the token signing secret needs at least {MIN_SECRET_BYTES} bytes")
    return secret


def sign(claims: Mapping[str, Any], secret: str) -> str:
    return jwt.encode(dict(claims), secret, algorithm=ALGORITHM)


def signed_claims(token: str, secret: str, issuer: str, required: Iterable[str]) -> dict[str, Any]:
    """The claims of a token signed with `secret` by `issuer`, not yet checked against the clock
    (a verifier may keep the answer for the token's lifetime); TokenError for anything else."""
    try:
        return jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=issuer,
                          options={"require": list(required), "verify_exp": False})
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid token: {exc}") from None


def check_unexpired(expires: int, now: datetime) -> None:
    """TokenError once `now` has reached `expires` (epoch seconds)."""
    if expires <= now.timestamp():
        raise TokenError("the token has expired")
