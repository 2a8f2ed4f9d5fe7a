"""telemetry.v1 -> telemetry table: at-least-once delivery made exactly-once by idempotent writes.

One loop: poll a batch, validate every message (flexfleet.telemetry), write the good readings
with COPY and the refused ones to telemetry_rejects in one database transaction, then commit the
Kafka offsets. A crash anywhere before the offset commit redelivers the batch; the primary keys
(vehicle_id, ts) and (topic, partition, offset) drop what was already stored. Refused messages
reach telemetry.dlq.v1 through an outbox relay: the original bytes as the value, the field,
code, reason and source coordinates as headers, so DLQ readers can deduplicate by coordinates.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from threading import Event

import psycopg
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata, TopicPartition

from flexfleet.telemetry import COLUMNS, FleetLimits, Limits, Reading, Rejection, parse_reading
from services.runtime import metrics
from services.runtime.connection import LazyConnection

log = logging.getLogger(__name__)

TELEMETRY_TOPIC = "telemetry.v1"
DLQ_TOPIC = "telemetry.dlq.v1"
# How often an unknown id may trigger a reload of the fleet registry. A vehicle registered less
# than this before its first reading can be refused; its message is kept in telemetry_rejects.
REGISTRY_RELOAD_S = 1.0
# How often the consumer lag gauge is refreshed (from figures the consumer already has).
LAG_EVERY_S = 5.0

_STAGE_DDL = ("CREATE TEMP TABLE IF NOT EXISTS telemetry_stage "
              "(LIKE telemetry INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
_COPY = f"COPY telemetry_stage ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["text", "timestamptz", "bool", "text", "float4", "float4", "text", "float8",
               "float8", "float4", "float8", "timestamptz", "float4", "float4"]
assert len(_COPY_TYPES) == len(COLUMNS), "one binary COPY type per telemetry column"
_INSERT = "INSERT INTO telemetry SELECT * FROM telemetry_stage ON CONFLICT DO NOTHING"
_INSERT_REJECT = """INSERT INTO telemetry_rejects
    (topic, partition, "offset", message_key, message, field, code, reason)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"""


@dataclass
class IngestStats:
    """Running totals of one worker, for logs, metrics and the demo summary."""

    consumed: int = 0
    stored: int = 0
    duplicates_dropped: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    db_retries: int = 0
    # Monotonic times of the first record received and the last batch committed.
    started_at: float | None = None
    finished_at: float | None = None

    def as_dict(self) -> dict:
        return {"consumed": self.consumed, "stored": self.stored,
                "duplicates_dropped": self.duplicates_dropped,
                "rejected": dict(sorted(self.rejected.items())), "batches": self.batches,
                "db_retries": self.db_retries}


@dataclass(frozen=True)
class IngestConfig:
    database_url: str
    bootstrap_servers: str
    topic: str = TELEMETRY_TOPIC
    dlq_topic: str = DLQ_TOPIC
    group_id: str = "ingest"
    max_batch: int = 5000
    future_tolerance: timedelta = timedelta(seconds=300)
    # Short session timeouts make a group's first join take ~3 s instead of ~23 s.
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000


def load_fleet_limits(conn: psycopg.Connection) -> FleetLimits:
    vehicles = {r[0]: Limits(r[1], r[2]) for r in conn.execute(
        "SELECT vehicle_id, max_charge_kw, max_discharge_kw FROM vehicles")}
    chargers = {r[0]: Limits(r[1], r[2]) for r in conn.execute(
        "SELECT charger_id, max_charge_kw, max_discharge_kw FROM chargers")}
    return FleetLimits(vehicles, chargers)


class IngestWorker:
    """One member of the ingest consumer group. Run several for more throughput.

    The database write of one batch overlaps with polling and validating the next (a writer
    thread; psycopg releases the GIL while the server works). Offsets of a batch are committed
    only after its database transaction has committed.
    """

    def __init__(self, config: IngestConfig, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.config = config
        self.clock = clock
        self.stats = IngestStats()
        self._db = LazyConnection(config.database_url, lambda conn: conn.execute(_STAGE_DDL))
        self._limits = FleetLimits()
        self._limits_loaded_at = float("-inf")
        self._known_days: set[date] = set()
        self._lag_at = float("-inf")
        self._lag_partitions: set[str] = set()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self._consumer = KafkaConsumer(
            config.topic, bootstrap_servers=config.bootstrap_servers, group_id=config.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=config.max_batch, fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms)
        self._producer = KafkaProducer(bootstrap_servers=config.bootstrap_servers, acks="all",
                                       linger_ms=5, retries=10)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: Event | None = None, idle_exit_s: float | None = None,
            on_batch: Callable[[IngestStats], None] | None = None,
            on_poll: Callable[[], None] | None = None) -> IngestStats:
        """Consume until `stop` is set, or until nothing arrived for `idle_exit_s` seconds.
        `on_poll` is called each time round the loop (at least every 0.5 s): a health heartbeat."""
        stop = stop or Event()
        last_data = time.monotonic()
        pending: tuple[Future, dict] | None = None  # the batch being written, and its offsets
        try:
            while not stop.is_set():
                if on_poll:
                    on_poll()
                polled = self._consumer.poll(timeout_ms=200 if pending else 500)
                if time.monotonic() - self._lag_at >= LAG_EVERY_S:
                    self._record_lag()
                records = [r for part in polled.values() for r in part]
                if records:
                    last_data = time.monotonic()
                    if self.stats.started_at is None:
                        self.stats.started_at = last_data
                    readings, rejects = self._validate(records, stop)
                    if stop.is_set():
                        break  # maybe without a registry: this batch is not written, not committed
                elif pending is None:
                    if not self._consumer.assignment():
                        last_data = time.monotonic()  # still joining the group: not idle yet
                    elif idle_exit_s is not None and time.monotonic() - last_data > idle_exit_s:
                        break
                    continue
                if pending is not None:
                    if not self._finish(pending, on_batch):
                        break  # stopped while the database was away: offsets stay uncommitted
                    pending = None
                if records:
                    pending = (self._writer.submit(self._write_with_retry, readings, rejects, stop),
                               _next_offsets(records))
            if pending is not None:
                self._finish(pending, on_batch)
        finally:
            self.close()
        return self.stats

    def _finish(self, pending: tuple[Future, dict], on_batch) -> bool:
        future, offsets = pending
        result = future.result()
        if result is None:
            return False
        try:
            self._consumer.commit(offsets)
        except CommitFailedError as e:
            # The partitions moved to another member, which will redeliver: stored once anyway.
            log.warning("offset commit failed after a rebalance: %s", e)
        consumed, inserted, n_readings, rejects = result
        self.stats.batches += 1
        self.stats.consumed += consumed
        self.stats.stored += inserted
        self.stats.duplicates_dropped += n_readings - inserted
        self.stats.rejected.update(f"{j.field}:{j.code}" for _, j in rejects)
        _count_batch(inserted, n_readings - inserted, rejects)
        self.stats.finished_at = time.monotonic()
        if on_batch:
            on_batch(self.stats)
        return True

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._consumer.close(autocommit=False)
        self._producer.close(timeout=5)
        self._db.drop()

    # -- one batch --------------------------------------------------------------------------
    def _validate(self, records: list[ConsumerRecord], stop: Event
                  ) -> tuple[list[Reading], list[tuple[ConsumerRecord, Rejection]]]:
        if not self._limits.vehicles:
            self._reload_limits(stop)
        now = self.clock()
        tolerance = self.config.future_tolerance
        readings: list[Reading] = []
        rejects: list[tuple[ConsumerRecord, Rejection]] = []
        for record in records:
            result = parse_reading(record.value, self._limits, now, tolerance)
            if isinstance(result, Rejection) and result.code in ("unknown_vehicle", "unknown_charger") \
                    and self._reload_limits(stop):
                result = parse_reading(record.value, self._limits, now, tolerance)
            if isinstance(result, Reading):
                readings.append(result)
            else:
                rejects.append((record, result))
        return readings, rejects

    def _write_with_retry(self, readings: list[Reading],
                          rejects: list[tuple[ConsumerRecord, Rejection]], stop: Event):
        """Runs in the writer thread; returns None only if stopped before the write succeeded."""
        delay = 0.25
        while True:
            try:
                conn = self._db.get()
                started = time.perf_counter()
                inserted = self._write(conn, readings, rejects)
                metrics.INGEST_WRITE_SECONDS.observe(time.perf_counter() - started)
                published = self._relay_rejects(conn)
                if published:
                    metrics.INGEST_DLQ_PUBLISHED.inc(published)
                return len(readings) + len(rejects), inserted, len(readings), rejects
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                self.stats.db_retries += 1
                metrics.INGEST_DB_RETRIES.inc()
                log.warning("database unavailable (%s); retrying in %.1f s", e, delay)
                self._db.drop()
                if stop.wait(delay):
                    return None
                delay = min(delay * 2, 5.0)

    def _write(self, conn: psycopg.Connection, readings: list[Reading],
               rejects: list[tuple[ConsumerRecord, Rejection]]) -> int:
        with conn.transaction():
            days = {r.ts.astimezone(UTC).date() for r in readings} - self._known_days
            inserted = write_readings(conn, readings, self._known_days)
            if rejects:
                with conn.cursor() as cur:
                    cur.executemany(_INSERT_REJECT, [
                        (r.topic, r.partition, r.offset, r.key, r.value, j.field, j.code, j.reason)
                        for r, j in rejects])
        self._known_days |= days
        return inserted

    def _relay_rejects(self, conn: psycopg.Connection) -> int:
        """Publish refused messages not yet on the DLQ. A crash between send and mark repeats a
        record on the DLQ (its headers identify it); none is ever missing."""
        with conn.transaction():
            rows = conn.execute(
                'SELECT topic, partition, "offset", message_key, message, field, code, reason '
                "FROM telemetry_rejects WHERE NOT published ORDER BY rejected_at "
                "LIMIT 10000 FOR UPDATE SKIP LOCKED").fetchall()
            if not rows:
                return 0
            for topic, partition, offset, key, message, fld, code, reason in rows:
                headers = [("source", f"{topic}/{partition}/{offset}".encode()),
                           ("field", fld.encode()), ("code", code.encode()),
                           ("reason", reason.encode())]
                self._producer.send(self.config.dlq_topic, key=key, value=bytes(message),
                                    headers=headers)
            self._producer.flush(timeout=30)
            conn.execute(
                'UPDATE telemetry_rejects SET published = true WHERE (topic, partition, "offset") IN '
                "(SELECT * FROM unnest(%s::text[], %s::int[], %s::bigint[]))",
                ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]))
        return len(rows)

    def _record_lag(self) -> None:
        """Lag of each assigned partition: the high watermark of the consumer's last fetch minus
        its position. Both are the consumer's own figures, so this asks the broker nothing; a
        partition not fetched from yet is left out until it is. Partitions a rebalance took away
        are dropped (set to 0 first: a multiprocess gauge keeps its last value)."""
        self._lag_at = time.monotonic()
        lags: dict[str, int] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            position = self._consumer.position(tp, timeout_ms=0) if high is not None else None
            if position is not None:
                lags[str(tp.partition)] = max(0, high - position)
        for partition in self._lag_partitions - lags.keys():
            metrics.INGEST_CONSUMER_LAG.labels(partition).set(0)
            metrics.INGEST_CONSUMER_LAG.remove(partition)
        for partition, lag in lags.items():
            metrics.INGEST_CONSUMER_LAG.labels(partition).set(lag)
        self._lag_partitions = set(lags)

    # -- connections and registry -----------------------------------------------------------
    def _reload_limits(self, stop: Event) -> bool:
        """Load the registry (on its own connection: the writer thread owns the other one).
        Waits while the database is away, so no message is refused for want of a registry."""
        if time.monotonic() - self._limits_loaded_at < REGISTRY_RELOAD_S:
            return False
        delay = 0.25
        while not stop.is_set():
            try:
                with psycopg.connect(self.config.database_url, connect_timeout=5) as conn:
                    self._limits = load_fleet_limits(conn)
                self._limits_loaded_at = time.monotonic()
                return True
            except psycopg.OperationalError as e:
                self.stats.db_retries += 1
                metrics.INGEST_DB_RETRIES.inc()
                log.warning("cannot load the fleet registry (%s); retrying in %.1f s", e, delay)
                stop.wait(delay)
                delay = min(delay * 2, 5.0)
        return False


def write_readings(conn: psycopg.Connection, readings: list[Reading],
                   known_days: set[date] | frozenset[date] = frozenset()) -> int:
    """COPY accepted readings into telemetry, making the partitions of days not in `known_days`
    first; returns the rows new to the table (a reading already stored is kept). Runs in the
    caller's transaction, so a batch's readings and rejects commit together."""
    for day in sorted({r.ts.astimezone(UTC).date() for r in readings} - known_days):
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        conn.execute("SELECT flexfleet_ensure_telemetry_partitions(%s, %s)", (start, start))
    if not readings:
        return 0
    with conn.cursor() as cur:
        cur.execute(_STAGE_DDL)             # per connection; the worker's runs it when it connects
        with cur.copy(_COPY) as copy:
            copy.set_types(_COPY_TYPES)
            for reading in readings:
                copy.write_row(reading)
        cur.execute(_INSERT)
        return cur.rowcount


_STORED = metrics.INGEST_MESSAGES.labels("stored")
_DUPLICATE = metrics.INGEST_MESSAGES.labels("duplicate")
_REJECTED = metrics.INGEST_MESSAGES.labels("rejected")


def _count_batch(stored: int, duplicates: int, rejects: list[tuple[ConsumerRecord, Rejection]]) -> None:
    """Counters of one committed batch: a few increments per batch, none per message."""
    _STORED.inc(stored)
    _DUPLICATE.inc(duplicates)
    _REJECTED.inc(len(rejects))
    for (fld, code), n in Counter((j.field, j.code) for _, j in rejects).items():
        metrics.INGEST_REJECTED.labels(metrics.rejected_field(fld, code), code).inc(n)


def _next_offsets(records: list[ConsumerRecord]) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets to commit once these records are stored: one past the last, per partition."""
    last: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        if r.offset >= last.get(tp, -1):
            last[tp] = r.offset
    return {tp: OffsetAndMetadata(offset + 1, None, -1) for tp, offset in last.items()}
