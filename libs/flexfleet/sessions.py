"""Charging sessions, the input of availability forecasting: derived from telemetry or imported
from a charge-point management system's CSV export (docs/sessions-csv.md). Pure, no I/O.

A session is one stay of one vehicle on one charger, from plug-in to plug-out. Telemetry only
shows it through readings that arrive on a cadence and stop while a charger is offline, so
`derive_sessions` bridges such silences and estimates the ends; an import states them outright
but arrives with the faults of hand-edited spreadsheets, so `parse_sessions_csv` checks every
row and reports each fault with its physical line and field.

>>> rows, errors = parse_sessions_csv(
...     "vehicle_id,charger_id,plug_in_at,plug_out_at,energy_kwh\\n"
...     "v1,c1,2026-11-02T17:45:00Z,2026-11-03T07:10:00+01:00,18.5\\n"
...     "v1,c1,2026-11-03T17:30:00,2026-11-04T07:00:00Z,-2\\n")
>>> rows[0].plug_out_at.isoformat(), rows[0].energy_kwh
('2026-11-03T06:10:00+00:00', 18.5)
>>> [str(e) for e in errors]  # doctest: +NORMALIZE_WHITESPACE
['line 3: plug_in_at: has no UTC offset; write Z or +hh:mm, e.g. 2026-11-02T17:45:00Z',
 'line 3: energy_kwh: must be at least 0; got -2']
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import ID_PATTERN
from flexfleet.domain.time import format_rfc3339, to_utc

SESSION_COLUMNS: tuple[str, ...] = (
    "vehicle_id", "charger_id", "plug_in_at", "plug_out_at", "energy_kwh", "soc_start", "soc_end",
    "max_power_kw", "departure_declared_at", "min_soc", "target_soc", "complete")
REQUIRED_CSV_COLUMNS = ("vehicle_id", "charger_id", "plug_in_at", "plug_out_at", "energy_kwh")
OPTIONAL_CSV_COLUMNS = ("soc_start", "soc_end", "max_power_kw", "departure_declared_at", "min_soc", "target_soc")
# Passenger-car packs hold up to about 120 kWh (107 kWh the largest in data/vehicles); 200 kWh
# in one stay is a typo or a meter that wrapped, not a charge.
MAX_SESSION_KWH = 200.0
MAX_POWER_KW = 400.0        # the bound telemetry.v1 puts on power_kw
POWER_MARGIN = 1.1          # metering error and rounding of max_power_kw in exports
DEFAULT_MAX_GAP = timedelta(hours=6)
_FALLBACK_CADENCE_NS = 60 * 10**9   # a vehicle with one reading: the fleet's normal cadence
_NS_PER_HOUR = 3600 * 10**9


@dataclass(frozen=True, slots=True)
class Session:
    """One plug-in of one vehicle on one charger. Times are converted to UTC on construction;
    invariants the table also enforces are checked here, so a bad value fails where it enters."""

    vehicle_id: str
    charger_id: str | None
    plug_in_at: datetime
    plug_out_at: datetime
    energy_kwh: float
    soc_start: float | None = None
    soc_end: float | None = None
    max_power_kw: float | None = None
    departure_declared_at: datetime | None = None
    min_soc: float | None = None
    source: str = "import"
    complete: bool = True      # False: still plugged in when the data ended (telemetry only)
    target_soc: float | None = None   # the owner's departure target; last, so older callers' order holds

    def __post_init__(self) -> None:
        object.__setattr__(self, "plug_in_at", to_utc(self.plug_in_at, "plug_in_at"))
        object.__setattr__(self, "plug_out_at", to_utc(self.plug_out_at, "plug_out_at"))
        if self.departure_declared_at is not None:
            object.__setattr__(self, "departure_declared_at",
                               to_utc(self.departure_declared_at, "departure_declared_at"))
        if self.plug_out_at <= self.plug_in_at:
            raise DomainError("plug_out_at", "must be after plug_in_at")
        _number(self.energy_kwh, "energy_kwh", 0.0, None)
        for name in ("soc_start", "soc_end", "min_soc", "target_soc"):
            if getattr(self, name) is not None:
                _number(getattr(self, name), name, 0.0, 100.0)
        _target_not_below_minimum(self.target_soc, self.min_soc)
        if self.max_power_kw is not None:
            _number(self.max_power_kw, "max_power_kw", 0.0, MAX_POWER_KW)


@dataclass(frozen=True, slots=True)
class RowError:
    """A refused CSV row: its physical line (the header is line 1), the field at fault, why."""

    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


def _target_not_below_minimum(target: float | None, min_soc: float | None) -> None:
    """The owner asks for the target by departure and never to go below the minimum: a target
    under the minimum cannot be honoured both ways, so it is refused where it enters."""
    if target is not None and min_soc is not None and target < min_soc:
        raise DomainError("target_soc", f"must be at least min_soc ({min_soc:g}); got {target:g}")


def _number(value: object, name: str, lo: float | None, hi: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DomainError(name, f"must be a finite number; got {value!r}")
    if lo is not None and value < lo:
        raise DomainError(name, f"must be at least {lo:g}; got {value:g}")
    if hi is not None and value > hi:
        raise DomainError(name, f"must be at most {hi:g}; got {value:g}")
    return float(value)


# --- derivation from telemetry -----------------------------------------------------------------

def _utc_ns(column: pd.Series, name: str) -> np.ndarray:
    """UTC times as datetime64[ns] (NaT kept). Naive datetimes are refused: which offset they
    meant cannot be known. (Never via Timestamp objects: that is seconds per 10 million.)"""
    if column.dtype.kind == "M" and getattr(column.dtype, "tz", None) is None and column.notna().any():
        raise DomainError(name, "naive datetimes have no UTC offset; give timezone-aware times")
    return pd.to_datetime(column, utc=True).dt.as_unit("ns").to_numpy("datetime64[ns]")


def _column(readings: pd.DataFrame, name: str, n: int) -> np.ndarray:
    """A float column, all NaN when the readings do not have it."""
    if name not in readings:
        return np.full(n, np.nan)
    return pd.to_numeric(readings[name]).to_numpy(np.float64, na_value=np.nan)


def derive_sessions(readings: pd.DataFrame, max_gap: timedelta = DEFAULT_MAX_GAP,
                    data_end: datetime | None = None) -> pd.DataFrame:
    """Sessions (columns SESSION_COLUMNS, sorted by vehicle and plug-in) from telemetry rows.

    A session is a maximal run of plugged-in readings of one vehicle on one charger. Consecutive
    plugged readings on the same charger less than `max_gap` apart belong to the same run even
    though readings are missing between them: a charger that drops off the network does not end
    the stay, and a reading in between would have shown an unplugging. The end is estimated from
    what follows the run:

    - an unplugged reading, or the vehicle on another charger, less than `max_gap` later: the
      time of that reading (an unplugged car reports through its maker's API at once);
    - otherwise (a silence of `max_gap` or more, or the data ends): the last plugged reading
      plus the vehicle's median cadence. When the data ends less than `max_gap` after that
      reading, `complete` is False: the car may still be plugged in. `data_end` is where the
      readings stop being complete (the end of the window read); by default the last reading.

    `max_gap` is thus the horizon of what readings say about each other, which makes deriving
    two adjacent windows (resuming the open sessions) give the same sessions as deriving both
    at once.

    Energy is the difference of the charger's import register over the run where it was read at
    least twice (and did not run backwards), otherwise the trapezoid of positive power over time.
    The owner's declaration (departure, minimum and target SoC) is each one's first value in the
    run: what the stay was planned for.

    All of it is array arithmetic over run ids, no Python per reading: 10 million readings take
    about 10 s on one core (twice that when they come in random order rather than by time).
    """
    for name in ("vehicle_id", "ts", "plugged_in"):
        if name not in readings:
            raise DomainError(name, "column missing from the readings")
    if readings.empty:
        return _empty_sessions()
    if readings["vehicle_id"].isna().any() or readings["plugged_in"].isna().any():
        bad = "vehicle_id" if readings["vehicle_id"].isna().any() else "plugged_in"
        raise DomainError(bad, "must not be null in any reading")
    vehicle_codes, vehicles = pd.factorize(readings["vehicle_id"], sort=True)
    ts = _utc_ns(readings["ts"], "ts")
    if np.isnat(ts).any():
        raise DomainError("ts", "must not be null in any reading")
    ts = ts.view(np.int64)

    # Sort by vehicle and time (a no-op for rows read with ORDER BY vehicle_id, ts).
    v_sorted = np.diff(vehicle_codes)
    if (v_sorted < 0).any() or ((v_sorted == 0) & (np.diff(ts) < 0)).any():
        order = np.lexsort((ts, vehicle_codes))
    else:
        order = np.arange(len(ts))
    v, t = vehicle_codes[order], ts[order]
    # A reading repeated at the same instant (a redelivery) counts once.
    repeated = np.zeros(len(t), dtype=bool)
    repeated[1:] = (v[1:] == v[:-1]) & (t[1:] == t[:-1])
    if repeated.any():
        order, v, t = order[~repeated], v[~repeated], t[~repeated]
    n = len(t)
    same_v = np.zeros(n, dtype=bool)                # the row before is of the same vehicle
    same_v[1:] = v[1:] == v[:-1]
    gap = np.zeros(n, dtype=np.int64)               # ns since that row
    gap[1:] = np.where(same_v[1:], t[1:] - t[:-1], 0)

    plugged = readings["plugged_in"].to_numpy(bool)[order]
    if "charger_id" in readings:
        charger_codes, chargers = pd.factorize(readings["charger_id"])
        c = charger_codes[order]
        charger_names = np.append(np.asarray(chargers, dtype=object), None)  # code -1 -> None
    else:
        c, charger_names = np.full(n, -1), np.array([None], dtype=object)
    power = _column(readings, "power_kw", len(ts))[order]

    # Run ids: a plugged reading continues the run of the reading before it when that one was
    # plugged on the same charger, of the same vehicle, less than max_gap earlier.
    max_gap_ns = int(max_gap / timedelta(microseconds=1)) * 1000
    cont = np.zeros(n, dtype=bool)
    cont[1:] = same_v[1:] & plugged[1:] & plugged[:-1] & (c[1:] == c[:-1]) & (gap[1:] < max_gap_ns)
    starts = np.flatnonzero(plugged & ~cont)
    if len(starts) == 0:
        return _empty_sessions()
    run = np.cumsum(plugged & ~cont) - 1
    ends = np.flatnonzero(plugged & ~np.append(cont[1:], False))

    # Each vehicle's median interval between readings, for ends that nothing else tells.
    steps = pd.Series(gap[same_v]).groupby(v[same_v]).median()
    cadence = np.full(len(vehicles), np.nan)
    cadence[steps.index.to_numpy()] = steps.to_numpy()
    fleet_cadence = np.nanmedian(cadence) if np.isfinite(cadence).any() else _FALLBACK_CADENCE_NS
    cadence = np.maximum(np.nan_to_num(cadence, nan=fleet_cadence), 10**9).astype(np.int64)

    last_t = t[ends]
    nxt = np.minimum(ends + 1, n - 1)
    has_next = (ends + 1 < n) & same_v[nxt]
    # The next reading ends the run (unplugged, or on another charger) and tells when, unless it
    # came after a silence of max_gap or more, in which the car may have done anything.
    told = has_next & (t[nxt] - last_t < max_gap_ns)
    plug_out = np.where(told, t[nxt], last_t + cadence[v[ends]])
    end_ns = t.max() if data_end is None else pd.Timestamp(to_utc(data_end, "data_end")).as_unit("ns").value
    complete = has_next | (end_ns - last_t >= max_gap_ns)

    # Energy: trapezoid of positive power between consecutive readings of a run ...
    pos = np.clip(np.nan_to_num(power, nan=0.0), 0.0, None)
    seg = np.zeros(n)
    seg[1:] = 0.5 * (pos[1:] + pos[:-1]) * gap[1:] / _NS_PER_HOUR
    trapezoid = np.bincount(run[cont], weights=seg[cont], minlength=len(starts))
    # ... unless the charger's import register was read at least twice in the run.
    inside = np.flatnonzero(plugged)
    src = order[inside]
    per_reading = pd.DataFrame({
        "run": run[inside],
        "power": power[inside],
        "soc": _column(readings, "soc_pct", len(ts))[src],
        "register": _column(readings, "energy_import_kwh", len(ts))[src],
        "min_soc": _column(readings, "min_soc_pct", len(ts))[src],
        "target_soc": _column(readings, "target_soc_pct", len(ts))[src],
        "departure": (_utc_ns(readings["departure_at"], "departure_at")[src]
                      if "departure_at" in readings else np.datetime64("NaT", "ns")),
    })
    agg = per_reading.groupby("run", sort=True).agg(
        soc_start=("soc", "first"), soc_end=("soc", "last"), max_power_kw=("power", "max"),
        reg_first=("register", "first"), reg_last=("register", "last"), reg_n=("register", "count"),
        departure=("departure", "first"), min_soc=("min_soc", "first"), target_soc=("target_soc", "first"))
    by_register = agg["reg_last"].to_numpy() - agg["reg_first"].to_numpy()
    use_register = (agg["reg_n"].to_numpy() >= 2) & (by_register >= 0)
    energy = np.where(use_register, by_register, trapezoid)

    return pd.DataFrame({
        "vehicle_id": np.asarray(vehicles, dtype=object)[v[starts]],
        "charger_id": charger_names[c[starts]],
        "plug_in_at": pd.to_datetime(t[starts], unit="ns", utc=True),
        "plug_out_at": pd.to_datetime(plug_out, unit="ns", utc=True),
        "energy_kwh": energy,
        "soc_start": agg["soc_start"].to_numpy(),
        "soc_end": agg["soc_end"].to_numpy(),
        "max_power_kw": np.clip(agg["max_power_kw"].to_numpy(), 0.0, None),  # discharging only: 0
        "departure_declared_at": pd.to_datetime(agg["departure"].to_numpy(), utc=True),
        "min_soc": agg["min_soc"].to_numpy(),
        "target_soc": agg["target_soc"].to_numpy(),
        "complete": complete,
    })


def _empty_sessions() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=float) for name in SESSION_COLUMNS})
    for name in ("vehicle_id", "charger_id"):
        frame[name] = frame[name].astype(object)
    for name in ("plug_in_at", "plug_out_at", "departure_declared_at"):
        frame[name] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["complete"] = frame["complete"].astype(bool)
    return frame


# --- CSV import ---------------------------------------------------------------------------------

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?")


def _id_cell(text: str, name: str) -> str:
    if not text:
        raise DomainError(name, "is required")
    if not ID_PATTERN.fullmatch(text):
        raise DomainError(name, f"must be 1-64 characters of A-Z a-z 0-9 _ . : -; got {text[:70]!r}")
    return text


def _time_cell(text: str, name: str) -> datetime | None:
    if not text:
        return None
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise DomainError(name, f"is not an RFC 3339 date-time: {text[:40]!r} "
                                "(expected e.g. 2026-11-02T17:45:00Z)")
    if m["offset"] is None:
        raise DomainError(name, "has no UTC offset; write Z or +hh:mm, e.g. 2026-11-02T17:45:00Z")
    try:
        ts = datetime.fromisoformat(text[:-1] + "Z" if m["offset"] == "z" else text)
    except ValueError as e:
        raise DomainError(name, f"is not a valid date-time: {text[:40]!r} ({e})") from None
    return ts.astimezone(UTC)


def _number_cell(lo: float, hi: float | None) -> Callable[[str, str], float | None]:
    def parse(text: str, name: str) -> float | None:
        if not text:
            return None
        try:
            x = float(text)
        except ValueError:
            hint = " (use a decimal point)" if "," in text else ""
            raise DomainError(name, f"is not a number: {text[:40]!r}{hint}") from None
        return _number(x, name, lo, hi)
    return parse


# Every column the format knows, in order, with its cell parser; required ones must not be empty.
_CELLS: dict[str, Callable[[str, str], object]] = {
    "vehicle_id": _id_cell,
    "charger_id": _id_cell,
    "plug_in_at": _time_cell,
    "plug_out_at": _time_cell,
    "energy_kwh": _number_cell(0.0, None),
    "soc_start": _number_cell(0.0, 100.0),
    "soc_end": _number_cell(0.0, 100.0),
    "max_power_kw": _number_cell(0.0, MAX_POWER_KW),
    "departure_declared_at": _time_cell,
    "min_soc": _number_cell(0.0, 100.0),
    "target_soc": _number_cell(0.0, 100.0),
}
_BAD = object()


def _header(row: list[str]) -> dict[str, int]:
    names = [name.strip().lower() for name in row]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen and name in _CELLS:
            raise DomainError("header", f"column {name} appears twice")
        seen.setdefault(name, i)
    missing = [name for name in REQUIRED_CSV_COLUMNS if name not in seen]
    if missing:
        raise DomainError("header", f"missing required column(s): {', '.join(missing)} "
                                    f"(the header must name {', '.join(REQUIRED_CSV_COLUMNS)})")
    return {name: i for name, i in seen.items() if name in _CELLS}


def _parse_row(cells: list[str], columns: dict[str, int], line: int,
               known_vehicles: set[str] | None) -> tuple[Session | None, list[RowError]]:
    """One row's Session, or every fault found in it: each field is checked on its own, then the
    rules that tie fields together, where those fields were readable."""
    errors: list[RowError] = []
    value: dict[str, object] = {}
    for name, parse in _CELLS.items():
        text = cells[columns[name]].strip() if name in columns else ""
        try:
            value[name] = parse(text, name)
            if value[name] is None and name in REQUIRED_CSV_COLUMNS:
                raise DomainError(name, "is required")
        except DomainError as e:
            errors.append(RowError(line, e.field, e.reason))
            value[name] = _BAD
    vehicle, t_in, t_out = value["vehicle_id"], value["plug_in_at"], value["plug_out_at"]
    energy, max_kw = value["energy_kwh"], value["max_power_kw"]
    target, min_soc = value["target_soc"], value["min_soc"]
    if known_vehicles is not None and vehicle is not _BAD and vehicle not in known_vehicles:
        errors.append(RowError(line, "vehicle_id", f"unknown vehicle {vehicle!r}: not in the fleet registry"))
    times_ok = t_in is not _BAD and t_out is not _BAD
    if times_ok and t_out <= t_in:
        errors.append(RowError(line, "plug_out_at", f"must be after plug_in_at ({format_rfc3339(t_in)})"))
        times_ok = False
    if energy is not _BAD:
        if energy > MAX_SESSION_KWH:
            errors.append(RowError(line, "energy_kwh", f"{energy:g} kWh in one session is not plausible "
                                                       f"(at most {MAX_SESSION_KWH:g} kWh)"))
        elif times_ok and max_kw is not None and max_kw is not _BAD:
            hours = (t_out - t_in) / timedelta(hours=1)
            limit = max_kw * hours * POWER_MARGIN
            if energy > limit + 1e-9:
                errors.append(RowError(line, "energy_kwh", f"{energy:g} kWh is more than max_power_kw "
                                       f"allows ({max_kw:g} kW × {hours:.2f} h + 10 % = {limit:.2f} kWh)"))
    if target is not None and target is not _BAD and min_soc is not None and min_soc is not _BAD:
        try:
            _target_not_below_minimum(target, min_soc)
        except DomainError as e:
            errors.append(RowError(line, e.field, e.reason))
    if errors:
        return None, errors
    return Session(**{name: value[name] for name in _CELLS}, source="import"), []


def parse_sessions_csv(text: str, known_vehicles: set[str] | None = None) -> tuple[list[Session], list[RowError]]:
    """The sessions of a charge-point management system's CSV export, and every refused row.

    Each row is judged on its own, then against the rows above it that were accepted (a second
    row for the same vehicle and plug-in time is a duplicate, a stay that overlaps an accepted
    one of the same vehicle is refused); so bad rows never cost good ones. Lines are physical
    lines of the file, the header being line 1. A header without the required columns makes the
    whole file unusable: DomainError("header", ...). Unknown columns are ignored.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DomainError("header", "the file is empty; the first line must name the columns") from None
    except csv.Error as e:
        raise DomainError("header", f"not readable as CSV: {e}") from None
    columns, width = _header(header), len(header)
    sessions: list[Session] = []
    errors: list[RowError] = []
    first_line: dict[tuple[str, datetime], int] = {}
    accepted: dict[str, list[tuple[datetime, datetime, int]]] = {}   # per vehicle, by plug-in
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            errors.append(RowError(line, "row", f"not readable as CSV: {e}"))
            break
        row_line, line = line, reader.line_num + 1
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if len(cells) != width:
            errors.append(RowError(row_line, "row", f"has {len(cells)} fields, the header has {width}"))
            continue
        session, row_errors = _parse_row(cells, columns, row_line, known_vehicles)
        if session is None:
            errors.extend(row_errors)
            continue
        key = (session.vehicle_id, session.plug_in_at)
        if key in first_line:
            errors.append(RowError(row_line, "plug_in_at", f"duplicates line {first_line[key]} "
                                                           "(same vehicle_id and plug_in_at)"))
            continue
        stays = accepted.setdefault(session.vehicle_id, [])
        i = bisect.bisect(stays, (session.plug_in_at,))
        clash = None
        if i > 0 and stays[i - 1][1] > session.plug_in_at:
            clash = "plug_in_at", stays[i - 1]
        elif i < len(stays) and stays[i][0] < session.plug_out_at:
            clash = "plug_out_at", stays[i]
        if clash is not None:
            field, (t_in, t_out, other) = clash
            errors.append(RowError(row_line, field, f"overlaps the session on line {other} of the same vehicle "
                                                    f"({format_rfc3339(t_in)} to {format_rfc3339(t_out)})"))
            continue
        stays.insert(i, (session.plug_in_at, session.plug_out_at, row_line))
        first_line[key] = row_line
        sessions.append(session)
    return sessions, errors
