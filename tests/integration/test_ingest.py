"""Ingest against the real PostgreSQL and the real Kafka-protocol broker, with faults on purpose."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer

from services.ingest.worker import IngestConfig, IngestWorker

pytestmark = pytest.mark.integration

VEHICLES = 50
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)


def register_fleet(db_url: str, n: int = VEHICLES) -> None:
    """A minimal registry: n V2G cars on n bidirectional 11 kW home chargers."""
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO owners VALUES ('o1', 'Test Owner', 'sv', 'SEK')")
        conn.execute("INSERT INTO sites (site_id, kind, grid_node, bidding_zone, timezone, max_import_kw, "
                     "max_export_kw) VALUES ('s1', 'home', 'n1', 'SE3', 'Europe/Stockholm', 25, 11)")
        for i in range(n):
            conn.execute("INSERT INTO chargers VALUES (%s, 's1', 'DC', true, 11, 11)", (f"c{i}",))
            conn.execute("INSERT INTO vehicles (vehicle_id, owner_id, make, model, battery_kwh, chemistry, "
                         "max_charge_kw, max_discharge_kw, v2g_capable) "
                         "VALUES (%s, 'o1', 'Nissan', 'Leaf', 39, 'NMC', 6.6, 6.6, true)", (f"v{i}",))


def reading(i: int, minute: int) -> dict:
    return {"vehicle_id": f"v{i}", "ts": (T0 + timedelta(minutes=minute)).isoformat(),
            "plugged_in": True, "charger_id": f"c{i}", "power_kw": 3.3 + (minute % 3),
            "soc_pct": 20 + (minute % 70), "soc_source": "vehicle_api", "battery_temp_c": 18.0}


# Each kind of bad message and the (field, code) ingest must give it.
BAD = {
    "soc": (lambda i, m: orjson.dumps(reading(i, m) | {"soc_pct": 104.0}), ("soc_pct", "out_of_range")),
    "power": (lambda i, m: orjson.dumps(reading(i, m) | {"power_kw": 50.0}), ("power_kw", "over_rating")),
    "future": (lambda i, m: orjson.dumps(reading(i, m) | {"ts": (datetime.now(UTC) + timedelta(hours=3)).isoformat()}),
               ("ts", "in_future")),
    "unknown": (lambda i, m: orjson.dumps(reading(i, m) | {"vehicle_id": "ghost"}), ("vehicle_id", "unknown_vehicle")),
    "json": (lambda i, m: b'{"vehicle_id": "v1", "ts": ', ("$", "malformed_json")),
    "missing": (lambda i, m: orjson.dumps({k: v for k, v in reading(i, m).items() if k != "plugged_in"}),
                ("plugged_in", "missing")),
}


def make_messages(n_minutes: int, bad_every: int = 0) -> tuple[list[tuple[bytes, bytes]], set, Counter]:
    """Messages for VEHICLES cars over n_minutes; every bad_every-th is broken, in rotation."""
    messages, good, bad = [], set(), Counter()
    kinds = list(BAD)
    for m in range(n_minutes):
        for i in range(VEHICLES):
            k = len(messages)
            if bad_every and k % bad_every == bad_every - 1:
                make, expected = BAD[kinds[(k // bad_every) % len(kinds)]]
                messages.append((f"v{i}".encode(), make(i, m)))
                bad[expected] += 1
            else:
                messages.append((f"v{i}".encode(), orjson.dumps(reading(i, m))))
                good.add((f"v{i}", T0 + timedelta(minutes=m)))
    return messages, good, bad


def produce(bootstrap: str, topic: str, messages) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]


def stored(db_url: str) -> list[tuple[str, datetime]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT vehicle_id, ts FROM telemetry").fetchall()


def config(db_url, bootstrap, topic, **kw) -> IngestConfig:
    return IngestConfig(db_url, bootstrap, topic=topic, dlq_topic=f"{topic}.dlq",
                        group_id=f"g-{topic}", **kw)


def read_topic(bootstrap: str, topic: str, expect: int, timeout_s: float = 30) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=2000)
    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < expect and time.monotonic() < deadline:
        out.extend(r for part in consumer.poll(timeout_ms=500).values() for r in part)
    consumer.close()
    return out


def test_exactly_the_good_stored_and_the_bad_in_the_dlq(db_url, kafka_server, topic_factory):
    register_fleet(db_url)
    topic = topic_factory()
    topic_factory(f"{topic}.dlq", partitions=1)
    messages, good, bad = make_messages(40, bad_every=37)
    duplicates = messages[100:160]  # a producer that retried after a lost ack
    produce(kafka_server.bootstrap_servers, topic, messages + duplicates)

    stats = IngestWorker(config(db_url, kafka_server.bootstrap_servers, topic, max_batch=700)).run(idle_exit_s=4)

    rows = stored(db_url)
    assert len(rows) == len(set(rows)) == len(good)
    assert set(rows) == good
    # Good copies are dropped; a bad copy is refused again (a new offset is a new message).
    is_bad = [k % 37 == 36 for k in range(len(messages))]
    assert stats.duplicates_dropped == sum(not is_bad[k] for k in range(100, 160))
    dup_bad = Counter(BAD[list(BAD)[(k // 37) % len(BAD)]][1] for k in range(100, 160) if is_bad[k])
    with psycopg.connect(db_url) as conn:
        rejects = Counter((f, c) for f, c in conn.execute("SELECT field, code FROM telemetry_rejects"))
        assert conn.execute("SELECT count(*) FROM telemetry_rejects WHERE NOT published").fetchone()[0] == 0
    assert rejects == bad + dup_bad
    assert stats.consumed == len(messages) + len(duplicates)
    assert stats.stored + sum(rejects.values()) + stats.duplicates_dropped == stats.consumed

    dlq = read_topic(kafka_server.bootstrap_servers, f"{topic}.dlq", sum(rejects.values()))
    assert len(dlq) == sum(rejects.values())
    originals = {v for _, v in messages}
    for record in dlq:
        headers = dict(record.headers)
        assert record.value in originals  # the original bytes, untouched
        assert headers["reason"] and headers["field"] and headers["code"]
        assert headers["source"].decode().startswith(f"{topic}/")
    assert Counter((dict(r.headers)["field"].decode(), dict(r.headers)["code"].decode()) for r in dlq) == rejects


def _run_worker_process(db_url: str, bootstrap: str, topic: str, max_batch: int) -> subprocess.Popen:
    env = os.environ | {"DATABASE_URL": db_url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.Popen(
        [sys.executable, "-m", "services.ingest", "--topic", topic, "--dlq-topic", f"{topic}.dlq",
         "--group", f"g-{topic}", "--max-batch", str(max_batch), "--idle-exit-s", "4"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2])


def test_sigkill_mid_batch_then_restart_stores_everything_once(db_url, kafka_server, topic_factory):
    register_fleet(db_url)
    topic = topic_factory()
    topic_factory(f"{topic}.dlq", partitions=1)
    messages, good, bad = make_messages(1000, bad_every=101)  # 50,000 messages
    produce(kafka_server.bootstrap_servers, topic, messages)

    kills = 0
    for threshold in (3_000, 15_000, 30_000):  # kill three times, each at a different point
        proc = _run_worker_process(db_url, kafka_server.bootstrap_servers, topic, max_batch=200)
        while proc.poll() is None and count(db_url) < threshold:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    assert kills == 3, f"the worker ended before it could be killed: {proc.stderr.read().decode()[-1500:]}"
    final = _run_worker_process(db_url, kafka_server.bootstrap_servers, topic, max_batch=300)
    assert final.wait(timeout=240) == 0, final.stderr.read().decode()[-2000:]

    rows = stored(db_url)
    assert len(rows) == len(set(rows)) == len(good)
    assert set(rows) == good
    with psycopg.connect(db_url) as conn:
        rejects = Counter((f, c) for f, c in conn.execute("SELECT field, code FROM telemetry_rejects"))
    assert rejects == bad


def test_database_restart_while_messages_keep_coming(db_url_on_own_server, kafka_server, topic_factory):
    db_url, server = db_url_on_own_server
    register_fleet(db_url)
    topic = topic_factory()
    topic_factory(f"{topic}.dlq", partitions=1)
    messages, good, _ = make_messages(200)  # 10,000 messages, all good
    stop = threading.Event()
    worker = IngestWorker(config(db_url, kafka_server.bootstrap_servers, topic, max_batch=250))
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(stats=worker.run(stop)))
    thread.start()

    producer = KafkaProducer(bootstrap_servers=kafka_server.bootstrap_servers, acks="all", linger_ms=5)

    def send(chunk):
        for key, value in chunk:
            producer.send(topic, key=key, value=value)
            time.sleep(0.0002)
        producer.flush()

    send(messages[:3000])
    deadline = time.monotonic() + 60
    while count(db_url) < 3000 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count(db_url) == 3000, "the worker never got going"
    server.stop()                    # the database goes away while messages keep coming
    send(messages[3000:6000])
    time.sleep(3)
    server.start()                   # ... and comes back
    send(messages[6000:])
    producer.close()

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and count(db_url) < len(good):
        time.sleep(0.5)
    stop.set()
    thread.join(timeout=30)
    rows = stored(db_url)
    assert set(rows) == good and len(rows) == len(good)
    assert result["stats"].db_retries > 0, "the outage was never noticed"
