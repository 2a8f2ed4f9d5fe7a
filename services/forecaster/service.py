"""The forecaster as a running service: retrain daily, issue a 48-hour forecast every hour and
whenever new charging sessions arrive, store each one, publish it on forecasts.v1.

One pass (`ForecasterService.run_once`) reads what the database knows, decides, writes and
relays the outbox; `run` repeats it until stopped. State lives in the database (migration 0003),
so a restarted service carries on where it stopped and two services never store the same issue
twice. A database or broker that is down delays forecasts or their publication; it never stops
the loop and never loses a stored forecast.

What a forecast could know is recorded with it: the forecaster version and the latest session
import (`sessions_known_at`). `replay` uses both to issue it again and compare.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from threading import Event

import numpy as np
import pandas as pd
import psycopg
from kafka import KafkaProducer
from kafka.errors import KafkaError

from flexfleet.domain import DomainError
from flexfleet.domain.time import MTU, mtu_floor, to_utc
from flexfleet.domain.zones import BiddingZone
from flexfleet.forecast.pipeline import FleetForecast, Forecaster, issue_forecast, train_forecaster
from services.forecaster.cli import database_sessions
from services.forecaster.store import (FORECASTS_TOPIC, StoredForecast, forecast_info, latest_forecast,
                                       latest_forecaster, load_forecast, load_forecaster, prune_vehicle_rows,
                                       publish_pending, save_forecast, save_forecaster)
from services.runtime import metrics
from services.runtime.connection import LazyConnection
from services.runtime.migrate import migrate
from services.runtime.services import DEFAULT_TOPICS, ensure_topics

log = logging.getLogger(__name__)

# History a forecast is issued from (the features look back at most 5 weeks). Fixed here, not
# left to issue_forecast's default, so a replay uses the same window as the live issue did.
ISSUE_HISTORY = timedelta(weeks=5)


@dataclass(frozen=True)
class ServiceConfig:
    database_url: str
    bootstrap_servers: str
    zone: BiddingZone = BiddingZone.SE3
    every: timedelta = timedelta(hours=1)           # issue schedule, on this grid from the epoch
    retrain_every: timedelta = timedelta(hours=24)  # by the data: issue time - trained_until
    history: timedelta = timedelta(weeks=8)         # what a forecaster is trained on
    keep_vehicle_rows: timedelta = timedelta(days=7)  # older forecasts keep their portfolio only
    poll_s: float = 60.0                            # how often to look for new sessions
    topic: str = FORECASTS_TOPIC
    seed: int = 0
    fit_options: Mapping[str, int] = field(default_factory=dict)  # rounds, rows_per_issue
    kafka_timeout_s: float = 10.0
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if self.every < MTU or self.every % MTU or self.every > timedelta(days=1):
            raise DomainError("every", f"must be a whole number of 15-minute MTUs up to a day, got {self.every}")
        if self.retrain_every <= timedelta(0):
            raise DomainError("retrain_every", f"must be positive, got {self.retrain_every}")
        if self.history < timedelta(days=11):
            raise DomainError("history", f"must cover more than the 10 days training needs, got {self.history}")
        if self.poll_s <= 0:
            raise DomainError("poll_s", f"must be positive, got {self.poll_s}")


@dataclass(frozen=True)
class PassResult:
    """What one pass did, for logs and tests."""

    issued_at: datetime                 # the MTU this pass would issue for
    trained: str | None = None          # version of a forecaster trained in this pass
    forecast_id: str | None = None      # forecast stored in this pass
    reason: str | None = None           # why it was issued: first, schedule, new sessions, new forecaster
    published: int = 0                  # forecasts the outbox relay sent
    publish_error: str | None = None    # the broker error that left forecasts unpublished
    next_due: datetime | None = None    # next scheduled issue time; None before any forecast


def next_scheduled(issued_at: datetime, every: timedelta) -> datetime:
    """The first time on the `every` grid (counted from the Unix epoch) after `issued_at`."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((issued_at - epoch) // every + 1) * every


def known_sessions(conn: psycopg.Connection, database_url: str, start: datetime, end: datetime,
                   known_at: datetime | None):
    """(sessions, fleet) as `database_sessions` gives them for [start, end), without the sessions
    imported after `known_at`, sorted so that the same set always gives the same floating-point
    sums. A session imported earlier but re-derived after known_at (an open session whose
    plug-out moved on) has a later imported_at and is left out: its first version is gone.

    The other, rarer gap: imported_at is the importing transaction's start time, so an import
    that started before a pass read max(imported_at) but committed after its sessions were read
    was invisible to the live forecast and is visible to a replay (which then reports `differs`)."""
    sessions, fleet = database_sessions(database_url, start, end)
    if known_at is None:
        return sessions.iloc[:0], fleet
    later = conn.execute("SELECT vehicle_id, plug_in_at FROM charging_sessions WHERE imported_at > %s "
                         "AND plug_in_at < %s AND plug_out_at > %s", (known_at, end, start)).fetchall()
    if later and len(sessions):
        drop = pd.MultiIndex.from_arrays([[v for v, _ in later], pd.to_datetime([t for _, t in later], utc=True)])
        keys = pd.MultiIndex.from_arrays([sessions["vehicle_id"], pd.to_datetime(sessions["plug_in_at"], utc=True)])
        sessions = sessions[~keys.isin(drop)]
    return sessions.sort_values(["vehicle_id", "plug_in_at"], ignore_index=True), fleet


def _since(sessions: pd.DataFrame, start: datetime) -> pd.DataFrame:
    """The sessions `database_sessions(url, start, ...)` would have returned."""
    return sessions[pd.to_datetime(sessions["plug_out_at"], utc=True) > start].reset_index(drop=True)


class ForecasterService:
    """Retrains, issues, stores and publishes forecasts of one bidding zone."""

    def __init__(self, config: ServiceConfig, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.config = config
        self.clock = clock
        self.passes = 0
        self.failures = 0
        self.last: PassResult | None = None
        self._db = LazyConnection(config.database_url, self._migrate_once)
        self._migrated = False
        self._producer: KafkaProducer | None = None
        self._forecaster: Forecaster | None = None

    # -- one pass -----------------------------------------------------------------------------
    def run_once(self, now: datetime) -> PassResult:
        """Retrain if due, issue at `now` floored to the MTU if due, store, relay the outbox.
        Database errors propagate (the caller retries); broker errors are reported in the result."""
        started = time.perf_counter()
        try:
            result = self._pass(now)
        except Exception:
            metrics.FORECAST_RUNS.labels("failed").inc()
            raise
        finally:
            metrics.FORECAST_RUN_SECONDS.observe(time.perf_counter() - started)
        metrics.FORECAST_RUNS.labels("ok").inc()
        if result.forecast_id:
            metrics.FORECAST_ISSUED.inc()
        return result

    def _pass(self, now: datetime) -> PassResult:
        cfg = self.config
        issued_at = mtu_floor(to_utc(now, "now"))
        conn = self._db.get()
        known_at = conn.execute("SELECT max(imported_at) FROM charging_sessions").fetchone()[0]
        model = latest_forecaster(conn, cfg.zone)
        last = latest_forecast(conn, cfg.zone)
        retrain = known_at is not None and (model is None or issued_at - model.trained_until >= cfg.retrain_every)
        reason = None if known_at is None or model is None else self._due(issued_at, last, known_at, model.version)
        trained = forecast_id = None
        if retrain or reason:
            start = issued_at - max(cfg.history, ISSUE_HISTORY) if retrain else issued_at - ISSUE_HISTORY
            sessions, fleet = known_sessions(conn, cfg.database_url, start, issued_at, known_at)
            if retrain:
                log.info("training on %d sessions of %d vehicles until %s", len(sessions), len(fleet), issued_at)
                forecaster = train_forecaster(sessions, fleet, cfg.zone, issued_at - cfg.history, issued_at,
                                              cfg.seed, **dict(cfg.fit_options))
                trained = save_forecaster(conn, forecaster, trained_at=to_utc(now, "now"))
                self._forecaster = forecaster
                reason = self._due(issued_at, last, known_at, trained)
            if reason:
                forecaster = self._load_forecaster(conn, trained or model.version)
                forecast = issue_forecast(forecaster, _since(sessions, issued_at - ISSUE_HISTORY), fleet,
                                          issued_at, history_start=issued_at - ISSUE_HISTORY)
                saved = save_forecast(conn, forecast, known_at)
                forecast_id = saved.forecast_id if saved.created else None
                if saved.created:
                    prune_vehicle_rows(conn, cfg.zone, issued_at - cfg.keep_vehicle_rows)
                log.info("forecast %s issued at %s by %s (%s)", saved.forecast_id, issued_at,
                         forecast.forecaster_version, reason)
        published, error = self._relay(conn)
        last_issue = issued_at if reason else (last.issued_at if last else None)
        result = PassResult(issued_at, trained, forecast_id, reason if forecast_id else None, published, error,
                            None if last_issue is None else next_scheduled(last_issue, cfg.every))
        self.passes += 1
        self.last = result
        return result

    def _due(self, issued_at: datetime, last: StoredForecast | None, known_at: datetime, version: str) -> str | None:
        """Why a forecast is due at `issued_at`, or None. At most one per MTU: sessions arriving
        within the MTU of the last forecast wait for the next MTU."""
        if last is None:
            return "first forecast"
        if issued_at <= last.issued_at:
            return None
        if last.forecaster_version != version:
            return "new forecaster"
        if issued_at >= next_scheduled(last.issued_at, self.config.every):
            return "schedule"
        if last.sessions_known_at is None or known_at > last.sessions_known_at:
            return "new sessions"
        return None

    def _load_forecaster(self, conn: psycopg.Connection, version: str) -> Forecaster:
        if self._forecaster is None or self._forecaster.version != version:
            self._forecaster = load_forecaster(conn, version)
        return self._forecaster

    def _relay(self, conn: psycopg.Connection) -> tuple[int, str | None]:
        try:
            return publish_pending(conn, self._kafka(), self.config.topic, self.config.kafka_timeout_s), None
        except KafkaError as e:
            pending = conn.execute("SELECT count(*) FROM forecasts WHERE NOT published").fetchone()[0]
            log.warning("broker unavailable (%s); %d forecast(s) wait in the outbox", e, pending)
            self._drop_producer()
            return 0, f"{type(e).__name__}: {e}"

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: Event | None = None,
            on_pass: Callable[[PassResult | None, Exception | None], None] | None = None) -> None:
        """Pass after pass until `stop` is set: wake for the next scheduled issue and every
        poll_s for new sessions; after a failure retry with backoff up to max_backoff_s.
        `on_pass(result, None)` or `on_pass(None, error)` is called after each pass: a health
        report, so a loop that comes round but keeps failing is told from one that is stuck."""
        stop = stop or Event()
        delay = 0.5
        try:
            while not stop.is_set():
                try:
                    result = self.run_once(self.clock())
                except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                    self.failures += 1
                    log.warning("database unavailable (%s); retrying in %.1f s", e, delay)
                    self._db.drop()
                    if on_pass:
                        on_pass(None, e)
                    stop.wait(delay)
                    delay = min(delay * 2, self.config.max_backoff_s)
                    continue
                except Exception as e:
                    self.failures += 1
                    log.exception("forecast pass failed; retrying in %.1f s", delay)
                    if on_pass:
                        on_pass(None, e)
                    stop.wait(delay)
                    delay = min(delay * 2, self.config.max_backoff_s)
                    continue
                if on_pass:
                    on_pass(result, None)
                delay = 0.5
                wait = self.config.poll_s
                if result.next_due is not None:
                    wait = min(wait, (result.next_due - self.clock()).total_seconds())
                stop.wait(max(0.5, wait))
        finally:
            self.close()

    # -- connections --------------------------------------------------------------------------
    def _migrate_once(self, conn: psycopg.Connection) -> None:
        if not self._migrated:
            migrate(self.config.database_url)
            self._migrated = True

    def _kafka(self) -> KafkaProducer:
        if self._producer is None:
            timeout_ms = int(self.config.kafka_timeout_s * 1000)
            ensure_topics(self.config.bootstrap_servers,
                          {self.config.topic: DEFAULT_TOPICS.get(self.config.topic, 4)}, timeout_ms)
            # gzip: a 48-hour portfolio is a few hundred kB of JSON, a tenth of that compressed.
            self._producer = KafkaProducer(
                bootstrap_servers=self.config.bootstrap_servers, acks="all", compression_type="gzip",
                bootstrap_timeout_ms=timeout_ms, max_block_ms=timeout_ms, request_timeout_ms=timeout_ms,
                delivery_timeout_ms=2 * timeout_ms, max_request_size=8 * 1024 * 1024)
        return self._producer

    def _drop_producer(self) -> None:
        """Close without waiting: what it still buffers stays unpublished in the outbox."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=0)
        except KafkaError:
            # kafka-python's close() gives up at the failed flush and leaves its sender thread
            # retrying the dead broker; stop that thread, dropping its batches, then close.
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(5)
            try:
                producer.close(timeout=0)
            except KafkaError as e:
                log.debug("producer closed with unsent records: %s", e)

    def close(self) -> None:
        self._drop_producer()
        self._db.drop()


# -- replay ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    where: str          # e.g. "vehicles.p_up" or "portfolio columns"
    largest: float      # largest absolute difference (kW, probability or seconds); inf: not comparable
    detail: str


@dataclass(frozen=True)
class Replay:
    stored: StoredForecast
    forecast: FleetForecast         # issued again
    sessions: int                   # sessions it was issued from
    difference: Difference | None   # None: identical, column for column and bit for bit
    vehicles_pruned: bool = False   # the stored per-vehicle rows were pruned: portfolio compared only

    @property
    def identical(self) -> bool:
        return self.difference is None


def _restrict(fleet, vehicle_ids: pd.Index):
    """The fleet (a list of ids or a frame indexed by vehicle_id) limited to the vehicles the
    stored forecast had: vehicles registered after the issue are left out."""
    if isinstance(fleet, pd.DataFrame):
        return fleet[fleet.index.isin(vehicle_ids)]
    keep = set(vehicle_ids)
    return [v for v in fleet if v in keep]


def replay(conn: psycopg.Connection, forecast_id: str, database_url: str | None = None) -> Replay:
    """Issue a stored forecast again with its stored forecaster, from the sessions known then
    (plug-in before the issue time, imported at or before its sessions_known_at), and compare.

    What cannot be replayed: a session re-derived after the issue with a moved plug-out (an open
    session later completed; its earlier version is overwritten in place), and registry changes
    since (a vehicle's specs edited or the vehicle removed; for a forecast whose per-vehicle rows
    were pruned, vehicles registered since as well). `database_url` is needed when the
    connection's DSN lacks the password."""
    stored = forecast_info(conn, forecast_id)
    before = load_forecast(conn, forecast_id)
    forecaster = load_forecaster(conn, stored.forecaster_version)
    start = stored.issued_at - ISSUE_HISTORY
    sessions, fleet = known_sessions(conn, database_url or conn.info.dsn, start, stored.issued_at,
                                     stored.sessions_known_at)
    pruned = before.vehicles.empty
    if not pruned:
        fleet = _restrict(fleet, pd.Index(before.vehicles["vehicle_id"].unique()))
    again = issue_forecast(forecaster, sessions, fleet, stored.issued_at, history_start=start)
    compared = replace(again, vehicles=again.vehicles.iloc[:0]) if pruned else again
    return Replay(stored, again, len(sessions), forecast_difference(before, compared), pruned)


_ROW_KEYS = ("vehicle_id", "direction", "endurance_min", "target_start")


def forecast_difference(a: FleetForecast, b: FleetForecast) -> Difference | None:
    """The largest difference between two forecasts, or None when they are identical."""
    for name in ("issued_at", "zone", "forecaster_version"):
        if getattr(a, name) != getattr(b, name):
            return Difference(name, float("inf"), f"{getattr(a, name)} vs {getattr(b, name)}")
    worst: Difference | None = None
    for part in ("portfolio", "vehicles"):
        x, y = getattr(a, part), getattr(b, part)
        if list(x.columns) != list(y.columns):
            return Difference(f"{part} columns", float("inf"), f"{list(x.columns)} vs {list(y.columns)}")
        if len(x) != len(y):
            return Difference(f"{part} rows", float("inf"), f"{len(x)} vs {len(y)}")
        for column in x.columns:
            if x[column].dtype != y[column].dtype:
                return Difference(f"{part}.{column}", float("inf"), f"dtype {x[column].dtype} vs {y[column].dtype}")
            gap = _column_gap(x[column], y[column])
            if gap is not None and (worst is None or gap[0] > worst.largest):
                row = int(gap[1])
                key = ", ".join(str(x[k].iloc[row]) for k in _ROW_KEYS if k in x.columns)
                worst = Difference(f"{part}.{column}", gap[0],
                                   f"row {row} ({key}): {x[column].iloc[row]} vs {y[column].iloc[row]}")
    return worst


def _column_gap(x: pd.Series, y: pd.Series) -> tuple[float, int] | None:
    """(largest absolute difference, its row) or None when equal; NaN equals NaN."""
    if pd.api.types.is_datetime64_any_dtype(x):
        u, v = x.isna().to_numpy(), y.isna().to_numpy()
        a = pd.DatetimeIndex(x).as_unit("us").asi8 / 1e6
        b = pd.DatetimeIndex(y).as_unit("us").asi8 / 1e6
    elif pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
        a, b = x.to_numpy(float), y.to_numpy(float)
        u, v = np.isnan(a), np.isnan(b)
    else:
        both_missing = x.isna().to_numpy() & y.isna().to_numpy()
        differs = (x.astype(object).to_numpy() != y.astype(object).to_numpy()) & ~both_missing
        return (float("inf"), int(np.argmax(differs))) if differs.any() else None
    gap = np.where(u & v, 0.0, np.where(u | v, np.inf, np.abs(a - b)))
    return (float(gap.max()), int(gap.argmax())) if len(gap) and gap.max() > 0 else None
