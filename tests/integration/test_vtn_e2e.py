"""End to end with the real third-party client, openadr3-client, speaking HTTP to the VTN in a
real uvicorn server: the business logic creates a program and an event with intervals targeted
at one VEN; that VEN's client finds it with target filters (and the other VEN's does not);
the VEN posts a report; and a subscription's webhook, a small HTTP server in this test,
receives the notifications the VEN subscribed to (openadr3-client lets a VEN, not the business
logic, write subscriptions).

openadr3-client gets its tokens with OAuth2 client credentials (requests-oauthlib): HTTP Basic
client authentication against the token URL given to its factory. oauthlib refuses plain-HTTP
token URLs unless OAUTHLIB_INSECURE_TRANSPORT is set, which this test does for its loopback
server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from openadr3_client._models.common.interval import Interval
from openadr3_client._models.common.interval_period import IntervalPeriod
from openadr3_client.bl.http_factory import BusinessLogicHttpClientFactory
from openadr3_client.oadr301._vtn.interfaces.filters import PaginationFilter, TargetFilter
from openadr3_client.oadr301.models.event.event import NewEvent
from openadr3_client.oadr301.models.event.event_payload import EventPayload, EventPayloadDescriptor
from openadr3_client.oadr301.models.program.program import NewProgram
from openadr3_client.oadr301.models.report.report import NewReport, ReportResource
from openadr3_client.oadr301.models.report.report_payload import ReportPayload
from openadr3_client.oadr301.models.subscriptions.subscription import NewSubscription, ObjectOperation
from openadr3_client.oadr301.models.target import Target
from openadr3_client.oadr301.models.ven.ven import NewVen
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
from openadr3_client.version import OADRVersion
from vtn_support import BL, SECRET, VENS, Webhook, register_all, serve

from services.dispatcher.vtn import BASE_PATH, create_app
from services.dispatcher.vtn.notifier import Delivery

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)


@pytest.fixture
def vtn_url(db_url: str, monkeypatch) -> Iterator[tuple[str, object]]:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    register_all(db_url)
    app = create_app(db_url, secret=SECRET, delivery=Delivery(attempts=3, backoff_s=0.05))
    with serve(app) as base:
        yield f"{base}{BASE_PATH}", app


def bl_client(base_url: str):
    return BusinessLogicHttpClientFactory.create_http_bl_client(
        vtn_base_url=base_url, client_id=BL[0], client_secret=BL[1], token_url=f"{base_url}/auth/token",
        version=OADRVersion.OADR_301)


def ven_client(base_url: str, ven_name: str):
    client_id, secret = VENS[ven_name]
    return VirtualEndNodeHttpClientFactory.create_http_ven_client(
        vtn_base_url=base_url, client_id=client_id, client_secret=secret, token_url=f"{base_url}/auth/token",
        version=OADRVersion.OADR_301)


def test_business_logic_and_ven_clients_round_trip(vtn_url) -> None:
    base_url, app = vtn_url
    bl = bl_client(base_url)
    ven_a, ven_b = ven_client(base_url, "ven-a"), ven_client(base_url, "ven-b")

    # Each VEN registers itself; the business logic sees both.
    own = ven_a.vens.create_ven(NewVen(ven_name="ven-a"))
    ven_b.vens.create_ven(NewVen(ven_name="ven-b"))
    assert {v.ven_name for v in bl.vens.get_vens(ven_name=None, target=None, pagination=None)} == {"ven-a", "ven-b"}
    assert [v.id for v in ven_a.vens.get_vens(ven_name=None, target=None, pagination=None)] == [own.id]

    program = bl.programs.create_program(NewProgram(program_name="fcr-d-up-se3", program_long_name="FCR-D up SE3"))
    with Webhook() as hook:
        # openadr3-client gives the business logic read-only subscriptions; a VEN subscribes.
        ven_a.subscriptions.create_subscription(NewSubscription(
            client_name="ven-a", program_id=program.id, object_operations=(ObjectOperation(
                objects=("EVENT", "REPORT"), operations=("POST",), callback_url=hook.url,
                bearer_token="hook-token"),)))
        event = bl.events.create_event(NewEvent(
            program_id=program.id, event_name="activation-1",
            targets=(Target(type="VEN_NAME", values=("ven-a",)),),
            payload_descriptors=(EventPayloadDescriptor(payload_type="IMPORT_CAPACITY_LIMIT", units="KW"),),
            interval_period=IntervalPeriod(start=START, duration=timedelta(minutes=15)),
            intervals=tuple(Interval(id=i, interval_period=IntervalPeriod(
                start=START + i * timedelta(minutes=15), duration=timedelta(minutes=15)),
                payloads=(EventPayload(type="IMPORT_CAPACITY_LIMIT", values=(7.4 - i,)),)) for i in range(4))))
        assert event.id and len(event.intervals) == 4
        for_b = bl.events.create_event(NewEvent(program_id=program.id, event_name="activation-b",
                                                targets=(Target(type="VEN_NAME", values=("ven-b",)),), intervals=(
            Interval(id=0, payloads=(EventPayload(type="IMPORT_CAPACITY_LIMIT", values=(3.7,)),)),)))

        mine = TargetFilter(target_type="VEN_NAME", target_values=["ven-a"])
        found = ven_a.events.get_events(target=mine, pagination=PaginationFilter(skip=0, limit=10),
                                        program_id=program.id)
        assert [e.id for e in found] == [event.id]
        assert [i.payloads[0].values[0] for i in found[0].intervals] == [7.4, 6.4, 5.4, 4.4]
        assert found[0].interval_period.start == START
        assert ven_a.programs.get_program_by_id(program.id).program_name == "fcr-d-up-se3"
        assert [e.id for e in ven_b.events.get_events(target=None, pagination=None, program_id=None)] == [for_b.id]
        assert ven_a.events.get_events(target=TargetFilter(target_type="VEN_NAME", target_values=["ven-b"]),
                                       pagination=None, program_id=None) == ()
        with pytest.raises(requests.HTTPError) as denied:
            ven_b.events.get_event_by_id(event.id)
        assert denied.value.response.status_code == 403

        report = ven_a.reports.create_report(NewReport(
            program_id=program.id, event_id=event.id, client_name="ven-a", report_name="activation-1-delivery",
            resources=(ReportResource(resource_name="charger-1", intervals=(Interval(
                id=0, interval_period=IntervalPeriod(start=START, duration=timedelta(minutes=15)),
                payloads=(ReportPayload(type="USAGE", values=(3.1,)),)),)),)))
        assert report.id and report.client_name == "ven-a"
        assert [r.id for r in bl.reports.get_reports(pagination=None, program_id=program.id, event_id=event.id,
                                                     client_name=None)] == [report.id]
        with pytest.raises(requests.HTTPError) as denied:
            ven_b.reports.get_report_by_id(report.id)
        assert denied.value.response.status_code == 403

        hook.wait_for(2)
        app.state.notifier.drain()
        received = list(hook.received)
    # the event for ven-b is not notified to ven-a's subscription
    kinds = sorted((body["objectType"], body["operation"], body["object"]["id"]) for body, _ in received)
    assert kinds == sorted([("EVENT", "POST", event.id), ("REPORT", "POST", report.id)])
    assert all(headers["Authorization"] == "Bearer hook-token" for _, headers in received)
