"""The VTN's access tokens and client secrets, without I/O: scopes per role, signed claims,
expiry, forgery, and secret hashing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from flexfleet.openadr.tokens import (
    ROLE_SCOPES,
    Principal,
    ScopeError,
    TokenError,
    check_secret,
    granted_scopes,
    hash_secret,
    issue_token,
    read_token,
    verify_secret,
)

SECRET = "unit-test-signing-secret-32-bytes-long"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_roles_get_the_specs_scopes() -> None:
    assert ROLE_SCOPES["BL"] == {"read_all", "write_programs", "write_events", "write_subscriptions", "write_vens"}
    assert ROLE_SCOPES["VEN"] == {"read_all", "write_reports", "write_subscriptions", "write_vens"}
    assert granted_scopes("VEN", None) == ROLE_SCOPES["VEN"] == granted_scopes("VEN", "  ")
    assert granted_scopes("BL", "read_all write_events") == {"read_all", "write_events"}
    with pytest.raises(ScopeError, match="write_programs"):
        granted_scopes("VEN", "read_all write_programs")


def test_a_token_carries_its_principal() -> None:
    ven = Principal("c-7", "VEN", frozenset({"read_all", "write_reports"}), "ven-7")
    assert read_token(issue_token(ven, SECRET, NOW, HOUR), SECRET, NOW + HOUR - timedelta(seconds=1)) == ven
    bl = Principal("bl", "BL", ROLE_SCOPES["BL"])
    assert read_token(issue_token(bl, SECRET, NOW, HOUR), SECRET, NOW) == bl


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the HS512 forgery's key
def test_expired_forged_and_odd_tokens_are_refused() -> None:
    ven = Principal("c-7", "VEN", ROLE_SCOPES["VEN"], "ven-7")
    token = issue_token(ven, SECRET, NOW, HOUR)
    with pytest.raises(TokenError, match="expired"):
        read_token(token, SECRET, NOW + HOUR)
    with pytest.raises(TokenError):
        read_token(token, SECRET + "x", NOW)
    claims = {"iss": "flexfleet-vtn", "sub": "c-7", "iat": int(NOW.timestamp()), "exp": int((NOW + HOUR).timestamp())}
    for odd in ({**claims, "role": "ADMIN"}, {**claims, "role": "VEN"}, {**claims, "role": "BL", "ven": "v"},
                {**claims, "iss": "elsewhere", "role": "BL"}, {k: v for k, v in claims.items() if k != "exp"}):
        with pytest.raises(TokenError):
            read_token(jwt.encode(odd, SECRET, algorithm="HS256"), SECRET, NOW)
    with pytest.raises(TokenError):
        read_token(jwt.encode({**claims, "role": "BL"}, SECRET, algorithm="HS512"), SECRET, NOW)


def test_a_tokens_scopes_never_exceed_its_role() -> None:
    claims = {"iss": "flexfleet-vtn", "sub": "c", "iat": int(NOW.timestamp()), "exp": int((NOW + HOUR).timestamp()),
              "role": "VEN", "ven": "v", "scope": "read_all write_programs"}
    assert read_token(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET, NOW).scopes == {"read_all"}


def test_secrets() -> None:
    stored = hash_secret("s3cret")
    assert verify_secret("s3cret", stored) and not verify_secret("s3cret!", stored)
    assert hash_secret("s3cret") != stored, "salted"
    assert not verify_secret("s3cret", "garbage") and not verify_secret("x", "md5$1$AA==$AA==")
    with pytest.raises(ValueError):
        check_secret("short")


def test_the_vtn_keeps_checked_tokens_but_not_past_their_expiry() -> None:
    from services.dispatcher.vtn.auth import TokenPolicy

    policy = TokenPolicy(SECRET, HOUR)
    ven = Principal("c-7", "VEN", ROLE_SCOPES["VEN"], "ven-7")
    token = issue_token(ven, SECRET, NOW, HOUR)
    assert policy.principal(token, NOW) == ven and token in policy.verified
    assert policy.principal(token, NOW + HOUR - timedelta(seconds=1)) == ven
    with pytest.raises(TokenError, match="expired"):
        policy.principal(token, NOW + HOUR)
    forged = issue_token(ven, SECRET + "x", NOW, HOUR)
    for _ in range(2):
        with pytest.raises(TokenError):
            policy.principal(forged, NOW)
    assert forged not in policy.verified
