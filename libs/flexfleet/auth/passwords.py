"""Salted PBKDF2 hashes of passwords and client secrets: the one implementation the platform's
API accounts and the VTN's OAuth2 clients share.

The stored form is "pbkdf2_sha256$<iterations>$<salt b64>$<digest b64>": the iterations travel
with each hash, so raising them later leaves every stored hash verifiable.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os

SCHEME = "pbkdf2_sha256"
PBKDF2_ITERATIONS = 100_000
SALT_BYTES = 16


def _digest(secret: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8", "surrogatepass"), salt, iterations)


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """The stored form of `secret`, with a fresh random salt unless one is given (tests)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    return "$".join((SCHEME, str(PBKDF2_ITERATIONS), base64.b64encode(salt).decode(),
                     base64.b64encode(_digest(secret, salt, PBKDF2_ITERATIONS)).decode()))


def verify_secret(secret: str, stored: str) -> bool:
    """Whether `secret` hashes to `stored`; False (never an exception) for a malformed `stored`.
    The comparison takes the same time wherever the digests differ."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = _digest(secret, base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return scheme == SCHEME and hmac.compare_digest(actual, expected)


@functools.cache
def decoy_hash() -> str:
    """What a login that names no known account is checked against, so an unknown username costs
    the same PBKDF2 time as a wrong password and the timing does not reveal who has an account."""
    return hash_secret("no such account", salt=b"flexfleet-decoy!")
