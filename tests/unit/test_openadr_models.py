"""The OpenADR 3.0.1 models against the spec's rules, and the subscription matching of
notifications, without I/O."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flexfleet.openadr.models301 import Event, Program, Report, Subscription, Ven
from flexfleet.openadr.notifications import Callback, Change, callbacks, deliverable, notification


def test_optional_members_that_are_not_nullable_are_left_out() -> None:
    body = Program(programName="p", intervalPeriod=None, timeZoneOffset=None).body()
    assert "intervalPeriod" not in body and "timeZoneOffset" not in body and "id" not in body
    assert body["programLongName"] is None and body["targets"] is None
    event = Event.model_validate({"programID": "p1", "intervals": [
        {"id": 0, "intervalPeriod": {"start": "2026-11-25T16:00:00+01:00", "duration": "PT15M",
                                     "randomizeStart": None}, "payloads": [{"type": "PRICE", "values": [0.17]}]}]})
    assert event.body()["intervals"][0] == {"id": 0, "intervalPeriod": {
        "start": "2026-11-25T16:00:00+01:00", "duration": "PT15M"}, "payloads": [{"type": "PRICE", "values": [0.17]}]}


def test_values_keep_their_json_type() -> None:
    values = [True, 1, 1.5, "1", {"x": 1.0, "y": 2.0}]
    ven = Ven.model_validate({"venName": "v", "attributes": [{"type": "MIXED", "values": values}]})
    assert ven.body()["attributes"][0]["values"] == values
    assert [type(v) for v in ven.body()["attributes"][0]["values"][:4]] == [bool, int, float, str]


def test_unknown_members_are_ignored() -> None:
    assert "colour" not in Program.model_validate({"programName": "p", "colour": "red"}).body()


@pytest.mark.parametrize(("model", "body", "field"), [
    (Program, {"programName": "p", "timeZoneOffset": "PT"}, ("timeZoneOffset",)),
    # the spec's patterns mean what JSON Schema means: no final newline, ASCII digits
    (Program, {"programName": "p", "timeZoneOffset": "PT1H\n"}, ("timeZoneOffset",)),
    (Program, {"programName": "p", "timeZoneOffset": "P\u0661D"}, ("timeZoneOffset",)),
    (Event, {"programID": "p1\n", "intervals": []}, ("programID",)),
    # strict JSON types: no "5" for an integer, no number for a date-time
    (Event, {"programID": "p", "intervals": [{"id": "5", "payloads": []}]}, ("intervals", 0, "id")),
    (Event, {"programID": "p", "priority": True, "intervals": []}, ("priority",)),
    (Program, {"programName": "p", "intervalPeriod": {"start": 1764000000}}, ("intervalPeriod", "start")),
    (Program, {"programName": "p", "bindingEvents": "yes"}, ("bindingEvents",)),
    (Program, {"programName": "p", "programDescriptions": [{"URL": "https://x.org/\n"}]},
     ("programDescriptions", 0, "URL")),
    (Program, {"programName": "p", "intervalPeriod": {"start": "2026-11-25T16:00:00"}}, ("intervalPeriod", "start")),
    (Event, {"programID": "a b", "intervals": []}, ("programID",)),
    (Event, {"programID": "p", "intervals": [{"id": 0, "payloads": [{"type": "P", "values": [float("inf")]}]}]},
     ("intervals", 0, "payloads", 0, "values", 0)),
    (Report, {"programID": "p", "eventID": "e", "clientName": "", "resources": []}, ("clientName",)),
    (Subscription, {"clientName": "c", "programID": "p", "objectOperations": [
        {"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": "relative/path"}]},
     ("objectOperations", 0, "callbackUrl")),
    (Ven, {"venName": "v\x00"}, ("venName",)),
])
def test_invalid_bodies_name_the_member(model, body: dict, field: tuple) -> None:
    with pytest.raises(ValidationError) as err:
        model.model_validate(body)
    assert err.value.errors()[0]["loc"][:len(field)] == field


def subscription(**extra: object) -> dict:
    return {"programID": "p1", "objectOperations": [
        {"objects": ["EVENT", "REPORT"], "operations": ["CREATE", "UPDATE"], "callbackUrl": "http://h/a",
         "bearerToken": "t"},
        {"objects": ["EVENT"], "operations": ["POST", "DELETE"], "callbackUrl": "http://h/a", "bearerToken": "t"},
        {"objects": ["VEN"], "operations": ["DELETE"], "callbackUrl": "http://h/v"}], **extra}


def test_which_callbacks_a_change_calls() -> None:
    created = Change("EVENT", "POST", {"id": "e1", "programID": "p1", "targets": None})
    assert callbacks(subscription(), created) == [Callback("http://h/a", "t")], "each callback once"
    assert callbacks(subscription(), Change("EVENT", "DELETE", {"programID": "p1"})) == [Callback("http://h/a", "t")]
    assert callbacks(subscription(), Change("EVENT", "POST", {"programID": "p2"})) == []
    assert callbacks(subscription(), Change("PROGRAM", "PUT", {"id": "p1"})) == []
    assert callbacks(subscription(), Change("VEN", "DELETE", {"venName": "v"})) == [Callback("http://h/v", None)]
    assert callbacks(subscription(), Change("VEN", "POST", {"venName": "v"})) == []


def test_subscription_targets_filter_changes() -> None:
    g1 = subscription(targets=[{"type": "GROUP", "values": ["g1"]}])
    assert callbacks(g1, Change("EVENT", "POST", {"programID": "p1", "targets": [{"type": "GROUP", "values": ["g1"]}]}))
    assert not callbacks(g1, Change("EVENT", "POST", {"programID": "p1",
                                                      "targets": [{"type": "GROUP", "values": ["g2"]}]}))
    assert callbacks(g1, Change("EVENT", "POST", {"programID": "p1", "targets": None}))


def test_notification_body_and_deliverable_urls() -> None:
    change = Change("REPORT", "PUT", {"id": "r", "programID": "p1"})
    assert notification(change) == {"objectType": "REPORT", "operation": "PUT",
                                    "object": {"id": "r", "programID": "p1"}, "targets": None}
    assert deliverable("https://example.org/cb", None) is None
    assert deliverable("https://example.org/cb", frozenset({"127.0.0.1"})) is not None
    assert deliverable("http://127.0.0.1:8080/cb", frozenset({"127.0.0.1"})) is None
    assert deliverable("urn:isbn:1", None) is not None and deliverable("http://[::1", None) is not None
