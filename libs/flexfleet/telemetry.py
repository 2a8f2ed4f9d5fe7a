"""Validation of telemetry.v1 readings (docs/schemas/telemetry.v1.json), without I/O.

Ingest runs this on every message, so it is hand-written rather than a generic JSON-schema
validator (a test holds it to the schema with jsonschema on generated messages). Beyond the
schema it checks what only the fleet registry knows: the vehicle and charger exist and the power
is within the pair's ratings; and what a JSON schema cannot compare: a departure target SoC is not
below the minimum SoC declared with it.

>>> from datetime import datetime, UTC
>>> registry = FleetLimits({"v1": Limits(11.0, 0.0)}, {"c1": Limits(11.0, 0.0)})
>>> now = datetime(2026, 11, 2, 18, tzinfo=UTC)
>>> parse_reading(b'{"vehicle_id":"v1","ts":"2026-11-02T17:45:00Z","plugged_in":true,'
...               b'"charger_id":"c1","power_kw":7.2,"soc_pct":41.5}', registry, now).soc_pct
41.5
>>> parse_reading(b'{"vehicle_id":"v1","ts":"2026-11-02T17:45:00Z","plugged_in":true,'
...               b'"charger_id":"c1","power_kw":7.2,"soc_pct":104}', registry, now)
Rejection(field='soc_pct', code='out_of_range', reason='must be between 0 and 100, got 104')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

import orjson

# Metering error allowed above a rating before a reading is called impossible (the TSOs ask for
# 5 % power accuracy below 1.5 MW).
POWER_TOLERANCE = 0.05
# An unplugged car still reports a few watts of noise on some chargers.
UNPLUGGED_POWER_KW = 0.1
DEFAULT_FUTURE_TOLERANCE = timedelta(seconds=300)
# Older than this is a clock reset to a default date, not a late reading worth storing.
MAX_AGE = timedelta(days=90)

_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# A fleet reporting on a cadence repeats the same timestamp strings thousands of times.
_TIMES: dict[str, datetime] = {}
_SOC_SOURCES = frozenset({"vehicle_api", "iso15118", "estimated", None})


class Reading(NamedTuple):
    """One accepted reading, in the column order of the telemetry table."""

    vehicle_id: str
    ts: datetime
    plugged_in: bool
    charger_id: str | None
    power_kw: float
    soc_pct: float | None
    soc_source: str | None
    energy_import_kwh: float | None
    energy_export_kwh: float | None
    battery_temp_c: float | None
    odometer_km: float | None
    departure_at: datetime | None
    min_soc_pct: float | None
    target_soc_pct: float | None


COLUMNS: tuple[str, ...] = Reading._fields


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was refused: the field at fault, a stable code to count by, and a sentence."""

    field: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Limits:
    """Rated power of a vehicle or a charger, in kW, both as positive numbers."""

    max_charge_kw: float
    max_discharge_kw: float


@dataclass(slots=True)
class FleetLimits:
    """What ingest knows of the fleet registry: ratings by vehicle and by charger id."""

    vehicles: dict[str, Limits] = field(default_factory=dict)
    chargers: dict[str, Limits] = field(default_factory=dict)


class _Invalid(Exception):
    def __init__(self, field: str, code: str, reason: str) -> None:
        self.rejection = Rejection(field, code, reason)


# (name, required, nullable, kind) in schema order; kind drives the type check.
_FIELDS: dict[str, tuple[bool, bool, str]] = {
    "vehicle_id": (True, False, "id"),
    "ts": (True, False, "time"),
    "plugged_in": (True, False, "bool"),
    "charger_id": (False, True, "id"),
    "power_kw": (True, False, "number"),
    "soc_pct": (False, True, "number"),
    "soc_source": (False, True, "soc_source"),
    "energy_import_kwh": (False, True, "number"),
    "energy_export_kwh": (False, True, "number"),
    "battery_temp_c": (False, True, "number"),
    "odometer_km": (False, True, "number"),
    "departure_at": (False, True, "time"),
    "min_soc_pct": (False, True, "number"),
    "target_soc_pct": (False, True, "number"),
}
_REQUIRED = tuple(name for name, (required, _, _) in _FIELDS.items() if required)
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "power_kw": (-400.0, 400.0),
    "soc_pct": (0.0, 100.0),
    "energy_import_kwh": (0.0, None),
    "energy_export_kwh": (0.0, None),
    "battery_temp_c": (-40.0, 85.0),
    "odometer_km": (0.0, None),
    "min_soc_pct": (0.0, 100.0),
    "target_soc_pct": (0.0, 100.0),
}


def _check(name: str, value: object) -> object:
    """Type- and range-check one present field; returns the value as stored."""
    required, nullable, kind = _FIELDS[name]
    if value is None:
        if nullable:
            return None
        raise _Invalid(name, "wrong_type", "must not be null")
    if kind == "number":
        # bool is an int in Python but not a number in JSON.
        if type(value) is not float and type(value) is not int:
            raise _Invalid(name, "wrong_type", f"must be a number, got {_json_type(value)}")
        lo, hi = _RANGES[name]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"between {_fmt(lo)} and {_fmt(hi)}" if hi is not None else f"at least {_fmt(lo)}"
            raise _Invalid(name, "out_of_range", f"must be {bounds}, got {value}")
        return float(value)
    if kind == "bool":
        if type(value) is not bool:
            raise _Invalid(name, "wrong_type", f"must be true or false, got {_json_type(value)}")
        return value
    if kind == "id":
        if type(value) is not str:
            raise _Invalid(name, "wrong_type", f"must be a string, got {_json_type(value)}")
        if not _ID.fullmatch(value):
            raise _Invalid(name, "bad_format", "must be 1-64 characters of A-Z a-z 0-9 _ . : -")
        return value
    if kind == "time":
        if type(value) is not str:
            raise _Invalid(name, "wrong_type", f"must be an RFC 3339 string, got {_json_type(value)}")
        ts = _TIMES.get(value)
        if ts is None:
            try:
                ts = datetime.fromisoformat(value)
            except ValueError:
                raise _Invalid(name, "bad_format", f"is not an RFC 3339 date-time: {value[:40]!r}") from None
            if ts.tzinfo is None or value[10:11] not in ("T", "t"):
                raise _Invalid(name, "bad_format", "must be an RFC 3339 date-time with an offset (Z or +hh:mm)")
            if len(_TIMES) >= 8192:
                _TIMES.clear()
            _TIMES[value] = ts
        return ts
    # soc_source
    if value not in _SOC_SOURCES:
        raise _Invalid(name, "bad_value", f"must be one of vehicle_api, iso15118, estimated; got {value!r}")
    return value


def _json_type(value: object) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def _fmt(x: float | None) -> str:
    return f"{x:g}" if x is not None else ""


_ALLOWED = frozenset(_FIELDS)
_NUMBER = frozenset({int, float})  # bool is an int in Python but not a number in JSON


def _parse(raw: bytes | None, limits: FleetLimits, now: datetime, future_tolerance: timedelta) -> Reading:
    if not raw:
        raise _Invalid("$", "empty", "message has no value")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _Invalid("$", "malformed_json", f"not valid JSON: {e}") from None
    if type(doc) is not dict:
        raise _Invalid("$", "wrong_type", f"must be a JSON object, got {_json_type(doc)}")
    keys = doc.keys()
    if not keys <= _ALLOWED:
        raise _Invalid(min(keys - _ALLOWED), "unknown_field", "is not a telemetry.v1 field")
    for name in _REQUIRED:
        if name not in doc:
            raise _Invalid(name, "missing", "is required")
    get = doc.get
    # The common case inline (it runs for every message); _check explains any failure.
    power, soc, e_in, e_out, temp, odo, min_soc, target = (
        get("power_kw"), get("soc_pct"), get("energy_import_kwh"), get("energy_export_kwh"),
        get("battery_temp_c"), get("odometer_km"), get("min_soc_pct"), get("target_soc_pct"))
    if type(power) not in _NUMBER or not -400.0 <= power <= 400.0:
        _check("power_kw", power)
    if soc is not None and (type(soc) not in _NUMBER or not 0.0 <= soc <= 100.0):
        _check("soc_pct", soc)
    if e_in is not None and (type(e_in) not in _NUMBER or e_in < 0.0):
        _check("energy_import_kwh", e_in)
    if e_out is not None and (type(e_out) not in _NUMBER or e_out < 0.0):
        _check("energy_export_kwh", e_out)
    if temp is not None and (type(temp) not in _NUMBER or not -40.0 <= temp <= 85.0):
        _check("battery_temp_c", temp)
    if odo is not None and (type(odo) not in _NUMBER or odo < 0.0):
        _check("odometer_km", odo)
    if min_soc is not None and (type(min_soc) not in _NUMBER or not 0.0 <= min_soc <= 100.0):
        _check("min_soc_pct", min_soc)
    if target is not None:
        if type(target) not in _NUMBER or not 0.0 <= target <= 100.0:
            _check("target_soc_pct", target)
        # The owner asks for the target at departure and never to go below the minimum: a target
        # under the minimum is a contradiction the platform cannot honour both ways.
        if min_soc is not None and target < min_soc:
            raise _Invalid("target_soc_pct", "below_min_soc",
                           f"must be at least min_soc_pct ({min_soc:g}), got {target:g}")
    vehicle_id = doc["vehicle_id"]
    if type(vehicle_id) is not str or not _ID.fullmatch(vehicle_id):
        _check("vehicle_id", vehicle_id)
    ts = _check("ts", doc["ts"])
    plugged_in = doc["plugged_in"]
    if type(plugged_in) is not bool:
        _check("plugged_in", plugged_in)
    charger_id = get("charger_id")
    if charger_id is not None and (type(charger_id) is not str or not _ID.fullmatch(charger_id)):
        _check("charger_id", charger_id)
    soc_source = get("soc_source")
    if soc_source not in _SOC_SOURCES:
        _check("soc_source", soc_source)
    departure_at = get("departure_at")
    if departure_at is not None:
        departure_at = _check("departure_at", departure_at)

    vehicle = limits.vehicles.get(vehicle_id)
    if vehicle is None:
        raise _Invalid("vehicle_id", "unknown_vehicle", f"{vehicle_id!r} is not in the fleet registry")
    if ts - now > future_tolerance:
        ahead = int((ts - now).total_seconds())
        raise _Invalid("ts", "in_future", f"is {ahead} s ahead of the ingest clock "
                       f"(tolerance {int(future_tolerance.total_seconds())} s)")
    if now - ts > MAX_AGE:
        raise _Invalid("ts", "too_old", f"is older than {MAX_AGE.days} days ({doc['ts']}); "
                       "a reset clock, not a late reading")
    power = float(power)
    if plugged_in:
        if charger_id is None:
            raise _Invalid("charger_id", "missing", "is required when plugged_in is true")
        charger = limits.chargers.get(charger_id)
        if charger is None:
            raise _Invalid("charger_id", "unknown_charger", f"{charger_id!r} is not in the fleet registry")
        max_charge = min(vehicle.max_charge_kw, charger.max_charge_kw) * (1 + POWER_TOLERANCE)
        max_discharge = min(vehicle.max_discharge_kw, charger.max_discharge_kw) * (1 + POWER_TOLERANCE)
        if power > max_charge + UNPLUGGED_POWER_KW or -power > max_discharge + UNPLUGGED_POWER_KW:
            raise _Invalid("power_kw", "over_rating",
                           f"{power:g} kW is outside this vehicle-charger pair's rating "
                           f"(-{max_discharge:.1f} to {max_charge:.1f} kW incl. 5 % tolerance)")
    elif power > UNPLUGGED_POWER_KW or power < -UNPLUGGED_POWER_KW:
        raise _Invalid("power_kw", "over_rating", f"is {power:g} kW while unplugged")
    return Reading(vehicle_id, ts, plugged_in, charger_id, power,
                   None if soc is None else float(soc), soc_source,
                   None if e_in is None else float(e_in), None if e_out is None else float(e_out),
                   None if temp is None else float(temp), None if odo is None else float(odo),
                   departure_at, None if min_soc is None else float(min_soc),
                   None if target is None else float(target))


def parse_reading(raw: bytes | None, limits: FleetLimits, now: datetime,
                  future_tolerance: timedelta = DEFAULT_FUTURE_TOLERANCE) -> Reading | Rejection:
    """Parse one telemetry.v1 message; the first fault found is the one reported."""
    try:
        return _parse(raw, limits, now, future_tolerance)
    except _Invalid as e:
        return e.rejection
