"""The consumer-lag look-up's rules without a broker: the lag per partition, the threshold, the
cache, the deadline, one look-up in flight, and the alerts /ops shows for each answer."""

from __future__ import annotations

import threading
import time

import pytest

from services.api.dashboard import lag_alerts
from services.api.dashboard_lag import LagMonitor, PartitionLag
from services.runtime.config import ConfigError


def _parts(*lags: tuple[int, int, int | None]) -> tuple[PartitionLag, ...]:
    return tuple(PartitionLag(i, start, end, committed, None) for i, (start, end, committed) in enumerate(lags))


def test_lag_counts_from_the_commit_or_from_the_log_start_and_alerts_above_the_threshold():
    parts = _parts((0, 10, 4), (3, 9, None), (0, 5, 5))
    assert [p.lag for p in parts] == [6, 6, 0]
    calls = []

    def lookup(bootstrap, topic, group, timeout):
        calls.append((bootstrap, topic, group))
        return parts

    at = [0.0]
    monitor = LagMonitor("b:9092", "t", "g", alert_messages=11, cache_s=5, clock=lambda: at[0], lookup=lookup)
    answer = monitor.read()
    assert answer.total == 12 and answer.lagging and calls == [("b:9092", "t", "g")]
    [alert] = lag_alerts(answer)
    assert alert.title == "Ingest consumer lag" and "12 messages behind" in alert.text
    assert alert.href == "/ops/alerts/lag/ingest"
    at[0] = 4.9
    assert monitor.read() is answer and len(calls) == 1          # cached
    at[0] = 5.1
    monitor.read()
    assert len(calls) == 2
    assert not LagMonitor("b:9092", alert_messages=12, lookup=lambda *a: parts).read().lagging
    assert lag_alerts(LagMonitor("b:9092", alert_messages=12, lookup=lambda *a: parts).read()) == []


def test_a_silent_broker_is_unreachable_after_the_deadline_and_only_one_look_up_runs():
    release, started = threading.Event(), []

    def hanging(*args):
        started.append(1)
        release.wait(5)
        return ()

    monitor = LagMonitor("b:9092", timeout_s=0.2, cache_s=0, lookup=hanging)
    began = time.monotonic()
    answer = monitor.read()
    assert time.monotonic() - began < 1.0 and not answer.reachable and "within 0.2 s" in answer.error
    [alert] = lag_alerts(answer)
    assert alert.title == "Broker unreachable"
    monitor.read()
    assert started == [1]                                          # the second read waited on the same one
    release.set()
    time.sleep(0.1)
    assert monitor.read().reachable
    monitor.close()


def test_failures_and_a_missing_broker_are_answers_and_bad_settings_name_the_variable():
    def refused(*args):
        raise ConnectionRefusedError("nobody there")

    answer = LagMonitor("b:9092", lookup=refused).read()
    assert not answer.reachable and "nobody there" in answer.error
    missing = LagMonitor.from_env({}).read()
    assert not missing.reachable and "KAFKA_BOOTSTRAP_SERVERS is not set" in missing.error
    with pytest.raises(ConfigError, match="FLEXFLEET_DASHBOARD_LAG_ALERT_MESSAGES"):
        LagMonitor.from_env({"FLEXFLEET_DASHBOARD_LAG_ALERT_MESSAGES": "many"})
    with pytest.raises(ConfigError, match="FLEXFLEET_DASHBOARD_LAG_CACHE_S"):
        LagMonitor.from_env({"FLEXFLEET_DASHBOARD_LAG_CACHE_S": "-1"})
    configured = LagMonitor.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "FLEXFLEET_DASHBOARD_LAG_GROUP": "ingest-b"})
    assert (configured.bootstrap_servers, configured.topic, configured.group) == ("k:9092", "telemetry.v1", "ingest-b")
