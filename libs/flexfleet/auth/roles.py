"""Who may do what on the platform's API: five roles, each a fixed set of scopes.

| role | who | scopes |
|---|---|---|
| operator | the control room: dashboard, settlement runs, dispatch | operations:read, operations:write, bids:read |
| bidder | the trading desk: bid plans and clearing results | bids:read, bids:write, operations:read |
| owner | an EV owner, bound to one owner_id: only that owner's own data | own:read |
| ven | a site's OpenADR VEN (the VTN's own client credentials also cover it) | openadr:ven |
| admin | accounts, audit log; no owner data, no trading | accounts:write, audit:read, operations:read, bids:read |

Only an owner account carries an owner_id, and only it reads owner data (`own:read`): an
operator or admin looks at owners through the operations views, never as an owner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from flexfleet.domain.errors import DomainError


class Role(StrEnum):
    OPERATOR = "operator"
    BIDDER = "bidder"
    OWNER = "owner"
    VEN = "ven"
    ADMIN = "admin"


OWN_READ = "own:read"
OPERATIONS_READ, OPERATIONS_WRITE = "operations:read", "operations:write"
BIDS_READ, BIDS_WRITE = "bids:read", "bids:write"
OPENADR_VEN = "openadr:ven"
ACCOUNTS_WRITE, AUDIT_READ = "accounts:write", "audit:read"

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.OPERATOR: frozenset({OPERATIONS_READ, OPERATIONS_WRITE, BIDS_READ}),
    Role.BIDDER: frozenset({BIDS_READ, BIDS_WRITE, OPERATIONS_READ}),
    Role.OWNER: frozenset({OWN_READ}),
    Role.VEN: frozenset({OPENADR_VEN}),
    Role.ADMIN: frozenset({ACCOUNTS_WRITE, AUDIT_READ, OPERATIONS_READ, BIDS_READ}),
}

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,63}$")
MIN_PASSWORD_CHARS = 12


def role(value: object, field: str = "role") -> Role:
    try:
        return Role(str(value).strip().lower())
    except ValueError:
        raise DomainError(field, f"must be one of {', '.join(r.value for r in Role)}, got {value!r}") from None


def username(value: object, field: str = "username") -> str:
    """A username as stored: case-insensitive (kept lower case), 1-64 characters of letters,
    digits and . _ @ + -, so an e-mail address fits and no two spellings name one account."""
    text = str(value).strip().lower() if isinstance(value, str) else ""
    if not _USERNAME.fullmatch(text):
        raise DomainError(field, "1-64 characters: letters, digits and . _ @ + -, starting with a letter or digit")
    return text


def new_password(value: object, field: str = "password") -> str:
    """A password good enough to set: long rather than clever (NIST SP 800-63B 3.1.1.2)."""
    if not isinstance(value, str) or len(value) < MIN_PASSWORD_CHARS:
        raise DomainError(field, f"at least {MIN_PASSWORD_CHARS} characters")
    if len(value) > 1024 or "\x00" in value:
        raise DomainError(field, "at most 1024 characters, without NUL")
    return value


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: an account's username, role and (for an owner) its owner_id."""

    username: str
    role: Role
    owner_id: str | None = None

    def __post_init__(self) -> None:
        if (self.role is Role.OWNER) != (self.owner_id is not None):
            raise DomainError("owner_id", "an owner account names its owner_id; no other role has one")
        if self.owner_id is not None and not self.owner_id:
            raise DomainError("owner_id", "must not be empty")

    @property
    def scopes(self) -> frozenset[str]:
        return ROLE_SCOPES[self.role]

    def may(self, scope: str) -> bool:
        return scope in self.scopes
