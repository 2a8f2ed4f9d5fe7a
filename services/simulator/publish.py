"""Publish simulated messages to Kafka, keyed by vehicle id so each car's readings stay in order."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kafka import KafkaProducer

from services.simulator.telemetry import Message

PROGRESS_EVERY = 5000


def publish(messages: Iterable[Message], bootstrap_servers: str, topic: str,
            on_progress: Callable[[int], None] | None = None) -> int:
    """Send every message (acks=all) and flush; returns how many were sent."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=20,
                             batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)
    sent = 0
    try:
        for m in messages:
            producer.send(topic, key=m.key, value=m.value)
            sent += 1
            if on_progress and sent % PROGRESS_EVERY == 0:
                on_progress(sent)
        producer.flush()
    finally:
        producer.close()
    if on_progress:
        on_progress(sent)
    return sent
