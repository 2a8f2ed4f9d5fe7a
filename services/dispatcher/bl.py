"""The dispatcher's business-logic side: obligations to OpenADR 3.0.1 programs and events in the
VTN, through openadr3-client's business-logic client, and re-dispatch when a car leaves.

A thin shell around flexfleet.dispatch: read obligations and the registry, call the pure
functions, write events, remember them (migration 0008). Everything is idempotent:
- one program per market product, found by programName (the product id): a rerun creates
  nothing, a changed catalogue updates the program;
- one event per obligation and site VEN, named "<obligation_id>@<venName>" (unique within the
  program); an obligation already sent is skipped, and an event created by a run that died
  before recording it is found by name (409) and updated, not duplicated;
- a re-dispatch updates only the events whose content changed.

openadr3-client is synchronous: from async code call these through a thread pool
(`await asyncio.to_thread(dispatcher.dispatch, obligations)`), one call per connection at a time.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor, wait
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import requests
from openadr3_client.bl.http_factory import BusinessLogicHttpClientFactory
from openadr3_client.oadr301._vtn.interfaces.filters import PaginationFilter, TargetFilter
from openadr3_client.oadr301.models.event.event import ExistingEvent, NewEvent
from openadr3_client.oadr301.models.program.program import ExistingProgram, NewProgram, ProgramUpdate
from openadr3_client.version import OADRVersion

from flexfleet.dispatch.redispatch import Capability, Redispatch, peak_holdings, redispatch
from flexfleet.dispatch.signals import (
    VEN_NAME,
    Direction,
    ObligationDispatch,
    Placement,
    ProductSignal,
    SiteSignal,
    assign,
    dispatch_from_signals,
    parse_event,
    program_body,
    site_signals,
)
from flexfleet.domain.errors import DomainError
from flexfleet.domain.time import to_utc
from flexfleet.markets import default_catalogue
from flexfleet.markets.catalogue import Catalogue
from services.bidder.store import Obligation, list_obligations, obligation
from services.runtime import metrics

log = logging.getLogger(__name__)

PAGE = 50                      # the VTN's page size cap
SENDERS = 8                    # HTTP calls in flight (requests' pool keeps 10 connections per host)
REASONS = ("left", "offline", "unplaced")


def bl_client(vtn_base_url: str, client_id: str, client_secret: str, token_url: str | None = None) -> Any:
    """openadr3-client's OpenADR 3.0.1 business-logic client for the VTN at `vtn_base_url`
    (…/openadr3/3.0.1); tokens from `token_url`, by default the VTN's own /auth/token."""
    return BusinessLogicHttpClientFactory.create_http_bl_client(
        vtn_base_url=vtn_base_url, client_id=client_id, client_secret=client_secret,
        token_url=token_url or f"{vtn_base_url.rstrip('/')}/auth/token", version=OADRVersion.OADR_301)


@dataclass
class DispatchReport:
    """What one run did. `moves`: the shares moved (and left uncovered) on the way."""

    programs: dict[str, str] = field(default_factory=dict)        # product id -> program id
    obligations: list[str] = field(default_factory=list)          # dispatched now
    skipped: list[str] = field(default_factory=list)              # dispatched before
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    moves: list[MoveRecord] = field(default_factory=list)


@dataclass(frozen=True)
class MoveRecord:
    obligation_id: str
    vehicle_id: str
    from_ts: datetime
    reason: str
    share_kw: float
    uncovered_kw: float


@dataclass(frozen=True)
class _Pair:
    """The registry's view of one charger/vehicle pair and its site."""

    placement: Placement
    up_kw: float
    down_kw: float
    site_import_kw: float
    site_export_kw: float

    def site_limit(self, direction: Direction) -> float:
        limits = {Direction.UP: self.site_export_kw, Direction.DOWN: self.site_import_kw}
        return min(limits[w] for w in direction.ways)


# The charger a car is dispatched on: the one it is plugged into at `at` if a session says so,
# else its home charger, else the one it last charged at. Pair kW as the forecaster counts them
# (a V2G car on a bidirectional charger, AC only where the earthing allows export).
_PLACE = """
SELECT v.vehicle_id, coalesce(
    (SELECT cs.charger_id FROM charging_sessions cs WHERE cs.vehicle_id = v.vehicle_id AND cs.charger_id IS NOT NULL
        AND cs.plug_in_at <= %(at)s AND cs.plug_out_at > %(at)s ORDER BY cs.plug_in_at DESC LIMIT 1),
    v.home_charger_id,
    (SELECT cs.charger_id FROM charging_sessions cs WHERE cs.vehicle_id = v.vehicle_id AND cs.charger_id IS NOT NULL
        AND cs.plug_in_at <= %(at)s ORDER BY cs.plug_in_at DESC LIMIT 1))
FROM vehicles v WHERE v.vehicle_id = ANY(%(vehicles)s)
"""
_PAIRS = """
SELECT p.vehicle_id, c.charger_id, c.site_id,
       CASE WHEN v.v2g_capable AND c.bidirectional AND (c.current_type = 'DC' OR s.earthing = 'TN')
            THEN least(v.max_discharge_kw, c.max_discharge_kw, s.max_export_kw) ELSE 0 END,
       least(v.max_charge_kw, c.max_charge_kw), s.max_import_kw, s.max_export_kw
FROM unnest(%s::text[], %s::text[]) AS p(vehicle_id, charger_id)
JOIN vehicles v ON v.vehicle_id = p.vehicle_id
JOIN chargers c ON c.charger_id = p.charger_id
JOIN sites s ON s.site_id = c.site_id
"""
_RELATED = """
SELECT DISTINCT o.obligation_id FROM obligations o
WHERE o.obligation_id <> %(id)s AND o.mtu_end > %(start)s AND o.mtu_start < %(end)s
  AND (EXISTS (SELECT 1 FROM obligation_vehicles ov WHERE ov.obligation_id = o.obligation_id
                AND ov.vehicle_id = ANY(%(vehicles)s))
       OR EXISTS (SELECT 1 FROM dispatch_events e WHERE e.obligation_id = o.obligation_id
                  AND e.ven_name = ANY(%(vens)s)))
ORDER BY 1
"""


class Dispatcher:
    """The business logic on one database connection and one openadr3-client BL client."""

    def __init__(self, conn: psycopg.Connection, bl: Any, catalogue: Catalogue | None = None) -> None:
        if not conn.autocommit:
            raise ValueError("conn: give an autocommit connection; each obligation is its own transaction")
        self.conn, self.bl = conn, bl
        self.catalogue = catalogue or default_catalogue()
        self._programs: dict[str, str] = {}
        self._signals: dict[str, ProductSignal] = {}

    # -- programs -----------------------------------------------------------------------------
    def signal(self, product_id: str) -> ProductSignal:
        if product_id not in self._signals:
            try:
                self._signals[product_id] = ProductSignal.from_product(self.catalogue.by_id(product_id))
            except KeyError:
                raise DomainError("product_id", f"{product_id!r} is not in the market catalogue") from None
        return self._signals[product_id]

    def ensure_programs(self, product_ids: Iterable[str] | None = None) -> dict[str, str]:
        """One program per market product (all of the catalogue's by default): created when
        missing, updated when the catalogue changed it, left alone otherwise."""
        wanted = sorted(set(product_ids)) if product_ids is not None else [p.id for p in self.catalogue.products]
        existing = {p.program_name: p for p in self._all_programs()}
        for product_id in wanted:
            signal = self.signal(product_id)
            product = self.catalogue.by_id(product_id)
            urls = sorted({self.catalogue.sources[product.activation.source].url}
                          if product.activation.source in self.catalogue.sources else set())
            desired = NewProgram.model_validate(program_body(signal, urls))
            found = existing.get(product_id)
            if found is None:
                try:
                    found = self.bl.programs.create_program(desired)
                except requests.HTTPError as exc:
                    if exc.response is None or exc.response.status_code != 409:
                        raise
                    found = {p.program_name: p for p in self._all_programs()}[product_id]
            if _program_fields(found) != _program_fields(desired):
                update = ProgramUpdate.model_validate(desired.model_dump(by_alias=True, exclude={"program_name"}))
                found = self.bl.programs.update_program_by_id(found.id, found.update(update))
            self._programs[product_id] = found.id
        return {p: self._programs[p] for p in wanted}

    def _all_programs(self) -> list[ExistingProgram]:
        out, skip = [], 0
        while True:
            page = self.bl.programs.get_programs(target=None, pagination=PaginationFilter(skip=skip, limit=PAGE))
            out += page
            if len(page) < PAGE:
                return out
            skip += PAGE

    def program_id(self, product_id: str) -> str:
        if product_id not in self._programs:
            self.ensure_programs([product_id])
        return self._programs[product_id]

    # -- dispatch -----------------------------------------------------------------------------
    def dispatch_window(self, start: datetime, end: datetime) -> DispatchReport:
        """Every obligation overlapping [start, end)."""
        return self.dispatch(list_obligations(self.conn, to_utc(start, "start"), to_utc(end, "end")))

    def dispatch(self, obligations: Sequence[Obligation]) -> DispatchReport:
        """Events for obligations not sent yet; obligations already sent are skipped."""
        report = DispatchReport()
        report.programs = self.ensure_programs({o.product_id for o in obligations}) if obligations else {}
        for o in obligations:
            with self.conn.transaction():
                self._lock(o.obligation_id)
                if self.conn.execute("SELECT 1 FROM dispatch_obligations WHERE obligation_id = %s",
                                     (o.obligation_id,)).fetchone():
                    report.skipped.append(o.obligation_id)
                    continue
                self._dispatch_one(o, report)
                report.obligations.append(o.obligation_id)
        return report

    def _dispatch_one(self, o: Obligation, report: DispatchReport) -> None:
        signal = self.signal(o.product_id)
        pairs = self._placements(o.vehicles, to_utc(o.mtu_start, "mtu_start"))
        d = assign(o, signal, {v: p.placement for v, p in pairs.items()})
        unplaced = [v for v in d.vehicles if v not in d.placements]
        for v in unplaced:
            r = self._redispatch(d, v, d.start, pairs, gone=set(unplaced))
            d = r.after
            report.moves.append(self._record(r, "unplaced"))
        self._sync(o, d, report)
        self.conn.execute("INSERT INTO dispatch_obligations (obligation_id, program_id) VALUES (%s, %s)",
                          (o.obligation_id, self.program_id(o.product_id)))

    # -- re-dispatch ----------------------------------------------------------------------------
    def vehicle_left(self, vehicle_id: str, at: datetime, until: datetime | None = None,
                     reason: str = "left") -> DispatchReport:
        """A car left early (or went offline) at `at`: its share moves to the rest of each bundle
        it is in, for the obligations running at `at` and, with `until` (when it is expected
        back), every obligation overlapping [at, until). Obligations not sent yet are sent first."""
        if reason not in REASONS[:2]:
            raise DomainError("reason", f"must be left or offline; got {reason!r}")
        at = to_utc(at, "at")
        until = to_utc(until, "until") if until is not None else None
        if until is not None and until <= at:
            raise DomainError("until", f"must be after at ({until.isoformat()} <= {at.isoformat()})")
        ids = [r[0] for r in self.conn.execute(
            "SELECT o.obligation_id FROM obligations o JOIN obligation_vehicles ov USING (obligation_id) "
            "WHERE ov.vehicle_id = %s AND o.mtu_end > %s AND o.mtu_start < %s ORDER BY o.mtu_start, 1",
            (vehicle_id, at, until or at + timedelta(microseconds=1)))]
        obligations = [obligation(self.conn, i) for i in ids]
        report = self.dispatch(obligations)
        for o in obligations:
            with self.conn.transaction():
                self._lock(o.obligation_id)
                d = self._current(o)
                if not any(s.kw.get(vehicle_id, 0.0) > 0 for s in d.slots if s.end > at):
                    continue                              # nothing of it left to move: told before
                pairs = self._pairs([(v, p.charger_id) for v, p in d.placements.items()])
                r = self._redispatch(d, vehicle_id, at, pairs, gone=self._gone(o.obligation_id) | {vehicle_id})
                report.moves.append(self._record(r, reason))
                self._sync(o, r.after, report)
        return report

    def _redispatch(self, d: ObligationDispatch, vehicle_id: str, at: datetime, pairs: dict[str, _Pair],
                    gone: set[str]) -> Redispatch:
        """Capabilities from the registry (pair kW), the other obligations meanwhile (kW already
        held, per car and per site) and the bundle (kW bid to hold for the endurance)."""
        start = max(at, d.start)
        others = self._related(d, start)
        per_car = peak_holdings(others, start, d.end)
        per_site = peak_holdings(others, start, d.end,
                                 group=lambda x, v: x.placements[v].site_id if v in x.placements else None)
        none = {Direction.UP: 0.0, Direction.DOWN: 0.0}
        caps, rooms = {}, {}
        for v, pair in pairs.items():
            if v not in d.placements or d.placements[v].charger_id != pair.placement.charger_id:
                continue
            held = per_car.get(v, none)
            caps[v] = Capability.of(v, d.direction, pair.up_kw, pair.down_kw, held[Direction.UP],
                                    held[Direction.DOWN], d.held_kw.get(v, 0.0))
            site = pair.placement.site_id
            site_held = per_site.get(site, none)
            rooms[site] = min(pair.site_limit(Direction(w)) - site_held[w] for w in d.direction.ways)
        return redispatch(d, vehicle_id, at, caps, rooms, gone)

    def _related(self, d: ObligationDispatch, start: datetime) -> list[ObligationDispatch]:
        """The other obligations meanwhile that share a car or a site with this one: as their
        events say (sent), or as they would be assigned (not sent yet)."""
        vens = sorted({p.ven_name for p in d.placements.values()})
        ids = [r[0] for r in self.conn.execute(_RELATED, {"id": d.obligation_id, "start": start, "end": d.end,
                                                          "vehicles": list(d.vehicles), "vens": vens})]
        out = []
        for i in ids:
            o = obligation(self.conn, i)
            out.append(self._current(o) if self._stored(i) else assign(o, self.signal(o.product_id)))
        return out

    def _gone(self, obligation_id: str) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT vehicle_id FROM dispatch_moves WHERE obligation_id = %s",
                                                (obligation_id,))}

    def _record(self, r: Redispatch, reason: str) -> MoveRecord:
        moves = [{"start": m.start.isoformat(), "end": m.end.isoformat(), "share_kw": m.share_kw,
                  "taken": dict(m.taken), "uncovered_kw": m.uncovered_kw} for m in r.moves]
        record = MoveRecord(r.before.obligation_id, r.vehicle_id, r.at, reason, r.share_kw, r.uncovered_kw)
        self.conn.execute(
            "INSERT INTO dispatch_moves (obligation_id, vehicle_id, from_ts, reason, share_kw, uncovered_kw, moves) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (record.obligation_id, record.vehicle_id, record.from_ts, reason, record.share_kw, record.uncovered_kw,
             json.dumps(moves)))
        if record.uncovered_kw > 0:
            log.warning("obligation %s: %.3f kW of %s's share could not be moved (%s at %s)", record.obligation_id,
                        record.uncovered_kw, record.vehicle_id, reason, record.from_ts.isoformat())
        return record

    # -- events -------------------------------------------------------------------------------
    def _stored(self, obligation_id: str) -> dict[str, tuple[str, dict]]:
        rows = self.conn.execute("SELECT ven_name, event_id, body FROM dispatch_events WHERE obligation_id = %s",
                                 (obligation_id,)).fetchall()
        return {ven: (event_id, body) for ven, event_id, body in rows}

    def _current(self, o: Obligation) -> ObligationDispatch:
        """The obligation's dispatch as its sent events say."""
        stored = self._stored(o.obligation_id)
        return dispatch_from_signals(o, self.signal(o.product_id), [parse_event(b) for _, b in stored.values()])

    def _sync(self, o: Obligation, d: ObligationDispatch, report: DispatchReport) -> None:
        """Make the VTN's events say what `d` says: create what is missing (not all-zero ones),
        update what changed. The HTTP calls go out SENDERS at a time (one obligation can reach
        thousands of sites); the rows are written here, on this connection's transaction."""
        program_id = self.program_id(o.product_id)
        stored = self._stored(o.obligation_id)
        puts: list[tuple[SiteSignal, str, dict]] = []
        creates: list[tuple[SiteSignal, dict]] = []
        for sig in site_signals(d):
            body = sig.event_body(program_id)
            if sig.ven_name in stored:
                event_id, old = stored[sig.ven_name]
                if parse_event(old) == sig:
                    report.unchanged += 1
                else:
                    puts.append((sig, event_id, body))
            elif not sig.is_zero:
                creates.append((sig, body))
        with ThreadPoolExecutor(SENDERS, thread_name_prefix="dispatch") as senders:
            updated = _all_done([senders.submit(self._put, event_id, body) for _, event_id, body in puts])
            created = _all_done([senders.submit(self._create, body, sig, program_id) for sig, body in creates])
        _count_sent(len(puts) + sum(outcome == "updated" for _, outcome in created),
                    sum(outcome == "created" for _, outcome in created))
        for (sig, _, body), _ in zip(puts, updated, strict=True):
            report.updated += 1
            self.conn.execute("UPDATE dispatch_events SET body = %s, updated_at = now() "
                              "WHERE obligation_id = %s AND ven_name = %s",
                              (json.dumps(body), o.obligation_id, sig.ven_name))
        for (sig, body), (event_id, outcome) in zip(creates, created, strict=True):
            setattr(report, outcome, getattr(report, outcome) + 1)
            self.conn.execute(
                "INSERT INTO dispatch_events (obligation_id, ven_name, program_id, event_id, event_name, body) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (obligation_id, ven_name) DO UPDATE SET "
                "event_id = excluded.event_id, body = excluded.body, updated_at = now()",
                (o.obligation_id, sig.ven_name, program_id, event_id, sig.event_name, json.dumps(body)))

    def _create(self, body: dict, sig: SiteSignal, program_id: str) -> tuple[str, str]:
        """The event's id, and whether it was created, updated or found unchanged."""
        try:
            return self.bl.events.create_event(NewEvent.model_validate(body)).id, "created"
        except requests.HTTPError as exc:
            if exc.response is None or exc.response.status_code != 409:
                raise
        # Created by a run that did not get to record it: take it over.
        found = self._find_event(program_id, sig.ven_name, sig.event_name)
        if parse_event(found.model_dump(by_alias=True, mode="json")) != sig:
            self._put(found.id, body)
            return found.id, "updated"
        return found.id, "unchanged"

    def _put(self, event_id: str, body: dict) -> None:
        now = datetime.now(UTC).isoformat()      # provisioned by the VTN: what is sent is replaced
        self.bl.events.update_event_by_id(event_id, ExistingEvent.model_validate(
            {**body, "id": event_id, "createdDateTime": now, "modificationDateTime": now}))

    def _find_event(self, program_id: str, ven_name: str, name: str) -> ExistingEvent:
        skip = 0
        while True:
            page = self.bl.events.get_events(target=TargetFilter(target_type=VEN_NAME, target_values=[ven_name]),
                                             pagination=PaginationFilter(skip=skip, limit=PAGE), program_id=program_id)
            for e in page:
                if e.event_name == name:
                    return e
            if len(page) < PAGE:
                raise LookupError(f"eventName: the VTN refused {name!r} as a duplicate but has no such event")
            skip += PAGE

    # -- registry -----------------------------------------------------------------------------
    def _placements(self, vehicles: Sequence[str], at: datetime) -> dict[str, _Pair]:
        rows = self.conn.execute(_PLACE, {"at": at, "vehicles": list(vehicles)}).fetchall()
        return self._pairs([(v, c) for v, c in rows if c is not None])

    def _pairs(self, pairs: Sequence[tuple[str, str]]) -> dict[str, _Pair]:
        if not pairs:
            return {}
        rows = self.conn.execute(_PAIRS, ([v for v, _ in pairs], [c for _, c in pairs])).fetchall()
        return {v: _Pair(Placement(v, c, s), up, down, imp, exp) for v, c, s, up, down, imp, exp in rows}

    def _lock(self, obligation_id: str) -> None:
        """One dispatcher at a time per obligation (re-dispatch reads, moves and writes)."""
        if self.conn.execute("SELECT 1 FROM obligations WHERE obligation_id = %s FOR UPDATE",
                             (obligation_id,)).fetchone() is None:
            raise DomainError("obligation_id", f"no obligation {obligation_id!r}")


def _count_sent(updated: int, created: int) -> None:
    """Events the VTN took in this sync (a create that found its event unchanged sent nothing)."""
    if created:
        metrics.DISPATCH_EVENTS_SENT.labels("created").inc(created)
    if updated:
        metrics.DISPATCH_EVENTS_SENT.labels("updated").inc(updated)


def _program_fields(p: NewProgram | ExistingProgram) -> dict[str, Any]:
    """What the business logic sets on a program (the VTN adds ids and times)."""
    keys = {"program_long_name", "program_type", "binding_events", "payload_descriptors", "program_descriptions"}
    return p.model_dump(mode="json", include=keys)


__all__ = ["DispatchReport", "Dispatcher", "MoveRecord", "bl_client"]


def _all_done(futures: list[Future]) -> list[Any]:
    """The futures' results in order, once all have finished: a failure is raised only after the
    others are done, so no call is left running while the transaction rolls back."""
    wait(futures)
    return [f.result() for f in futures]
