"""The owner API on the real PostgreSQL: a simulated month settled with its statements (HTML and
PDF by Chromium), accounts created, and the owner portal's routes asked by owners, by other
roles, without or with bad tokens, and with paths that try to leave the statements' folder."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from test_settlement_service import MONTH, ZONE, _seed_month

from flexfleet.auth import Principal, Role, issue_access_token
from flexfleet.domain.errors import DomainError
from services.api.accounts import create_account
from services.api.app import app_from_env, create_app
from services.api.owners import statement_path
from services.runtime.config import ConfigError
from services.settlement.service import settle, write_owner_statements

pytestmark = pytest.mark.integration

SECRET = "owner-api-test-signing-secret-32-bytes!!"
PASSWORD = "correct horse battery staple"
BASE = "/v1/owners/me/statements"
NON_OWNERS = {"olle": "operator", "bea": "bidder", "ven-7": "ven", "root": "admin"}


@dataclass(frozen=True)
class Portal:
    url: str
    files: Path                 # the settlement folder (FLEXFLEET_SETTLEMENT_DIR)
    owner: str                  # the owner_id of account "alice"
    other: str                  # the owner_id of account "bob"
    client: TestClient


@pytest.fixture(scope="module")
def portal(module_db_url, tmp_path_factory):
    """One settled month with statements for the module (printing them takes Chromium a few
    seconds); the tests only read it, except for accounts of their own."""
    url = module_db_url
    files = tmp_path_factory.mktemp("settlement")
    _seed_month(url)
    with psycopg.connect(url) as conn:
        result = settle(conn, MONTH, ZONE, out_dir=files)
        assert write_owner_statements(conn, result) >= 2
        owner, other = (r[0] for r in conn.execute(
            "SELECT DISTINCT owner_id FROM owner_statements ORDER BY 1 LIMIT 2"))
        create_account(conn, "alice", PASSWORD, "owner", owner)
        create_account(conn, "Bob@Example.org", PASSWORD, "owner", other)
        for username, role in NON_OWNERS.items():
            create_account(conn, username, PASSWORD, role, ven_name="site-7" if role == "ven" else None)
    with TestClient(create_app(url, secret=SECRET, settlement_dir=files)) as client:
        yield Portal(url, files, owner, other, client)


def _login(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    answer = client.post("/v1/auth/token", data={"grant_type": "password", "username": username,
                                                 "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _new_owner(url: str) -> str:
    owner_id = f"o-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO owners (owner_id, display_name, currency) VALUES (%s, 'Nobody yet', 'SEK')",
                     (owner_id,))
    return owner_id


def _is_problem(answer, status: int, field: str | None = None) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["status"] == status and body["type"].startswith("urn:flexfleet:problem:") and body["title"]
    if field is not None:
        assert body["field"] == field and body["detail"].startswith(f"{field}: ")
    return body


def test_an_owner_logs_in_and_lists_exactly_their_statements(portal):
    answer = portal.client.post("/v1/auth/token", data={"grant_type": "password", "username": "alice",
                                                        "password": PASSWORD})
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    token = answer.json()
    assert token["token_type"] == "bearer" and token["expires_in"] == 3600 and token["scope"] == "own:read"
    listed = portal.client.get(BASE, headers={"Authorization": f"Bearer {token['access_token']}"})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    with psycopg.connect(portal.url) as conn:
        rows = conn.execute("SELECT s.currency, s.total, r.finished_at FROM owner_statements s JOIN settlement_runs r "
                            "USING (zone, month, version) WHERE s.owner_id = %s", (portal.owner,)).fetchall()
    assert body["owner_id"] == portal.owner and len(body["statements"]) == 1
    (statement,) = body["statements"]
    assert (statement["zone"], statement["month"], statement["version"], statement["latest"]) == (ZONE, MONTH, 1, True)
    assert datetime.fromisoformat(statement["issued_at"]) == rows[0][2]
    assert [(t["currency"], t["total"], t["previous_total"]) for t in statement["totals"]] == [
        (cur, f"{total / 100:.2f}", None) for cur, total, _ in rows]
    assert statement["links"] == {"html": f"{BASE}/{MONTH}/v1.html", "pdf": f"{BASE}/{MONTH}/v1.pdf"}
    # Bob (logged in with his username in another case) sees his own statement, and never Alice's.
    bobs = portal.client.get(BASE, headers=_login(portal.client, "bob@example.org")).json()
    assert bobs["owner_id"] == portal.other and len(bobs["statements"]) == 1


def test_an_owner_downloads_their_pdf_and_html(portal):
    headers = _login(portal.client, "alice")
    folder = portal.files / ZONE / MONTH / "v1" / "statements"
    pdf = portal.client.get(f"{BASE}/{MONTH}/v1.pdf", headers=headers)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content == (folder / f"{portal.owner}_{MONTH}_v1.pdf").read_bytes() and pdf.content.startswith(b"%PDF")
    assert pdf.headers["cache-control"] == "private, no-store"
    html = portal.client.get(f"{BASE}/{MONTH}/v1.html", headers=headers)
    assert html.status_code == 200 and html.headers["content-type"] == "text/html; charset=utf-8"
    assert html.content == (folder / f"{portal.owner}_{MONTH}_v1.html").read_bytes()
    assert "sandbox" in html.headers["content-security-policy"] and html.headers["x-content-type-options"] == "nosniff"
    # Bob's download is his own file, never Alice's.
    bobs = portal.client.get(f"{BASE}/{MONTH}/v1.pdf", headers=_login(portal.client, "bob@example.org"))
    assert bobs.content == (folder / f"{portal.other}_{MONTH}_v1.pdf").read_bytes() != pdf.content


def test_another_owners_statement_is_answered_like_one_that_does_not_exist(portal):
    nobody = _new_owner(portal.url)
    with psycopg.connect(portal.url) as conn:
        create_account(conn, f"n-{nobody}", PASSWORD, "owner", nobody)
    headers = _login(portal.client, f"n-{nobody}")
    assert portal.client.get(BASE, headers=headers).json() == {"owner_id": nobody, "statements": []}
    theirs = portal.client.get(f"{BASE}/{MONTH}/v1.pdf", headers=headers)         # Alice and Bob have one
    never = portal.client.get(f"{BASE}/2031-01/v1.pdf", headers=headers)           # nobody has one
    a, b = _is_problem(theirs, 404, "month"), _is_problem(never, 404, "month")
    assert {k: v for k, v in a.items() if k not in ("detail", "instance")} == \
           {k: v for k, v in b.items() if k not in ("detail", "instance")}
    assert portal.owner not in theirs.text and portal.other not in theirs.text
    # The owner's own statement in a zone they have none in, or a version that was never issued.
    alice = _login(portal.client, "alice")
    _is_problem(portal.client.get(f"{BASE}/{MONTH}/v1.pdf?zone=SE4", headers=alice), 404)
    _is_problem(portal.client.get(f"{BASE}/{MONTH}/v2.pdf", headers=alice), 404)


def test_a_statement_whose_files_are_not_written_has_no_links_and_404s(portal, tmp_path):
    with TestClient(create_app(portal.url, secret=SECRET, settlement_dir=tmp_path)) as client:
        headers = _login(client, "alice")
        (statement,) = client.get(BASE, headers=headers).json()["statements"]
        assert statement["links"] == {"html": None, "pdf": None} and statement["totals"]
        _is_problem(client.get(f"{BASE}/{MONTH}/v1.pdf", headers=headers), 404, "month")


def test_an_owner_with_statements_in_two_zones_names_the_zone(portal, tmp_path):
    owner = _new_owner(portal.url)
    with psycopg.connect(portal.url) as conn:
        create_account(conn, "zara", PASSWORD, "owner", owner)
        conn.execute("INSERT INTO settlement_runs (zone, month, version, input_digest, status, finished_at) "
                     "VALUES ('SE4', '2026-10-01', 1, 'd', 'posted', now())")
        for zone, total in ((ZONE, 1250), ("SE4", 99)):
            conn.execute("INSERT INTO owner_statements (zone, month, owner_id, version, currency, total) "
                         "VALUES (%s, '2026-10-01', %s, 1, 'SEK', %s)", (zone, owner, total))
            folder = tmp_path / zone / MONTH / "v1" / "statements"
            folder.mkdir(parents=True)
            (folder / f"{owner}_{MONTH}_v1.pdf").write_bytes(f"%PDF {zone}".encode())
    with TestClient(create_app(portal.url, secret=SECRET, settlement_dir=tmp_path)) as client:
        headers = _login(client, "zara")
        listed = client.get(BASE, headers=headers).json()["statements"]
        assert [(s["zone"], s["totals"][0]["total"], s["links"]) for s in listed] == [
            (ZONE, "12.50", {"html": None, "pdf": f"{BASE}/{MONTH}/v1.pdf?zone={ZONE}"}),
            ("SE4", "0.99", {"html": None, "pdf": f"{BASE}/{MONTH}/v1.pdf?zone=SE4"})]
        _is_problem(client.get(f"{BASE}/{MONTH}/v1.pdf", headers=headers), 400, "zone")
        assert client.get(f"{BASE}/{MONTH}/v1.pdf?zone=SE4", headers=headers).content == b"%PDF SE4"


def test_no_token_an_expired_or_forged_one_or_a_disabled_account_is_401(portal):
    now = datetime.now(UTC)
    alice = Principal("alice", Role.OWNER, portal.owner)
    expired = issue_access_token(alice, SECRET, now - timedelta(hours=2), timedelta(hours=1)).token
    forged = issue_access_token(alice, "another-secret-that-is-32-bytes-long!!", now, timedelta(hours=1)).token
    claims_bob = issue_access_token(Principal("alice", Role.OWNER, portal.other), SECRET, now, timedelta(hours=1)).token
    other_role = issue_access_token(Principal("alice", Role.OPERATOR), SECRET, now, timedelta(hours=1)).token
    cases = {"no token": {}, "not bearer": {"Authorization": "Basic YWxpY2U6eA=="},
             "garbage": {"Authorization": "Bearer not.a.token"}, "expired": {"Authorization": f"Bearer {expired}"},
             "forged": {"Authorization": f"Bearer {forged}"}, "alice as an operator": {"Authorization": f"Bearer {other_role}"},
             "another owner's id": {"Authorization": f"Bearer {claims_bob}"}}
    for case, headers in cases.items():
        for path in (BASE, f"{BASE}/{MONTH}/v1.pdf"):
            answer = portal.client.get(path, headers=headers)
            _is_problem(answer, 401)
            assert answer.headers["www-authenticate"].startswith('Bearer realm="flexfleet"'), case
            assert portal.owner not in answer.text, case
    assert "expired" in portal.client.get(BASE, headers=cases["expired"]).json()["detail"]
    # A token stops working as soon as its account is disabled.
    _new = _new_owner(portal.url)
    with psycopg.connect(portal.url) as conn:
        create_account(conn, "carl", PASSWORD, "owner", _new)
    headers = _login(portal.client, "carl")
    assert portal.client.get(BASE, headers=headers).status_code == 200
    with psycopg.connect(portal.url) as conn:
        conn.execute("UPDATE accounts SET disabled = true WHERE username = 'carl'")
    _is_problem(portal.client.get(BASE, headers=headers), 401)
    assert portal.client.post("/v1/auth/token", data={"grant_type": "password", "username": "carl",
                                                      "password": PASSWORD}).status_code == 401


def test_every_other_roles_token_is_403_on_the_owner_portal(portal):
    for username in NON_OWNERS:
        headers = _login(portal.client, username)
        for path in (BASE, f"{BASE}/{MONTH}/v1.pdf", f"{BASE}/{MONTH}/v1.html"):
            answer = portal.client.get(path, headers=headers)
            assert "owner account" in _is_problem(answer, 403)["detail"]
            assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]


def test_a_wrong_password_or_an_unknown_user_is_the_same_401(portal):
    answers = [portal.client.post("/v1/auth/token", data={"grant_type": "password", "username": u, "password": p})
               for u, p in (("alice", PASSWORD + "!"), ("mallory", PASSWORD), ("../etc", PASSWORD))]
    for answer in answers:
        assert answer.status_code == 401 and answer.headers["content-type"] == "application/json"
        assert answer.headers["www-authenticate"].startswith("Bearer") and answer.headers["cache-control"] == "no-store"
        assert answer.json()["error"] == "invalid_grant" and "access_token" not in answer.json()
    assert len({a.text.replace(a.json()["instance"], "") for a in answers}) == 1


def test_a_bad_token_request_is_400_naming_the_field(portal):
    post = portal.client.post
    cases = [
        ({"grant_type": "password", "username": "alice"}, "password", "invalid_request"),
        ({"grant_type": "password", "password": PASSWORD}, "username", "invalid_request"),
        ({"username": "alice", "password": PASSWORD}, "grant_type", "invalid_request"),
        ({"grant_type": "client_credentials", "username": "alice", "password": PASSWORD}, "client_id",
         "invalid_request"),
        ({"grant_type": "authorization_code", "code": "x"}, "grant_type", "unsupported_grant_type"),
        ({"grant_type": "password", "username": "alice", "password": PASSWORD, "scope": "operations:read"}, "scope",
         "invalid_scope"),
    ]
    for form, field, error in cases:
        body = post("/v1/auth/token", data=form).json()
        assert (body["status"], body["error"], body["field"]) == (400, error, field), form
        assert body["error_description"].startswith(f"{field}: ")
    as_json = post("/v1/auth/token", json={"grant_type": "password", "username": "alice", "password": PASSWORD})
    assert as_json.status_code == 400 and as_json.json()["field"] == "body"
    twice = post("/v1/auth/token", content="grant_type=password&username=alice&username=bob&password=x",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert twice.status_code == 400 and twice.json()["field"] == "username"


def test_paths_that_try_to_leave_the_statements_folder_are_404(portal):
    headers = _login(portal.client, "alice")
    secret_file = portal.files / "secret.pdf"
    secret_file.write_bytes(b"%PDF not for owners")
    for path in (f"{BASE}/..%2F..%2Fsecret/v1.pdf", f"{BASE}/..%2F..%2F..%2F..%2Fetc%2Fpasswd/v1.html",
                 f"{BASE}/%2E%2E/v1.pdf", f"{BASE}/{MONTH}/v1.pdf%2F..%2F..%2Fsecret.pdf",
                 f"{BASE}/{MONTH}%2F..%2F..%2F..%2F/v1.pdf", f"{BASE}/{MONTH}/v..%2F1.pdf",
                 f"{BASE}/{MONTH}/v1.pdf?zone=..%2F..", f"{BASE}/{MONTH}/v1.exe", f"{BASE}/{MONTH}/v01x.pdf",
                 f"{BASE}/{MONTH}/v01.pdf", f"{BASE}/{MONTH}/v0.pdf", f"{BASE}/2026-1/v1.pdf"):
        answer = portal.client.get(path, headers=headers)
        _is_problem(answer, 404)
        assert b"not for owners" not in answer.content
    # Names read back from the database are checked too: an owner_id that is a path is never a file.
    assert statement_path(portal.files, ZONE, datetime(2026, 10, 1).date(), "../../secret", 1, "pdf") is None
    assert statement_path(portal.files, "..", datetime(2026, 10, 1).date(), portal.owner, 1, "pdf") is None
    assert statement_path(portal.files, ZONE, datetime(2026, 10, 1).date(), portal.owner, 1, "pdf") is not None


def test_accounts_are_checked_by_field_and_their_creation_is_audited(portal):
    owner = _new_owner(portal.url)
    with psycopg.connect(portal.url) as conn:
        for args, field in ((("bad name", PASSWORD, "owner", owner), "username"),
                            (("dora", "short", "owner", owner), "password"),
                            (("dora", PASSWORD, "root", None), "role"),
                            (("dora", PASSWORD, "owner", None), "owner_id"),
                            (("dora", PASSWORD, "operator", owner), "owner_id"),
                            (("dora", PASSWORD, "owner", "no-such-owner"), "owner_id"),
                            (("dora", PASSWORD, "ven", None), "ven_name"),
                            (("ALICE", PASSWORD, "operator", None), "username")):
            with pytest.raises(DomainError) as err:
                create_account(conn, *args)
            assert err.value.field == field, args
        account = create_account(conn, "Dora", PASSWORD, "owner", owner, actor="cli:test")
        assert (account.username, account.role, account.owner_id, account.disabled) == ("dora", Role.OWNER, owner,
                                                                                         False)
        assert account.password_hash.startswith("pbkdf2_sha256$") and PASSWORD not in account.password_hash
        assert conn.execute("SELECT count(*) FROM accounts WHERE username LIKE 'dora%%'").fetchone()[0] == 1
        audit = conn.execute("SELECT actor, action, object, detail FROM audit_log WHERE object = 'accounts/dora'"
                             ).fetchall()
        assert audit == [("cli:test", "accounts add", "accounts/dora", {"role": "owner", "owner_id": owner})]
        with pytest.raises(psycopg.errors.RestrictViolation):
            conn.execute("DELETE FROM audit_log")
        conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation):     # the database holds the rule too
            conn.execute("INSERT INTO accounts (username, password_hash, role) VALUES ('eve', 'pbkdf2_sha256$x', "
                          "'owner')")


def test_the_accounts_add_command_reads_the_password_from_stdin(portal):
    from typer.testing import CliRunner

    from services.api.cli import app

    owner = _new_owner(portal.url)
    args = ["add", "erik", "--role", "owner", "--owner-id", owner, "--password-stdin", "--database-url", portal.url]
    done = CliRunner().invoke(app, args, input=PASSWORD + "\n")
    assert done.exit_code == 0, done.output
    assert f"account erik (owner for owner {owner}) created" in done.output
    assert _login(portal.client, "erik")
    again = CliRunner().invoke(app, args, input=PASSWORD + "\n")
    assert again.exit_code == 2 and "username" in again.output


def test_the_signing_secret_comes_from_the_environment(portal, monkeypatch):
    monkeypatch.delenv("FLEXFLEET_API_SECRET", raising=False)
    with pytest.raises(ConfigError, match="FLEXFLEET_API_SECRET"):
        create_app(portal.url, settlement_dir=portal.files)
    monkeypatch.setenv("FLEXFLEET_API_SECRET", "too short")
    with pytest.raises(ConfigError, match="32 bytes"):
        create_app(portal.url, settlement_dir=portal.files)
    monkeypatch.setenv("FLEXFLEET_API_SECRET", SECRET)
    monkeypatch.setenv("FLEXFLEET_SETTLEMENT_DIR", str(portal.files))
    monkeypatch.setenv("DATABASE_URL", portal.url)
    with TestClient(app_from_env()) as client:        # tokens of the fixture's app (same secret) work
        assert client.get(f"{BASE}/{MONTH}/v1.pdf", headers=_login(portal.client, "alice")).status_code == 200
