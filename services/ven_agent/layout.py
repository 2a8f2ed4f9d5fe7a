"""The layout of the site agents' OpenADR 3.0.1 reports: measured power per resource, written by
the VEN agent (`report_body`) and read back by the business logic (`parse_report`,
services/dispatcher/reports.py). One place for both sides, so they cannot drift apart.

One report per event and batch period (`reportName` = "<eventName>|<batch start, UTC>"), a
resource per charger/vehicle pair of the event that the site could measure, one interval per
sample, each with its own `intervalPeriod`:

- 1-second intervals while the event's frequency curve asks for a response (and a tail after,
  while the charger returns), the TSOs' 1 Hz operational logs; consecutive seconds with the
  same values are merged into one interval, which loses nothing;
- otherwise the mean over each minute (shorter where the plug state or the meter's
  reachability changes, so a sample is one state).

Payloads (units in `payloadDescriptors`):

- `READING` (KW, readingType `MEAN`): mean power at the grid connection over the interval,
  + charging, - discharging. The one enumerated power type that may be negative: `DEMAND` and
  `USAGE` are consumption (minimum 0 in the enumeration schema), and a V2G car exports.
- `BASELINE` (KW, readingType `MEAN`): the declared schedule over the interval, what the charger
  runs at without the FCR response: "consumption in the absence of load control", exactly, and
  the FCR baseline that verification measures the response against.
- `FLEXFLEET_PLUGGED_IN` (private): `[true]` / `[false]`. No enumerated type says whether a car
  is on the charger (`OPERATING_STATE` is the demand-response state).

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from flexfleet.dispatch.signals import split_resource_name
from flexfleet.domain.errors import DomainError

READING = "READING"
BASELINE = "BASELINE"
PLUGGED_IN = "FLEXFLEET_PLUGGED_IN"
MEAN = "MEAN"
KW = "KW"
COARSE_S = 60
DESCRIPTORS = [
    {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": READING, "readingType": MEAN, "units": KW},
    {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": BASELINE, "readingType": MEAN, "units": KW},
    {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": PLUGGED_IN},
]
_DATETIME = TypeAdapter(AwareDatetime)
_DURATION = TypeAdapter(timedelta)


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=4096)
def _duration(seconds: int) -> str:
    return f"PT{seconds}S"


def report_name(event_name: str, batch_start_s: float) -> str:
    return f"{event_name}|{iso(batch_start_s)}"


def boundaries(start_s: int, fine: np.ndarray, values: Sequence[np.ndarray], state: Sequence[np.ndarray],
               coarse_s: int = COARSE_S) -> np.ndarray:
    """Indices where a new interval starts in a run of seconds from `start_s`: each whole
    `coarse_s` of the clock, where the resolution or a state changes, and inside fine runs
    wherever a value changes (seconds with the same values merge without loss)."""
    n = fine.shape[0]
    cut = np.zeros(n, dtype=bool)
    if n == 0:
        return np.flatnonzero(cut)
    cut[0] = True
    cut |= (start_s + np.arange(n)) % coarse_s == 0
    cut[1:] |= fine[1:] != fine[:-1]
    for v in values:
        cut[1:] |= fine[1:] & (v[1:] != v[:-1])
    for s in state:
        cut[1:] |= s[1:] != s[:-1]
    return np.flatnonzero(cut)


def report_body(*, program_id: str, event_id: str, ven_name: str, event_name: str, start_s: int,
                resources: Sequence[str], power_kw: np.ndarray, baseline_kw: np.ndarray, plugged: np.ndarray,
                measured: np.ndarray, fine: np.ndarray, batch_start_s: int | None = None) -> dict[str, Any] | None:
    """The report of one event over the seconds [start_s, start_s + T) for `resources`.

    power_kw, baseline_kw, plugged, measured: (T, len(resources)) per second; measured is False
    where the agent could not read the charger (those seconds are left out, not reported as 0).
    fine: (T,) seconds to report at 1 s. None when nothing was measured."""
    out = []
    for j, name in enumerate(resources):
        ok = measured[:, j]
        if not ok.any():
            continue
        pj, bj = np.round(power_kw[:, j], 4), np.round(baseline_kw[:, j], 4)
        starts = boundaries(start_s, fine & plugged[:, j], (pj, bj), (plugged[:, j], ok))   # 1 s only with a car
        ends = np.append(starts[1:], len(ok))
        counts = np.add.reduceat(ok.astype(np.int64), starts)
        keep = counts > 0
        p = np.add.reduceat(np.where(ok, power_kw[:, j], 0.0), starts)[keep] / counts[keep]
        b = np.add.reduceat(np.where(ok, baseline_kw[:, j], 0.0), starts)[keep] / counts[keep]
        a, e = starts[keep], ends[keep]
        when = np.datetime_as_string((start_s + a).astype("datetime64[s]"), unit="s")
        out.append({"resourceName": name, "intervals": [
            {"id": k, "intervalPeriod": {"start": f"{w}Z", "duration": _duration(d)},
             "payloads": [{"type": READING, "values": [pk]}, {"type": BASELINE, "values": [bk]},
                          {"type": PLUGGED_IN, "values": [pl]}]}
            for k, (w, d, pk, bk, pl) in enumerate(zip(when.tolist(), (e - a).tolist(), np.round(p, 4).tolist(),
                                                       np.round(b, 4).tolist(), plugged[a, j].tolist()))]})
    if not out:
        return None
    return {"programID": program_id, "eventID": event_id, "clientName": ven_name,
            "reportName": report_name(event_name, start_s if batch_start_s is None else batch_start_s),
            "payloadDescriptors": DESCRIPTORS, "resources": out}


@dataclass(frozen=True)
class Sample:
    """One interval of one resource, as measured_power stores it (at the interval's start)."""

    vehicle_id: str
    charger_id: str
    ts: datetime
    duration_s: float
    power_kw: float
    baseline_kw: float | None
    plugged_in: bool


def parse_report(report: Mapping[str, Any]) -> list[Sample]:
    """A report in this layout back into samples; anything else is refused naming the member.

    Only the layout is checked here: the VTN validated the report against the 3.0.1 schema when
    it was posted, and validating it again was two thirds of reading a simulated day back."""
    units = {d.get("payloadType"): d for d in report.get("payloadDescriptors") or () if isinstance(d, Mapping)}
    if READING not in units or (units[READING].get("units") or "").upper() != KW:
        raise DomainError("payloadDescriptors", f"needs {READING} in {KW}")
    resources = report.get("resources")
    if not isinstance(resources, list):
        raise DomainError("resources", "must be a list")
    out: list[Sample] = []
    for r, res in enumerate(resources):
        charger_id, vehicle_id = split_resource_name(res.get("resourceName"))
        for i, interval in enumerate(res.get("intervals") or ()):
            where = f"resources.{r}.intervals.{i}"
            period = interval.get("intervalPeriod") or res.get("intervalPeriod")
            if not isinstance(period, Mapping):
                raise DomainError(f"{where}.intervalPeriod", "is missing")
            ts, duration = _period(period, where)
            values = {p.get("type"): p.get("values") for p in interval.get("payloads") or ()}
            power = _one_number(values, READING, where)
            baseline = _one_number(values, BASELINE, where) if BASELINE in values else None
            plugged = values.get(PLUGGED_IN, [True])
            if len(plugged) != 1 or not isinstance(plugged[0], bool):
                raise DomainError(f"{where}.{PLUGGED_IN}", f"must be [true] or [false]; got {plugged!r}")
            out.append(Sample(vehicle_id, charger_id, ts, duration, power, baseline, plugged[0]))
    return out


_SECONDS = re.compile(r"PT(\d+)S")


def _period(period: Mapping[str, Any], where: str) -> tuple[datetime, float]:
    """An intervalPeriod's start (UTC) and duration in seconds; the agent's own forms (RFC 3339
    with Z, PT<n>S) take the fast path, any other valid form pydantic's parsers."""
    start, duration = period.get("start"), period.get("duration") or "PT0S"
    try:
        ts = datetime.fromisoformat(start) if isinstance(start, str) else _DATETIME.validate_python(start)
        if ts.tzinfo is None:
            raise ValueError("naive")
        m = _SECONDS.fullmatch(duration) if isinstance(duration, str) else None
        seconds = float(m.group(1)) if m else _DURATION.validate_python(duration).total_seconds()
    except (ValueError, ValidationError):
        raise DomainError(f"{where}.intervalPeriod", f"bad start or duration: {dict(period)!r}") from None
    return ts.astimezone(UTC), seconds


def _one_number(values: Mapping[str, Any], payload_type: str, where: str) -> float:
    v = values.get(payload_type)
    if not isinstance(v, list) or len(v) != 1 or isinstance(v[0], bool) or not isinstance(v[0], (int, float)) \
            or not math.isfinite(v[0]):
        raise DomainError(f"{where}.{payload_type}", f"must be one finite number; got {v!r}")
    return float(v[0])


__all__ = ["BASELINE", "DESCRIPTORS", "PLUGGED_IN", "READING", "Sample", "boundaries", "parse_report",
           "report_body", "report_name"]
