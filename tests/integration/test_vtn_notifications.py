"""Subscriptions' webhook notifications against the real PostgreSQL and a real HTTP callback
server on this machine: what is sent for which change, with the subscription's bearer token;
retries after failures; a callback that never answers costs the writing request nothing; and a
VEN's subscription hears only of what that VEN may read."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from vtn_support import BL, SECRET, VENS, Webhook, bearer, free_port, register_all, token

from flexfleet.openadr.models301 import Notification
from services.dispatcher.vtn import BASE_PATH, create_app
from services.dispatcher.vtn.notifier import Delivery

pytestmark = pytest.mark.integration

B = BASE_PATH
INTERVALS = [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}]


@dataclass
class Vtn:
    app: FastAPI
    client: TestClient
    bl: dict[str, str]
    ven_a: dict[str, str]

    def post(self, path: str, body: dict, who: dict[str, str] | None = None) -> dict:
        response = self.client.post(f"{B}{path}", json=body, headers=who or self.bl)
        assert response.status_code == 201, response.text
        return response.json()

    def subscribe(self, program_id: str, url: str, objects: list[str], operations: list[str],
                  who: dict[str, str] | None = None, **extra: object) -> dict:
        return self.post("/subscriptions", {"clientName": "listener", "programID": program_id, "objectOperations": [
            {"objects": objects, "operations": operations, "callbackUrl": url, **extra}]}, who)

    def drain(self) -> None:
        self.app.state.notifier.drain()


@pytest.fixture
def vtn(db_url: str) -> Iterator[Vtn]:
    register_all(db_url)
    app = create_app(db_url, secret=SECRET, delivery=Delivery(attempts=3, backoff_s=0.05, timeout_s=2))
    with TestClient(app) as client:
        yield Vtn(app, client, bearer(token(client, *BL)), bearer(token(client, *VENS["ven-a"])))


def test_event_changes_are_notified_with_the_bearer_token(vtn: Vtn) -> None:
    program = vtn.post("/programs", {"programName": "fcr-d"})["id"]
    other_program = vtn.post("/programs", {"programName": "other"})["id"]
    with Webhook() as hook:
        vtn.subscribe(program, hook.url, ["EVENT"], ["CREATE", "UPDATE", "DELETE"], bearerToken="cb-secret")
        event = vtn.post("/events", {"programID": program, "eventName": "e1", "intervals": INTERVALS})
        vtn.post("/events", {"programID": other_program, "intervals": INTERVALS})   # not this program's
        vtn.post("/programs", {"programName": "not-an-event"})                        # not an event
        updated = vtn.client.put(f"{B}/events/{event['id']}", json={**event, "eventName": "e1b"},
                                 headers=vtn.bl).json()
        deleted = vtn.client.delete(f"{B}/events/{event['id']}", headers=vtn.bl).json()
        received = hook.wait_for(3)
        vtn.drain()
        time.sleep(0.2)
        assert len(hook.received) == 3
    for body, _ in received:
        Notification.model_validate(body)                                   # the spec's notification
    by_operation = {body["operation"]: (body, headers) for body, headers in received}
    assert set(by_operation) == {"POST", "PUT", "DELETE"}
    assert by_operation["POST"][0] == {"objectType": "EVENT", "operation": "POST", "object": event, "targets": None}
    assert by_operation["PUT"][0]["object"] == updated
    assert by_operation["DELETE"][0]["object"] == deleted
    assert all(headers["Authorization"] == "Bearer cb-secret" for _, headers in received)
    assert all(headers["Content-Type"] == "application/json" for _, headers in received)


def test_http_method_operations_and_other_object_types(vtn: Vtn) -> None:
    """openadr3-client names operations by HTTP method; VEN and RESOURCE changes belong to no
    program, so a subscription to any program hears of them."""
    program = vtn.post("/programs", {"programName": "fcr-d"})["id"]
    with Webhook() as hook:
        vtn.subscribe(program, hook.url, ["VEN", "RESOURCE", "PROGRAM"], ["POST", "PUT"])
        ven = vtn.post("/vens", {"venName": "ven-x"})
        vtn.post(f"/vens/{ven['id']}/resources", {"resourceName": "charger"})
        vtn.client.put(f"{B}/programs/{program}", json={"programName": "fcr-d", "country": "SE"}, headers=vtn.bl)
        vtn.client.delete(f"{B}/vens/{ven['id']}", headers=vtn.bl)                  # DELETE: not subscribed
        hook.wait_for(3)
        vtn.drain()
    assert sorted((b["objectType"], b["operation"]) for b, _ in hook.received) == [
        ("PROGRAM", "PUT"), ("RESOURCE", "POST"), ("VEN", "POST")]


def test_subscription_targets_filter_callbacks(vtn: Vtn) -> None:
    program = vtn.post("/programs", {"programName": "fcr-d"})["id"]
    with Webhook() as hook:
        vtn.subscribe(program, hook.url, ["EVENT"], ["CREATE"])
        vtn.post("/subscriptions", {"clientName": "g1-only", "programID": program, "targets": [
            {"type": "GROUP", "values": ["g1"]}], "objectOperations": [
            {"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": hook.url + "?g1"}]})
        for name, targets in (("g1", [{"type": "GROUP", "values": ["g1"]}]),
                              ("g2", [{"type": "GROUP", "values": ["g2"]}]), ("all", None)):
            vtn.post("/events", {"programID": program, "eventName": name, "targets": targets,
                                 "intervals": INTERVALS})
        hook.wait_for(5)
        vtn.drain()
    names = sorted(body["object"]["eventName"] for body, _ in hook.received)
    assert names == ["all", "all", "g1", "g1", "g2"]


def test_failed_deliveries_are_retried(vtn: Vtn) -> None:
    program = vtn.post("/programs", {"programName": "fcr-d"})["id"]
    with Webhook(fail_first=2) as hook:
        vtn.subscribe(program, hook.url, ["EVENT"], ["CREATE"])
        vtn.post("/events", {"programID": program, "intervals": INTERVALS})
        received = hook.wait_for(1)
        vtn.drain()
    assert len(received) == 1 and hook.attempts == 3


def test_an_unreachable_callback_is_retried_then_dropped(vtn: Vtn, caplog) -> None:
    program = vtn.post("/programs", {"programName": "fcr-d"})["id"]
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    vtn.subscribe(program, dead, ["EVENT"], ["CREATE"])
    with caplog.at_level(logging.WARNING, logger="services.dispatcher.vtn.notifier"):
        assert vtn.post("/events", {"programID": program, "intervals": INTERVALS})["objectType"] == "EVENT"
        vtn.drain()
    failures = [r.getMessage() for r in caplog.records if "nobody-listens" in r.getMessage()]
    assert sum("failed (attempt" in m for m in failures) == 3
    assert any("dropped after 3 attempt(s)" in m for m in failures)


def test_a_hanging_callback_does_not_slow_the_request(db_url: str, caplog) -> None:
    register_all(db_url)
    app = create_app(db_url, secret=SECRET, delivery=Delivery(attempts=2, backoff_s=0.05, timeout_s=1.0))
    with TestClient(app) as client, Webhook(delay_s=3.0) as hook:
        bl = bearer(token(client, *BL))
        program = client.post(f"{B}/programs", json={"programName": "p"}, headers=bl).json()["id"]
        client.post(f"{B}/subscriptions", headers=bl, json={
            "clientName": "c", "programID": program,
            "objectOperations": [{"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": hook.url}]})
        with caplog.at_level(logging.WARNING, logger="services.dispatcher.vtn.notifier"):
            started = time.monotonic()
            created = client.post(f"{B}/events", json={"programID": program, "intervals": []}, headers=bl)
            took = time.monotonic() - started
            app.state.notifier.drain()
    assert created.status_code == 201 and took < 1.0, took
    assert sum("ReadTimeout" in r.getMessage() for r in caplog.records) == 2


def test_callbacks_go_only_to_allowed_hosts(db_url: str, caplog) -> None:
    register_all(db_url)
    app = create_app(db_url, secret=SECRET, delivery=Delivery(allowed_hosts=frozenset({"vtn-listener.internal"})))
    with TestClient(app) as client, Webhook() as hook:
        bl = bearer(token(client, *BL))
        program = client.post(f"{B}/programs", json={"programName": "p"}, headers=bl).json()["id"]
        client.post(f"{B}/subscriptions", headers=bl, json={
            "clientName": "c", "programID": program,
            "objectOperations": [{"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": hook.url}]})
        with caplog.at_level(logging.WARNING, logger="services.dispatcher.vtn.notifier"):
            client.post(f"{B}/events", json={"programID": program, "intervals": []}, headers=bl)
            app.state.notifier.drain()
        assert hook.attempts == 0
    assert any("not among the allowed callback hosts" in r.getMessage() for r in caplog.records)


def test_a_vens_subscription_hears_only_of_what_it_may_read(vtn: Vtn) -> None:
    vtn.post("/vens", {"venName": "ven-a"})
    ven_b = vtn.post("/vens", {"venName": "ven-b"})
    program = vtn.post("/programs", {"programName": "fcr-d"})["id"]
    with Webhook() as hook:
        vtn.subscribe(program, hook.url, ["EVENT", "VEN", "RESOURCE"], ["CREATE", "UPDATE"], who=vtn.ven_a)
        for name, ven_name in (("for-a", "ven-a"), ("for-b", "ven-b")):
            vtn.post("/events", {"programID": program, "eventName": name, "intervals": INTERVALS,
                                 "targets": [{"type": "VEN_NAME", "values": [ven_name]}]})
        vtn.post("/events", {"programID": program, "eventName": "for-all", "intervals": INTERVALS})
        vtn.post(f"/vens/{ven_b['id']}/resources", {"resourceName": "b-charger"})
        vtn.client.put(f"{B}/vens/{ven_b['id']}", json={"venName": "ven-b", "attributes": []}, headers=vtn.bl)
        hook.wait_for(2)
        vtn.drain()
        time.sleep(0.2)
    assert sorted(b["object"]["eventName"] for b, _ in hook.received) == ["for-a", "for-all"]
