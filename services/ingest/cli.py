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


def ingest(
    group: str = typer.Option("ingest", help="Consumer group; run several processes to scale out."),
    topic: str = typer.Option(TELEMETRY_TOPIC, help="Topic to consume."),
    dlq_topic: str = typer.Option(DLQ_TOPIC, help="Where refused messages go, with field and reason."),
    max_batch: int = typer.Option(5000, min=1, help="Messages per database transaction at most."),
    future_tolerance_s: int = typer.Option(300, min=0, help="How far ahead of our clock a reading may be."),
    idle_exit_s: float = typer.Option(None, help="Exit after this many seconds without messages."),
    health_port: int = typer.Option(None, min=0, max=65535,
                                    help="Serve GET /healthz on this port (0: any free port, logged)."),
    health_stale_s: float = typer.Option(60.0, min=0.1,
                                         help="/healthz answers 503 when the consume loop has not come round "
                                              "for this many seconds (stuck on the database, say)."),
) -> None:
    """Consume telemetry.v1 into the telemetry table until Ctrl-C.

    Needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS (e.g. from `flexfleet up`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
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
    health = _serve_health(worker, health_port, health_stale_s) if health_port is not None else None
    try:
        stats = worker.run(stop, idle_exit_s=idle_exit_s,
                           on_batch=lambda s: logging.info("ingest %s", s.as_dict()))
    finally:
        if health is not None:
            health.stop()
    typer.echo(f"ingest stopped: {stats.as_dict()}")


def _serve_health(worker: IngestWorker, port: int, stale_after_s: float) -> HealthServer:
    """Beat on every poll of the worker's loop (which polls at least every 0.5 s, messages or
    not), so an idle consumer stays healthy and one blocked on its writer or registry goes stale."""
    heartbeat = Heartbeat(stale_after_s)
    consumer = worker._consumer
    poll = consumer.poll

    def poll_and_beat(*args, **kwargs):
        heartbeat.beat()
        return poll(*args, **kwargs)

    consumer.poll = poll_and_beat  # type: ignore[method-assign]
    server = HealthServer(heartbeat, port=port, details=worker.stats.as_dict).start()
    logging.info("health on http://0.0.0.0:%d/healthz (stale after %.1f s)", server.port, stale_after_s)
    return server
