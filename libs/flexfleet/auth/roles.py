"""Who may do what on the platform's API, the OpenADR VTN included: five roles, each a fixed
set of scopes.

| role | who | scopes |
|---|---|---|
| operator | the control room: dashboard, settlement runs, dispatch (OpenADR's business logic) | operations:read, operations:write, bids:read, and the OpenADR BL's read_all write_programs write_events write_subscriptions write_vens |
| bidder | the trading desk: bid plans and clearing results | bids:read, bids:write, operations:read |
| owner | an EV owner, bound to one owner_id: only that owner's own data | own:read |
| ven | a site's OpenADR VEN, bound to one venName | read_all write_reports write_subscriptions write_vens |
| admin | accounts, audit log; no owner data, no trading | accounts:write, audit:read, operations:read, bids:read |

Only an owner account carries an owner_id, and only it reads owner data (`own:read`): an
operator or admin looks at owners through the operations views, never as an owner. Only a ven
account carries a ven_name. A token may carry fewer scopes than its role has (RFC 6749 3.3: the
client asked for fewer), never more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from flexfleet.domain.errors import DomainError
from flexfleet.openadr.scopes import BL_SCOPES, VEN_SCOPES


class Role(StrEnum):
    OPERATOR = "operator"
    BIDDER = "bidder"
    OWNER = "owner"
    VEN = "ven"
    ADMIN = "admin"


OWN_READ = "own:read"
OPERATIONS_READ, OPERATIONS_WRITE = "operations:read", "operations:write"
BIDS_READ, BIDS_WRITE = "bids:read", "bids:write"
ACCOUNTS_WRITE, AUDIT_READ = "accounts:write", "audit:read"

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.OPERATOR: frozenset({OPERATIONS_READ, OPERATIONS_WRITE, BIDS_READ}) | BL_SCOPES,
    Role.BIDDER: frozenset({BIDS_READ, BIDS_WRITE, OPERATIONS_READ}),
    Role.OWNER: frozenset({OWN_READ}),
    Role.VEN: VEN_SCOPES,
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
    """Who a request comes from: an account's username and role, the owner_id of an owner, the
    venName of a VEN, and the scopes its token carries (by default all of its role's)."""

    username: str
    role: Role
    owner_id: str | None = None
    ven_name: str | None = None
    scopes: frozenset[str] = None  # type: ignore[assignment]   # None: the role's

    def __post_init__(self) -> None:
        if (self.role is Role.OWNER) != (self.owner_id is not None):
            raise DomainError("owner_id", "an owner account names its owner_id; no other role has one")
        if self.owner_id is not None and not self.owner_id:
            raise DomainError("owner_id", "must not be empty")
        if (self.role is Role.VEN) != bool(self.ven_name):
            raise DomainError("ven_name", "a ven account names its venName; no other role has one")
        allowed = ROLE_SCOPES[self.role]
        scopes = allowed if self.scopes is None else frozenset(self.scopes)
        if not scopes <= allowed:
            raise DomainError("scope", f"not granted to the {self.role.value} role: {' '.join(sorted(scopes - allowed))}")
        object.__setattr__(self, "scopes", scopes)

    @property
    def account(self) -> tuple[str, Role, str | None, str | None]:
        """What names the account behind it: a token whose account has since changed is stale."""
        return self.username, self.role, self.owner_id, self.ven_name

    @property
    def is_ven(self) -> bool:
        return self.role is Role.VEN

    def may(self, scope: str) -> bool:
        return scope in self.scopes

    def narrowed(self, requested: str | None) -> Principal:
        """The principal with only the scopes a token request asked for (space-separated;
        none asked: all of the role's); DomainError naming `scope` for one the role lacks."""
        wanted = frozenset((requested or "").split())
        return self if not wanted else replace(self, scopes=wanted)
