"""Forecasters and forecasts in PostgreSQL (migration 0003), and the outbox relay to forecasts.v1.

Every issued forecast is stored with its issue time, the version of the forecaster that issued
it and the latest session import it could see, so a backtest or an audit can replay exactly what
was known then (`services.forecaster.service.replay`). Loading gives back the issued frames with
the same columns, dtypes, row order and bit-identical values: the dtypes are recorded with the
forecast, values are double precision, and the row order is kept in row_no.

Per-vehicle rows (384k for 2,000 vehicles) go in with binary COPY built by numpy; they stay in
the database. Kafka gets the portfolio only (docs/schemas/forecasts.v1.json), through an outbox:
a forecast is marked published only after the broker acknowledged it, so a crash in between
sends it again and consumers deduplicate on forecast_id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np
import orjson
import pandas as pd
import psycopg
from kafka import KafkaProducer
from psycopg.types.json import Jsonb

from flexfleet.domain import DomainError
from flexfleet.domain.time import require_aware
from flexfleet.domain.zones import BiddingZone
from flexfleet.forecast.pipeline import FleetForecast, Forecaster
from services.runtime.pgcopy import Column, binary_copy

FORECASTS_TOPIC = "forecasts.v1"

_QUANTILES = ("q05", "q10", "q25", "q50", "q75", "q90", "q95")
# Stored columns and their COPY kinds, in table order. A frame may lack an optional column
# (it is then stored as NULL or the column default, and not given back on load).
PORTFOLIO_COLUMNS: dict[str, str] = {
    "direction": "text", "endurance_min": "int4", "target_start": "timestamptz",
    **{q: "float8" for q in _QUANTILES}, "p90_kw": "float8", "p90_kwh": "float8"}
VEHICLE_COLUMNS: dict[str, str] = {
    "vehicle_id": "text", "target_start": "timestamptz", "p_up": "float8", "p_down": "float8",
    "capacity_up_kw": "float8", "capacity_down_kw": "float8", "soc_p10": "float8", "soc_p50": "float8",
    "soc_p90": "float8", "departure_p10_at": "timestamptz", "up_20_kw": "float8", "down_20_kw": "float8",
    "up_60_kw": "float8", "down_60_kw": "float8", "up_120_kw": "float8", "down_120_kw": "float8"}
_REQUIRED = {"portfolio": ("direction", "target_start", *_QUANTILES),
             "vehicles": ("vehicle_id", "target_start")}
_TABLES = {"portfolio": ("forecast_portfolio", PORTFOLIO_COLUMNS),
           "vehicles": ("forecast_vehicles", VEHICLE_COLUMNS)}
_INFO = ("SELECT forecast_id, zone, issued_at, forecaster_version, sessions_known_at, created_at, published "
         "FROM forecasts ")


class NotFound(LookupError):
    """No stored forecast or forecaster with that id; the message names it."""


@dataclass(frozen=True)
class StoredForecaster:
    version: str
    zone: BiddingZone
    trained_until: datetime
    trained_at: datetime


@dataclass(frozen=True)
class StoredForecast:
    """A stored forecast's facts, without its frames (those are big; see `load_forecast`)."""

    forecast_id: str
    zone: BiddingZone
    issued_at: datetime
    forecaster_version: str
    sessions_known_at: datetime | None   # latest charging_sessions.imported_at it could see
    created_at: datetime
    published: bool


class SavedForecast(NamedTuple):
    forecast_id: str
    created: bool       # False: the same (zone, issued_at, version) was stored already


# -- forecasters --------------------------------------------------------------------------------
def save_forecaster(conn: psycopg.Connection, forecaster: Forecaster, trained_at: datetime) -> str:
    """Store a trained forecaster once (its version hashes its content); returns the version."""
    require_aware(trained_at, "trained_at")
    version = forecaster.version
    with conn.transaction():
        conn.execute("INSERT INTO forecasters (version, zone, trained_until, trained_at, body) "
                     "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (version) DO NOTHING",
                     (version, forecaster.zone.value, forecaster.trained_until, trained_at, forecaster.to_json()))
    return version


def load_forecaster(conn: psycopg.Connection, version: str) -> Forecaster:
    row = conn.execute("SELECT body FROM forecasters WHERE version = %s", (version,)).fetchone()
    if row is None:
        raise NotFound(f"forecaster_version: {version!r} is not stored")
    return Forecaster.from_json(row[0])


def latest_forecaster(conn: psycopg.Connection, zone: str | BiddingZone) -> StoredForecaster | None:
    """The zone's most recently trained forecaster, or None before the first training."""
    row = conn.execute("SELECT version, zone, trained_until, trained_at FROM forecasters WHERE zone = %s "
                       "ORDER BY trained_at DESC, trained_until DESC LIMIT 1",
                       (BiddingZone.parse(zone).value,)).fetchone()
    if row is None:
        return None
    return StoredForecaster(row[0], BiddingZone.parse(row[1]), row[2].astimezone(UTC), row[3].astimezone(UTC))


# -- forecasts ----------------------------------------------------------------------------------
def _stored_columns(frame: pd.DataFrame, part: str) -> list[str]:
    """The frame's columns, checked against the table: required ones present, none unknown."""
    table, columns = _TABLES[part]
    missing = [c for c in _REQUIRED[part] if c not in frame.columns]
    if missing:
        raise DomainError(f"{part}", f"missing column(s) {', '.join(missing)}")
    unknown = [c for c in frame.columns if c not in columns]
    if unknown:
        raise DomainError(f"{part}.{unknown[0]}", f"has no column in {table}; add one with a migration")
    return list(frame.columns)


def _copy_frame(cur: psycopg.Cursor, forecast_id: str, frame: pd.DataFrame, part: str) -> None:
    table, kinds = _TABLES[part]
    n = len(frame)
    columns = [Column("uuid", forecast_id), Column("int4", np.arange(n))]
    columns += [Column(kinds[c], frame[c]) for c in frame.columns]
    with cur.copy(f"COPY {table} (forecast_id, row_no, {', '.join(frame.columns)}) FROM STDIN (FORMAT binary)") as copy:
        copy.write(binary_copy(columns, n))


def _existing(conn: psycopg.Connection, zone: BiddingZone, issued_at: datetime, version: str) -> str | None:
    row = conn.execute("SELECT forecast_id FROM forecasts WHERE zone = %s AND issued_at = %s "
                       "AND forecaster_version = %s", (zone.value, issued_at, version)).fetchone()
    return None if row is None else str(row[0])


def save_forecast(conn: psycopg.Connection, forecast: FleetForecast,
                  sessions_known_at: datetime | None) -> SavedForecast:
    """Store a forecast in one transaction. Idempotent on (zone, issued_at, forecaster_version):
    saving the same issue again returns the stored id and writes nothing. The forecaster must
    have been saved first."""
    require_aware(forecast.issued_at, "issued_at")
    if sessions_known_at is not None:
        require_aware(sessions_known_at, "sessions_known_at")
    zone = BiddingZone.parse(forecast.zone)
    frames = {part: [[c, str(getattr(forecast, part)[c].dtype)] for c in _stored_columns(getattr(forecast, part), part)]
              for part in _TABLES}
    found = _existing(conn, zone, forecast.issued_at, forecast.forecaster_version)
    if found is not None:  # checked first so a rerun does not pay for encoding the frames
        return SavedForecast(found, False)
    forecast_id = str(uuid.uuid4())
    try:
        with conn.transaction(), conn.cursor() as cur:
            inserted = cur.execute(
                "INSERT INTO forecasts (forecast_id, zone, issued_at, forecaster_version, sessions_known_at, frames) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (zone, issued_at, forecaster_version) DO NOTHING "
                "RETURNING forecast_id",
                (forecast_id, zone.value, forecast.issued_at, forecast.forecaster_version, sessions_known_at,
                 Jsonb(frames))).fetchone()
            if inserted is None:  # another process stored the same issue meanwhile
                return SavedForecast(_existing(conn, zone, forecast.issued_at, forecast.forecaster_version), False)
            _copy_frame(cur, forecast_id, forecast.portfolio, "portfolio")
            _copy_frame(cur, forecast_id, forecast.vehicles, "vehicles")
    except psycopg.errors.ForeignKeyViolation:
        raise DomainError("forecaster_version", f"{forecast.forecaster_version!r} is not stored; "
                          "save the forecaster first") from None
    return SavedForecast(forecast_id, True)


def prune_vehicle_rows(conn: psycopg.Connection, zone: str | BiddingZone, issued_before: datetime) -> int:
    """Delete the per-vehicle rows of the zone's forecasts issued before `issued_before` and keep
    their portfolio; returns the rows deleted. Per-vehicle rows are what bidding and dispatch
    read around delivery, and they are big (2,000 cars: 384k rows, about 76 MB a forecast, so
    1.8 GB a day at hourly issues); the portfolio is the lasting record (about 0.2 MB)."""
    return conn.execute("DELETE FROM forecast_vehicles v USING forecasts f WHERE v.forecast_id = f.forecast_id "
                        "AND f.zone = %s AND f.issued_at < %s",
                        (BiddingZone.parse(zone).value, issued_before)).rowcount


def _info(row: tuple) -> StoredForecast:
    return StoredForecast(str(row[0]), BiddingZone.parse(row[1]), row[2].astimezone(UTC), row[3],
                          None if row[4] is None else row[4].astimezone(UTC), row[5].astimezone(UTC), row[6])


def _forecast_uuid(forecast_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(forecast_id))
    except ValueError:
        raise DomainError("forecast_id", f"{forecast_id!r} is not a UUID") from None


def forecast_info(conn: psycopg.Connection, forecast_id: str) -> StoredForecast:
    row = conn.execute(_INFO + "WHERE forecast_id = %s", (_forecast_uuid(forecast_id),)).fetchone()
    if row is None:
        raise NotFound(f"forecast_id: no forecast {forecast_id} is stored")
    return _info(row)


def latest_forecast(conn: psycopg.Connection, zone: str | BiddingZone) -> StoredForecast | None:
    """The zone's forecast with the latest issue time (the most recently stored among equals)."""
    row = conn.execute(_INFO + "WHERE zone = %s ORDER BY issued_at DESC, created_at DESC LIMIT 1",
                       (BiddingZone.parse(zone).value,)).fetchone()
    return None if row is None else _info(row)


def _select(column: str, kind: str) -> str:
    # Timestamps travel as integer microseconds: exact, and no Python datetime per value.
    value = f"(extract(epoch FROM {column}) * 1000000)::int8" if kind == "timestamptz" else column
    return f"array_agg({value} ORDER BY row_no)"


def _load_frame(conn: psycopg.Connection, forecast_id: uuid.UUID, part: str,
                columns: list[list[str]], rows: bool = True) -> pd.DataFrame:
    table, kinds = _TABLES[part]
    values: tuple = (None,) * len(columns)
    if rows and columns:
        found = conn.execute(f"SELECT {', '.join(_select(c, kinds[c]) for c, _ in columns)} FROM {table} "
                             "WHERE forecast_id = %s", (forecast_id,), binary=True).fetchone()
        values = found if found[0] is not None else values
    data = {}
    for (column, dtype), array in zip(columns, values):
        array = [] if array is None else array
        kind = kinds[column]
        if kind == "timestamptz":
            series = pd.to_datetime(pd.array(array, dtype="Int64"), unit="us", utc=True)
        elif kind == "float8":
            series = np.array(array, dtype=float)  # NULL (a NaN when issued) -> NaN
        elif kind == "int4":
            series = np.array(array, dtype=np.int64)
        else:
            series = pd.array(array, dtype=object)
        data[column] = pd.Series(series).astype(dtype)
    return pd.DataFrame(data)


def load_forecast(conn: psycopg.Connection, forecast_id: str, vehicles: bool = True) -> FleetForecast:
    """The forecast as it was issued. vehicles=False skips the per-vehicle rows (an empty frame
    with the issued columns): the portfolio alone is a few thousand rows, the vehicles 384k."""
    key = _forecast_uuid(forecast_id)
    row = conn.execute("SELECT zone, issued_at, forecaster_version, frames FROM forecasts WHERE forecast_id = %s",
                       (key,)).fetchone()
    if row is None:
        raise NotFound(f"forecast_id: no forecast {forecast_id} is stored")
    zone, issued_at, version, frames = row
    return FleetForecast(issued_at.astimezone(UTC), BiddingZone.parse(zone), version,
                         _load_frame(conn, key, "portfolio", frames["portfolio"]),
                         _load_frame(conn, key, "vehicles", frames["vehicles"], rows=vehicles))


# -- forecasts.v1 -------------------------------------------------------------------------------
def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def forecast_message(conn: psycopg.Connection, info: StoredForecast) -> bytes:
    """The forecasts.v1 document of a stored forecast: its facts and portfolio rows."""
    rows = conn.execute(f"SELECT direction, endurance_min, target_start, {', '.join(_QUANTILES)}, p90_kw, p90_kwh "
                        "FROM forecast_portfolio WHERE forecast_id = %s ORDER BY row_no",
                        (uuid.UUID(info.forecast_id),)).fetchall()
    names = ("direction", "endurance_min", "target_start", *_QUANTILES, "p90_kw", "p90_kwh")
    portfolio = [dict(zip(names, (r[0], r[1], _rfc3339(r[2]), *r[3:]))) for r in rows]
    return orjson.dumps({
        "forecast_id": info.forecast_id, "issued_at": _rfc3339(info.issued_at), "zone": info.zone.value,
        "forecaster_version": info.forecaster_version,
        "sessions_known_at": None if info.sessions_known_at is None else _rfc3339(info.sessions_known_at),
        "portfolio": portfolio})


def publish_pending(conn: psycopg.Connection, producer: KafkaProducer, topic: str = FORECASTS_TOPIC,
                    timeout_s: float = 30.0) -> int:
    """Send every unpublished forecast to `topic` keyed by zone, oldest first, and mark each
    published once the broker acknowledged it; returns how many were sent. A broker error
    propagates with the forecast still unpublished: the next call sends it again (at least
    once). The producer must send bytes (no value serializer)."""
    sent = 0
    while True:
        with conn.transaction():
            row = conn.execute(_INFO + "WHERE NOT published ORDER BY created_at, issued_at LIMIT 1 "
                               "FOR UPDATE SKIP LOCKED").fetchone()
            if row is None:
                return sent
            info = _info(row)
            future = producer.send(topic, key=info.zone.value.encode(), value=forecast_message(conn, info))
            producer.flush(timeout=timeout_s)
            future.get(timeout=timeout_s)  # raises unless the broker acknowledged (acks as configured)
            conn.execute("UPDATE forecasts SET published = true WHERE forecast_id = %s", (uuid.UUID(info.forecast_id),))
        sent += 1
