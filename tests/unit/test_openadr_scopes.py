"""The OpenADR scopes as the platform's roles hold them, and the VTN's cache of checked tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flexfleet.auth import ROLE_SCOPES, Principal, Role, TokenError, issue_access_token
from flexfleet.domain.errors import DomainError
from flexfleet.openadr.scopes import BL_SCOPES, VEN_SCOPES, unaliased

SECRET = "unit-test-signing-secret-32-bytes-long"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_the_operator_is_the_business_logic_and_a_ven_account_a_ven() -> None:
    assert BL_SCOPES == {"read_all", "write_programs", "write_events", "write_subscriptions", "write_vens"}
    assert VEN_SCOPES == {"read_all", "write_reports", "write_subscriptions", "write_vens"}
    assert BL_SCOPES <= ROLE_SCOPES[Role.OPERATOR] and ROLE_SCOPES[Role.VEN] == VEN_SCOPES
    for role in (Role.BIDDER, Role.OWNER, Role.ADMIN):
        assert not ROLE_SCOPES[role] & (BL_SCOPES | VEN_SCOPES), role


def test_a_token_may_ask_for_fewer_scopes_never_more() -> None:
    ven = Principal("c-7", Role.VEN, ven_name="ven-7")
    assert ven.narrowed(None) == ven == ven.narrowed("  ") and ven.scopes == VEN_SCOPES
    assert ven.narrowed("read_all").scopes == {"read_all"}
    with pytest.raises(DomainError) as err:
        ven.narrowed("read_all write_programs")
    assert err.value.field == "scope" and "write_programs" in err.value.reason
    assert unaliased("read_targets read_ven_objects write_reports") == "read_all read_all write_reports"
    with pytest.raises(DomainError) as err:
        Principal("v", Role.VEN)
    assert err.value.field == "ven_name"
    with pytest.raises(DomainError):
        Principal("o", Role.OPERATOR, ven_name="ven-7")


def test_the_vtn_keeps_checked_tokens_but_not_past_their_expiry() -> None:
    from services.dispatcher.vtn.auth import TokenPolicy

    policy = TokenPolicy(SECRET)
    ven = Principal("c-7", Role.VEN, ven_name="ven-7", scopes=frozenset({"read_all"}))
    token = issue_access_token(ven, SECRET, NOW, HOUR).token
    assert policy.principal(token, NOW) == ven and token in policy.verified
    assert policy.principal(token, NOW + HOUR - timedelta(seconds=1)) == ven
    with pytest.raises(TokenError, match="expired"):
        policy.principal(token, NOW + HOUR)
    forged = issue_access_token(ven, SECRET + "x", NOW, HOUR).token
    for _ in range(2):
        with pytest.raises(TokenError):
            policy.principal(forged, NOW)
    assert forged not in policy.verified
