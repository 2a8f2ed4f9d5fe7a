"""The OpenADR 3.1.0 side of the VTN (/openadr3/3.1.0) against the real PostgreSQL: every
3.1.0 operation with its success and its failures, a VEN confined to the targets granted to it
(read_targets, target hiding), objects written through one version read through the other,
3.1.0 notifications, and openadr3-client's oadr310 business-logic and VEN clients end to end
over HTTP (uvicorn)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import requests
from fastapi.testclient import TestClient
from openadr3_client._models.common.interval import Interval
from openadr3_client._models.common.interval_period import IntervalPeriod
from openadr3_client.bl.http_factory import BusinessLogicHttpClientFactory
from openadr3_client.oadr310._vtn.interfaces.filters import TargetFilter
from openadr3_client.oadr310.models.event.event import NewEvent
from openadr3_client.oadr310.models.event.event_payload import EventPayload, EventPayloadDescriptor
from openadr3_client.oadr310.models.program.program import NewProgram
from openadr3_client.oadr310.models.report.report import NewReport, ReportResource
from openadr3_client.oadr310.models.report.report_payload import ReportPayload
from openadr3_client.oadr310.models.resource.resource import NewResourceVenRequest
from openadr3_client.oadr310.models.subscriptions.subscription import NewSubscription, ObjectOperation
from openadr3_client.oadr310.models.ven.ven import NewVenVenRequest, VenUpdateBlRequest
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
from openadr3_client.version import OADRVersion
from vtn_support import BL, SECRET, VENS, Webhook, bearer, register_all, serve, token

from flexfleet.auth import hash_secret
from flexfleet.openadr import models301, models310
from services.dispatcher.vtn import BASE_PATH, BASE_PATH_310, create_app
from services.dispatcher.vtn.notifier import Delivery
from services.runtime.config import with_database
from services.runtime.migrate import MIGRATIONS, migrate

pytestmark = pytest.mark.integration

B, B301 = BASE_PATH_310, BASE_PATH
INTERVAL = {"id": 0, "intervalPeriod": {"start": "2026-11-25T16:00:00Z", "duration": "PT15M"},
            "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [7.4]}]}
RESOURCES = [{"resourceName": "charger-1", "intervals": [
    {"id": 0, "payloads": [{"type": "USAGE", "values": [3.1]}]}]}]


@dataclass
class Vtn:
    client: TestClient
    bl: dict[str, str]
    ven_a: dict[str, str]
    ven_b: dict[str, str]

    def call(self, method: str, path: str, body: dict | None = None, who: dict[str, str] | None = None,
             status: int = 200, base: str = B, **params: object) -> dict | list:
        response = self.client.request(method, f"{base}{path}", json=body, params=params,
                                       headers=self.bl if who is None else who)
        assert response.status_code == status, response.text
        return response.json()

    def post(self, path: str, body: dict, who: dict[str, str] | None = None, status: int = 201,
             base: str = B) -> dict:
        return self.call("POST", path, body, who, status, base)  # type: ignore[return-value]

    def get(self, path: str, who: dict[str, str] | None = None, status: int = 200, base: str = B,
            **params: object) -> dict | list:
        return self.call("GET", path, None, who, status, base, **params)

    def program(self, name: str = "fcr-d-up", **extra: object) -> dict:
        return self.post("/programs", {"programName": name, **extra})

    def event(self, program_id: str, **extra: object) -> dict:
        return self.post("/events", {"programID": program_id, "intervals": [INTERVAL], **extra})

    def ven(self, name: str, targets: list[str] | None = None, **extra: object) -> dict:
        return self.post("/vens", {"objectType": "BL_VEN_REQUEST", "clientID": VENS[name][0], "venName": name,
                                   "targets": targets, **extra})


@pytest.fixture
def vtn(db_url: str) -> Iterator[Vtn]:
    register_all(db_url)
    with TestClient(create_app(db_url, secret=SECRET)) as client:
        yield Vtn(client, *(bearer(token(client, *c, base_path=B)) for c in (BL, VENS["ven-a"], VENS["ven-b"])))


def problem(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    models301.Problem.model_validate(body)
    assert body["status"] == status and body["detail"] and response.headers["content-type"] == "application/json"
    if field is not None:
        assert body["field"] == field and body["detail"].startswith(f"{field}: "), body
    return body


def bad(vtn: Vtn, method: str, path: str, body: dict | None, status: int, field: str | None = None,
        who: dict[str, str] | None = None, **params: object) -> dict:
    response = vtn.client.request(method, f"{B}{path}", json=body, params=params,
                                  headers=vtn.bl if who is None else who)
    return problem(response, status, field)


# -- programs -------------------------------------------------------------------------------------
def test_program_crud_and_failures(vtn: Vtn) -> None:
    created = vtn.program("fcr-d-up", id="client-chosen", targets=["se3"], attributes=[
        {"type": "PROGRAM_LONG_NAME", "values": ["FCR-D up, SE3"]}], payloadDescriptors=[
        {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW"}],
        intervalPeriod={"start": "0001-01-01", "duration": "P9999Y"})
    models310.Program.model_validate(created)
    assert created["objectType"] == "PROGRAM" and created["id"] != "client-chosen"
    assert created["intervalPeriod"] == {"start": "0001-01-01", "duration": "P9999Y"}   # "now", as sent
    assert created["targets"] == ["se3"] and created["programDescriptions"] is None
    pid = created["id"]
    assert vtn.get(f"/programs/{pid}") == created
    assert [p["id"] for p in vtn.get("/programs", targets=["se3"])] == [pid]
    assert vtn.get("/programs", targets=["se4"]) == []
    updated = vtn.call("PUT", f"/programs/{pid}", {"programName": "fcr-d-up", "targets": None})
    assert updated["targets"] is None and updated["createdDateTime"] == created["createdDateTime"]
    assert vtn.call("DELETE", f"/programs/{pid}")["id"] == pid
    bad(vtn, "GET", f"/programs/{pid}", None, 404)

    bad(vtn, "POST", "/programs", {"targets": ["x"]}, 400, "programName")
    bad(vtn, "POST", "/programs", {"programName": "p", "targets": [""]}, 400, "targets.0")
    bad(vtn, "POST", "/programs", {"programName": "p", "targets": [{"type": "GROUP", "values": ["g"]}]}, 400,
        "targets.0")                                                            # 3.0.1's shape
    bad(vtn, "POST", "/programs", {"programName": "p", "payloadDescriptors": [{"payloadType": "PRICE"}]}, 400,
        "payloadDescriptors.0.objectType")
    bad(vtn, "POST", "/programs", {"programName": "p", "intervalPeriod": {"start": "2026-11-25T16:00:00"}}, 400,
        "intervalPeriod.start")
    vtn.program("taken")
    bad(vtn, "POST", "/programs", {"programName": "taken"}, 409, "programName")
    bad(vtn, "PUT", "/programs/no-such", {"programName": "x"}, 404)
    bad(vtn, "GET", "/programs/a b", None, 400, "programID")
    bad(vtn, "POST", "/programs", {"programName": "mine"}, 403, who=vtn.ven_a)
    bad(vtn, "DELETE", f"/programs/{pid}", None, 403, who=vtn.ven_a)
    bad(vtn, "GET", "/programs", None, 400, "limit", limit=51)
    unauthenticated = vtn.client.get(f"{B}/programs")
    assert problem(unauthenticated, 401) and unauthenticated.headers["WWW-Authenticate"] == "Bearer"


# -- events ---------------------------------------------------------------------------------------
def test_event_crud_active_filter_and_failures(vtn: Vtn) -> None:
    pid = vtn.program()["id"]
    report_only = vtn.post("/events", {"programID": pid, "eventName": "reservations", "duration": "PT2H",
                                       "intervalPeriod": {"start": "0001-01-01T00:00:00", "duration": "PT0H"},
                                       "reportDescriptors": [{"payloadType": "CAPACITY_RESERVATION",
                                                              "reportIntervals": "OPEN_INTERVALS"}]})
    models310.Event.model_validate(report_only)
    assert "intervals" not in report_only and report_only["duration"] == "PT2H"
    assert report_only["reportDescriptors"][0]["reportIntervals"] == "OPEN_INTERVALS"
    now = datetime.now(UTC).replace(microsecond=0)

    def timed(name: str, start: datetime, duration: str) -> str:
        intervals = [{"id": i, "payloads": [{"type": "PRICE", "values": [0.1]}]} for i in range(4)]
        return vtn.event(pid, eventName=name, intervals=intervals,
                         intervalPeriod={"start": start.isoformat(), "duration": duration})["id"]

    past = timed("past", now - timedelta(days=1), "PT1H")          # four hours, a day ago
    current = timed("current", now - timedelta(hours=1), "PT1H")   # ends in three hours
    future = timed("future", now + timedelta(days=1), "PT1H")
    forever = timed("forever", now - timedelta(days=400), "P9999Y")
    names = {e["id"]: e["eventName"] for e in vtn.get("/events", programID=pid)}
    assert set(names) == {report_only["id"], past, current, future, forever}
    active = [e["id"] for e in vtn.get("/events", programID=pid, active=True)]
    assert set(active) == {report_only["id"], current, future, forever}            # "now" counts as active
    assert len(vtn.get("/events", active=False)) == 5

    updated = vtn.call("PUT", f"/events/{past}", {"programID": pid, "eventName": "past", "intervalPeriod": {
        "start": (now + timedelta(hours=2)).isoformat(), "duration": "PT1H"}, "intervals": [INTERVAL]})
    assert updated["id"] == past and past in [e["id"] for e in vtn.get("/events", active=True)]
    assert vtn.call("DELETE", f"/events/{past}")["eventName"] == "past"
    bad(vtn, "GET", f"/events/{past}", None, 404)

    bad(vtn, "POST", "/events", {"programID": "no-such"}, 400, "programID")
    bad(vtn, "POST", "/events", {"programID": pid, "eventName": "future"}, 409, "eventName")
    bad(vtn, "POST", "/events", {"programID": pid, "duration": "1 hour"}, 400, "duration")
    bad(vtn, "POST", "/events", {"programID": pid, "reportDescriptors": [
        {"payloadType": "USAGE", "reportIntervals": "SOMETIMES"}]}, 400, "reportDescriptors.0.reportIntervals")
    bad(vtn, "GET", "/events", None, 400, "active", active="maybe")
    bad(vtn, "GET", "/events", None, 400, "targets", targets=["x" * 129])
    bad(vtn, "PUT", f"/events/{future}", {"programID": pid}, 403, who=vtn.ven_a)
    bad(vtn, "DELETE", "/events/no-such", None, 404)


def test_when_an_event_has_transpired() -> None:
    """models310.event_end, which `active` filters on: the User Guide's interval timing."""
    start = "2026-01-31T10:00:00+01:00"

    def end(event: dict) -> datetime | None:
        return models310.event_end({"programID": "p", **event})

    ticks = [{"id": i, "payloads": []} for i in range(3)]
    assert end({"intervalPeriod": {"start": start, "duration": "PT15M"}, "intervals": ticks}) == datetime(
        2026, 1, 31, 9, 45, tzinfo=UTC)                                       # three in sequence
    assert end({"intervalPeriod": {"start": start, "duration": "P1M"}, "intervals": ticks[:1]}) == datetime(
        2026, 2, 28, 9, 0, tzinfo=UTC)                                        # a calendar month
    own = [{"id": 0, "intervalPeriod": {"start": start, "duration": "PT1H"}, "payloads": []},
           {"id": 1, "intervalPeriod": {"duration": "PT2H"}, "payloads": []}]  # follows the first
    assert end({"intervals": own}) == datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert end({"duration": "P1D", "intervalPeriod": {"start": start, "duration": "PT1H"}, "intervals": ticks}
               ) == datetime(2026, 2, 1, 9, 0, tzinfo=UTC)                   # event.duration sets the span
    assert end({"intervalPeriod": {"start": start, "duration": "P9999Y"}, "intervals": ticks}) is None   # infinity
    assert end({"intervalPeriod": {"start": "0001-01-01", "duration": "PT1H"}, "intervals": ticks}) is None  # now
    assert end({"intervalPeriod": {"start": start, "duration": "PT0S"}, "intervals": ticks}) is None
    assert end({"intervals": ticks}) is None and end({}) is None
    assert models310.add_duration(datetime(2026, 3, 31, tzinfo=UTC), "-P1M") == datetime(2026, 2, 28, tzinfo=UTC)


def test_migration_0009_fills_in_what_earlier_rows_lack(pg_server, tmp_path) -> None:
    """Rows written before 0009 get their untyped targets and their writer's client; the clients
    of then become accounts in 0014 and log in as before."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_server.url, name)
    try:
        for path in MIGRATIONS.glob("*.sql"):
            if path.name < "0009":
                shutil.copy(path, tmp_path / path.name)
        migrate(url, tmp_path)
        with psycopg.connect(url, autocommit=True) as conn:     # the clients as 0006 kept them
            conn.execute("INSERT INTO oadr_clients (client_id, secret_hash, role, ven_name) VALUES (%s, %s, 'BL', NULL), "
                         "(%s, %s, 'VEN', 'ven-a')", (BL[0], hash_secret(BL[1]), VENS["ven-a"][0].upper(),
                                                      hash_secret(VENS["ven-a"][1])))
        program = {"id": "p1", "objectType": "PROGRAM", "programName": "old", "createdDateTime": "2026-01-01T00:00:00Z",
                   "modificationDateTime": "2026-01-01T00:00:00Z",
                   "targets": [{"type": "GROUP", "values": ["g1", 5, {"x": 1.0, "y": 2.0}]}]}
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO oadr_programs (id, program_name, body, created_at, modified_at) "
                         "VALUES ('p1', 'old', %s, now(), now())", (psycopg.types.json.Jsonb(program),))
            conn.execute("INSERT INTO oadr_subscriptions (id, program_id, client_name, body, created_at, modified_at) "
                         "VALUES ('s1', 'p1', 'c', '{}', now(), now())")
        assert migrate(url)[0] == "0009_openadr310"          # and the later ones after it
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT version, target_values FROM oadr_programs").fetchone() == ("3.0.1", ["5", "g1"])
            assert conn.execute("SELECT owner_client FROM oadr_subscriptions").fetchone() == ("bl-client",)
            assert conn.execute("SELECT username, role, ven_name FROM accounts ORDER BY username").fetchall() == [
                ("bl-client", "operator", None), ("ven-a-client", "ven", "ven-a")]
            assert conn.execute("SELECT to_regclass('oadr_clients')").fetchone() == (None,)
        with TestClient(create_app(url, secret=SECRET)) as client:
            got = client.get(f"{B}/programs", headers=bearer(token(client, *BL, base_path=B)), params={"targets": "5"})
            ven = token(client, *VENS["ven-a"], base_path=B)
            assert client.get(f"{B}/programs", headers=bearer(ven)).status_code == 200
        assert [(p["id"], p["targets"]) for p in got.json()] == [("p1", ["g1", "5"])]
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- vens and resources ---------------------------------------------------------------------------
def test_vens_from_the_business_logic_and_from_the_ven(vtn: Vtn) -> None:
    ven_a = vtn.ven("ven-a", ["g1"], attributes=[{"type": "DESCRIPTION", "values": ["depot"]}])
    models310.Ven.model_validate(ven_a)
    assert (ven_a["objectType"], ven_a["clientID"], ven_a["targets"]) == ("VEN", "ven-a-client", ["g1"])
    # a VEN registers itself: its client is the token's, it has no targets
    ven_b = vtn.post("/vens", {"objectType": "VEN_VEN_REQUEST", "venName": "ven-b"}, vtn.ven_b)
    assert (ven_b["clientID"], ven_b["targets"]) == ("ven-b-client", None)
    # a VEN's update keeps what the business logic granted it
    kept = vtn.call("PUT", f"/vens/{ven_a['id']}", {"objectType": "VEN_VEN_REQUEST", "venName": "ven-a",
                                                     "attributes": []}, vtn.ven_a)
    assert (kept["targets"], kept["clientID"], kept["attributes"]) == (["g1"], "ven-a-client", [])
    assert [v["id"] for v in vtn.get("/vens", vtn.ven_a)] == [ven_a["id"]]
    assert [v["id"] for v in vtn.get("/vens", targets=["g1"])] == [ven_a["id"]]
    assert [v["id"] for v in vtn.get("/vens", venName="ven-b")] == [ven_b["id"]]
    assert vtn.get(f"/vens/{ven_b['id']}", vtn.ven_b)["venName"] == "ven-b"

    bad(vtn, "POST", "/vens", {"venName": "ven-c"}, 400, "objectType")
    bad(vtn, "POST", "/vens", {"objectType": "VEN", "venName": "ven-c"}, 400, "objectType")
    bad(vtn, "POST", "/vens", {"objectType": "BL_VEN_REQUEST", "venName": "ven-c"}, 400, "clientID")
    bad(vtn, "POST", "/vens", {"objectType": "BL_VEN_REQUEST", "clientID": "ven-b-client", "venName": "ven-c"},
        400, "clientID")                                          # ven-b's client is not ven-c's
    bad(vtn, "POST", "/vens", {"objectType": "BL_VEN_REQUEST", "clientID": "ven-a-client", "venName": "ven-a"},
        409, "venName")
    bad(vtn, "POST", "/vens", {"objectType": "VEN_VEN_REQUEST", "venName": "ven-c"}, 403, "venName", vtn.ven_b)
    bad(vtn, "PUT", f"/vens/{ven_a['id']}", {"objectType": "BL_VEN_REQUEST", "clientID": "ven-a-client",
                                             "venName": "ven-a", "targets": ["g2"]}, 403, "objectType", vtn.ven_a)
    bad(vtn, "PUT", f"/vens/{ven_a['id']}", {"objectType": "VEN_VEN_REQUEST", "venName": "ven-z"}, 403, "venName",
        vtn.ven_a)
    bad(vtn, "GET", f"/vens/{ven_a['id']}", None, 403, who=vtn.ven_b)
    bad(vtn, "GET", "/vens", None, 400, "targets", targets=["g1\x00"])
    bad(vtn, "DELETE", f"/vens/{ven_a['id']}", None, 403, who=vtn.ven_b)
    bad(vtn, "PUT", "/vens/no-such", {"objectType": "VEN_VEN_REQUEST", "venName": "x"}, 404)
    regranted = vtn.call("PUT", f"/vens/{ven_b['id']}", {"objectType": "BL_VEN_REQUEST", "clientID": "ven-b-client",
                                                          "venName": "ven-b", "targets": ["g2"]})
    assert regranted["targets"] == ["g2"]
    assert vtn.call("DELETE", f"/vens/{ven_b['id']}", who=vtn.ven_b)["id"] == ven_b["id"]
    bad(vtn, "GET", f"/vens/{ven_b['id']}", None, 404)


def test_resources_are_first_level_objects(vtn: Vtn) -> None:
    ven_a, ven_b = vtn.ven("ven-a")["id"], vtn.ven("ven-b")["id"]
    granted = vtn.post("/resources", {"objectType": "BL_RESOURCE_REQUEST", "clientID": "ven-a-client",
                                      "resourceName": "charger-1", "venID": ven_a, "targets": ["feeder-7"]})
    models310.Resource.model_validate(granted)
    assert (granted["objectType"], granted["venID"], granted["targets"]) == ("RESOURCE", ven_a, ["feeder-7"])
    own = vtn.post("/resources", {"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "charger-2",
                                  "venID": ven_a}, vtn.ven_a)
    assert (own["clientID"], own["targets"]) == ("ven-a-client", None)
    b_own = vtn.post("/resources", {"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "charger-1",
                                    "venID": ven_b}, vtn.ven_b)
    assert {r["id"] for r in vtn.get("/resources", vtn.ven_a)} == {granted["id"], own["id"]}
    assert {r["id"] for r in vtn.get("/resources")} == {granted["id"], own["id"], b_own["id"]}
    assert [r["id"] for r in vtn.get("/resources", venID=ven_b)] == [b_own["id"]]
    assert [r["id"] for r in vtn.get("/resources", resourceName="charger-1", venID=ven_a)] == [granted["id"]]
    assert [r["id"] for r in vtn.get("/resources", targets=["feeder-7"])] == [granted["id"]]
    assert vtn.get(f"/resources/{granted['id']}", vtn.ven_a)["resourceName"] == "charger-1"
    kept = vtn.call("PUT", f"/resources/{granted['id']}", {"objectType": "VEN_RESOURCE_REQUEST",
                                                           "resourceName": "charger-1b", "venID": ven_a}, vtn.ven_a)
    assert (kept["resourceName"], kept["targets"]) == ("charger-1b", ["feeder-7"])

    bad(vtn, "POST", "/resources", {"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "x", "venID": "no-such"},
        404)
    bad(vtn, "GET", "/resources", None, 404, venID="no-such")
    bad(vtn, "POST", "/resources", {"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "x", "venID": ven_a},
        403, who=vtn.ven_b)
    bad(vtn, "POST", "/resources", {"objectType": "BL_RESOURCE_REQUEST", "clientID": "ven-a-client",
                                    "resourceName": "x", "venID": ven_a, "targets": ["g"]}, 403, "objectType",
        vtn.ven_a)
    bad(vtn, "POST", "/resources", {"objectType": "BL_RESOURCE_REQUEST", "clientID": "ven-b-client",
                                    "resourceName": "x", "venID": ven_a}, 400, "clientID")
    bad(vtn, "POST", "/resources", {"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "charger-2",
                                    "venID": ven_a}, 409, "resourceName")
    bad(vtn, "POST", "/resources", {"objectType": "VEN_RESOURCE_REQUEST", "venID": ven_a}, 400, "resourceName")
    bad(vtn, "GET", "/resources", None, 403, who=vtn.ven_b, venID=ven_a)
    bad(vtn, "GET", f"/resources/{granted['id']}", None, 403, who=vtn.ven_b)
    bad(vtn, "PUT", f"/resources/{own['id']}", {"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "moved",
                                                "venID": ven_b}, 403, who=vtn.ven_a)      # not its ven to move to
    bad(vtn, "DELETE", f"/resources/{own['id']}", None, 403, who=vtn.ven_b)
    assert vtn.call("DELETE", f"/resources/{own['id']}", who=vtn.ven_a)["id"] == own["id"]
    bad(vtn, "GET", f"/resources/{own['id']}", None, 404)


# -- reports and subscriptions --------------------------------------------------------------------
def test_reports_name_their_client_not_their_program(vtn: Vtn) -> None:
    vtn.ven("ven-a", ["g1"])
    pid = vtn.program()["id"]
    event = vtn.event(pid, targets=["g1"])
    report = vtn.post("/reports", {"eventID": event["id"], "clientName": "ven-a", "resources": RESOURCES,
                                   "payloadDescriptors": [{"objectType": "REPORT_PAYLOAD_DESCRIPTOR",
                                                           "payloadType": "USAGE", "units": "KWH"}]}, vtn.ven_a)
    models310.Report.model_validate(report)
    assert report["clientID"] == "ven-a-client" and "programID" not in report
    assert [r["id"] for r in vtn.get("/reports", programID=pid)] == [report["id"]]      # the event's program
    assert [r["id"] for r in vtn.get("/reports", vtn.ven_a, eventID=event["id"])] == [report["id"]]
    assert vtn.get("/reports", vtn.ven_b) == []
    assert vtn.get(f"/reports/{report['id']}")["clientName"] == "ven-a"
    updated = vtn.call("PUT", f"/reports/{report['id']}", {"eventID": event["id"], "clientName": "ven-a",
                                                           "reportName": "r2", "resources": []}, vtn.ven_a)
    assert (updated["reportName"], updated["clientID"]) == ("r2", "ven-a-client")

    body = {"eventID": event["id"], "clientName": "ven-b", "resources": RESOURCES}
    bad(vtn, "POST", "/reports", body, 403, "eventID", vtn.ven_b)                 # g1 was not granted to ven-b
    bad(vtn, "POST", "/reports", {**body, "clientName": "ven-a"}, 403, "clientName", vtn.ven_b)
    bad(vtn, "POST", "/reports", {**body, "clientName": "ven-a", "eventID": "no-such"}, 400, "eventID", vtn.ven_a)
    bad(vtn, "POST", "/reports", {**body, "clientName": "ven-a"}, 403)                   # the BL has no write_reports
    bad(vtn, "POST", "/reports", {**body, "clientName": "ven-a", "payloadDescriptors": [
        {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "USAGE"}]}, 400,
        "payloadDescriptors.0.objectType", vtn.ven_a)
    bad(vtn, "POST", "/reports", {"eventID": event["id"], "clientName": "ven-a"}, 400, "resources", vtn.ven_a)
    bad(vtn, "GET", f"/reports/{report['id']}", None, 403, who=vtn.ven_b)
    bad(vtn, "GET", "/reports", None, 400, "programID", programID="a b")
    bad(vtn, "PUT", f"/reports/{report['id']}", {**body, "clientName": "ven-b"}, 403, who=vtn.ven_b)
    bad(vtn, "DELETE", f"/reports/{report['id']}", None, 403, who=vtn.ven_b)
    assert vtn.call("DELETE", f"/reports/{report['id']}", who=vtn.ven_a)["id"] == report["id"]
    bad(vtn, "DELETE", f"/reports/{report['id']}", None, 404, who=vtn.ven_a)


def test_subscriptions_may_name_no_program(vtn: Vtn) -> None:
    pid = vtn.program()["id"]
    operations = [{"objects": ["VEN", "RESOURCE"], "operations": ["UPDATE"], "callbackUrl": "https://bl.example/cb"}]
    anywhere = vtn.post("/subscriptions", {"clientName": "bl", "objectOperations": operations})
    models310.Subscription.model_validate(anywhere)
    assert anywhere["clientID"] == "bl-client" and "programID" not in anywhere
    mine = vtn.post("/subscriptions", {"clientName": "ven-a", "programID": pid, "targets": ["g1"], "objectOperations": [
        {"objects": ["EVENT"], "operations": ["CREATE", "DELETE"], "callbackUrl": "https://ven-a.example/cb",
         "bearerToken": "t"}]}, vtn.ven_a)
    assert mine["clientID"] == "ven-a-client" and mine["targets"] == ["g1"]
    assert {s["id"] for s in vtn.get("/subscriptions")} == {anywhere["id"], mine["id"]}
    assert [s["id"] for s in vtn.get("/subscriptions", objects=["EVENT"])] == [mine["id"]]
    assert [s["id"] for s in vtn.get("/subscriptions", programID=pid)] == [mine["id"]]
    assert [s["id"] for s in vtn.get("/subscriptions", vtn.ven_a)] == [mine["id"]]
    assert vtn.get("/subscriptions", vtn.ven_b) == []
    moved = vtn.call("PUT", f"/subscriptions/{mine['id']}", {"clientName": "ven-a", "objectOperations": operations},
                     vtn.ven_a)
    assert "programID" not in moved and moved["clientID"] == "ven-a-client"

    bad(vtn, "POST", "/subscriptions", {"clientName": "c", "programID": "no-such", "objectOperations": []}, 400,
        "programID")
    bad(vtn, "POST", "/subscriptions", {"clientName": "c"}, 400, "objectOperations")
    bad(vtn, "POST", "/subscriptions", {"clientName": "c", "objectOperations": [
        {"objects": ["EVENT"], "operations": ["NOTIFY"], "callbackUrl": "https://x.example"}]}, 400,
        "objectOperations.0.operations.0")
    bad(vtn, "GET", f"/subscriptions/{mine['id']}", None, 403, who=vtn.ven_b)
    bad(vtn, "GET", "/subscriptions", None, 400, "objects.0", objects=["EVENTS"])
    bad(vtn, "PUT", f"/subscriptions/{mine['id']}", {"clientName": "b", "objectOperations": []}, 403, who=vtn.ven_b)
    bad(vtn, "DELETE", f"/subscriptions/{mine['id']}", None, 403, who=vtn.ven_b)
    assert vtn.call("DELETE", f"/subscriptions/{mine['id']}", who=vtn.ven_a)["id"] == mine["id"]
    bad(vtn, "GET", f"/subscriptions/{mine['id']}", None, 404)


# -- discovery, notifiers, tokens -----------------------------------------------------------------
def test_auth_server_notifiers_and_refused_mqtt_topics(vtn: Vtn) -> None:
    info = vtn.client.get(f"{B}/auth/server")                          # no token needed: it says where to get one
    assert info.status_code == 200 and info.json() == {"tokenURL": f"http://testserver{B}/auth/token"}
    assert vtn.client.post(info.json()["tokenURL"], data={"grant_type": "client_credentials", "client_id": BL[0],
                                                          "client_secret": BL[1]}).status_code == 200
    assert vtn.get("/notifiers") == {"WEBHOOK": True} == vtn.get("/notifiers", vtn.ven_a)
    assert problem(vtn.client.get(f"{B}/notifiers"), 401)
    topics = ("programs", "programs/p-1", "events", "programs/p-1/events", "reports", "subscriptions", "vens",
              "vens/v-1", "resources", "vens/v-1/events", "vens/v-1/programs", "vens/v-1/resources")
    for path in (f"/notifiers/mqtt/topics/{topic}" for topic in topics):
        refused = bad(vtn, "GET", path, None, 501, who=vtn.ven_a)
        assert "no MQTT notifier" in refused["detail"] and refused["type"] == "urn:flexfleet:problem:not-implemented"
        assert problem(vtn.client.get(f"{B}{path}"), 401)
    bad(vtn, "GET", "/notifiers/mqtt/topics/vens/a%20b", None, 400, "venID")
    bad(vtn, "POST", "/auth/server", {}, 405)
    document = vtn.client.get(f"{B}/openapi.json").json()
    assert len([op for path in document["paths"].values() for op in path.values()]) == 45


def test_token_scopes_of_310(vtn: Vtn) -> None:
    def grant(client: tuple[str, str], scope: str):
        return vtn.client.post(f"{B}/auth/token", data={"grant_type": "client_credentials", "client_id": client[0],
                                                        "client_secret": client[1], "scope": scope})

    ven = grant(VENS["ven-a"], "read_targets read_ven_objects write_reports")
    assert ven.status_code == 200 and ven.json()["scope"] == "read_all write_reports"
    assert vtn.get("/events", bearer(ven.json()["access_token"])) == []
    assert grant(BL, "read_ven_objects").json()["scope"] == "read_all"
    assert grant(VENS["ven-a"], "read_targets write_programs").json()["error"] == "invalid_scope"
    write_only = bearer(grant(BL, "write_programs").json()["access_token"])
    bad(vtn, "GET", "/programs", None, 403, who=write_only)
    basic = vtn.client.post(f"{B}/auth/token", data={"grant_type": "client_credentials"}, auth=(BL[0], "wrong"))
    assert basic.status_code == 401 and basic.json()["error"] == "invalid_client"


# -- who reads what --------------------------------------------------------------------------------
def test_a_ven_reads_only_events_with_targets_granted_to_it(vtn: Vtn) -> None:
    """read_targets: a VEN reads a targeted event only by asking for targets the business logic
    granted it (on its ven object or resources), and sees only those of the event's targets."""
    ven_a = vtn.ven("ven-a", ["ven-a", "g1"])["id"]
    vtn.post("/resources", {"objectType": "BL_RESOURCE_REQUEST", "clientID": "ven-a-client", "resourceName": "c1",
                            "venID": ven_a, "targets": ["feeder-7"]})
    pid = vtn.program()["id"]
    for_a = vtn.event(pid, eventName="a", targets=["ven-a"])["id"]
    for_b = vtn.event(pid, eventName="b", targets=["ven-b"])["id"]
    for_g1 = vtn.event(pid, eventName="g1", targets=["g1", "secret-group"])["id"]
    for_feeder = vtn.event(pid, eventName="feeder", targets=["feeder-7"])["id"]
    for_all = vtn.event(pid, eventName="all")["id"]
    # a 3.0.1 event for ven-a by name: its value is a 3.1.0 target, which ven-a was granted
    by_name = vtn.post("/events", {"programID": pid, "eventName": "301", "intervals": [INTERVAL],
                                   "targets": [{"type": "VEN_NAME", "values": ["ven-a"]}]}, base=B301)["id"]

    def seen(who: dict[str, str], *targets: str) -> dict[str, list | None]:
        return {e["id"]: e.get("targets") for e in vtn.get("/events", who, targets=list(targets))}

    assert seen(vtn.ven_a) == {for_all: None}                         # asking for no target: untargeted only
    assert seen(vtn.ven_a, "ven-a") == {for_a: ["ven-a"], by_name: ["ven-a"]}
    assert seen(vtn.ven_a, "g1") == {for_g1: ["g1"]}                   # "secret-group" is hidden
    assert seen(vtn.ven_a, "feeder-7") == {for_feeder: ["feeder-7"]}   # granted through its resource
    assert seen(vtn.ven_a, "ven-a", "g1") == {}                        # an event must have all asked targets
    assert seen(vtn.ven_a, "ven-b") == {} == seen(vtn.ven_a, "secret-group")   # not granted: nothing
    assert seen(vtn.ven_b, "ven-b") == {}                              # ven-b has no ven object: no grants
    assert seen(vtn.bl, "g1") == {for_g1: ["g1", "secret-group"]}      # the business logic sees all
    assert len(seen(vtn.bl)) == 6
    assert vtn.get(f"/events/{for_g1}", vtn.ven_a)["targets"] == ["g1"]
    assert vtn.get(f"/events/{for_all}", vtn.ven_b)["targets"] is None
    bad(vtn, "GET", f"/events/{for_b}", None, 403, who=vtn.ven_a)
    bad(vtn, "GET", f"/events/{for_a}", None, 403, who=vtn.ven_b)
    # the same rule for programs
    hidden = vtn.program("for-g1", targets=["g1", "secret-group"])["id"]
    assert [(p["id"], p["targets"]) for p in vtn.get("/programs", vtn.ven_a, targets=["g1"])] == [(hidden, ["g1"])]
    assert [p["id"] for p in vtn.get("/programs", vtn.ven_a)] == [pid]
    bad(vtn, "GET", f"/programs/{hidden}", None, 403, who=vtn.ven_b)


# -- one store, two versions ----------------------------------------------------------------------
def test_objects_written_in_one_version_read_in_the_other(vtn: Vtn) -> None:
    old = vtn.post("/programs", {"programName": "p301", "programLongName": "FCR-D up", "retailerName": "flexfleet",
                                 "country": "SE", "bindingEvents": True, "timeZoneOffset": "PT1H",
                                 "targets": [{"type": "GROUP", "values": ["g1", "g2"]}],
                                 "payloadDescriptors": [{"payloadType": "PRICE", "currency": "EUR"}]}, base=B301)
    as_310 = vtn.get(f"/programs/{old['id']}")
    models310.Program.model_validate(as_310)
    assert as_310["attributes"] == [{"type": "PROGRAM_LONG_NAME", "values": ["FCR-D up"]},
                                    {"type": "RETAILER_NAME", "values": ["flexfleet"]},
                                    {"type": "COUNTRY", "values": ["SE"]}, {"type": "BINDING_EVENTS", "values": [True]}]
    assert as_310["targets"] == ["g1", "g2"] and "programLongName" not in as_310 and "timeZoneOffset" not in as_310
    assert as_310["payloadDescriptors"] == [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "PRICE",
                                             "currency": "EUR", "units": None}]
    assert as_310["createdDateTime"] == old["createdDateTime"]

    new = vtn.program("p310", targets=["g1"], attributes=[{"type": "COUNTRY", "values": ["SE"]},
                                                          {"type": "LOCAL", "values": [False]},
                                                          {"type": "SITE_COUNT", "values": [12]}])
    as_301 = vtn.get(f"/programs/{new['id']}", base=B301)
    models301.Program.model_validate(as_301)
    assert (as_301["country"], as_301["localPrice"], as_301["programLongName"]) == ("SE", False, None)
    assert as_301["targets"] == [{"type": "TARGET", "values": ["g1"]}] and "attributes" not in as_301
    # the 3.0.1 target filter finds it by its TARGET type, the 3.1.0 one by its string
    assert [p["id"] for p in vtn.get("/programs", base=B301, targetType="TARGET", targetValues="g1")] == [new["id"]]
    assert {p["id"] for p in vtn.get("/programs", targets=["g1"])} == {old["id"], new["id"]}

    event = vtn.post("/events", {"programID": new["id"], "duration": "PT1H", "intervalPeriod": {"start": "0001-01-01"},
                                 "targets": ["ven-a"], "reportDescriptors": [
                                     {"payloadType": "USAGE", "targets": ["c1"], "reportIntervals": "SUB_INTERVALS"}]})
    event_301 = vtn.get(f"/events/{event['id']}", base=B301)
    models301.Event.model_validate(event_301)
    assert event_301["intervalPeriod"] == {"start": "0001-01-01T00:00:00Z"} and event_301["intervals"] == []
    assert "duration" not in event_301 and event_301["reportDescriptors"] == [
        {"payloadType": "USAGE", "readingType": None, "units": None, "targets": [{"type": "TARGET", "values": ["c1"]}]}]

    vtn.ven("ven-a", ["ven-a"])
    report = vtn.post("/reports", {"eventID": event["id"], "clientName": "ven-a", "resources": RESOURCES}, vtn.ven_a)
    report_301 = vtn.get(f"/reports/{report['id']}", vtn.ven_a, base=B301)
    models301.Report.model_validate(report_301)
    assert report_301["programID"] == new["id"] and "clientID" not in report_301
    old_event = vtn.post("/events", {"programID": old["id"], "intervals": [INTERVAL]}, base=B301)
    old_report = vtn.post("/reports", {"programID": old["id"], "eventID": old_event["id"], "clientName": "ven-a",
                                       "resources": RESOURCES}, vtn.ven_a, base=B301)
    assert vtn.get(f"/reports/{old_report['id']}", vtn.ven_a)["clientID"] == "ven-a-client"
    assert "programID" not in vtn.get(f"/reports/{old_report['id']}", vtn.ven_a)

    sub = vtn.post("/subscriptions", {"clientName": "c", "programID": old["id"], "objectOperations": [
        {"objects": ["EVENT"], "operations": ["POST", "PUT"], "callbackUrl": "https://x.example/cb"}]}, base=B301)
    sub_310 = vtn.get(f"/subscriptions/{sub['id']}")
    assert sub_310["objectOperations"][0]["operations"] == ["CREATE", "UPDATE"] and sub_310["clientID"] == "bl-client"

    ven_301 = vtn.post("/vens", {"venName": "ven-b", "targets": [{"type": "GROUP", "values": ["g2"]}]}, base=B301)
    vtn.post(f"/vens/{ven_301['id']}/resources", {"resourceName": "c-301"}, base=B301)
    vtn.post("/resources", {"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "c-310", "venID": ven_301["id"]},
             vtn.ven_b)
    ven_310 = vtn.get(f"/vens/{ven_301['id']}", vtn.ven_b)
    assert (ven_310["targets"], ven_310["clientID"], "resources" in ven_310) == (["g2"], "ven-b-client", False)
    listed = vtn.get(f"/vens/{ven_301['id']}", vtn.ven_b, base=B301)["resources"]
    assert [(r["resourceName"], "clientID" in r) for r in listed] == [("c-301", False), ("c-310", False)]
    assert [r["clientID"] for r in vtn.get("/resources", vtn.ven_b)] == ["ven-b-client", "ven-b-client"]


# -- notifications ------------------------------------------------------------------------------
def test_310_subscriptions_are_notified_in_310(db_url: str) -> None:
    register_all(db_url)
    app = create_app(db_url, secret=SECRET, delivery=Delivery(attempts=2, backoff_s=0.05, timeout_s=2))
    with TestClient(app) as client, Webhook() as hook:
        vtn = Vtn(client, *(bearer(token(client, *c, base_path=B)) for c in (BL, VENS["ven-a"], VENS["ven-b"])))
        vtn.ven("ven-a", ["g1"])
        pid = vtn.program()["id"]
        ops = ["CREATE", "UPDATE", "DELETE"]
        vtn.post("/subscriptions", {"clientName": "bl", "objectOperations": [
            {"objects": ["EVENT"], "operations": ops, "callbackUrl": hook.url + "?bl", "bearerToken": "bl-cb"}]})
        vtn.post("/subscriptions", {"clientName": "ven-a", "programID": pid, "objectOperations": [
            {"objects": ["EVENT"], "operations": ops, "callbackUrl": hook.url + "?ven-a"}]}, vtn.ven_a)
        vtn.post("/subscriptions", {"clientName": "old", "programID": pid, "objectOperations": [
            {"objects": ["EVENT"], "operations": ["POST"], "callbackUrl": hook.url + "?301"}]}, base=B301)
        for_g1 = vtn.event(pid, eventName="g1", targets=["g1", "secret-group"])
        vtn.event(pid, eventName="b", targets=["ven-b"])
        vtn.call("PUT", f"/events/{for_g1['id']}", {"programID": pid, "eventName": "g1b", "targets": ["g1"]})
        vtn.call("DELETE", f"/events/{for_g1['id']}")
        hook.wait_for(9)
        app.state.notifier.drain()
        time.sleep(0.2)
        received = list(hook.received)
    by_listener: dict[str, list[tuple[str, str, object]]] = {}
    for body, headers in received:
        listener = "bl" if headers.get("Authorization") == "Bearer bl-cb" else (
            "301" if body["operation"] in ("POST", "PUT") else "ven-a")
        by_listener.setdefault(listener, []).append((body["operation"], body["object"]["eventName"],
                                                     body["object"].get("targets")))
    assert sorted(by_listener["bl"]) == [("CREATE", "b", ["ven-b"]), ("CREATE", "g1", ["g1", "secret-group"]),
                                         ("DELETE", "g1b", ["g1"]), ("UPDATE", "g1b", ["g1"])]
    # ven-a hears of what it may read, with the targets granted to it only
    assert sorted(by_listener["ven-a"]) == [("CREATE", "g1", ["g1"]), ("DELETE", "g1b", ["g1"]),
                                            ("UPDATE", "g1b", ["g1"])]
    # the 3.0.1 subscription hears in 3.0.1: HTTP methods and typed targets
    assert sorted(by_listener["301"]) == [("POST", "b", [{"type": "TARGET", "values": ["ven-b"]}]),
                                          ("POST", "g1", [{"type": "TARGET", "values": ["g1", "secret-group"]}])]
    for body, _ in received:
        if body["operation"] in ("CREATE", "UPDATE", "DELETE"):
            models310.Notification.model_validate(body)
            models310.Event.model_validate(body["object"])


# -- end to end with openadr3-client's 3.1.0 clients ----------------------------------------------------------
def test_openadr3_client_310_round_trip(db_url: str, monkeypatch) -> None:
    """BL and VEN clients of openadr3-client (oadr310) over HTTP: the token URL discovered at
    /auth/server, a VEN registering itself, the business logic granting it a target, the VEN
    finding its event by that target, reporting on it, and hearing of events by webhook."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    register_all(db_url)
    app = create_app(db_url, secret=SECRET, delivery=Delivery(attempts=3, backoff_s=0.05))
    start = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    with serve(app) as base, Webhook() as hook:
        url = f"{base}{B}"
        bl = BusinessLogicHttpClientFactory.create_http_bl_client(
            vtn_base_url=url, client_id=BL[0], client_secret=BL[1], allow_insecure_http=True,
            version=OADRVersion.OADR_310)
        ven = VirtualEndNodeHttpClientFactory.create_http_ven_client(
            vtn_base_url=url, client_id=VENS["ven-a"][0], client_secret=VENS["ven-a"][1], allow_insecure_http=True,
            version=OADRVersion.OADR_310)
        assert ven.auth.get_auth_server().token_url == f"{url}/auth/token"

        own = ven.vens.create_ven(NewVenVenRequest(ven_name="ven-a"))
        assert own.client_id == "ven-a-client" and own.targets is None
        granted = bl.vens.update_ven_by_id(own.id, VenUpdateBlRequest(ven_name="ven-a", client_id="ven-a-client",
                                                                      targets=("site-7",)))
        assert granted.targets == ("site-7",)
        charger = ven.resources.create_resource(NewResourceVenRequest(resource_name="charger-1", ven_id=own.id))
        assert charger.client_id == "ven-a-client"

        program = bl.programs.create_program(NewProgram(program_name="fcr-d-up-se3"))
        ven.subscriptions.create_subscription(NewSubscription(
            client_name="ven-a", program_id=program.id, object_operations=(ObjectOperation(
                objects=("EVENT",), operations=("POST",), callback_url=hook.url, bearer_token="hook-token"),)))
        intervals = tuple(Interval(id=i, interval_period=IntervalPeriod(
            start=start + i * timedelta(minutes=15), duration=timedelta(minutes=15)),
            payloads=(EventPayload(type="IMPORT_CAPACITY_LIMIT", values=(7.4 - i,)),)) for i in range(4))
        event = bl.events.create_event(NewEvent(
            program_id=program.id, event_name="activation-1", targets=("site-7", "fcr-pool"),
            payload_descriptors=(EventPayloadDescriptor(payload_type="IMPORT_CAPACITY_LIMIT", units="KW"),),
            intervals=intervals))
        other = bl.events.create_event(NewEvent(program_id=program.id, event_name="other-site", targets=("site-9",),
                                                intervals=intervals[:1]))

        found = ven.events.get_events(target=TargetFilter(targets=["site-7"]), pagination=None, program_id=program.id)
        assert [(e.id, e.targets) for e in found] == [(event.id, ("site-7",))]          # "fcr-pool" is hidden
        assert [i.payloads[0].values[0] for i in found[0].intervals] == [7.4, 6.4, 5.4, 4.4]
        assert ven.events.get_events(target=TargetFilter(targets=["site-9"]), pagination=None, program_id=None) == ()
        assert ven.events.get_event_by_id(event.id).targets == ("site-7",)
        with pytest.raises(requests.HTTPError) as denied:
            ven.events.get_event_by_id(other.id)
        assert denied.value.response.status_code == 403

        report = ven.reports.create_report(NewReport(
            event_id=event.id, client_name="ven-a", report_name="activation-1-delivery",
            resources=(ReportResource(resource_name="charger-1", intervals=(Interval(
                id=0, interval_period=IntervalPeriod(start=start, duration=timedelta(minutes=15)),
                payloads=(ReportPayload(type="USAGE", values=(3.1,)),)),)),)))
        assert report.client_id == "ven-a-client"
        assert [r.id for r in bl.reports.get_reports(pagination=None, program_id=program.id, event_id=None,
                                                     client_name="ven-a")] == [report.id]
        hook.wait_for(1)
        app.state.notifier.drain()
        time.sleep(0.2)
        received = list(hook.received)
    # the VEN's subscription hears of its site's event, not of the other site's
    assert [(b["operation"], b["object"]["id"], b["object"]["targets"]) for b, _ in received] == [
        ("CREATE", event.id, ["site-7"])]
    assert received[0][1]["Authorization"] == "Bearer hook-token"
