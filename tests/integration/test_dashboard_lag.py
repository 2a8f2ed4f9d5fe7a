"""The ingest consumer-lag alert on /ops, read from the real broker: messages nobody consumed raise
it, consuming and committing them clears it, and a broker that is missing or does not answer is
an alert of its own while the page still answers quickly."""

from __future__ import annotations

import re
import socket
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, KafkaProducer

from services.api.accounts import create_account
from services.api.app import create_app

pytestmark = pytest.mark.integration

SECRET = "dashboard-lag-test-signing-secret-32-bytes"
PASSWORD = "correct horse battery staple"
LAG_ALERT = '<p class="alert"><a href="/ops/alerts/lag/ingest">Ingest consumer lag</a>'


@pytest.fixture
def operator_db(db_url):
    import psycopg

    with psycopg.connect(db_url) as conn:
        create_account(conn, "olle", PASSWORD, "operator")
    return db_url


def _client(url: str, tmp_path) -> TestClient:
    return TestClient(create_app(url, secret=SECRET, settlement_dir=tmp_path), follow_redirects=False)


def _headers(client: TestClient) -> dict[str, str]:
    answer = client.post("/v1/auth/token", data={"grant_type": "password", "username": "olle", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _lag_rows(page: str) -> list[tuple[int, str, int]]:
    """(partition, committed, lag) per row of the lag page's table."""
    rows = re.findall(r'<tr><td class="num">(\d+)</td><td class="num">\d+</td><td class="num">\d+</td>\s*'
                      r'<td class="num">(\w+)</td><td class="num[^"]*">(\d+)</td>', page)
    return [(int(p), c, int(n)) for p, c, n in rows]


def test_unconsumed_messages_raise_the_alert_and_committing_them_clears_it(operator_db, kafka_server, topic_factory,
                                                                           monkeypatch, tmp_path):
    topic, group = topic_factory(partitions=2), f"ingest-{uuid.uuid4().hex[:8]}"
    bootstrap = kafka_server.bootstrap_servers
    for name, value in (("KAFKA_BOOTSTRAP_SERVERS", bootstrap), ("FLEXFLEET_DASHBOARD_LAG_TOPIC", topic),
                        ("FLEXFLEET_DASHBOARD_LAG_GROUP", group), ("FLEXFLEET_DASHBOARD_LAG_ALERT_MESSAGES", "5"),
                        ("FLEXFLEET_DASHBOARD_LAG_CACHE_S", "0")):
        monkeypatch.setenv(name, value)
    with _client(operator_db, tmp_path) as client:
        headers = _headers(client)
        ops = client.get("/ops", headers=headers).text
        assert LAG_ALERT not in ops and re.search(r'id="ingest-lag">0<', ops)

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        for n in range(12):
            producer.send(topic, key=f"v{n}".encode(), value=b"{}").get(10)
        producer.close()
        ops = client.get("/ops", headers=headers).text
        assert LAG_ALERT in ops and "is 12 messages behind" in ops
        assert re.search(r'id="ingest-lag">12<', ops)
        detail = client.get("/ops/alerts/lag/ingest", headers=headers).text
        rows = _lag_rows(detail)
        assert len(rows) == 2 and sum(n for _, _, n in rows) == 12 and {c for _, c, _ in rows} == {"never"}
        assert "above the 5 alert threshold" in detail

        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                 auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000)
        seen, deadline = 0, time.monotonic() + 30
        while seen < 12 and time.monotonic() < deadline:
            seen += sum(len(batch) for batch in consumer.poll(timeout_ms=500).values())
        consumer.commit()
        consumer.close()
        assert seen == 12
        ops = client.get("/ops", headers=headers).text
        assert LAG_ALERT not in ops and "Broker unreachable" not in ops
        rows = _lag_rows(client.get("/ops/alerts/lag/ingest", headers=headers).text)
        assert sum(n for _, _, n in rows) == 0 and sum(int(c) for _, c, _ in rows) == 12


def test_a_broker_that_is_missing_or_silent_is_an_alert_and_the_page_stays_quick(operator_db, monkeypatch, tmp_path):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with _client(operator_db, tmp_path) as client:
        ops = client.get("/ops", headers=_headers(client))
        assert ops.status_code == 200 and "Broker unreachable" in ops.text
        assert "KAFKA_BOOTSTRAP_SERVERS is not set" in ops.text
    with socket.socket() as s:                  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    monkeypatch.setenv("FLEXFLEET_DASHBOARD_LAG_CACHE_S", "30")
    with _client(operator_db, tmp_path) as client:
        headers = _headers(client)
        began = time.monotonic()
        ops = client.get("/ops", headers=headers)
        first = time.monotonic() - began
        assert ops.status_code == 200 and "Broker unreachable" in ops.text and f"127.0.0.1:{port}" in ops.text
        assert first < 4.0, f"/ops took {first:.1f} s with the broker down"
        began = time.monotonic()
        detail = client.get("/ops/alerts/lag/ingest", headers=headers)
        assert detail.status_code == 200 and "Broker unreachable" in detail.text
        assert time.monotonic() - began < 1.0     # the cached answer, not another wait
