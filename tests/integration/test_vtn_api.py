"""The OpenADR 3.0.1 VTN's endpoints against the real PostgreSQL, through FastAPI's TestClient:
every operation of the spec with its success and its failures (400 naming the field, 404, 409),
server-set members, target filters and pagination."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from vtn_support import BL, SECRET, VENS, bearer, register_all, token

from services.dispatcher.vtn import BASE_PATH, create_app

pytestmark = pytest.mark.integration

B = BASE_PATH
INTERVAL = {"id": 0, "intervalPeriod": {"start": "2026-11-25T16:00:00Z", "duration": "PT1H"},
            "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [7.4]}]}


@dataclass
class Vtn:
    client: TestClient
    db_url: str
    bl: dict[str, str]
    ven_a: dict[str, str]
    ven_b: dict[str, str]

    def post(self, path: str, body: dict, who: dict[str, str] | None = None, status: int = 201) -> dict:
        response = self.client.post(f"{B}{path}", json=body, headers=self.bl if who is None else who)
        assert response.status_code == status, response.text
        return response.json()

    def program(self, name: str = "fcr-d-up", **extra: object) -> dict:
        return self.post("/programs", {"programName": name, **extra})

    def event(self, program_id: str, **extra: object) -> dict:
        return self.post("/events", {"programID": program_id, "intervals": [INTERVAL], **extra})

    def ven(self, name: str, **extra: object) -> dict:
        return self.post("/vens", {"venName": name, **extra})


@pytest.fixture
def vtn(db_url: str) -> Iterator[Vtn]:
    register_all(db_url)
    app = create_app(db_url, secret=SECRET)
    with TestClient(app) as client:
        yield Vtn(client, db_url, bearer(token(client, *BL)), bearer(token(client, *VENS["ven-a"])),
                  bearer(token(client, *VENS["ven-b"])))


def assert_problem(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert response.headers["content-type"].startswith("application/json")
    if field is not None:
        assert body["field"] == field, body
        assert body["detail"].startswith(f"{field}: "), body
    return body


# -- programs -------------------------------------------------------------------------------------
def test_program_crud_sets_server_members(vtn: Vtn) -> None:
    created = vtn.program("fcr-d-up", programLongName="FCR-D up, SE3", id="client-chosen",
                          intervalPeriod={"start": "2026-11-25T00:00:00+01:00", "duration": "P1D"})
    assert created["objectType"] == "PROGRAM" and created["id"] != "client-chosen"
    assert created["createdDateTime"] == created["modificationDateTime"]
    assert created["intervalPeriod"] == {"start": "2026-11-25T00:00:00+01:00", "duration": "P1D"}
    assert created["retailerName"] is None and "timeZoneOffset" not in created

    pid = created["id"]
    got = vtn.client.get(f"{B}/programs/{pid}", headers=vtn.bl).json()
    assert got == created

    updated = vtn.client.put(f"{B}/programs/{pid}", json={"programName": "fcr-d-up", "country": "SE"},
                             headers=vtn.bl)
    assert updated.status_code == 200
    assert updated.json()["country"] == "SE" and updated.json()["createdDateTime"] == created["createdDateTime"]
    assert updated.json()["modificationDateTime"] >= created["modificationDateTime"]

    deleted = vtn.client.delete(f"{B}/programs/{pid}", headers=vtn.bl)
    assert deleted.status_code == 200 and deleted.json()["id"] == pid
    assert_problem(vtn.client.get(f"{B}/programs/{pid}", headers=vtn.bl), 404)
    assert_problem(vtn.client.delete(f"{B}/programs/{pid}", headers=vtn.bl), 404)
    assert_problem(vtn.client.put(f"{B}/programs/{pid}", json={"programName": "x"}, headers=vtn.bl), 404)


def test_program_name_is_unique(vtn: Vtn) -> None:
    vtn.program("fcr-d-up")
    other = vtn.program("fcr-d-down")
    assert_problem(vtn.client.post(f"{B}/programs", json={"programName": "fcr-d-up"}, headers=vtn.bl), 409,
                   "programName")
    assert_problem(vtn.client.put(f"{B}/programs/{other['id']}", json={"programName": "fcr-d-up"},
                                  headers=vtn.bl), 409, "programName")


@pytest.mark.parametrize(("body", "field"), [
    ({}, "programName"),
    ({"programName": ""}, "programName"),
    ({"programName": "x" * 129}, "programName"),
    ({"programName": "p", "timeZoneOffset": "one hour"}, "timeZoneOffset"),
    ({"programName": "p", "intervalPeriod": {"start": "2026-11-25T00:00:00"}}, "intervalPeriod.start"),
    ({"programName": "p", "targets": [{"type": "GROUP"}]}, "targets.0.values"),
    ({"programName": "p", "objectType": "EVENT"}, "objectType"),
    ({"programName": "p", "programDescriptions": [{"URL": "not a uri"}]}, "programDescriptions.0.URL"),
    ({"programName": "nul\u0000"}, "programName"),
])
def test_program_bad_body_names_the_field(vtn: Vtn, body: dict, field: str) -> None:
    assert_problem(vtn.client.post(f"{B}/programs", json=body, headers=vtn.bl), 400, field)


def test_malformed_json_and_wrong_shapes_are_400(vtn: Vtn) -> None:
    bad = vtn.client.post(f"{B}/programs", content=b"{not json", headers={**vtn.bl, "Content-Type": "application/json"})
    assert_problem(bad, 400, "body")
    assert_problem(vtn.client.post(f"{B}/programs", json=[1, 2], headers=vtn.bl), 400, "body")


def test_bad_path_and_query_parameters_are_400(vtn: Vtn) -> None:
    assert_problem(vtn.client.get(f"{B}/programs/not%20an%20id", headers=vtn.bl), 400, "programID")
    assert_problem(vtn.client.get(f"{B}/programs", params={"limit": 51}, headers=vtn.bl), 400, "limit")
    assert_problem(vtn.client.get(f"{B}/programs", params={"limit": -1}, headers=vtn.bl), 400, "limit")
    assert_problem(vtn.client.get(f"{B}/programs", params={"skip": -1}, headers=vtn.bl), 400, "skip")
    assert_problem(vtn.client.get(f"{B}/programs", params={"skip": 2**31}, headers=vtn.bl), 400, "skip")
    assert_problem(vtn.client.get(f"{B}/programs", params={"skip": "many"}, headers=vtn.bl), 400, "skip")
    assert_problem(vtn.client.get(f"{B}/programs", params={"targetValues": "g1"}, headers=vtn.bl), 400,
                   "targetType")
    assert_problem(vtn.client.get(f"{B}/vens", params={"venName": "a\u0000"}, headers=vtn.bl), 400, "venName")
    assert_problem(vtn.client.get(f"{B}/nowhere", headers=vtn.bl), 404)


def test_pagination_caps_pages_at_50(vtn: Vtn) -> None:
    for i in range(53):
        vtn.program(f"p{i:02d}")
    first = vtn.client.get(f"{B}/programs", headers=vtn.bl).json()
    assert [p["programName"] for p in first] == [f"p{i:02d}" for i in range(50)]
    rest = vtn.client.get(f"{B}/programs", params={"skip": 50, "limit": 50}, headers=vtn.bl).json()
    assert [p["programName"] for p in rest] == ["p50", "p51", "p52"]
    two = vtn.client.get(f"{B}/programs", params={"skip": 10, "limit": 2}, headers=vtn.bl).json()
    assert [p["programName"] for p in two] == ["p10", "p11"]
    assert vtn.client.get(f"{B}/programs", params={"limit": 0}, headers=vtn.bl).json() == []


def test_target_filters(vtn: Vtn) -> None:
    vtn.program("untargeted")
    vtn.program("group-1", targets=[{"type": "GROUP", "values": ["g1"]}])
    vtn.program("group-2-or-ven", targets=[{"type": "GROUP", "values": ["g2"]},
                                           {"type": "VEN_NAME", "values": ["ven-a"]}])
    vtn.program("postal", targets=[{"type": "POSTAL_CODE", "values": [11122]}])

    def names(**params: object) -> list[str]:
        response = vtn.client.get(f"{B}/programs", params=params, headers=vtn.bl)
        assert response.status_code == 200, response.text
        return [p["programName"] for p in response.json()]

    assert names(targetType="GROUP", targetValues=["g1"]) == ["group-1"]
    assert names(targetType="GROUP", targetValues=["g1", "g2"]) == ["group-1", "group-2-or-ven"]
    assert names(targetType="GROUP") == ["group-1", "group-2-or-ven"]
    assert names(targetType="VEN_NAME", targetValues=["ven-a"]) == ["group-2-or-ven"]
    assert names(targetType="GROUP", targetValues=["ven-a"]) == []
    assert names(targetType="POSTAL_CODE", targetValues=["11122"]) == ["postal"]
    assert len(names()) == 4


# -- events ---------------------------------------------------------------------------------------
def test_event_crud_and_program_filter(vtn: Vtn) -> None:
    p1, p2 = vtn.program("p1")["id"], vtn.program("p2")["id"]
    event = vtn.event(p1, eventName="e1", priority=1, payloadDescriptors=[
        {"payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW"}])
    assert event["objectType"] == "EVENT" and event["programID"] == p1
    assert event["intervals"] == [INTERVAL]
    vtn.event(p2, eventName="e2")
    listed = vtn.client.get(f"{B}/events", params={"programID": p1}, headers=vtn.bl).json()
    assert [e["eventName"] for e in listed] == ["e1"]

    eid = event["id"]
    assert vtn.client.get(f"{B}/events/{eid}", headers=vtn.bl).json() == event
    put = vtn.client.put(f"{B}/events/{eid}", json={"programID": p2, "eventName": "e1-moved", "intervals": []},
                         headers=vtn.bl)
    assert put.status_code == 200 and put.json()["programID"] == p2 and put.json()["intervals"] == []
    assert vtn.client.delete(f"{B}/events/{eid}", headers=vtn.bl).json()["eventName"] == "e1-moved"
    assert_problem(vtn.client.get(f"{B}/events/{eid}", headers=vtn.bl), 404)
    assert_problem(vtn.client.put(f"{B}/events/{eid}", json={"programID": p1, "intervals": []}, headers=vtn.bl), 404)
    assert_problem(vtn.client.delete(f"{B}/events/{eid}", headers=vtn.bl), 404)


def test_event_failures(vtn: Vtn) -> None:
    pid = vtn.program()["id"]
    vtn.event(pid, eventName="same")
    assert_problem(vtn.client.post(f"{B}/events", json={"programID": pid, "eventName": "same", "intervals": []},
                                   headers=vtn.bl), 409, "eventName")
    assert_problem(vtn.client.post(f"{B}/events", json={"programID": "missing", "intervals": []},
                                   headers=vtn.bl), 400, "programID")
    assert_problem(vtn.client.post(f"{B}/events", json={"programID": pid}, headers=vtn.bl), 400, "intervals")
    bad_interval = {**INTERVAL, "id": 2**31}
    assert_problem(vtn.client.post(f"{B}/events", json={"programID": pid, "intervals": [bad_interval]},
                                   headers=vtn.bl), 400, "intervals.0.id")
    bad_duration = {**INTERVAL, "intervalPeriod": {"start": "2026-11-25T16:00:00Z", "duration": "1h"}}
    assert_problem(vtn.client.post(f"{B}/events", json={"programID": pid, "intervals": [bad_duration]},
                                   headers=vtn.bl), 400, "intervals.0.intervalPeriod.duration")
    assert_problem(vtn.client.post(f"{B}/events", json={"programID": pid, "priority": -1, "intervals": []},
                                   headers=vtn.bl), 400, "priority")


def test_deleting_a_program_deletes_its_events(vtn: Vtn) -> None:
    pid = vtn.program()["id"]
    eid = vtn.event(pid)["id"]
    vtn.client.delete(f"{B}/programs/{pid}", headers=vtn.bl)
    assert_problem(vtn.client.get(f"{B}/events/{eid}", headers=vtn.bl), 404)


# -- vens and resources ---------------------------------------------------------------------------
def test_ven_crud_lists_its_resources(vtn: Vtn) -> None:
    ven = vtn.ven("ven-a", attributes=[{"type": "LOCATION", "values": [{"x": 59.3, "y": 18.1}]}])
    assert ven["objectType"] == "VEN" and ven["resources"] == []
    vid = ven["id"]
    resource = vtn.post(f"/vens/{vid}/resources", {"resourceName": "charger-1", "venID": "ignored"})
    assert resource["venID"] == vid and resource["objectType"] == "RESOURCE"
    got = vtn.client.get(f"{B}/vens/{vid}", headers=vtn.bl).json()
    assert got["resources"] == [resource]
    assert got["attributes"] == [{"type": "LOCATION", "values": [{"x": 59.3, "y": 18.1}]}]

    put = vtn.client.put(f"{B}/vens/{vid}", json={"venName": "ven-a", "targets": [{"type": "GROUP", "values": ["g1"]}],
                                                   "resources": []}, headers=vtn.bl)
    assert put.status_code == 200 and put.json()["resources"] == [resource]
    assert [v["venName"] for v in vtn.client.get(f"{B}/vens", params={"venName": "ven-a"}, headers=vtn.bl).json()] \
        == ["ven-a"]
    assert vtn.client.get(f"{B}/vens", params={"targetType": "GROUP", "targetValues": "g1"},
                          headers=vtn.bl).json()[0]["id"] == vid
    assert vtn.client.delete(f"{B}/vens/{vid}", headers=vtn.bl).json()["id"] == vid
    assert_problem(vtn.client.get(f"{B}/vens/{vid}", headers=vtn.bl), 404)
    assert_problem(vtn.client.get(f"{B}/vens/{vid}/resources/{resource['id']}", headers=vtn.bl), 404)


def test_ven_failures(vtn: Vtn) -> None:
    vtn.ven("ven-a")
    other = vtn.ven("ven-b")
    assert_problem(vtn.client.post(f"{B}/vens", json={"venName": "ven-a"}, headers=vtn.bl), 409, "venName")
    assert_problem(vtn.client.put(f"{B}/vens/{other['id']}", json={"venName": "ven-a"}, headers=vtn.bl), 409,
                   "venName")
    assert_problem(vtn.client.post(f"{B}/vens", json={"venName": ""}, headers=vtn.bl), 400, "venName")
    assert_problem(vtn.client.put(f"{B}/vens/missing", json={"venName": "x"}, headers=vtn.bl), 404)
    assert_problem(vtn.client.delete(f"{B}/vens/missing", headers=vtn.bl), 404)


def test_resource_crud_and_failures(vtn: Vtn) -> None:
    vid = vtn.ven("ven-a")["id"]
    other_vid = vtn.ven("ven-b")["id"]
    r1 = vtn.post(f"/vens/{vid}/resources", {"resourceName": "charger-1", "targets": [
        {"type": "GROUP", "values": ["g1"]}]})
    vtn.post(f"/vens/{vid}/resources", {"resourceName": "charger-2"})
    vtn.post(f"/vens/{other_vid}/resources", {"resourceName": "charger-1"})   # unique per VEN only
    assert_problem(vtn.client.post(f"{B}/vens/{vid}/resources", json={"resourceName": "charger-1"},
                                   headers=vtn.bl), 409, "resourceName")
    assert_problem(vtn.client.post(f"{B}/vens/{vid}/resources", json={}, headers=vtn.bl), 400, "resourceName")
    assert_problem(vtn.client.post(f"{B}/vens/missing/resources", json={"resourceName": "r"}, headers=vtn.bl), 404)
    assert_problem(vtn.client.get(f"{B}/vens/missing/resources", headers=vtn.bl), 404)

    def names(**params: object) -> list[str]:
        return [r["resourceName"] for r in vtn.client.get(f"{B}/vens/{vid}/resources", params=params,
                                                          headers=vtn.bl).json()]

    assert names() == ["charger-1", "charger-2"]
    assert names(resourceName="charger-2") == ["charger-2"]
    assert names(targetType="GROUP", targetValues="g1") == ["charger-1"]
    rid = r1["id"]
    assert vtn.client.get(f"{B}/vens/{vid}/resources/{rid}", headers=vtn.bl).json() == r1
    assert_problem(vtn.client.get(f"{B}/vens/{other_vid}/resources/{rid}", headers=vtn.bl), 404)
    put = vtn.client.put(f"{B}/vens/{vid}/resources/{rid}", json={"resourceName": "charger-1b"}, headers=vtn.bl)
    assert put.status_code == 200 and put.json()["resourceName"] == "charger-1b" and put.json()["venID"] == vid
    assert_problem(vtn.client.put(f"{B}/vens/{vid}/resources/{rid}", json={"resourceName": "charger-2"},
                                  headers=vtn.bl), 409, "resourceName")
    assert vtn.client.delete(f"{B}/vens/{vid}/resources/{rid}", headers=vtn.bl).json()["id"] == rid
    assert_problem(vtn.client.delete(f"{B}/vens/{vid}/resources/{rid}", headers=vtn.bl), 404)
    assert_problem(vtn.client.put(f"{B}/vens/{vid}/resources/{rid}", json={"resourceName": "x"},
                                  headers=vtn.bl), 404)


# -- reports --------------------------------------------------------------------------------------
def report_body(program_id: str, event_id: str, client_name: str = "ven-a", **extra: object) -> dict:
    return {"programID": program_id, "eventID": event_id, "clientName": client_name, "resources": [
        {"resourceName": "charger-1", "intervals": [
            {"id": 0, "payloads": [{"type": "USAGE", "values": [3.2]}]}]}], **extra}


def test_report_crud_by_its_ven(vtn: Vtn) -> None:
    vtn.ven("ven-a")
    pid = vtn.program()["id"]
    eid = vtn.event(pid)["id"]
    report = vtn.post("/reports", report_body(pid, eid, reportName="r1", payloadDescriptors=[
        {"payloadType": "USAGE", "units": "KWH", "confidence": 90}]), who=vtn.ven_a)
    assert report["objectType"] == "REPORT" and report["clientName"] == "ven-a"
    rid = report["id"]
    assert vtn.client.get(f"{B}/reports/{rid}", headers=vtn.ven_a).json() == report
    assert vtn.client.get(f"{B}/reports/{rid}", headers=vtn.bl).json() == report
    for params in ({"programID": pid}, {"eventID": eid}, {"clientName": "ven-a"}):
        assert [r["id"] for r in vtn.client.get(f"{B}/reports", params=params, headers=vtn.bl).json()] == [rid]
    assert vtn.client.get(f"{B}/reports", params={"clientName": "ven-b"}, headers=vtn.bl).json() == []
    put = vtn.client.put(f"{B}/reports/{rid}", json=report_body(pid, eid, reportName="r1-corrected"),
                         headers=vtn.ven_a)
    assert put.status_code == 200 and put.json()["reportName"] == "r1-corrected"
    assert vtn.client.delete(f"{B}/reports/{rid}", headers=vtn.ven_a).json()["id"] == rid
    assert_problem(vtn.client.get(f"{B}/reports/{rid}", headers=vtn.bl), 404)
    assert_problem(vtn.client.delete(f"{B}/reports/{rid}", headers=vtn.ven_a), 404)


def test_report_failures(vtn: Vtn) -> None:
    pid, other_pid = vtn.program("p1")["id"], vtn.program("p2")["id"]
    eid = vtn.event(pid)["id"]
    assert_problem(vtn.client.post(f"{B}/reports", json=report_body(pid, "missing"), headers=vtn.ven_a), 400,
                   "eventID")
    assert_problem(vtn.client.post(f"{B}/reports", json=report_body(other_pid, eid), headers=vtn.ven_a), 400,
                   "eventID")
    no_resources = {k: v for k, v in report_body(pid, eid).items() if k != "resources"}
    assert_problem(vtn.client.post(f"{B}/reports", json=no_resources, headers=vtn.ven_a), 400, "resources")
    bad_confidence = report_body(pid, eid, payloadDescriptors=[{"payloadType": "USAGE", "confidence": 101}])
    assert_problem(vtn.client.post(f"{B}/reports", json=bad_confidence, headers=vtn.ven_a), 400,
                   "payloadDescriptors.0.confidence")
    assert_problem(vtn.client.put(f"{B}/reports/missing", json=report_body(pid, eid), headers=vtn.ven_a), 404)


def test_an_event_with_reports_keeps_its_program(vtn: Vtn) -> None:
    pid, other_pid = vtn.program("p1")["id"], vtn.program("p2")["id"]
    eid = vtn.event(pid)["id"]
    vtn.post("/reports", report_body(pid, eid), who=vtn.ven_a)
    moved = vtn.client.put(f"{B}/events/{eid}", json={"programID": other_pid, "intervals": []}, headers=vtn.bl)
    assert_problem(moved, 409, "programID")


# -- subscriptions --------------------------------------------------------------------------------
def subscription_body(program_id: str, client_name: str = "bl", **extra: object) -> dict:
    return {"clientName": client_name, "programID": program_id, "objectOperations": [
        {"objects": ["EVENT"], "operations": ["CREATE", "UPDATE"], "callbackUrl": "http://127.0.0.1:9/cb",
         "bearerToken": None}], **extra}


def test_subscription_crud_and_filters(vtn: Vtn) -> None:
    pid, other = vtn.program("p1")["id"], vtn.program("p2")["id"]
    sub = vtn.post("/subscriptions", subscription_body(pid, targets=[{"type": "GROUP", "values": ["g1"]}]))
    assert sub["objectType"] == "SUBSCRIPTION" and sub["objectOperations"][0]["bearerToken"] is None
    vtn.post("/subscriptions", subscription_body(other, "other", objectOperations=[
        {"objects": ["REPORT"], "operations": ["CREATE"], "callbackUrl": "https://example.org/cb"}]))
    sid = sub["id"]

    def ids(**params: object) -> list[str]:
        response = vtn.client.get(f"{B}/subscriptions", params=params, headers=vtn.bl)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()]

    assert ids(programID=pid) == [sid]
    assert ids(clientName="bl") == [sid]
    assert ids(objects=["EVENT"]) == [sid]
    assert ids(objects=["EVENT", "REPORT"]) == [sid, ids(clientName="other")[0]]
    assert ids(targetType="GROUP", targetValues="g1") == [sid]
    assert_problem(vtn.client.get(f"{B}/subscriptions", params={"objects": "THING"}, headers=vtn.bl), 400,
                   "objects.0")
    assert vtn.client.get(f"{B}/subscriptions/{sid}", headers=vtn.bl).json() == sub
    put = vtn.client.put(f"{B}/subscriptions/{sid}", json=subscription_body(pid, "renamed"), headers=vtn.bl)
    assert put.status_code == 200 and put.json()["clientName"] == "renamed"
    assert vtn.client.delete(f"{B}/subscriptions/{sid}", headers=vtn.bl).json()["id"] == sid
    assert_problem(vtn.client.get(f"{B}/subscriptions/{sid}", headers=vtn.bl), 404)
    assert_problem(vtn.client.put(f"{B}/subscriptions/{sid}", json=subscription_body(pid), headers=vtn.bl), 404)
    assert_problem(vtn.client.delete(f"{B}/subscriptions/{sid}", headers=vtn.bl), 404)


def test_subscription_failures(vtn: Vtn) -> None:
    pid = vtn.program()["id"]
    assert_problem(vtn.client.post(f"{B}/subscriptions", json=subscription_body("missing"), headers=vtn.bl), 400,
                   "programID")
    bad_object = subscription_body(pid, objectOperations=[
        {"objects": ["THING"], "operations": ["CREATE"], "callbackUrl": "https://example.org/cb"}])
    assert_problem(vtn.client.post(f"{B}/subscriptions", json=bad_object, headers=vtn.bl), 400,
                   "objectOperations.0.objects.0")
    no_url = subscription_body(pid, objectOperations=[{"objects": ["EVENT"], "operations": ["CREATE"]}])
    assert_problem(vtn.client.post(f"{B}/subscriptions", json=no_url, headers=vtn.bl), 400,
                   "objectOperations.0.callbackUrl")
    assert_problem(vtn.client.post(f"{B}/subscriptions", json={"programID": pid, "objectOperations": []},
                                   headers=vtn.bl), 400, "clientName")


def test_own_openapi_document_and_secret_from_the_environment(db_url: str, monkeypatch) -> None:
    monkeypatch.delenv("FLEXFLEET_API_SECRET", raising=False)
    with pytest.raises(ValueError, match="FLEXFLEET_API_SECRET"):
        create_app(db_url)
    monkeypatch.setenv("FLEXFLEET_API_SECRET", "short")
    with pytest.raises(ValueError, match="32 bytes"):
        create_app(db_url)
    monkeypatch.setenv("FLEXFLEET_API_SECRET", SECRET)
    register_all(db_url)
    with TestClient(create_app(db_url)) as client:
        assert client.get(f"{B}/programs", headers=bearer(token(client, *BL))).status_code == 200
        assert client.get("/healthz").json() == {"status": "ok"}
        document = client.get(f"{B}/openapi.json").json()
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert len(operations) == 31 and all("422" not in op["responses"] for op in operations)
    assert document["servers"] == [{"url": B}] and "/programs" in document["paths"]
    with TestClient(create_app("postgresql://nobody@127.0.0.1:1/none")) as down:
        assert down.get("/healthz").status_code == 503


def test_a_database_restart_costs_a_503_at_most_never_a_wrong_answer(db_url_on_own_server, monkeypatch) -> None:
    """The pooled connections outlive a database restart: while it is down, polls and writes
    get the 503 problem with Retry-After; once it is back, both work again without the VTN
    being restarted (idle connections are checked before use, broken ones replaced)."""
    from services.runtime.connection import PooledConnections

    monkeypatch.setattr(PooledConnections, "CHECK_AFTER_S", 0.0)    # check every hand-out
    db_url, server = db_url_on_own_server
    register_all(db_url)
    with TestClient(create_app(db_url, secret=SECRET)) as client:
        bl = bearer(token(client, *BL))
        program = client.post(f"{B}/programs", json={"programName": "p"}, headers=bl).json()["id"]
        assert client.get(f"{B}/events", headers=bl).status_code == 200
        server.stop()
        for response in (client.get(f"{B}/events", headers=bl),
                         client.post(f"{B}/events", json={"programID": program, "intervals": [INTERVAL]}, headers=bl)):
            assert_problem(response, 503)
            assert response.headers["Retry-After"] == "5"
        server.start()
        created = client.post(f"{B}/events", json={"programID": program, "intervals": [INTERVAL]}, headers=bl)
        assert created.status_code == 201, created.text
        assert [e["id"] for e in client.get(f"{B}/events", headers=bl).json()] == [created.json()["id"]]
