"""Conformance of the VTN to the OFFICIAL OpenADR 3.0.1 OpenAPI document (not the one FastAPI
generates): schemathesis generates valid and invalid requests for every operation of
shared/specs/openadr3/3.0.1/openadr3.yaml, sends them to the VTN running in a real uvicorn
server, and checks that no answer is a server error, every status code is one the spec
documents for the operation, and every body matches the spec's schema and declared media type.
(negative_data_rejection is not among the checks: the aiming below turns some invalid cases
valid behind schemathesis's back, and the VTN ignores query parameters it does not know.)

Requests carry a business-logic token, except report writes: the spec gives write_reports to
VENs only, so those carry the token of VEN "ven-a". So that generated requests reach stored
objects rather than only 404s, half of the cases have their path ids, and the ids their bodies
refer to, replaced by those of a program, event, ven, resource, report and subscription made
beforehand (and the report's clientName by "ven-a"); a DELETE's by one made for it; and half
of the token requests carry a registered client's credentials. Generated subscriptions name
callbacks anywhere, so the VTN here may only call back this machine.

Schemathesis runs its examples and fuzzing phases, 20 cases per operation (8 for the deep
event and report bodies); its coverage phase is left out for time, not for a defect: its
thousands of boundary cases take minutes on two cores.

The spec defect that bears on these checks (all found: services/dispatcher/vtn/README.md): 401
is documented for no operation, although every one but /auth/token requires a bearer token.
The test always sends a valid token, so the VTN's 401s are not exercised here;
test_vtn_security.py covers them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from vtn_support import BL, call_and_validate, post_id, running_vtn

from services.dispatcher.vtn import BASE_PATH

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[3] / "shared" / "specs" / "openadr3" / "3.0.1" / "openadr3.yaml"
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
# Operations whose bodies are deep (intervals of payloads): generating them dominates the time.
DEEP = ["createEvent", "updateEvent", "createReport", "updateReport"]

schema = schemathesis.openapi.from_path(SPEC)
schema.config.phases.update(phases=["examples", "fuzzing"])
shallow_operations = schema.exclude(operation_id=DEEP)
deep_operations = schema.include(operation_id=DEEP)




def _fresh(vtn: dict, kind: str) -> str:
    """A new object of a kind, for a DELETE to remove, under the seeded program or ven."""
    ids, name = vtn["ids"], f"fresh-{uuid.uuid4().hex[:8]}"
    bodies = {
        "programID": ("/programs", {"programName": name}),
        "eventID": ("/events", {"programID": ids["programID"], "intervals": []}),
        "venID": ("/vens", {"venName": name}),
        "resourceID": (f"/vens/{ids['venID']}/resources", {"resourceName": name}),
        "reportID": ("/reports", {"programID": ids["programID"], "eventID": ids["eventID"], "clientName": "ven-a",
                                  "resources": []}),
        "subscriptionID": ("/subscriptions", {"clientName": name, "programID": ids["programID"],
                                              "objectOperations": []}),
    }
    path, body = bodies[kind]
    return post_id(vtn, path, body, vtn["ven"] if kind == "reportID" else None)


def _seed(vtn: dict) -> dict[str, str]:
    """One object of each kind; their ids by the names the spec gives them."""
    ids = vtn["ids"]
    ids["programID"] = post_id(vtn, "/programs", {"programName": "seed-program"})
    ids["eventID"] = post_id(vtn, "/events", {"programID": ids["programID"], "intervals": [{"id": 0, "payloads": [
        {"type": "PRICE", "values": [0.17]}]}]})
    ids["venID"] = post_id(vtn, "/vens", {"venName": "ven-a"})
    for kind in ("resourceID", "reportID", "subscriptionID"):
        ids[kind] = _fresh(vtn, kind)
    return ids


@pytest.fixture(scope="module")
def live_vtn(pg_server, _template) -> Iterator[dict]:
    """A VTN on a database of this module's own: its base URL, tokens and seeded ids."""
    with running_vtn(pg_server.url, _template, BASE_PATH) as served:
        _seed(served)
        yield served


def _aim_at_seeded(case, vtn: dict) -> None:
    """Point half of the cases at the seeded objects (a DELETE at a fresh one, so the seed
    stays) and half of the token requests at a registered client."""
    if vtn["random"].random() < 0.5:
        return
    ids = vtn["ids"]
    for name in case.path_parameters or {}:
        if name in ids:
            last = name == list(case.path_parameters)[-1]
            case.path_parameters[name] = _fresh(vtn, name) if case.method == "DELETE" and last else ids[name]
    if case.operation.path == "/auth/token" and isinstance(case.body, dict):
        case.body.update(client_id=BL[0], client_secret=BL[1])
    elif isinstance(case.body, dict):
        for name in ("programID", "eventID"):
            if name in case.body:
                case.body[name] = ids[name]
        if case.operation.path.startswith("/reports") and "clientName" in case.body:
            case.body["clientName"] = "ven-a"


def _check(case, vtn: dict) -> None:
    _aim_at_seeded(case, vtn)
    call_and_validate(case, vtn, CHECKS)


@shallow_operations.parametrize()
@settings(max_examples=20, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_vtn_conforms_to_the_official_spec(case, live_vtn) -> None:
    _check(case, live_vtn)


@deep_operations.parametrize()
@settings(max_examples=8, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_vtn_conforms_to_the_official_spec_for_events_and_reports(case, live_vtn) -> None:
    _check(case, live_vtn)
