"""Charging sessions in the database: imported from a charge-point management system's CSV
export, or derived from stored telemetry. The rules are in flexfleet.sessions; this module only
reads and writes, keyed on (vehicle_id, plug_in_at) so that doing anything twice is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg

from flexfleet.domain import DomainError, to_utc
from flexfleet.sessions import DEFAULT_MAX_GAP, SESSION_COLUMNS, RowError, Session, derive_sessions, parse_sessions_csv

_COLUMNS = (*SESSION_COLUMNS, "source")
_INSERT = (f"INSERT INTO charging_sessions ({', '.join(_COLUMNS)}) "
           f"VALUES ({', '.join(['%s'] * len(_COLUMNS))}) ON CONFLICT (vehicle_id, plug_in_at) ")
# An import never overwrites: the same file twice inserts nothing the second time.
_IMPORT = _INSERT + "DO NOTHING"
# A derived session replaces a stored one only while that one is still open (the car was
# plugged in when the data read last time ended); complete sessions and imports stay as they are.
_UPSERT = (_INSERT + "DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in ("vehicle_id", "plug_in_at"))
           + ", imported_at = now() WHERE NOT charging_sessions.complete")
_TELEMETRY = ("vehicle_id", "ts", "plugged_in", "charger_id", "power_kw", "soc_pct", "energy_import_kwh",
              "departure_at", "min_soc_pct", "target_soc_pct")
# Sessions that the window's first readings may continue: open ones, and complete ones that
# straddle `start` (a window derived again). Reading from their plug-in re-derives them whole
# with the same key instead of adding a truncated copy.
_RESUME = ("SELECT vehicle_id, min(plug_in_at) FROM charging_sessions WHERE source = 'telemetry' "
           "AND vehicle_id = ANY(%(ids)s) AND plug_in_at < %(start)s AND (NOT complete OR plug_out_at > %(start)s) "
           "GROUP BY vehicle_id")
_READ = (f"SELECT {', '.join('t.' + c for c in _TELEMETRY)} FROM telemetry t "
         "LEFT JOIN unnest(%(resume_ids)s::text[], %(resume_from)s::timestamptz[]) AS r(vehicle_id, since) "
         "USING (vehicle_id) "
         "WHERE t.vehicle_id = ANY(%(ids)s) AND t.ts >= %(lo)s AND t.ts < %(end)s "
         "AND t.ts >= coalesce(r.since, %(start)s) "
         'ORDER BY t.vehicle_id COLLATE "C", t.ts')


@dataclass(frozen=True)
class ImportResult:
    inserted: int
    already_present: int                  # accepted rows whose (vehicle_id, plug_in_at) was stored
    errors: list[RowError] = field(default_factory=list)


def _row(s: Session) -> tuple:
    return tuple(getattr(s, name) for name in _COLUMNS)


def import_sessions_csv(conn: psycopg.Connection, path: str | Path) -> ImportResult:
    """Validate a CSV export against the fleet registry and insert its good rows in one transaction.

    Raises DomainError when the file as a whole is unusable (not UTF-8, no usable header)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DomainError("file", f"is not UTF-8 text (byte {e.start}); export or save it as UTF-8") from None
    with conn.transaction(), conn.cursor() as cur:
        known = {vehicle_id for vehicle_id, in cur.execute("SELECT vehicle_id FROM vehicles")}
        sessions, errors = parse_sessions_csv(text, known)
        inserted = 0
        if sessions:
            cur.executemany(_IMPORT, [_row(s) for s in sessions])
            inserted = cur.rowcount
    return ImportResult(inserted, len(sessions) - inserted, errors)


def _records(sessions: pd.DataFrame, source: str) -> list[tuple]:
    """Rows for psycopg: NaN/NaT as None, numpy scalars as Python ones."""
    frame = sessions.loc[:, list(SESSION_COLUMNS)].astype(object)
    frame = frame.where(sessions.notna(), None)
    frame["source"] = source
    return [tuple(row) for row in frame.itertuples(index=False, name=None)]


def derive_and_store_sessions(conn: psycopg.Connection, start: datetime, end: datetime, *,
                              vehicles_per_batch: int = 100, max_gap: timedelta = DEFAULT_MAX_GAP) -> int:
    """Derive sessions from the telemetry of [start, end) and upsert them (source 'telemetry');
    returns the number of rows inserted or updated.

    Vehicles are read in batches, so memory grows with vehicles_per_batch x readings per vehicle
    in the window, not with the fleet. Derive contiguous windows: a session still open at `end`
    is stored with complete = false and finished by the next window, which reads that vehicle's
    telemetry from the session's plug-in. Each batch commits on its own (savepoints, when the
    caller has a transaction open)."""
    start, end = to_utc(start, "start"), to_utc(end, "end")
    if end <= start:
        raise DomainError("end", "must be after start")
    with conn.transaction():    # not left open: each batch below is then a transaction of its own
        ids = [vehicle_id for vehicle_id, in conn.execute('SELECT vehicle_id FROM vehicles ORDER BY vehicle_id COLLATE "C"')]
    written = 0
    for i in range(0, len(ids), vehicles_per_batch):
        batch = ids[i:i + vehicles_per_batch]
        with conn.transaction(), conn.cursor() as cur:
            resume = dict(cur.execute(_RESUME, {"ids": batch, "start": start}).fetchall())
            rows = cur.execute(_READ, {
                "ids": batch, "start": start, "end": end, "lo": min([start, *resume.values()]),
                "resume_ids": list(resume), "resume_from": list(resume.values())}).fetchall()
            if not rows:
                continue
            sessions = derive_sessions(pd.DataFrame(rows, columns=list(_TELEMETRY)), max_gap, data_end=end)
            if len(sessions):
                cur.executemany(_UPSERT, _records(sessions, "telemetry"))
                written += cur.rowcount
    return written
