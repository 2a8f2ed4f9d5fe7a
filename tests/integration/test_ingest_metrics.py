"""The ingest worker's metrics on the real broker and database: each counter moves by exactly
what the messages call for. The default registry is process-global (other tests move it too),
so every assertion is on a before/after difference."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import REGISTRY

from services.ingest import worker as ingest_worker
from services.ingest.worker import IngestWorker
from services.runtime.metrics import metrics_text
from test_ingest import config, produce, reading, register_fleet

pytestmark = pytest.mark.integration

SAMPLES = {
    "stored": ("flexfleet_ingest_messages_total", {"outcome": "stored"}),
    "duplicate": ("flexfleet_ingest_messages_total", {"outcome": "duplicate"}),
    "rejected": ("flexfleet_ingest_messages_total", {"outcome": "rejected"}),
    "soc": ("flexfleet_ingest_rejected_total", {"field": "soc_pct", "code": "out_of_range"}),
    "unknown_member": ("flexfleet_ingest_rejected_total", {"field": "(unknown)", "code": "unknown_field"}),
    "dlq": ("flexfleet_ingest_dlq_published_total", {}),
    "writes": ("flexfleet_ingest_write_seconds_count", {}),
}


def sample(name: str, labels: dict) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def lag_by_partition() -> dict[str, float]:
    return {s.labels["partition"]: s.value for family in REGISTRY.collect()
            if family.name == "flexfleet_ingest_consumer_lag" for s in family.samples}


def test_ingest_counters_move_by_exactly_the_batch(db_url, kafka_server, topic_factory, monkeypatch):
    register_fleet(db_url)
    topic = topic_factory()
    topic_factory(f"{topic}.dlq", partitions=1)
    good = [(f"v{i}".encode(), orjson.dumps(reading(i, minute))) for minute in range(6) for i in range(10)]
    bad = [(b"v1", orjson.dumps(reading(1, 50) | {"soc_pct": 104.0})),
           (b"v2", orjson.dumps(reading(2, 50) | {"x-made-up-member": 1}))]
    duplicates = good[:5]                       # a producer that retried after a lost ack
    monkeypatch.setattr(ingest_worker, "LAG_EVERY_S", 0.0)     # refresh the lag gauge on every poll
    seen_lag: list[float] = []
    before = {k: sample(*v) for k, v in SAMPLES.items()}
    produce(kafka_server.bootstrap_servers, topic, good + bad + duplicates)

    stats = IngestWorker(config(db_url, kafka_server.bootstrap_servers, topic, max_batch=20)).run(
        idle_exit_s=3, on_batch=lambda s: seen_lag.append(sum(lag_by_partition().values())))

    moved = {k: sample(*v) - before[k] for k, v in SAMPLES.items()}
    assert moved == {"stored": len(good), "duplicate": len(duplicates), "rejected": 2, "soc": 1,
                     "unknown_member": 1, "dlq": 2, "writes": stats.batches}
    assert stats.consumed == len(good) + len(bad) + len(duplicates)
    # While batches of 20 were left to read, some partition lagged; at the end none does.
    assert max(seen_lag) > 0
    final = lag_by_partition()
    assert set(final) == {"0", "1", "2", "3"} and set(final.values()) == {0.0}
    body, content_type = metrics_text()
    assert content_type.startswith("text/plain") and b'flexfleet_ingest_messages_total{outcome="stored"}' in body
