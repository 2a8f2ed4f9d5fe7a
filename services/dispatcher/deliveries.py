"""Delivery verification as a service: read obligations, measured power and the grid frequency
from PostgreSQL, verify them with flexfleet.dispatch.verification, store what each obligation
delivered per MTU and per site (migration 0007), and publish each result on deliveries.v1.

Storage is idempotent: a rerun upserts (obligation_id, mtu_start) and its sites; a result equal
to the stored one (same content_hash) changes nothing and is not sent again, a different one
(late measurements) replaces it with revision + 1. Kafka gets the results through an outbox: a
row is marked published only after the broker acknowledged it, so a crash loses nothing; one
between the acknowledgement and the mark sends that revision again, and consumers deduplicate
on (obligation_id, mtu_start, revision) (docs/schemas/deliveries.v1.json). Messages are built
from the stored rows, so the topic says what the database says.

Measured power (the VEN agents' reports) is written with `write_measurements`, the frequency
with `write_frequency`; the local-flexibility baseline reads the telemetry table's history.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pandas as pd
import psycopg
from kafka import KafkaProducer
from psycopg.types.json import Jsonb

from flexfleet.dispatch.baselines import (Baseline, BaselineMethod, VerificationInputError, baseline_method_for,
                                          declared_schedule, rolling_average, working_days_before)
from flexfleet.dispatch.fcr import response_requirement
from flexfleet.dispatch.verification import Delivery, Measurements, Resource, shared_kw, verify_obligation
from flexfleet.markets.catalogue import Catalogue, FrequencyActivation, Product
from flexfleet.markets.clearing import FrequencyTrace
from flexfleet.markets.packaged import default_catalogue
from services.bidder.store import Obligation, list_obligations
from services.runtime import metrics
from services.runtime.pgcopy import Column, binary_copy

log = logging.getLogger(__name__)

DELIVERIES_TOPIC = "deliveries.v1"
SCHEMA_VERSION = 1
MAX_GAP_S = 120.0            # a measurement holds for at most this long (Measurements.max_gap_s)
NORDIC = "Nordic"

_MEASURED_STAGE = """CREATE TEMP TABLE IF NOT EXISTS measured_power_stage (
    vehicle_id text, ts timestamptz, power_kw float8, baseline_kw float8, plugged int4,
    charger_id text, ven_name text, report_id text) ON COMMIT DELETE ROWS"""
_FREQUENCY_STAGE = """CREATE TEMP TABLE IF NOT EXISTS grid_frequency_stage (
    area text, ts timestamptz, hz float8, source text) ON COMMIT DELETE ROWS"""


# ------------------------------------------------------------------------------ measured data


def _require(frame: pd.DataFrame, what: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise VerificationInputError(f"{what}.{missing[0]}: missing column")


def _utc_index(values, what: str) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(values)
    if index.tz is None:
        raise VerificationInputError(f"{what}: must be timezone-aware (UTC)")
    if index.hasnans:
        raise VerificationInputError(f"{what}: missing time")
    return index.tz_convert("UTC")


def _copy_in(conn: psycopg.Connection, table: str, names: Sequence[str], columns: Sequence[Column], n: int) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(binary_copy(columns, n))


def write_measurements(conn: psycopg.Connection, frame: pd.DataFrame) -> int:
    """Store measured power as the VEN agents report it; returns the rows new to the table.

    frame: vehicle_id, ts (timezone-aware), power_kw (+ charging), plugged_in (bool), and
    optionally baseline_kw (the declared schedule in force), charger_id, ven_name, report_id.
    A reading already stored for (vehicle_id, ts) is kept as it was (a resent report adds
    nothing). Bad rows are refused as a whole, naming the field."""
    _require(frame, "measurements", ("vehicle_id", "ts", "power_kw", "plugged_in"))
    n = len(frame)
    if n == 0:
        return 0
    ts = _utc_index(frame["ts"], "measurements.ts")
    power = pd.to_numeric(frame["power_kw"], errors="coerce").to_numpy(float)
    if not np.isfinite(power).all():
        raise VerificationInputError("measurements.power_kw: every row needs a finite number")
    baseline = (pd.to_numeric(frame["baseline_kw"], errors="coerce").to_numpy(float)
                if "baseline_kw" in frame.columns else np.full(n, np.nan))
    if np.isinf(baseline).any():
        raise VerificationInputError("measurements.baseline_kw: must be finite or empty")
    plugged = frame["plugged_in"]
    if plugged.isna().any() or not all(isinstance(x, (bool, np.bool_)) for x in plugged.unique()):
        raise VerificationInputError("measurements.plugged_in: must be true or false on every row")
    text = {c: (frame[c].astype(object).where(frame[c].notna(), None).to_numpy() if c in frame.columns
                else np.full(n, None, dtype=object)) for c in ("charger_id", "ven_name", "report_id")}
    columns = [Column("text", frame["vehicle_id"].astype(str).to_numpy()), Column("timestamptz", ts),
               Column("float8", power), Column("float8", baseline),
               Column("int4", plugged.to_numpy(bool).astype(np.int64)),
               *(Column("text", text[c]) for c in ("charger_id", "ven_name", "report_id"))]
    with conn.transaction():
        conn.execute(_MEASURED_STAGE)
        conn.execute("SELECT flexfleet_ensure_day_partitions('measured_power', %s, %s)", (ts.min(), ts.max()))
        _copy_in(conn, "measured_power_stage", ("vehicle_id", "ts", "power_kw", "baseline_kw", "plugged",
                                                "charger_id", "ven_name", "report_id"), columns, n)
        cur = conn.execute(
            "INSERT INTO measured_power (vehicle_id, ts, power_kw, baseline_kw, plugged_in, charger_id, ven_name, "
            "report_id) SELECT vehicle_id, ts, power_kw, baseline_kw, plugged = 1, charger_id, ven_name, report_id "
            "FROM measured_power_stage ON CONFLICT DO NOTHING")
        return cur.rowcount


def write_frequency(conn: psycopg.Connection, frequency: FrequencyTrace | pd.Series, *, area: str = NORDIC,
                    source: str = "measured") -> int:
    """Store a frequency trace (a FrequencyTrace, or Hz indexed by timezone-aware times); returns
    the samples new to the table (a sample already stored is kept)."""
    if isinstance(frequency, FrequencyTrace):
        ts = pd.DatetimeIndex(pd.Timestamp(frequency.start) + pd.to_timedelta(frequency.seconds(), unit="s"))
        hz = np.asarray(frequency.hz, float)
    elif isinstance(frequency, pd.Series):
        ts = _utc_index(frequency.index, "frequency.index")
        hz = pd.to_numeric(frequency, errors="coerce").to_numpy(float)
    else:
        raise VerificationInputError(
            f"frequency: expected a FrequencyTrace or a Series, got {type(frequency).__name__}")
    if not (np.isfinite(hz) & (hz > 40) & (hz < 60)).all():
        raise VerificationInputError("frequency.hz: every sample must be a number between 40 and 60 Hz")
    n = len(hz)
    if n == 0:
        return 0
    ts = ts.tz_convert("UTC")
    with conn.transaction():
        conn.execute(_FREQUENCY_STAGE)
        conn.execute("SELECT flexfleet_ensure_day_partitions('grid_frequency', %s, %s)", (ts.min(), ts.max()))
        _copy_in(conn, "grid_frequency_stage", ("area", "ts", "hz", "source"),
                 [Column("text", np.full(n, area, dtype=object)), Column("timestamptz", ts), Column("float8", hz),
                  Column("text", np.full(n, source, dtype=object))], n)
        cur = conn.execute("INSERT INTO grid_frequency (area, ts, hz, source) SELECT area, ts, hz, source "
                           "FROM grid_frequency_stage ON CONFLICT DO NOTHING")
        return cur.rowcount


def _copy_out(conn: psycopg.Connection, query: str, params: Sequence, names: Sequence[str]) -> pd.DataFrame:
    """A query's rows as a DataFrame, through COPY (much faster than fetching tuples)."""
    buf = io.BytesIO()
    with conn.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)", params) as copy:
        for block in copy:
            buf.write(block)
    buf.seek(0)
    if not buf.getbuffer().nbytes:
        return pd.DataFrame({n: pd.Series(dtype=object) for n in names})
    return pd.read_csv(buf, names=list(names), header=None, keep_default_na=False, na_values=[""],
                       dtype={n: str for n in names if n in ("vehicle_id", "charger_id")})


def load_measurements(conn: psycopg.Connection, vehicles: Sequence[str], start: datetime, end: datetime
                      ) -> pd.DataFrame:
    """Measured power of `vehicles` in [start, end): vehicle_id, ts (UTC), power_kw, baseline_kw,
    plugged_in, charger_id."""
    frame = _copy_out(conn, "SELECT vehicle_id, ts, power_kw::float8, baseline_kw::float8, plugged_in::int, charger_id "
                      "FROM measured_power WHERE vehicle_id = ANY(%s) AND ts >= %s AND ts < %s",
                      (list(vehicles), start, end),
                      ("vehicle_id", "ts", "power_kw", "baseline_kw", "plugged_in", "charger_id"))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    frame["plugged_in"] = frame["plugged_in"].astype(int).astype(bool)
    frame["power_kw"] = frame["power_kw"].astype(float)
    frame["baseline_kw"] = frame["baseline_kw"].astype(float)
    return frame


def load_frequency(conn: psycopg.Connection, start: datetime, end: datetime, area: str = NORDIC) -> pd.Series:
    """The stored frequency in [start, end), Hz indexed by UTC time."""
    frame = _copy_out(conn, "SELECT ts, hz FROM grid_frequency WHERE area = %s AND ts >= %s AND ts < %s ORDER BY ts",
                      (area, start, end), ("ts", "hz"))
    return pd.Series(frame["hz"].astype(float).to_numpy(),
                     index=pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True, format="ISO8601")), name="hz")


_RESOURCES = """
SELECT v.vehicle_id,
       coalesce(ms.site_id, hs.site_id) AS site_id,
       least(v.max_charge_kw, coalesce(mc.max_charge_kw, hc.max_charge_kw, v.max_charge_kw)) AS charge_kw,
       CASE WHEN v.v2g_capable AND coalesce(mc.bidirectional, hc.bidirectional, false)
                 AND (coalesce(mc.current_type, hc.current_type) = 'DC' OR coalesce(ms.earthing, hs.earthing) = 'TN')
            THEN least(v.max_discharge_kw, coalesce(mc.max_discharge_kw, hc.max_discharge_kw),
                       coalesce(ms.max_export_kw, hs.max_export_kw))
            ELSE 0 END AS discharge_kw
FROM vehicles v
LEFT JOIN LATERAL (SELECT m.charger_id FROM measured_power m
                   WHERE m.vehicle_id = v.vehicle_id AND m.ts >= %(lo)s AND m.ts < %(hi)s AND m.charger_id IS NOT NULL
                   ORDER BY m.ts DESC LIMIT 1) seen ON true
LEFT JOIN chargers mc ON mc.charger_id = seen.charger_id
LEFT JOIN sites ms ON ms.site_id = mc.site_id
LEFT JOIN chargers hc ON hc.charger_id = v.home_charger_id
LEFT JOIN sites hs ON hs.site_id = hc.site_id
WHERE v.vehicle_id = ANY(%(ids)s)
"""


def load_resources(conn: psycopg.Connection, vehicles: Sequence[str], start: datetime, end: datetime
                   ) -> dict[str, Resource]:
    """Each vehicle's site during [start, end) (the charger it was last measured at, else its
    home charger; 'unassigned' if neither is known, 'unregistered' if the vehicle is not) and
    the vehicle-charger pair's limits (discharge only through a bidirectional charger, and on AC
    only on TN earthing, as flexfleet.domain.model.pair_limits)."""
    rows = conn.execute(_RESOURCES, {"lo": start, "hi": end, "ids": list(vehicles)}).fetchall()
    out = {v: Resource(site or "unassigned", float(charge or 0.0), float(discharge or 0.0))
           for v, site, charge, discharge in rows}
    for v in vehicles:
        out.setdefault(v, Resource("unregistered", 0.0, 0.0))
    return out


def load_history(conn: psycopg.Connection, vehicles: Sequence[str], days: Iterable[date], timezone: str
                 ) -> pd.DataFrame:
    """Telemetry power of `vehicles` on the local `days`: vehicle_id, ts, power_kw."""
    days = sorted(set(days))
    if not days:
        return pd.DataFrame(columns=["vehicle_id", "ts", "power_kw"])
    tz = ZoneInfo(timezone)
    lo = datetime.combine(days[0], datetime.min.time(), tz)
    hi = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), tz)
    frame = _copy_out(conn, "SELECT vehicle_id, ts, power_kw::float8 FROM telemetry WHERE vehicle_id = ANY(%s) "
                      "AND ts >= %s AND ts < %s AND (ts AT TIME ZONE %s)::date = ANY(%s)",
                      (list(vehicles), lo, hi, timezone, days), ("vehicle_id", "ts", "power_kw"))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    frame["power_kw"] = frame["power_kw"].astype(float)
    return frame


# ------------------------------------------------------------------------------------ verifying


@dataclass
class VerifyResult:
    """What one verification run did."""

    deliveries: list[Delivery] = field(default_factory=list)
    stored: int = 0                 # new or changed rows (queued for deliveries.v1)
    unchanged: int = 0              # same result as already stored: nothing queued
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (obligation_id, why)


def _tail_s(product: Product) -> float:
    """Seconds after the MTU an activation's checks may need (its last checkpoint)."""
    requirement = response_requirement(product)
    if requirement is None:
        return 0.0
    return max(float(requirement.checkpoints[-1][0]), float(requirement.energy_within_s or 0)) + 2


def verify_deliveries(conn: psycopg.Connection, start: datetime, end: datetime, *,
                      catalogue: Catalogue | None = None, now: datetime | None = None,
                      holidays: Iterable[date] = (), min_assessed_share: float = 0.1) -> VerifyResult:
    """Verify every obligation overlapping [start, end) and store the results (one transaction
    per MTU window). An obligation that cannot be verified (no frequency, an mFRR product) is
    reported in `skipped` with the reason; the others go ahead."""
    catalogue = catalogue or default_catalogue()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    holidays = frozenset(holidays)
    obligations = list_obligations(conn, start, end)
    result = VerifyResult()
    shares = shared_kw(obligations)
    windows: dict[tuple[datetime, datetime], list[Obligation]] = defaultdict(list)
    for o in obligations:
        windows[(o.mtu_start, o.mtu_end)].append(o)
    for (lo, hi), group in sorted(windows.items()):
        products: dict[str, Product] = {}
        for o in group:
            try:
                products[o.obligation_id] = catalogue.by_id(o.product_id)
            except KeyError:
                result.skipped.append((o.obligation_id, f"product_id: unknown product {o.product_id!r}"))
        group = [o for o in group if o.obligation_id in products]
        if not group:
            continue
        tail = max(_tail_s(p) for p in products.values())
        vehicles = sorted({v for o in group for v in o.vehicles})
        frame = load_measurements(conn, vehicles, lo - timedelta(seconds=MAX_GAP_S), hi + timedelta(seconds=tail))
        measurements = Measurements(frame[["vehicle_id", "ts", "power_kw", "plugged_in"]], max_gap_s=MAX_GAP_S)
        baselines: dict[BaselineMethod, Baseline] = {
            BaselineMethod.DECLARED_SCHEDULE: declared_schedule(frame[["vehicle_id", "ts", "baseline_kw"]])}
        frequency = None
        if any(isinstance(p.activation.value, FrequencyActivation) for p in products.values()):
            frequency = load_frequency(conn, lo - timedelta(seconds=10), hi + timedelta(seconds=tail))
        resources = load_resources(conn, vehicles, lo, hi)
        rolling: dict[str, Baseline] = {}
        done: list[tuple[Obligation, Delivery]] = []
        for o in group:
            product = products[o.obligation_id]
            try:
                use = baselines
                if baseline_method_for(product) is BaselineMethod.ROLLING_WORKING_DAYS:
                    tz = product.delivery_timezone.value
                    if tz not in rolling:
                        rolling[tz] = _rolling(conn, group, products, lo, hi, tz, holidays)
                    use = {**baselines, BaselineMethod.ROLLING_WORKING_DAYS: rolling[tz]}
                for d in verify_obligation(o, product, measurements, use, resources, frequency,
                                           shared=shares[o.obligation_id], min_assessed_share=min_assessed_share):
                    done.append((o, d))
            except VerificationInputError as exc:
                result.skipped.append((o.obligation_id, str(exc)))
                log.warning("obligation %s not verified: %s", o.obligation_id, exc)
        stored, unchanged = save_deliveries(conn, done, now)
        result.stored += stored
        result.unchanged += unchanged
        result.deliveries += [d for _, d in done]
    record_deliveries(result.deliveries)
    return result


def record_deliveries(deliveries: Sequence[Delivery]) -> None:
    """The run's delivered share per product (weighted by required MW x duration, as the
    dashboard weighs it) and each measured response time. A product the run did not verify
    keeps the share of its last run."""
    required: dict[str, float] = defaultdict(float)
    delivered: dict[str, float] = defaultdict(float)
    for d in deliveries:
        weight = d.required_mw * d.hours
        if math.isfinite(d.delivered_share) and weight > 0:
            required[d.product_id] += weight
            delivered[d.product_id] += d.delivered_share * weight
        if d.response_time_s is not None:
            metrics.DISPATCH_RESPONSE_SECONDS.labels(d.product_id).observe(d.response_time_s)
    for product, weight in required.items():
        metrics.DISPATCH_DELIVERED_SHARE.labels(product).set(delivered[product] / weight)


def _rolling(conn: psycopg.Connection, group: list[Obligation], products: dict[str, Product], lo: datetime,
             hi: datetime, tz: str, holidays: frozenset[date]) -> Baseline:
    vehicles = sorted({v for o in group if baseline_method_for(products[o.obligation_id])
                       is BaselineMethod.ROLLING_WORKING_DAYS for v in o.vehicles})
    zone = ZoneInfo(tz)
    first, last = lo.astimezone(zone).date(), (hi - timedelta(microseconds=1)).astimezone(zone).date()
    days = {d for offset in range((last - first).days + 1)
            for d in working_days_before(first + timedelta(days=offset), 5, holidays)}
    history = load_history(conn, vehicles, days, tz)
    return rolling_average(history, lo, hi, tz, vehicles=vehicles, holidays=holidays)


# -------------------------------------------------------------------------------------- storing


def _document(o: Obligation, d: Delivery) -> dict:
    """The stored content of one delivery (what content_hash covers), JSON-ready."""
    activations = [{k: (v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else v)
                    for k, v in asdict(a).items()} for a in d.activations]
    return {
        "obligation_id": d.obligation_id, "mtu_start": d.mtu_start, "mtu_end": d.mtu_end, "zone": o.zone,
        "product_id": d.product_id, "direction": d.direction, "grid_node": o.grid_node, "kind": d.kind,
        "baseline_method": d.baseline_method.value, "required_mw": d.required_mw, "delivered_mw": d.delivered_mw,
        "delivered_share": d.delivered_share, "capacity_share": d.capacity_share, "response_share": d.response_share,
        "shortfall_mw": d.shortfall_mw, "shortfall_mwh": d.shortfall_mwh,
        "required_energy_mwh": d.required_energy_mwh, "delivered_energy_mwh": d.delivered_energy_mwh,
        "response_time_s": d.response_time_s, "required_response_s": d.required_response_s,
        "quarter_shares": list(d.quarter_shares), "activations": activations, "vehicles": d.vehicles,
        "vehicles_without_data": d.vehicles_without_data, "notes": list(d.notes),
        "sites": [asdict(s) for s in d.sites]}


def _hash(doc: dict) -> str:
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


_COLUMNS = ("obligation_id", "mtu_start", "mtu_end", "zone", "product_id", "direction", "grid_node", "kind",
            "baseline_method", "required_mw", "delivered_mw", "delivered_share", "capacity_share", "response_share",
            "shortfall_mw", "shortfall_mwh", "required_energy_mwh", "delivered_energy_mwh", "response_time_s",
            "required_response_s", "quarter_shares", "activations", "vehicles", "vehicles_without_data", "notes")
_SITE_COLUMNS = ("site_id", "vehicles", "required_mw", "delivered_share", "delivered_mw", "shortfall_mw",
                 "shortfall_mwh", "required_energy_mwh", "delivered_energy_mwh", "response_time_s")
_UPSERT = (
    f"INSERT INTO deliveries ({', '.join(_COLUMNS)}, content_hash, verified_at) "
    f"VALUES ({', '.join(['%s'] * (len(_COLUMNS) + 2))}) "
    "ON CONFLICT (obligation_id, mtu_start) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[2:])
    + ", content_hash = excluded.content_hash, verified_at = excluded.verified_at, "
      "revision = deliveries.revision + 1, published = false "
      "WHERE deliveries.content_hash <> excluded.content_hash RETURNING obligation_id")


def save_deliveries(conn: psycopg.Connection, done: Sequence[tuple[Obligation, Delivery]], verified_at: datetime
                    ) -> tuple[int, int]:
    """Upsert deliveries and their sites in one transaction; returns (stored, unchanged)."""
    stored = unchanged = 0
    with conn.transaction():
        for o, d in done:
            doc = _document(o, d)
            values = [doc[c] for c in _COLUMNS]
            for i, c in enumerate(_COLUMNS):
                if c in ("activations", "notes"):
                    values[i] = Jsonb(doc[c])
            row = conn.execute(_UPSERT, (*values, _hash(doc), verified_at)).fetchone()
            if row is None:
                unchanged += 1
                continue
            stored += 1
            conn.execute("DELETE FROM delivery_sites WHERE obligation_id = %s AND mtu_start = %s",
                         (d.obligation_id, d.mtu_start))
            with conn.cursor() as cur, cur.copy(
                    f"COPY delivery_sites (obligation_id, mtu_start, {', '.join(_SITE_COLUMNS)}) FROM STDIN") as copy:
                for s in doc["sites"]:
                    copy.write_row((d.obligation_id, d.mtu_start, *(s[c] for c in _SITE_COLUMNS)))
    return stored, unchanged


# ------------------------------------------------------------------------------------ publishing


def _z(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


_SELECT = (f"SELECT {', '.join(_COLUMNS)}, revision, verified_at FROM deliveries ")


def _message(row: tuple, sites: list[tuple]) -> dict:
    doc = dict(zip((*_COLUMNS, "revision", "verified_at"), row))
    doc["schema_version"] = SCHEMA_VERSION
    for k in ("mtu_start", "mtu_end", "verified_at"):
        doc[k] = _z(doc[k])
    doc["quarter_shares"] = list(doc["quarter_shares"])
    doc["sites"] = [dict(zip(_SITE_COLUMNS, s)) for s in sites]
    return doc


def delivery_messages(conn: psycopg.Connection, keys: Sequence[tuple[str, datetime]]) -> list[dict]:
    """The deliveries.v1 documents of stored deliveries, from the stored rows."""
    if not keys:
        return []
    ids, starts = [k[0] for k in keys], [k[1] for k in keys]
    rows = conn.execute(_SELECT + "WHERE (obligation_id, mtu_start) IN (SELECT * FROM unnest(%s::text[], "
                        "%s::timestamptz[])) ORDER BY mtu_start, obligation_id", (ids, starts)).fetchall()
    sites: dict[tuple, list[tuple]] = defaultdict(list)
    for r in conn.execute(f"SELECT obligation_id, mtu_start, {', '.join(_SITE_COLUMNS)} FROM delivery_sites "
                          "WHERE (obligation_id, mtu_start) IN (SELECT * FROM unnest(%s::text[], %s::timestamptz[])) "
                          "ORDER BY site_id", (ids, starts)):
        sites[(r[0], r[1])].append(r[2:])
    return [_message(r, sites[(r[0], r[1])]) for r in rows]


def publish_pending(conn: psycopg.Connection, producer: KafkaProducer, topic: str = DELIVERIES_TOPIC,
                    timeout_s: float = 30.0, batch: int = 200) -> int:
    """Send every unpublished delivery to `topic` keyed by obligation_id, oldest first, and mark
    each published once the broker acknowledged it; returns how many were sent. A broker error
    propagates with the rows still unpublished (the next call sends them again). The producer
    must send bytes (no value serializer)."""
    sent = 0
    while True:
        with conn.transaction():
            keys = conn.execute("SELECT obligation_id, mtu_start FROM deliveries WHERE NOT published "
                                "ORDER BY verified_at, mtu_start, obligation_id LIMIT %s FOR UPDATE SKIP LOCKED",
                                (batch,)).fetchall()
            if not keys:
                return sent
            docs = delivery_messages(conn, keys)
            futures = [producer.send(topic, key=d["obligation_id"].encode(), value=orjson.dumps(d)) for d in docs]
            producer.flush(timeout=timeout_s)
            for f in futures:
                f.get(timeout=timeout_s)     # raises unless the broker acknowledged
            conn.execute("UPDATE deliveries SET published = true WHERE (obligation_id, mtu_start) IN "
                         "(SELECT * FROM unnest(%s::text[], %s::timestamptz[]))",
                         ([k[0] for k in keys], [k[1] for k in keys]))
        sent += len(docs)


def make_producer(bootstrap_servers: str) -> KafkaProducer:
    """A producer for deliveries.v1: acknowledged by all replicas; room for a bundle of many sites."""
    return KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", retries=10, linger_ms=5,
                         max_request_size=8 * 1024 * 1024)


def verify_and_publish(database_url: str, bootstrap_servers: str | None, start: datetime, end: datetime, *,
                       catalogue: Catalogue | None = None, topic: str = DELIVERIES_TOPIC,
                       now: datetime | None = None) -> tuple[VerifyResult, int]:
    """Verify and store [start, end), then relay the outbox (skipped without a broker); returns
    the run's result and the number of messages sent."""
    with psycopg.connect(database_url) as conn:
        result = verify_deliveries(conn, start, end, catalogue=catalogue, now=now)
        sent = 0
        if bootstrap_servers:
            producer = make_producer(bootstrap_servers)
            try:
                sent = publish_pending(conn, producer, topic)
            finally:
                producer.close(timeout=5)
    return result, sent


def shortfall_by_site(deliveries: Iterable[Delivery]) -> dict[str, float]:
    """MWh of shortfall attributed to each site over `deliveries`, largest first."""
    total: dict[str, float] = defaultdict(float)
    for d in deliveries:
        for s in d.sites:
            total[s.site_id] += s.shortfall_mwh
    return dict(sorted(((k, v) for k, v in total.items() if v > 0 and math.isfinite(v)), key=lambda kv: -kv[1]))
