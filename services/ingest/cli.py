"""`flexfleet ingest`: run one member of the ingest consumer group until stopped."""

from __future__ import annotations

import logging
import signal
from datetime import timedelta
from threading import Event

import typer

from services.ingest.worker import DLQ_TOPIC, TELEMETRY_TOPIC, IngestConfig, IngestWorker
from services.runtime.config import Settings
from services.runtime.health import Heartbeat, HealthServer
from services.runtime.logs import configure_logging


def ingest(
    group: str = typer.Option("ingest", help="Consumer group; run several processes to scale out."),
    topic: str = typer.Option(TELEMETRY_TOPIC, help="Topic to consume."),
    dlq_topic: str = typer.Option(DLQ_TOPIC, help="Where refused messages go, with field and reason."),
    max_batch: int = typer.Option(5000, min=1, help="Messages per database transaction at most."),
    future_tolerance_s: int = typer.Option(300, min=0, help="How far ahead of our clock a reading may be."),
    idle_exit_s: float = typer.Option(None, help="Exit after this many seconds without messages."),
    health_port: int = typer.Option(None, min=0, max=65535,
                                    help="Serve GET /healthz and /metrics on this port (0: any free port, logged)."),
    health_stale_s: float = typer.Option(60.0, min=0.1,
                                         help="/healthz answers 503 when the consume loop has not come round "
                                              "for this many seconds (stuck on the database, say)."),
) -> None:
    """Consume telemetry.v1 into the telemetry table until Ctrl-C.

    Needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS (e.g. from `flexfleet up`)."""
    configure_logging("ingest")
    settings = Settings.from_env()
    if not settings.database_url or not settings.kafka_bootstrap_servers:
        raise typer.BadParameter("DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS must be set (see `flexfleet up`)")
    config = IngestConfig(settings.database_url, settings.kafka_bootstrap_servers, topic=topic,
                          dlq_topic=dlq_topic, group_id=group, max_batch=max_batch,
                          future_tolerance=timedelta(seconds=future_tolerance_s))
    stop = Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    worker = IngestWorker(config)
    heartbeat = Heartbeat(health_stale_s)
    health = None
    if health_port is not None:
        health = HealthServer(heartbeat, port=health_port, details=worker.stats.as_dict).start()
        logging.info("health and metrics on http://0.0.0.0:%d/healthz and /metrics (stale after %.1f s)",
                     health.port, health_stale_s)
    try:
        stats = worker.run(stop, idle_exit_s=idle_exit_s, on_poll=heartbeat.beat,
                           on_batch=lambda s: logging.info("ingest %s", s.as_dict()))
    finally:
        if health is not None:
            health.stop()
    typer.echo(f"ingest stopped: {stats.as_dict()}")
