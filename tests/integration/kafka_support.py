"""Reading a topic back in integration tests."""

from __future__ import annotations

import time

from kafka import KafkaConsumer


def read_topic(bootstrap: str, topic: str, expect: int, timeout_s: float = 20) -> list:
    """Everything on the topic, waiting until `expect` records arrived (and 2 s more for extras)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    out, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out.extend(r for part in consumer.poll(timeout_ms=500).values() for r in part)
        if len(out) >= expect:
            deadline = min(deadline, time.monotonic() + 2)
    consumer.close()
    return out
