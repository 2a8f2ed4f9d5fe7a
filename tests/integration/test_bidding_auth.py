"""The bidding API inside the platform API (/bidding): the platform's tokens, and each role
exactly its scopes: reading bids needs bids:read, planning and clearing bids:write."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from services.api.accounts import create_account
from services.api.app import create_app

pytestmark = pytest.mark.integration

SECRET = "bidding-auth-test-secret-of-32-bytes!!!!"
PASSWORD = "correct horse battery staple"
ROLES = {"bea": "bidder", "olle": "operator", "root": "admin", "ven-1": "ven"}
UNKNOWN_BID = {"results": [{"bid_id": "0b7f5a52-3d0e-4d59-9a53-6f1f0c2f4c11/0", "accepted_mw": "0.1",
                            "price_eur_per_mw_h": "4.20", "source": "market"}]}


@pytest.fixture(scope="module")
def client(module_db_url):
    with psycopg.connect(module_db_url) as conn:
        conn.execute("INSERT INTO owners VALUES ('o1', 'Owner', 'sv', 'SEK')")
        create_account(conn, "alice", PASSWORD, "owner", "o1")
        for name, role in ROLES.items():
            create_account(conn, name, PASSWORD, role, ven_name="site-1" if role == "ven" else None)
    with TestClient(create_app(module_db_url, secret=SECRET)) as c:
        yield c


def _as(client: TestClient, name: str) -> dict[str, str]:
    token = client.post("/v1/auth/token", data={"grant_type": "password", "username": name,
                                                "password": PASSWORD}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_each_role_reads_and_writes_bids_exactly_as_its_scopes_say(client) -> None:
    assert client.get("/bidding/v1/bids").status_code == 401
    expected = {"bea": (200, 404), "olle": (200, 403), "root": (200, 403), "alice": (403, 403), "ven-1": (403, 403)}
    for name, (read, write) in expected.items():
        headers = _as(client, name)
        got = client.get("/bidding/v1/bids", headers=headers)
        assert got.status_code == read, (name, got.text)
        posted = client.post("/bidding/v1/clearing", json=UNKNOWN_BID, headers=headers)
        assert posted.status_code == write, (name, posted.text)       # 404: allowed, and no such bid
        if write == 403:
            assert posted.headers["content-type"].startswith("application/problem+json")
            assert 'error="insufficient_scope"' in posted.headers["www-authenticate"]
