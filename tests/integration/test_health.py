"""`flexfleet ingest --health-port`: the probe an orchestrator restarts the consumer by, against the
real PostgreSQL and Kafka-protocol broker. Healthy while consuming (and while idle), 503 once the
loop is stuck behind a database that went away, healthy again when it comes back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
from kafka import KafkaProducer
from test_ingest import register_fleet

from services.runtime.health import health_answer

pytestmark = pytest.mark.integration

VEHICLES = 20
STALE_S = 2.0
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=6)


def send(bootstrap: str, topic: str, minutes: range) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    n = 0
    for m in minutes:
        for i in range(VEHICLES):
            value = {"vehicle_id": f"v{i}", "ts": (T0 + timedelta(minutes=m)).isoformat(), "plugged_in": True,
                     "charger_id": f"c{i}", "power_kw": 3.3, "soc_pct": 20 + m % 70, "soc_source": "vehicle_api"}
            producer.send(topic, key=f"v{i}".encode(), value=orjson.dumps(value))
            n += 1
    producer.flush()
    producer.close()
    return n


def healthz(port: int) -> tuple[int, dict]:
    status, body = health_answer(f"http://127.0.0.1:{port}/healthz", 2)
    return status, json.loads(body) if status else {}


def wait_for(what: str, check, proc: subprocess.Popen, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ingest exited while waiting for {what}: {proc.stderr.read().decode()[-2000:]}"
        seen = check()
        if seen:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stored(db_url: str) -> int:
    try:
        with psycopg.connect(db_url, connect_timeout=2) as conn:
            return conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    except psycopg.OperationalError:
        return -1


def test_healthz_is_200_while_consuming_and_503_once_the_loop_is_stuck(db_url_on_own_server, kafka_server,
                                                                        topic_factory):
    db_url, server = db_url_on_own_server
    register_fleet(db_url, VEHICLES)
    topic = topic_factory()
    topic_factory(f"{topic}.dlq", partitions=1)
    port = free_port()
    env = os.environ | {"DATABASE_URL": db_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_server.bootstrap_servers}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.ingest", "--topic", topic, "--dlq-topic", f"{topic}.dlq",
         "--group", f"g-{topic}", "--max-batch", "100", "--health-port", str(port),
         "--health-stale-s", str(STALE_S)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2])
    try:
        wait_for("/healthz to answer", lambda: healthz(port)[0] == 200, proc)
        first = send(kafka_server.bootstrap_servers, topic, range(0, 30))
        # the worker counts a batch once its transaction committed and it comes round again
        code, body = wait_for("the first readings counted",
                              lambda: (seen := healthz(port))[1].get("details", {}).get("stored") == first and seen,
                              proc)
        assert code == 200 and body["status"] == "ok" and body["stale_after_s"] == STALE_S, body
        assert stored(db_url) == first
        time.sleep(STALE_S * 2)          # idle, but the loop still comes round: healthy
        assert healthz(port)[0] == 200

        server.stop()                    # the database goes away: the next batch cannot be written
        send(kafka_server.bootstrap_servers, topic, range(30, 60))
        code, body = wait_for("/healthz to turn 503", lambda: (seen := healthz(port))[0] == 503 and seen, proc)
        assert body["status"] == "stale" and body["last_progress_s"] > STALE_S, body

        server.start()                   # ... and comes back: the loop moves again, nothing is lost
        wait_for("/healthz back to 200", lambda: healthz(port)[0] == 200, proc)
        wait_for("every reading stored", lambda: stored(db_url) == first * 2, proc)
        wait_for("every reading counted", lambda: healthz(port)[1].get("details", {}).get("stored") == first * 2,
                 proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:   # the same port scrapes
            scrape = r.read().decode()
        assert f'flexfleet_ingest_messages_total{{outcome="stored"}} {float(first * 2)}' in scrape, scrape[:2000]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    assert healthz(port)[0] == 0, "the health server outlived the process"
