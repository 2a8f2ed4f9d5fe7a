"""One authentication scheme across the platform API: the OpenADR VTN served inside it at
/openadr3, its token URLs and POST /v1/auth/token granting the same tokens for the same accounts,
the role deciding what each may do, a disabled account refused, and an audit row for every
write, the refused ones included. Real PostgreSQL; the app through Starlette's test client."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from services.api.accounts import create_account, register_client
from services.api.app import create_app
from services.dispatcher.vtn.auth import TokenPolicy

pytestmark = pytest.mark.integration

SECRET = "one-auth-test-signing-secret-of-32-bytes"
PASSWORD = "correct horse battery staple"
BL = ("dispatch-bl", "bl-client-secret")
VEN = ("site-1-ven", "site-1-secret!")
V301, V310 = "/openadr3/3.0.1", "/openadr3/3.1.0"


@pytest.fixture(scope="module")
def client(module_db_url: str) -> Iterator[TestClient]:
    with psycopg.connect(module_db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO owners VALUES ('o1', 'Owner', 'sv', 'SEK')")
        create_account(conn, "alice", PASSWORD, "owner", "o1")
        for name, role in {"olle": "operator", "bea": "bidder", "root": "admin"}.items():
            create_account(conn, name, PASSWORD, role)
        register_client(conn, *BL)
        register_client(conn, *VEN, ven_name="site-1")
    with TestClient(create_app(module_db_url, secret=SECRET)) as c:
        yield c


def _token(client: TestClient, url: str, **form: str) -> str:
    answer = client.post(url, data=form)
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def _password(client: TestClient, name: str) -> dict[str, str]:
    token = _token(client, "/v1/auth/token", grant_type="password", username=name, password=PASSWORD)
    return {"Authorization": f"Bearer {token}"}


def _client(client: TestClient, url: str, credentials: tuple[str, str]) -> dict[str, str]:
    token = _token(client, url, grant_type="client_credentials", client_id=credentials[0],
                   client_secret=credentials[1])
    return {"Authorization": f"Bearer {token}"}


def test_the_vtn_is_served_inside_the_platform_api_under_its_tokens(client: TestClient) -> None:
    bl = _client(client, f"{V301}/auth/token", BL)
    created = client.post(f"{V301}/programs", json={"programName": "fcr-d-up"}, headers=bl)
    assert created.status_code == 201, created.text
    assert [p["programName"] for p in client.get(f"{V310}/programs", headers=bl).json()] == ["fcr-d-up"]
    # a person's operator token is the business logic's too
    operator = _password(client, "olle")
    assert client.post(f"{V301}/programs", json={"programName": "mfrr"}, headers=operator).status_code == 201
    # a VEN's token from the platform's own token endpoint, by HTTP Basic as openadr3-client sends it
    answer = client.post("/v1/auth/token", data={"grant_type": "client_credentials"}, auth=VEN)
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "read_all write_reports write_subscriptions write_vens"
    ven = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    assert client.get(f"{V301}/programs", headers=ven).status_code == 200
    assert client.post(f"{V301}/programs", json={"programName": "x"}, headers=ven).status_code == 403
    for name in ("bea", "root", "alice"):
        refused = client.get(f"{V301}/programs", headers=_password(client, name))
        assert refused.status_code == 403 and "read_all" in refused.json()["detail"], name
    # the VTN's docs and token discovery, at their full paths
    assert client.get(f"{V310}/auth/server").json()["tokenURL"] == f"http://testserver{V310}/auth/token"
    assert client.get(f"{V301}/docs").status_code == 200
    assert "/programs" in client.get(f"{V301}/openapi.json").json()["paths"]


def test_each_token_url_grants_only_what_it_serves(client: TestClient) -> None:
    # the VTN's token URLs grant OpenADR scopes only: the operator's token from there cannot read bids
    from_vtn = client.post(f"{V301}/auth/token", data={"grant_type": "client_credentials", "client_id": "olle",
                                                        "client_secret": PASSWORD})
    assert from_vtn.json()["scope"] == "read_all write_events write_programs write_subscriptions write_vens"
    vtn_only = {"Authorization": f"Bearer {from_vtn.json()['access_token']}"}
    assert client.get("/bidding/v1/bids", headers=vtn_only).status_code == 403
    assert client.get("/bidding/v1/bids", headers=_password(client, "olle")).status_code == 200

    def error(url: str, **form: str) -> tuple[int, str]:
        answer = client.post(url, data={"grant_type": "client_credentials", **form})
        return answer.status_code, answer.json()["error"]

    assert error(f"{V301}/auth/token", client_id="alice", client_secret=PASSWORD) == (400, "unauthorized_client")
    assert error(f"{V310}/auth/token", client_id="olle", client_secret=PASSWORD,
                 scope="read_all operations:write") == (400, "invalid_scope")
    assert error(f"{V301}/auth/token", client_id=VEN[0], client_secret=VEN[1], scope="write_programs") == (
        400, "invalid_scope")
    assert error("/v1/auth/token", client_id=VEN[0], client_secret="wrong-secret!") == (400, "invalid_client")
    # 3.1.0's read scopes are granted as read_all
    narrowed = client.post(f"{V310}/auth/token", data={"grant_type": "client_credentials", "client_id": VEN[0],
                                                        "client_secret": VEN[1], "scope": "read_targets"})
    assert narrowed.json()["scope"] == "read_all"


def test_a_disabled_account_is_refused_everywhere(client: TestClient, module_db_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TokenPolicy, "ACCOUNT_RECHECK_S", 0.0)
    with psycopg.connect(module_db_url, autocommit=True) as conn:
        create_account(conn, "vera", PASSWORD, "ven", ven_name="site-2")
        ven = _client(client, f"{V301}/auth/token", ("vera", PASSWORD))
        assert client.get(f"{V301}/events", headers=ven).status_code == 200
        conn.execute("UPDATE accounts SET disabled = true WHERE username = 'vera'")
        refused = client.get(f"{V301}/events", headers=ven)
        assert refused.status_code == 401 and "disabled" in refused.json()["detail"]
        # rebinding the account to another VEN makes its old tokens stale too
        conn.execute("UPDATE accounts SET disabled = false, ven_name = 'site-3' WHERE username = 'vera'")
        assert client.get(f"{V301}/events", headers=ven).status_code == 401
        assert client.get(f"{V301}/events", headers=_client(client, f"{V301}/auth/token", ("vera", PASSWORD))
                          ).status_code == 200


def test_every_write_is_audited_the_refused_ones_too(client: TestClient, module_db_url: str) -> None:
    with psycopg.connect(module_db_url) as conn:
        since = conn.execute("SELECT coalesce(max(audit_id), 0) FROM audit_log").fetchone()[0]
    bl, ven = _client(client, f"{V301}/auth/token", BL), _client(client, f"{V310}/auth/token", VEN)
    program = client.post(f"{V301}/programs", json={"programName": "audited"}, headers=bl).json()["id"]
    client.post(f"{V301}/programs", json={"programName": "not-mine"}, headers=ven)
    client.delete(f"{V301}/programs/{program}")
    client.post("/bidding/v1/bids/plan", json={"day": "not-a-day"}, headers=_password(client, "bea"))
    client.post("/v1/auth/token", data={"grant_type": "password", "username": "Mallory", "password": "guess"})
    client.get(f"{V301}/programs", headers=bl)                      # a read: not audited
    with psycopg.connect(module_db_url) as conn:
        rows = conn.execute("SELECT actor, role, action, status FROM audit_log WHERE audit_id > %s ORDER BY audit_id",
                            (since,)).fetchall()
    assert rows == [
        (BL[0], "operator", f"POST {V301}/auth/token", 200),
        (VEN[0], "ven", f"POST {V310}/auth/token", 200),
        (BL[0], "operator", f"POST {V301}/programs", 201),
        (VEN[0], "ven", f"POST {V301}/programs", 403),
        ("anonymous", None, f"DELETE {V301}/programs/{program}", 401),
        ("bea", "bidder", "POST /v1/auth/token", 200),
        ("bea", "bidder", "POST /bidding/v1/bids/plan", 400),
        ("mallory", None, "POST /v1/auth/token", 401),
    ]


@pytest.mark.parametrize("base", [V301, V310])
def test_every_vtn_operation_refuses_who_is_no_openadr_client(client: TestClient, base: str) -> None:
    """Each operation of the version's document: 401 without a token, 403 for the roles that hold
    no OpenADR scope. The token URLs and token discovery need no token."""
    document = client.get(f"{base}/openapi.json").json()
    assert document["servers"] == [{"url": base}]
    others = {name: _password(client, name) for name in ("alice", "bea", "root")}
    open_paths = {"/auth/token", "/auth/server"}
    checked = 0
    for path, item in document["paths"].items():
        if path in open_paths:
            continue
        url = base + path.replace("{", "").replace("}", "")          # {programID} -> programID: a valid id
        for method in item:
            assert client.request(method, url, json={}).status_code == 401, (method, url)
            for name, headers in others.items():
                assert client.request(method, url, json={}, headers=headers).status_code == 403, (name, method, url)
            checked += 1
    assert checked >= 25


def test_registering_a_client_never_takes_over_another_roles_account(client: TestClient, module_db_url: str) -> None:
    from flexfleet.domain.errors import DomainError

    with psycopg.connect(module_db_url, autocommit=True) as conn:
        for ven_name in (None, "site-9"):           # as the business logic, and as a VEN
            with pytest.raises(DomainError) as err:
                register_client(conn, "alice", "a-new-secret-for-alice", ven_name)
            assert err.value.field == "client_id"
        assert conn.execute("SELECT role, owner_id FROM accounts WHERE username = 'alice'").fetchone() == ("owner", "o1")
        rotated = register_client(conn, BL[0], "a-rotated-bl-secret")
        assert (rotated.username, rotated.role.value, rotated.ven_name) == (BL[0], "operator", None)
    assert _password(client, "alice")             # her password still works
    assert client.post(f"{V301}/auth/token", data={"grant_type": "client_credentials", "client_id": BL[0],
                                                    "client_secret": "a-rotated-bl-secret"}).status_code == 200
    with psycopg.connect(module_db_url, autocommit=True) as conn:
        register_client(conn, *BL)                  # back, for the module's other tests
