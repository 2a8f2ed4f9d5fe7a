"""Who may do what on the VTN: tokens (missing, expired, forged, tampered -> 401), scopes
(-> 403), and a VEN confined to what is targeted at it and to its own ven, resources,
reports and subscriptions (-> 403), against the real PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from vtn_support import BL, SECRET, VENS, bearer, register_all, token

from flexfleet.auth import ROLE_SCOPES, Principal, Role, issue_access_token
from services.dispatcher.vtn import BASE_PATH, create_app, register_client

pytestmark = pytest.mark.integration

B = BASE_PATH
INTERVALS = [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}]


@dataclass
class Vtn:
    client: TestClient
    bl: dict[str, str]
    ven_a: dict[str, str]
    ven_b: dict[str, str]

    def post(self, path: str, body: dict, who: dict[str, str], status: int = 201) -> dict:
        response = self.client.post(f"{B}{path}", json=body, headers=who)
        assert response.status_code == status, response.text
        return response.json()

    def status(self, method: str, path: str, who: dict[str, str] | None, body: dict | None = None,
               **params: object) -> int:
        response = self.client.request(method, f"{B}{path}", json=body, headers=who or {}, params=params)
        if response.status_code >= 400:
            problem = response.json()
            assert problem["status"] == response.status_code and problem["detail"], problem
        return response.status_code


@pytest.fixture
def vtn(db_url: str) -> Iterator[Vtn]:
    register_all(db_url)
    with TestClient(create_app(db_url, secret=SECRET)) as client:
        yield Vtn(client, bearer(token(client, *BL)), bearer(token(client, *VENS["ven-a"])),
                  bearer(token(client, *VENS["ven-b"])))


@dataclass
class World:
    """Two VENs registered by the business logic, ven-a in group g1, and a program with events
    for ven-a, for ven-b, for group g1 and for everyone."""

    program: str
    ven_a: str
    ven_b: str
    for_a: str
    for_b: str
    for_g1: str
    for_all: str


@pytest.fixture
def world(vtn: Vtn) -> World:
    ven_a = vtn.post("/vens", {"venName": "ven-a", "targets": [{"type": "GROUP", "values": ["g1"]}]}, vtn.bl)["id"]
    ven_b = vtn.post("/vens", {"venName": "ven-b"}, vtn.bl)["id"]
    program = vtn.post("/programs", {"programName": "fcr-d"}, vtn.bl)["id"]

    def event(name: str, targets: list | None) -> str:
        return vtn.post("/events", {"programID": program, "eventName": name, "targets": targets,
                                    "intervals": INTERVALS}, vtn.bl)["id"]

    return World(program, ven_a, ven_b, event("a", [{"type": "VEN_NAME", "values": ["ven-a"]}]),
                 event("b", [{"type": "VEN_NAME", "values": ["ven-b"]}]),
                 event("g1", [{"type": "GROUP", "values": ["g1"]}]), event("all", None))


# -- tokens -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), [("GET", "/programs"), ("POST", "/programs"), ("GET", "/events/x"),
                                              ("PUT", "/vens/x"), ("DELETE", "/reports/x")])
def test_no_token_is_401(vtn: Vtn, method: str, path: str) -> None:
    response = vtn.client.request(method, f"{B}{path}", json={"programName": "p"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["status"] == 401


def forged(claims_token: str, **changes: object) -> str:
    """The token with its claims changed and its signature kept."""
    header, payload, signature = claims_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    new_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{new_payload}.{signature}"


def test_expired_forged_and_malformed_tokens_are_401(vtn: Vtn) -> None:
    now = datetime.now(UTC)
    bl = Principal(BL[0], Role.OPERATOR)
    expired = issue_access_token(bl, SECRET, now - timedelta(hours=2), timedelta(hours=1)).token
    other_key = issue_access_token(bl, "another-secret-that-is-32-bytes-long!!", now, timedelta(hours=1)).token
    ven_a_token = vtn.ven_a["Authorization"].removeprefix("Bearer ")
    escalated = forged(ven_a_token, role="operator", scope=" ".join(sorted(ROLE_SCOPES[Role.OPERATOR])))
    unsigned = ".".join([base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode(),
                         ven_a_token.split(".")[1], ""])
    for bad in (expired, other_key, escalated, unsigned, "not-a-token", ""):
        assert vtn.status("GET", "/programs", bearer(bad)) == 401, bad
    assert vtn.status("GET", "/programs", {"Authorization": f"Basic {BL[0]}"}) == 401
    assert vtn.status("GET", "/programs", vtn.bl) == 200


def test_token_endpoint_errors(vtn: Vtn) -> None:
    url = f"{B}/auth/token"

    def error(data: dict | None = None, **kwargs: object) -> tuple[int, str]:
        response = vtn.client.post(url, data=data, **kwargs)
        return response.status_code, response.json()["error"]

    good = {"grant_type": "client_credentials", "client_id": BL[0], "client_secret": BL[1]}
    assert error({**good, "client_secret": "wrong"}) == (400, "invalid_client")
    assert error({**good, "client_id": "nobody"}) == (400, "invalid_client")
    assert error({**good, "grant_type": "password"}) == (400, "unsupported_grant_type")
    assert error({k: v for k, v in good.items() if k != "grant_type"}) == (400, "invalid_request")
    assert error({k: v for k, v in good.items() if k != "client_secret"}) == (400, "invalid_request")
    assert error(json=good) == (400, "invalid_request")
    assert error({"grant_type": "client_credentials"}, auth=(BL[0], "wrong")) == (401, "invalid_client")
    ven_asks_for_programs = {"grant_type": "client_credentials", "client_id": VENS["ven-a"][0],
                             "client_secret": VENS["ven-a"][1], "scope": "read_all write_programs"}
    assert error(ven_asks_for_programs) == (400, "invalid_scope")


def test_token_endpoint_accepts_basic_auth_and_scopes(vtn: Vtn) -> None:
    response = vtn.client.post(f"{B}/auth/token", data={"grant_type": "client_credentials", "scope": "read_all"},
                               auth=BL)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "read_all"
    assert response.headers["Cache-Control"] == "no-store"
    read_only = bearer(body["access_token"])
    assert vtn.status("GET", "/programs", read_only) == 200
    assert vtn.status("POST", "/programs", read_only, {"programName": "p"}) == 403


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/programs", {"programName": "p"}),
    ("PUT", "/programs/x", {"programName": "p"}),
    ("DELETE", "/programs/x", None),
    ("POST", "/events", {"programID": "x", "intervals": []}),
    ("PUT", "/events/x", {"programID": "x", "intervals": []}),
    ("DELETE", "/events/x", None),
])
def test_a_ven_cannot_write_programs_or_events(vtn: Vtn, method: str, path: str, body: dict | None) -> None:
    assert vtn.status(method, path, vtn.ven_a, body) == 403


def test_the_business_logic_cannot_write_reports(vtn: Vtn, world: World) -> None:
    """write_reports is the VENs' alone in the spec's scope list."""
    report = {"programID": world.program, "eventID": world.for_all, "clientName": "bl", "resources": []}
    assert vtn.status("POST", "/reports", vtn.bl, report) == 403


# -- what a VEN reads ---------------------------------------------------------------------------
def test_a_ven_reads_only_events_targeted_at_it(vtn: Vtn, world: World) -> None:
    def listed(who: dict[str, str], **params: object) -> set[str]:
        response = vtn.client.get(f"{B}/events", headers=who, params=params)
        assert response.status_code == 200
        return {e["id"] for e in response.json()}

    assert listed(vtn.ven_a) == {world.for_a, world.for_g1, world.for_all}
    assert listed(vtn.ven_b) == {world.for_b, world.for_all}
    assert listed(vtn.bl) == {world.for_a, world.for_b, world.for_g1, world.for_all}
    # a filter naming the other VEN finds nothing rather than leaking its events
    assert listed(vtn.ven_a, targetType="VEN_NAME", targetValues=["ven-b"]) == set()
    assert listed(vtn.ven_a, targetType="VEN_NAME", targetValues=["ven-a", "ven-b"]) == {world.for_a}
    assert vtn.status("GET", f"/events/{world.for_b}", vtn.ven_a) == 403
    assert vtn.status("GET", f"/events/{world.for_a}", vtn.ven_b) == 403
    assert vtn.status("GET", f"/events/{world.for_g1}", vtn.ven_b) == 403
    for event_id in (world.for_a, world.for_g1, world.for_all):
        assert vtn.status("GET", f"/events/{event_id}", vtn.ven_a) == 200


def test_a_ven_reads_only_programs_targeted_at_it(vtn: Vtn, world: World) -> None:
    for_b = vtn.post("/programs", {"programName": "only-b", "targets": [{"type": "VEN_NAME", "values": ["ven-b"]}]},
                     vtn.bl)["id"]
    names = {p["programName"] for p in vtn.client.get(f"{B}/programs", headers=vtn.ven_a).json()}
    assert names == {"fcr-d"}
    assert vtn.status("GET", f"/programs/{for_b}", vtn.ven_a) == 403
    assert vtn.status("GET", f"/programs/{for_b}", vtn.ven_b) == 200


def test_resource_targets_reach_their_ven(vtn: Vtn, world: World) -> None:
    vtn.post(f"/vens/{world.ven_b}/resources", {"resourceName": "charger-9", "targets": [
        {"type": "POWER_SERVICE_LOCATION", "values": ["psl-9"]}]}, vtn.bl)
    event = vtn.post("/events", {"programID": world.program, "targets": [
        {"type": "POWER_SERVICE_LOCATION", "values": ["psl-9"]}], "intervals": INTERVALS}, vtn.bl)["id"]
    assert vtn.status("GET", f"/events/{event}", vtn.ven_b) == 200
    assert vtn.status("GET", f"/events/{event}", vtn.ven_a) == 403


# -- a VEN's own objects ------------------------------------------------------------------------
def test_a_ven_sees_and_changes_only_its_own_ven(vtn: Vtn, world: World) -> None:
    assert [v["venName"] for v in vtn.client.get(f"{B}/vens", headers=vtn.ven_a).json()] == ["ven-a"]
    assert vtn.status("GET", f"/vens/{world.ven_b}", vtn.ven_a) == 403
    assert vtn.status("PUT", f"/vens/{world.ven_b}", vtn.ven_a, {"venName": "ven-b"}) == 403
    assert vtn.status("DELETE", f"/vens/{world.ven_b}", vtn.ven_a) == 403
    own = {"venName": "ven-a", "targets": [{"type": "GROUP", "values": ["g1"]}],
           "attributes": [{"type": "MAX_POWER_EXPORT", "values": [11]}]}
    assert vtn.status("PUT", f"/vens/{world.ven_a}", vtn.ven_a, own) == 200
    assert vtn.status("PUT", f"/vens/{world.ven_a}", vtn.ven_a, {**own, "venName": "ven-c"}) == 403
    grabbing = {**own, "targets": [{"type": "VEN_NAME", "values": ["ven-b"]}]}
    response = vtn.client.put(f"{B}/vens/{world.ven_a}", json=grabbing, headers=vtn.ven_a)
    assert response.status_code == 403 and response.json()["field"] == "targets"


def test_a_ven_registers_only_itself_without_targets(db_url: str, vtn: Vtn) -> None:
    assert vtn.status("POST", "/vens", vtn.ven_a, {"venName": "ven-b"}) == 403
    assert vtn.status("POST", "/vens", vtn.ven_a,
                      {"venName": "ven-a", "targets": [{"type": "GROUP", "values": ["g1"]}]}) == 403
    created = vtn.post("/vens", {"venName": "ven-a"}, vtn.ven_a)
    assert vtn.status("GET", f"/vens/{created['id']}", vtn.ven_a) == 200


def test_a_ven_cannot_touch_another_vens_resources(vtn: Vtn, world: World) -> None:
    theirs = vtn.post(f"/vens/{world.ven_b}/resources", {"resourceName": "r-b"}, vtn.ven_b)["id"]
    base = f"/vens/{world.ven_b}/resources"
    assert vtn.status("POST", base, vtn.ven_a, {"resourceName": "planted"}) == 403
    assert vtn.status("GET", base, vtn.ven_a) == 403
    assert vtn.status("GET", f"{base}/{theirs}", vtn.ven_a) == 403
    assert vtn.status("PUT", f"{base}/{theirs}", vtn.ven_a, {"resourceName": "r-b"}) == 403
    assert vtn.status("DELETE", f"{base}/{theirs}", vtn.ven_a) == 403
    mine = vtn.post(f"/vens/{world.ven_a}/resources", {"resourceName": "r-a"}, vtn.ven_a)["id"]
    assert vtn.status("PUT", f"/vens/{world.ven_a}/resources/{mine}", vtn.ven_a, {
        "resourceName": "r-a", "targets": [{"type": "GROUP", "values": ["g2"]}]}) == 403
    assert vtn.status("POST", f"/vens/{world.ven_a}/resources", vtn.ven_a, {
        "resourceName": "r-a2", "targets": [{"type": "GROUP", "values": ["g2"]}]}) == 403
    assert vtn.status("DELETE", f"/vens/{world.ven_a}/resources/{mine}", vtn.ven_a) == 200


def test_a_ven_cannot_read_or_write_another_vens_reports(vtn: Vtn, world: World) -> None:
    def report(client_name: str, event_id: str) -> dict:
        return {"programID": world.program, "eventID": event_id, "clientName": client_name, "resources": [
            {"resourceName": "r", "intervals": [{"id": 0, "payloads": [{"type": "USAGE", "values": [1.5]}]}]}]}

    theirs = vtn.post("/reports", report("ven-b", world.for_b), vtn.ven_b)["id"]
    assert vtn.status("GET", f"/reports/{theirs}", vtn.ven_a) == 403
    assert vtn.status("PUT", f"/reports/{theirs}", vtn.ven_a, report("ven-a", world.for_a)) == 403
    assert vtn.status("DELETE", f"/reports/{theirs}", vtn.ven_a) == 403
    assert vtn.client.get(f"{B}/reports", headers=vtn.ven_a).json() == []
    assert vtn.client.get(f"{B}/reports", headers=vtn.ven_a, params={"clientName": "ven-b"}).json() == []
    # posing as the other VEN, or reporting on its event
    assert vtn.status("POST", "/reports", vtn.ven_a, report("ven-b", world.for_all)) == 403
    response = vtn.client.post(f"{B}/reports", json=report("ven-a", world.for_b), headers=vtn.ven_a)
    assert response.status_code == 403 and response.json()["field"] == "eventID"
    mine = vtn.post("/reports", report("ven-a", world.for_g1), vtn.ven_a)["id"]
    assert [r["id"] for r in vtn.client.get(f"{B}/reports", headers=vtn.ven_a).json()] == [mine]
    assert vtn.status("PUT", f"/reports/{mine}", vtn.ven_a, report("ven-b", world.for_g1)) == 403
    assert {r["id"] for r in vtn.client.get(f"{B}/reports", headers=vtn.bl).json()} == {theirs, mine}


def test_a_ven_sees_only_its_own_subscriptions(vtn: Vtn, world: World) -> None:
    body = {"clientName": "x", "programID": world.program, "objectOperations": [
        {"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": "http://127.0.0.1:9/cb"}]}
    theirs = vtn.post("/subscriptions", body, vtn.ven_b)["id"]
    mine = vtn.post("/subscriptions", body, vtn.ven_a)["id"]
    assert [s["id"] for s in vtn.client.get(f"{B}/subscriptions", headers=vtn.ven_a).json()] == [mine]
    assert vtn.status("GET", f"/subscriptions/{theirs}", vtn.ven_a) == 403
    assert vtn.status("PUT", f"/subscriptions/{theirs}", vtn.ven_a, body) == 403
    assert vtn.status("DELETE", f"/subscriptions/{theirs}", vtn.ven_a) == 403
    assert vtn.status("DELETE", f"/subscriptions/{mine}", vtn.ven_a) == 200
    assert len(vtn.client.get(f"{B}/subscriptions", headers=vtn.bl).json()) == 1


def test_re_registering_a_client_rotates_its_secret(db_url: str, vtn: Vtn) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        register_client(conn, VENS["ven-a"][0], "rotated-secret", "ven-a")
    old = vtn.client.post(f"{B}/auth/token", data={"grant_type": "client_credentials",
                                                   "client_id": VENS["ven-a"][0], "client_secret": VENS["ven-a"][1]})
    assert old.status_code == 400
    new = bearer(token(vtn.client, VENS["ven-a"][0], "rotated-secret"))
    assert vtn.status("POST", "/vens", new, {"venName": "ven-a"}) == 201
