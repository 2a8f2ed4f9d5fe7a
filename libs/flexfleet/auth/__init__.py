"""Accounts, roles and bearer tokens of the platform's API, without I/O.

- `roles`: the five roles (operator, bidder, owner, ven, admin), their scopes (OpenADR's
  among them), `Principal`, and the rules for usernames and new passwords;
- `tokens`: the access token's claims, issued and read back (`issue_access_token`,
  `read_access_token`);
- `signing`: HS256 signing and expiry;
- `passwords`: salted PBKDF2 hashes of passwords and machine clients' secrets.
"""

from flexfleet.auth.passwords import decoy_hash, hash_secret, verify_secret
from flexfleet.auth.roles import (ROLE_SCOPES, Principal, Role, new_password, role, username)
from flexfleet.auth.signing import TokenError, check_secret
from flexfleet.auth.tokens import AccessToken, issue_access_token, read_access_token, read_signed_token

__all__ = ["ROLE_SCOPES", "AccessToken", "Principal", "Role", "TokenError", "check_secret", "decoy_hash",
           "hash_secret", "issue_access_token", "new_password", "read_access_token", "read_signed_token", "role",
           "username", "verify_secret"]
