"""The business logic reads the site agents' reports back from the VTN and stores what they
measured in `measured_power` (migration 0007), where delivery verification reads it.

Per dispatched event of the window (`dispatch_events`, migration 0008), every report on it
(searchAllReports with `eventID`, paged), parsed by the layout both sides share
(`services.ven_agent.layout`). A report is taken only from the event's own VEN and only for the
resources the event lists: a VEN can report only as itself (the VTN checks), but which cars it
speaks for is the business logic's to check. One row per resource interval, at its start.
Storing is idempotent: `measured_power`'s key is (vehicle_id, ts), so a report read twice, or
the same sample in the reports of two events, stores nothing twice.

openadr3-client's report model cannot read a report payload descriptor (it expects the event's
objectType), so reports are fetched as JSON through the BL client's authenticated session.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
import psycopg

from flexfleet.dispatch.signals import RESOURCE_NAME, split_resource_name
from flexfleet.domain.errors import DomainError
from flexfleet.domain.time import to_utc
from services.dispatcher.deliveries import write_measurements
from services.ven_agent.layout import parse_report

log = logging.getLogger(__name__)

PAGE = 50

_EVENTS = """
SELECT e.event_id, e.ven_name, e.body FROM dispatch_events e JOIN obligations o USING (obligation_id)
WHERE o.mtu_end > %s AND o.mtu_start < %s ORDER BY o.mtu_start, e.event_id
"""


@dataclass
class CollectResult:
    events: int = 0
    reports: int = 0
    samples: int = 0
    stored: int = 0                                             # rows new to measured_power
    refused: list[tuple[str, str]] = field(default_factory=list)  # (report id, why)


def fetch_reports(bl: Any, event_id: str) -> list[dict[str, Any]]:
    """Every report on one event, as JSON (the VTN caps pages at 50)."""
    reports = bl.reports
    out, skip = [], 0
    while True:
        response = reports.session.get(f"{reports.base_url}/reports",
                                       params={"eventID": event_id, "skip": skip, "limit": PAGE})
        response.raise_for_status()
        page = response.json()
        out += page
        if len(page) < PAGE:
            return out
        skip += PAGE


def _vehicle(resource_name: object) -> str | None:
    try:
        return split_resource_name(resource_name)[1]
    except DomainError:
        return None


def report_rows(report: dict[str, Any], ven_name: str, resources: Sequence[str]) -> list[dict[str, Any]]:
    """The measured_power rows of one report on an event of `ven_name` listing `resources`;
    a report from another client or on a car the event does not list is refused. A listed car
    may be reported on another charger of the site than the one the event named: the site
    follows the car (a shared hub's cars take whichever charger is free)."""
    if report.get("clientName") != ven_name:
        raise DomainError("clientName", f"the event is for {ven_name!r}, "
                                        f"the report is from {report.get('clientName')!r}")
    cars = {_vehicle(r) for r in resources}
    strangers = sorted(str(r.get("resourceName")) for r in report.get("resources") or ()
                       if _vehicle(r.get("resourceName")) not in cars)
    if strangers:
        raise DomainError("resources", f"{', '.join(strangers)}: no car of the event's {RESOURCE_NAME} target")
    return [{"vehicle_id": s.vehicle_id, "ts": s.ts, "power_kw": s.power_kw, "baseline_kw": s.baseline_kw,
             "plugged_in": s.plugged_in, "charger_id": s.charger_id, "ven_name": ven_name,
             "report_id": report.get("id")} for s in parse_report(report)]


def collect_reports(conn: psycopg.Connection, bl: Any, start: datetime, end: datetime) -> CollectResult:
    """Read the reports on the events of obligations overlapping [start, end) and store their
    measurements. A bad report is refused with the reason (logged) and the rest go ahead."""
    result = CollectResult()
    rows: list[dict[str, Any]] = []
    for event_id, ven_name, body in conn.execute(_EVENTS, (to_utc(start, "start"), to_utc(end, "end"))).fetchall():
        result.events += 1
        targets = {t.get("type"): t.get("values") or [] for t in body.get("targets") or ()}
        for report in fetch_reports(bl, event_id):
            result.reports += 1
            try:
                got = report_rows(report, ven_name, targets.get(RESOURCE_NAME, []))
            except DomainError as exc:
                result.refused.append((str(report.get("id")), str(exc)))
                log.warning("report %s on event %s refused: %s", report.get("id"), event_id, exc)
                continue
            rows += got
    result.samples = len(rows)
    if rows:
        result.stored = write_measurements(conn, pd.DataFrame(rows).drop_duplicates(["vehicle_id", "ts"]))
    return result


__all__ = ["CollectResult", "collect_reports", "fetch_reports", "report_rows"]
