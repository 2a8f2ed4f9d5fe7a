"""The API's roles, account tokens and password hashes, without I/O."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexfleet import auth
from flexfleet.auth import (ROLE_SCOPES, Principal, Role, TokenError, decoy_hash, hash_secret, issue_access_token,
                            new_password, read_access_token, username, verify_secret)
from flexfleet.auth.roles import OWN_READ
from flexfleet.domain.errors import DomainError

SECRET = "unit-test-signing-secret-32-bytes-long"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
ALICE = Principal("alice", Role.OWNER, "o-1")


def test_every_role_has_scopes_and_only_an_owner_reads_owner_data() -> None:
    assert set(ROLE_SCOPES) == {Role.OPERATOR, Role.BIDDER, Role.OWNER, Role.VEN, Role.ADMIN}
    assert all(ROLE_SCOPES.values())
    assert [r for r, scopes in ROLE_SCOPES.items() if OWN_READ in scopes] == [Role.OWNER]
    assert ALICE.may(OWN_READ) and not ALICE.may("operations:read")
    assert not Principal("root", Role.ADMIN).may(OWN_READ)
    assert auth.role(" Operator ") is Role.OPERATOR
    with pytest.raises(DomainError) as err:
        auth.role("root")
    assert err.value.field == "role"


def test_an_owner_principal_names_its_owner_and_no_other_role_has_one() -> None:
    for bad in (lambda: Principal("a", Role.OWNER), lambda: Principal("a", Role.OPERATOR, "o-1"),
                lambda: Principal("a", Role.OWNER, "")):
        with pytest.raises(DomainError) as err:
            bad()
        assert err.value.field == "owner_id"


def test_usernames_are_case_insensitive_and_passwords_long() -> None:
    assert username("  Bob@Example.org ") == "bob@example.org"
    for bad in ("", "a b", "../etc", ".hidden", "x" * 65, None, 7):
        with pytest.raises(DomainError) as err:
            username(bad)
        assert err.value.field == "username"
    assert new_password("correct horse battery") == "correct horse battery"
    for bad in ("short", "x" * 1025, "twelve chars\x00!", None):
        with pytest.raises(DomainError) as err:
            new_password(bad)
        assert err.value.field == "password"


def test_a_token_carries_its_principal_until_it_expires() -> None:
    issued = issue_access_token(ALICE, SECRET, NOW, HOUR)
    assert issued.expires_at == NOW + HOUR and issued.principal == ALICE
    assert read_access_token(issued.token, SECRET, NOW + HOUR - timedelta(seconds=1)) == ALICE
    claims = jwt.decode(issued.token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert (claims["sub"], claims["role"], claims["owner_id"], claims["scope"], claims["iss"]) == (
        "alice", "owner", "o-1", "own:read", "flexfleet-api")
    with pytest.raises(TokenError, match="expired"):
        read_access_token(issued.token, SECRET, NOW + HOUR)
    operator = Principal("olle", Role.OPERATOR)
    token = issue_access_token(operator, SECRET, NOW, HOUR).token
    assert read_access_token(token, SECRET, NOW) == operator
    assert "owner_id" not in jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    for ttl in (timedelta(0), -HOUR, timedelta(hours=25)):
        with pytest.raises(DomainError):
            issue_access_token(ALICE, SECRET, NOW, ttl)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_forged_odd_and_other_services_tokens_are_refused() -> None:
    with pytest.raises(TokenError):
        read_access_token(issue_access_token(ALICE, SECRET + "x", NOW, HOUR).token, SECRET, NOW)
    base = {"iss": "flexfleet-api", "sub": "alice", "iat": int(NOW.timestamp()), "exp": int((NOW + HOUR).timestamp())}
    for odd in ({**base, "role": "root"}, {**base, "role": "owner"}, {**base, "role": "owner", "owner_id": 5},
                {**base, "role": "admin", "owner_id": "o-1"}, {**base, "role": "owner", "owner_id": ""},
                {k: v for k, v in {**base, "role": "admin"}.items() if k != "exp"}, {**base}):
        with pytest.raises(TokenError):
            read_access_token(jwt.encode(odd, SECRET, algorithm="HS256"), SECRET, NOW)
    with pytest.raises(TokenError):     # another algorithm, even with the right key
        read_access_token(jwt.encode({**base, "role": "admin"}, SECRET, algorithm="HS512"), SECRET, NOW)
    with pytest.raises(TokenError):     # unsigned
        read_access_token(jwt.encode({**base, "role": "admin"}, None, algorithm="none"), SECRET, NOW)
    with pytest.raises(TokenError):     # another issuer's token, signed with the same key
        read_access_token(jwt.encode({**base, "role": "admin", "iss": "flexfleet-vtn"}, SECRET, algorithm="HS256"),
                          SECRET, NOW)


def _with_claims(token: str, **changed: object) -> str:
    """The token with its payload edited and the signature kept: what a forger would send."""
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edited = base64.urlsafe_b64encode(json.dumps({**claims, **changed}).encode()).rstrip(b"=").decode()
    return ".".join((head, edited, signature))


@settings(max_examples=60, deadline=None)
@given(owner_id=st.text(min_size=1, max_size=40), other=st.text(min_size=1, max_size=40),
       role=st.sampled_from(["operator", "bidder", "ven", "admin", "owner"]))
def test_a_token_edited_to_claim_another_owner_or_role_is_refused(owner_id: str, other: str, role: str) -> None:
    token = issue_access_token(Principal("alice", Role.OWNER, owner_id), SECRET, NOW, HOUR).token
    assert read_access_token(token, SECRET, NOW).owner_id == owner_id
    if other != owner_id:
        with pytest.raises(TokenError):
            read_access_token(_with_claims(token, owner_id=other), SECRET, NOW)
    if role != "owner":
        with pytest.raises(TokenError):
            read_access_token(_with_claims(token, role=role), SECRET, NOW)
    with pytest.raises(TokenError):
        read_access_token(_with_claims(token, exp=int((NOW + 100 * HOUR).timestamp())), SECRET, NOW)


def test_passwords_are_salted_pbkdf2() -> None:
    stored = hash_secret("correct horse battery")
    assert stored.startswith("pbkdf2_sha256$100000$")
    assert verify_secret("correct horse battery", stored) and not verify_secret("correct horse batterY", stored)
    assert hash_secret("correct horse battery") != stored, "salted per hash"
    assert not verify_secret("x", "garbage") and not verify_secret("x", "md5$1$AA==$AA==")
    assert verify_secret("no such account", decoy_hash()) and not verify_secret("", decoy_hash())


def test_a_ven_token_names_its_ven_and_carries_only_the_scopes_granted() -> None:
    ven = Principal("site-7-ven", Role.VEN, ven_name="site-7").narrowed("read_all write_reports")
    token = issue_access_token(ven, SECRET, NOW, HOUR).token
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert (claims["ven"], claims["scope"]) == ("site-7", "read_all write_reports")
    assert read_access_token(token, SECRET, NOW) == ven
    # scopes beyond the role's are dropped even from a validly signed token
    wide = jwt.encode({**claims, "scope": "read_all write_programs accounts:write"}, SECRET, algorithm="HS256")
    assert read_access_token(wide, SECRET, NOW).scopes == {"read_all"}
    for odd in ({**claims, "ven": None}, {**claims, "ven": 7}, {**claims, "role": "operator"}):
        with pytest.raises(TokenError):
            read_access_token(jwt.encode(odd, SECRET, algorithm="HS256"), SECRET, NOW)
