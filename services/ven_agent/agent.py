"""The site agent: one site's OpenADR 3.0.1 VEN, through openadr3-client's VEN client.

`SiteAgent` registers its VEN (found by venName, created when absent) and its resources (one
per charger/vehicle pair), subscribes to event notifications of every program with a webhook
(`services.ven_agent.webhook`), and polls its events (`VEN_NAME` target filter) as the
fallback; it parses each event with `flexfleet.dispatch.signals` and keeps the last good
version (an event that does not parse is logged with the member at fault and not acted on);
and it posts the reports the runtime builds (`services.ven_agent.layout`), keeping any the
VTN did not take for the next try.

openadr3-client is synchronous: the agents run in the simulation's own thread (or a thread
pool), never on an event loop. Its report model cannot express a report payload descriptor
(it reuses the event's: objectType EVENT_PAYLOAD_DESCRIPTOR, no readingType), which the VTN
rightly refuses, so reports are checked against the spec's model here and posted as JSON
through the client's authenticated session.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from openadr3_client.oadr301._vtn.interfaces.filters import PaginationFilter, TargetFilter
from openadr3_client.oadr301.models.subscriptions.subscription import NewSubscription, ObjectOperation
from openadr3_client.oadr301.models.target import Target
from openadr3_client.oadr301.models.ven.resource import NewResource
from openadr3_client.oadr301.models.ven.ven import NewVen
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
from openadr3_client.version import OADRVersion

from flexfleet.dispatch.fcr import response_requirement
from flexfleet.dispatch.signals import VEN_NAME, SiteSignal, parse_event
from flexfleet.domain.errors import DomainError
from flexfleet.markets import default_catalogue
from flexfleet.markets.catalogue import Catalogue
from services.ven_agent.sim import Broken, BrokenMode

log = logging.getLogger(__name__)

PAGE = 50                               # the VTN's page size cap
NO_REQUIREMENT = (3600.0, 1.0)          # a product without a speed requirement


class VenLink:
    """The VTN as one VEN sees it, through openadr3-client (3.0.1)."""

    def __init__(self, vtn_url: str, client_id: str, client_secret: str, token_url: str | None = None) -> None:
        self.vtn_url = vtn_url.rstrip("/")
        self.client = VirtualEndNodeHttpClientFactory.create_http_ven_client(
            vtn_base_url=self.vtn_url, client_id=client_id, client_secret=client_secret,
            token_url=token_url or f"{self.vtn_url}/auth/token", version=OADRVersion.OADR_301)

    @staticmethod
    def _pages(fetch) -> list:
        out, skip = [], 0
        while True:
            page = fetch(PaginationFilter(skip=skip, limit=PAGE))
            out += page
            if len(page) < PAGE:
                return out
            skip += PAGE

    def ensure_ven(self, ven_name: str) -> str:
        """The VEN object's id, created when absent (a VEN is bound to its name, not its id)."""
        vens = self.client.vens
        found = vens.get_vens(ven_name=ven_name, target=None, pagination=None)
        if found:
            return found[0].id
        try:
            return vens.create_ven(NewVen(ven_name=ven_name)).id
        except requests.HTTPError as exc:
            if exc.response is None or exc.response.status_code != 409:
                raise
            return vens.get_vens(ven_name=ven_name, target=None, pagination=None)[0].id

    def ensure_resources(self, ven_id: str, names: Iterable[str]) -> int:
        """Create the resources not registered yet; returns how many were created."""
        vens = self.client.vens
        have = {r.resource_name for r in self._pages(
            lambda p: vens.get_ven_resources(ven_id=ven_id, resource_name=None, target=None, pagination=p))}
        created = 0
        for name in names:
            if name in have:
                continue
            try:
                vens.create_ven_resource(ven_id, NewResource(resource_name=name, ven_id=ven_id))
                created += 1
            except requests.HTTPError as exc:
                if exc.response is None or exc.response.status_code != 409:
                    raise
        return created

    def programs(self) -> dict[str, str]:
        """Program id -> programName (the market product id)."""
        return {p.id: p.program_name for p in self._pages(
            lambda p: self.client.programs.get_programs(target=None, pagination=p))}

    def subscribe(self, ven_name: str, program_ids: Iterable[str], callback_url: str, token: str,
                  replace: bool = False) -> int:
        """One subscription per program for this VEN's events (POST, PUT, DELETE) to the
        callback. With `replace`, this VEN's earlier subscriptions to its own callback path are
        deleted first (a restarted agent has a new URL and token)."""
        subs = self.client.subscriptions
        mine = [s for s in self._pages(lambda p: subs.get_subscriptions(
            pagination=p, target=None, program_id=None, client_name=ven_name, objects=None))
            if any(str(op.callback_url).rstrip("/").endswith(f"/notifications/{ven_name}")
                   for op in s.object_operations)]
        if replace:
            for s in mine:
                subs.delete_subscription_by_id(s.id)
            mine = []
        have = {s.program_id for s in mine}
        created = 0
        for program_id in program_ids:
            if program_id in have:
                continue
            subs.create_subscription(NewSubscription(
                client_name=ven_name, program_id=program_id,
                object_operations=(ObjectOperation(objects=("EVENT",), operations=("POST", "PUT", "DELETE"),
                                                   callback_url=callback_url, bearer_token=token),),
                targets=(Target(type=VEN_NAME, values=(ven_name,)),)))
            created += 1
        return created

    def events(self, ven_name: str) -> list[dict[str, Any]]:
        """Every event targeted at this VEN (searchAllEvents, VEN_NAME filter), as JSON bodies."""
        mine = TargetFilter(target_type=VEN_NAME, target_values=[ven_name])
        return [e.model_dump(by_alias=True, mode="json") for e in self._pages(
            lambda p: self.client.events.get_events(target=mine, pagination=p, program_id=None))]

    def post_report(self, body: dict[str, Any]) -> str:
        reports = self.client.reports
        response = reports.session.post(f"{reports.base_url}/reports", json=body)
        response.raise_for_status()
        return response.json()["id"]


@dataclass
class AgentEvent:
    """An event the agent acts on: the body as the VTN served it and what it says."""

    event_id: str
    program_id: str
    body: dict[str, Any]
    signal: SiteSignal
    start_s: float
    end_s: float
    checkpoint: tuple[float, float]     # the product's (seconds, share) speed requirement


@dataclass
class AgentStats:
    by_webhook: int = 0                 # event versions first learnt from a notification
    by_poll: int = 0                    # ... from polling
    refused: int = 0                    # events that did not parse (kept the last good version)
    reports_sent: int = 0
    report_failures: int = 0
    unknown_resources: set[str] = field(default_factory=set)   # in events, not at this site


class SiteAgent:
    """The VEN of one site. `link` None runs it without a VTN: events come through `receive`
    and reports stay in `sent` (dry runs and benchmarks)."""


    def __init__(self, ven_name: str, resources: Sequence[str], link: VenLink | None = None, *,
                 broken: Broken | None = None, catalogue: Catalogue | None = None, keep_sent: bool = True) -> None:
        self.ven_name = ven_name
        self.resources = tuple(resources)
        self.link = link
        self.broken = broken
        self.catalogue = catalogue or default_catalogue()
        self.events: dict[str, AgentEvent] = {}
        self.programs: dict[str, str] = {}
        self.inbox: deque[dict[str, Any]] = deque()
        self.outbox: deque[dict[str, Any]] = deque()
        self.sent: list[dict[str, Any]] = []     # without a link: the reports (or their names, keep_sent=False)
        self.keep_sent = keep_sent
        self.stats = AgentStats()
        self.ven_id: str | None = None
        self._callback: tuple[str, str] | None = None
        self._receiver = None
        self.version = 0                      # bumps whenever the event set changes

    @property
    def ignores_events(self) -> bool:
        return self.broken is not None and self.broken.mode is BrokenMode.IGNORES_EVENTS

    # -- registration ----------------------------------------------------------------------
    def start(self, receiver=None) -> None:
        """Register the VEN and its resources, subscribe (with a receiver), read the events."""
        self._receiver = receiver
        if self.link is None:
            return
        self.ven_id = self.link.ensure_ven(self.ven_name)
        self.link.ensure_resources(self.ven_id, self.resources)
        self.programs = self.link.programs()
        if receiver is not None:
            self._callback = receiver.route(self.ven_name, self.notify)
            self.link.subscribe(self.ven_name, self.programs, *self._callback, replace=True)
        self.poll()

    # -- events ----------------------------------------------------------------------------
    def notify(self, notification: dict[str, Any]) -> None:
        """From the receiver's thread: queue it for the agent's loop."""
        self.inbox.append(notification)

    def process_inbox(self) -> bool:
        changed = False
        while self.inbox:
            n = self.inbox.popleft()
            if n.get("objectType") != "EVENT":
                continue
            obj = n["object"]
            if n.get("operation") == "DELETE":
                changed |= self.events.pop(str(obj.get("id")), None) is not None
            else:
                changed |= self.receive(obj, via="webhook")
        if changed:
            self.version += 1
        return changed

    def poll(self) -> bool:
        """Read every event of this VEN; events no longer there are dropped. New programs are
        subscribed to on the way."""
        if self.link is None:
            return False
        if self.ven_id is None:                 # the start failed (VTN away): register first
            self.start(self._receiver)
            return self.version > 0
        programs = self.link.programs()
        if self._callback is not None and set(programs) - set(self.programs):
            self.link.subscribe(self.ven_name, set(programs) - set(self.programs), *self._callback)
        self.programs = programs
        bodies = self.link.events(self.ven_name)
        changed = False
        seen = set()
        for body in bodies:
            seen.add(str(body.get("id")))
            changed |= self.receive(body, via="poll")
        for gone in set(self.events) - seen:
            del self.events[gone]
            changed = True
        if changed:
            self.version += 1
        return changed

    def receive(self, body: dict[str, Any], via: str = "direct") -> bool:
        """Take one event body; True when it is new or changed. One that does not parse, or is
        for another VEN, is refused and the last good version kept."""
        event_id = str(body.get("id") or body.get("eventName"))
        try:
            signal = parse_event(body)
            if signal.ven_name != self.ven_name:
                raise DomainError("eventName", f"is for VEN {signal.ven_name!r}, not {self.ven_name!r}")
        except DomainError as exc:
            self.stats.refused += 1
            log.warning("%s: event %s refused: %s", self.ven_name, event_id, exc)
            return False
        old = self.events.get(event_id)
        if old is not None and old.signal == signal and old.program_id == str(body.get("programID")):
            return False
        program_id = str(body.get("programID"))
        if program_id not in self.programs and self.link is not None:
            self.programs = self.link.programs()
        start = min(i.start for i in signal.intervals).timestamp()
        end = max(i.end for i in signal.intervals).timestamp()
        self.events[event_id] = AgentEvent(event_id, program_id, body, signal, start, end,
                                           self._checkpoint(self.programs.get(program_id)))
        if via == "webhook":
            self.stats.by_webhook += 1
        elif via == "poll":
            self.stats.by_poll += 1
        if via == "direct":
            self.version += 1
        return True

    def _checkpoint(self, product_id: str | None) -> tuple[float, float]:
        try:
            requirement = response_requirement(self.catalogue.by_id(product_id)) if product_id else None
        except KeyError:
            requirement = None
        if requirement is None or not requirement.checkpoints:
            return NO_REQUIREMENT
        seconds, share = requirement.checkpoints[0]
        return float(seconds), float(share)

    def active_events(self, start_s: float, end_s: float) -> list[AgentEvent]:
        """Events overlapping [start_s, end_s)."""
        return [e for e in self.events.values() if e.start_s < end_s and e.end_s > start_s]

    # -- reports ---------------------------------------------------------------------------
    def queue_report(self, body: dict[str, Any]) -> None:
        """Queue a report for `send_reports`. Not validated here (that cost more than building
        it); the layout is tested against the spec's model and the VTN checks every POST."""
        self.outbox.append(body)

    def send_reports(self) -> int:
        """Post what is queued, oldest first; what fails stays queued for the next call."""
        sent = 0
        while self.outbox:
            body = self.outbox[0]
            if self.link is None:
                self.sent.append(body if self.keep_sent else {"reportName": body.get("reportName")})
            else:
                try:
                    report_id = self.link.post_report(body)
                except requests.RequestException as exc:
                    self.stats.report_failures += 1
                    status = getattr(getattr(exc, "response", None), "status_code", None)
                    log.warning("%s: report %s not taken (%s)", self.ven_name, body.get("reportName"), exc)
                    if status is not None and 400 <= status < 500 and status not in (401, 408, 429):
                        self.outbox.popleft()          # refused for what it says: resending will not help
                    break
                self.sent.append({"id": report_id, "reportName": body.get("reportName")})
            self.outbox.popleft()
            sent += 1
        self.stats.reports_sent += sent
        return sent


__all__ = ["AgentEvent", "AgentStats", "SiteAgent", "VenLink"]
