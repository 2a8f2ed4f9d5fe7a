"""The ingest consumer group's lag, read from the broker itself (the dashboard reads no Prometheus).

Per partition of the telemetry topic: the log end offset (the broker's newest message + 1, and
that message's timestamp) against the offset the ingest group has committed; a partition the
group never committed counts from the log start offset (ingest starts from the earliest
message). Lag = end - committed, in messages. The alert fires when the group's total lag is
above `alert_messages` (FLEXFLEET_DASHBOARD_LAG_ALERT_MESSAGES, default 5,000: about 2.5
minutes of a 2,000-car fleet reporting every minute).

The page must stay quick and never fail because of the broker: each look-up runs in a thread of
its own with a deadline (`timeout_s`, default 1.5 s; the client's bootstrap and request timeouts
are set to it too), its answer is cached for `cache_s` seconds, and at most one look-up is in
flight (a page that finds one running waits for the same one). A broker that is not configured,
refuses or does not answer in time is an answer too: "unreachable", with the reason.

Configuration (environment, read when the app is created): KAFKA_BOOTSTRAP_SERVERS (as every
service), FLEXFLEET_DASHBOARD_LAG_TOPIC (default telemetry.v1) and FLEXFLEET_DASHBOARD_LAG_GROUP
(default ingest): set them when ingest runs with another `--topic` or `--group`;
FLEXFLEET_DASHBOARD_LAG_ALERT_MESSAGES (the threshold) and FLEXFLEET_DASHBOARD_LAG_CACHE_S (default 10).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime

from services.ingest.worker import TELEMETRY_TOPIC, IngestConfig
from services.runtime.config import ConfigError, Settings

DEFAULT_GROUP = IngestConfig.__dataclass_fields__["group_id"].default
DEFAULT_ALERT_MESSAGES = 5000
DEFAULT_TIMEOUT_S = 1.5
DEFAULT_CACHE_S = 10.0


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    start: int                        # log start offset
    end: int                          # log end offset: the next message's offset
    committed: int | None             # the group's committed offset; None: never committed
    newest_at: datetime | None        # the newest message's timestamp (broker's or producer's)

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.start if self.committed is None else self.committed))


@dataclass(frozen=True)
class GroupLag:
    """One look-up: the partitions, or why the broker could not be read."""

    bootstrap_servers: str | None
    topic: str
    group: str
    alert_messages: int
    checked_at: datetime
    partitions: tuple[PartitionLag, ...] = ()
    error: str | None = None          # set: the broker is unreachable (or not configured)

    @property
    def reachable(self) -> bool:
        return self.error is None

    @property
    def total(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def lagging(self) -> bool:
        return self.reachable and self.total > self.alert_messages


def _lookup(bootstrap: str, topic: str, group: str, timeout_s: float) -> tuple[PartitionLag, ...]:
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.admin import OffsetSpec

    ms = max(100, int(timeout_s * 1000))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=ms, request_timeout_ms=ms,
                             client_id="flexfleet-dashboard")
    try:
        described = admin.describe_topics([topic])
        if not described or described[0].get("error_code"):
            raise LookupError(f"topic {topic!r} does not exist on the broker")
        tps = [TopicPartition(topic, p["partition_index"]) for p in described[0]["partitions"]]
        latest = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
        earliest = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in tps})
        committed = admin.list_group_offsets({group: tps}).get(group, {})
    finally:
        admin.close()
    out = []
    for tp in sorted(tps, key=lambda t: t.partition):
        end, first = latest[tp], earliest[tp]
        done = committed.get(tp)
        offset = None if done is None or done.offset is None or done.offset < 0 else done.offset
        has_messages = end.offset > first.offset and end.timestamp is not None and end.timestamp >= 0
        stamp = end.timestamp if has_messages else None
        out.append(PartitionLag(tp.partition, first.offset, end.offset, offset,
                                None if stamp is None else datetime.fromtimestamp(stamp / 1000, UTC)))
    return tuple(out)


class LagMonitor:
    """Cached, time-boxed look-ups of one group's lag on one topic."""

    def __init__(self, bootstrap_servers: str | None, topic: str = TELEMETRY_TOPIC, group: str = DEFAULT_GROUP,
                 alert_messages: int = DEFAULT_ALERT_MESSAGES, timeout_s: float = DEFAULT_TIMEOUT_S,
                 cache_s: float = DEFAULT_CACHE_S, clock: Callable[[], float] = time.monotonic,
                 lookup: Callable[[str, str, str, float], tuple[PartitionLag, ...]] = _lookup) -> None:
        if alert_messages < 0:
            raise ConfigError(f"FLEXFLEET_DASHBOARD_LAG_ALERT_MESSAGES must be at least 0, got {alert_messages}")
        self.bootstrap_servers, self.topic, self.group = bootstrap_servers, topic, group
        self.alert_messages, self.timeout_s, self.cache_s = alert_messages, timeout_s, cache_s
        self._clock, self._lookup = clock, lookup
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-lag")
        self._cached: tuple[float, GroupLag] | None = None
        self._running: Future | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LagMonitor:
        env = dict(os.environ if env is None else env)
        raw = env.get("FLEXFLEET_DASHBOARD_LAG_ALERT_MESSAGES") or str(DEFAULT_ALERT_MESSAGES)
        try:
            threshold = int(raw)
        except ValueError:
            raise ConfigError(f"FLEXFLEET_DASHBOARD_LAG_ALERT_MESSAGES must be a whole number, got {raw!r}") from None
        raw = env.get("FLEXFLEET_DASHBOARD_LAG_CACHE_S") or str(DEFAULT_CACHE_S)
        try:
            cache_s = float(raw)
        except ValueError:
            cache_s = -1.0
        if not 0 <= cache_s <= 300:
            raise ConfigError(f"FLEXFLEET_DASHBOARD_LAG_CACHE_S must be seconds between 0 and 300, got {raw!r}")
        return cls(Settings.from_env(env).kafka_bootstrap_servers,
                   env.get("FLEXFLEET_DASHBOARD_LAG_TOPIC") or TELEMETRY_TOPIC,
                   env.get("FLEXFLEET_DASHBOARD_LAG_GROUP") or DEFAULT_GROUP, threshold, cache_s=cache_s)

    def _answer(self, partitions: tuple[PartitionLag, ...] = (), error: str | None = None) -> GroupLag:
        return GroupLag(self.bootstrap_servers, self.topic, self.group, self.alert_messages, datetime.now(UTC),
                        partitions, error)

    def read(self) -> GroupLag:
        """The cached answer while fresh, else a new look-up waited for at most `timeout_s`."""
        if self.bootstrap_servers is None:
            return self._answer(error="no broker configured (KAFKA_BOOTSTRAP_SERVERS is not set)")
        with self._lock:
            if self._cached is not None and self._clock() - self._cached[0] < self.cache_s:
                return self._cached[1]
            if self._running is None:
                self._running = self._pool.submit(self._lookup, self.bootstrap_servers, self.topic, self.group,
                                                  self.timeout_s)
            running = self._running
        try:
            answer = self._answer(running.result(timeout=self.timeout_s))
        except FutureTimeout:
            answer = self._answer(error=f"no answer from {self.bootstrap_servers} within {self.timeout_s:g} s")
        except Exception as exc:      # any broker or client failure is what the page reports
            answer = self._answer(error=f"{self.bootstrap_servers}: {type(exc).__name__}: {exc}"[:300])
        with self._lock:
            if self._running is running and running.done():
                self._running = None
            self._cached = (self._clock(), answer)
        return answer

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
