"""Prometheus metrics of every flexfleet service: one module, one naming scheme.

Names are `flexfleet_<service>_<what>_<unit>` (counters end in `_total`); docs/observability.md
lists them all. Label values are always bounded sets (an outcome, a product id, a route
template, a partition number), never raw input: a path or an unknown JSON member would give
every request its own time series.

Where the metrics are served:
- FastAPI apps: `instrument(app, name)` counts and times every request by route template and
  adds GET /metrics (unauthenticated, left out of the OpenAPI document: serve it to the internal
  network only, e.g. by not routing /metrics through the public ingress);
- processes without an HTTP app: `metrics_text()` gives the body and content type for a
  /metrics handler of their own (the ingest consumer's health server), or
  `start_metrics_server(port)` serves them on a port of their own (the forecaster);
- one-shot jobs (bid planning, dispatch, delivery verification) end before any scrape:
  `push_metrics(job)` hands their metrics to a Prometheus Pushgateway when
  FLEXFLEET_PUSHGATEWAY_URL is set, and does nothing otherwise.

Several processes (uvicorn --workers N): set PROMETHEUS_MULTIPROC_DIR to an empty directory
writable by all workers, before they start. prometheus_client then keeps every value in a
file per process, and /metrics aggregates all of them (prometheus_client.multiprocess);
without it each scrape would see only the worker that happened to answer. Empty the directory
when the server (re)starts, so values of a previous run are not added in.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess,
                               push_to_gateway, start_http_server)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PUSHGATEWAY_ENV = "FLEXFLEET_PUSHGATEWAY_URL"
METRICS_PATH = "/metrics"
# The classic text format (0.0.4), which every Prometheus version scrapes; every name here is a
# legacy-valid one, so it says the same as the newer 1.0.0 text format.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
UNMATCHED = "<unmatched>"          # route label of a request no route matched (404s of any path)

# -- ingest ---------------------------------------------------------------------------------------
INGEST_MESSAGES = Counter(
    "flexfleet_ingest_messages_total", "Messages of telemetry.v1 handled, by outcome: stored (a new reading), "
    "rejected (refused by validation, sent to the DLQ) or duplicate (a reading already stored).", ["outcome"])
INGEST_REJECTED = Counter(
    "flexfleet_ingest_rejected_total", "Refused messages by the field at fault and the refusal code "
    "(field '(unknown)' for any member telemetry.v1 does not define).", ["field", "code"])
INGEST_DLQ_PUBLISHED = Counter(
    "flexfleet_ingest_dlq_published_total", "Refused messages published on telemetry.dlq.v1 (a crash between "
    "publishing and marking may publish one again).")
INGEST_CONSUMER_LAG = Gauge(
    "flexfleet_ingest_consumer_lag", "Messages not yet consumed on each partition assigned to this worker "
    "(high watermark minus position), refreshed every few seconds.", ["partition"], multiprocess_mode="max")
INGEST_WRITE_SECONDS = Histogram(
    "flexfleet_ingest_write_seconds", "Time to store one batch: COPY of its readings and insert of its "
    "rejects, in one transaction.", buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
INGEST_DB_RETRIES = Counter(
    "flexfleet_ingest_db_retries_total", "Database operations retried because the database was unavailable.")

# -- forecaster -----------------------------------------------------------------------------------
FORECAST_RUN_SECONDS = Histogram(
    "flexfleet_forecast_run_seconds", "Time of one forecaster pass (retrain if due, issue if due, store, "
    "publish), successful or not.", buckets=(.1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))
FORECAST_RUNS = Counter(
    "flexfleet_forecast_runs_total", "Forecaster passes by outcome: ok or failed.", ["outcome"])
FORECAST_ISSUED = Counter("flexfleet_forecast_issued_total", "Forecasts issued and stored.")

# -- bidder ---------------------------------------------------------------------------------------
BID_SOLVE_SECONDS = Histogram(
    "flexfleet_bid_solve_seconds", "Wall time of planning one delivery day's bids (the optimiser and its "
    "fallbacks).", buckets=(.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 180, 300))
BID_BIDS = Counter("flexfleet_bid_bids_total", "Bids planned, by market product.", ["product"])
BID_OFFERED_MW = Counter(
    "flexfleet_bid_offered_mw_total", "Volume of the bids planned, MW summed over bids (one bid per product "
    "and MTU), by market product.", ["product"])

# -- dispatcher -----------------------------------------------------------------------------------
DISPATCH_EVENTS_SENT = Counter(
    "flexfleet_dispatch_events_sent_total", "OpenADR events sent to the VTN, by action: created or updated.",
    ["action"])
DISPATCH_DELIVERED_SHARE = Gauge(
    "flexfleet_dispatch_delivered_share", "Share of the obligations' volume delivered (0..1, weighted by "
    "required MW x duration) in the latest verification run, by market product.", ["product"],
    multiprocess_mode="mostrecent")
DISPATCH_RESPONSE_SECONDS = Histogram(
    "flexfleet_dispatch_response_seconds", "Measured response time of a verified delivery (its slowest "
    "assessed activation), by market product.", ["product"],
    buckets=(1, 2.5, 5, 7.5, 10, 15, 30, 60, 120, 300, 750, 900))

# -- HTTP (every FastAPI app) ---------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "flexfleet_http_requests_total", "HTTP requests answered, by app, route template, method and status.",
    ["app", "route", "method", "status"])
HTTP_REQUEST_SECONDS = Histogram(
    "flexfleet_http_request_seconds", "Time to answer an HTTP request, by app and route template.",
    ["app", "route"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))


def rejected_field(field: str, code: str) -> str:
    """The `field` label of a refusal: a member telemetry.v1 does not define is named by the
    sender, so it is folded into one value to keep the label set bounded."""
    return "(unknown)" if code == "unknown_field" else field


def _registry() -> CollectorRegistry:
    """This process's metrics, or all processes' sharing PROMETHEUS_MULTIPROC_DIR when it is set."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_text() -> tuple[bytes, str]:
    """(body, content type) of a scrape of this process, or of all processes sharing
    PROMETHEUS_MULTIPROC_DIR when it is set."""
    return generate_latest(_registry()), CONTENT_TYPE


def start_metrics_server(port: int, host: str = "0.0.0.0") -> Any:
    """Serve GET /metrics on host:port from a daemon thread (port 0: any free one, see
    `.server_port`), for a long-running process without an HTTP app. Returns the server."""
    server, _thread = start_http_server(port, host, registry=_registry())
    return server


def push_metrics(job: str) -> bool:
    """Push this process's metrics to the Pushgateway at $FLEXFLEET_PUSHGATEWAY_URL under `job`
    (replacing what that job pushed before); False, and nothing sent, when it is not set. A
    gateway that does not answer is logged, not raised: the job's own work is done."""
    url = os.environ.get(PUSHGATEWAY_ENV)
    if not url:
        return False
    try:
        push_to_gateway(url, job=job, registry=REGISTRY, timeout=10)
    except OSError as exc:
        log.warning("metrics not pushed to %s: %s", url, exc)
        return False
    return True


# -- FastAPI --------------------------------------------------------------------------------------
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class MetricsMiddleware:
    """Pure ASGI middleware (no response buffering, unlike BaseHTTPMiddleware): counts and times
    each HTTP request under the template of the route that handled it (`/v1/owners/{owner_id}`),
    which the router leaves in scope["route"]; a request no route matched is UNMATCHED."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500                    # what the server answers when the app raises before a response
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            HTTP_REQUESTS.labels(self.name, route, scope["method"], str(status)).inc()
            HTTP_REQUEST_SECONDS.labels(self.name, route).observe(time.perf_counter() - started)


def instrument(app: Any, name: str) -> Any:
    """Count and time `app`'s requests under the label app=`name`, and serve GET /metrics (not in
    the OpenAPI document; unauthenticated, so keep it on an internal port or network). Call it
    while building the app, before it serves. Returns the app."""
    from fastapi import Response

    def metrics() -> Response:
        body, content_type = metrics_text()
        return Response(body, media_type=content_type)

    app.add_api_route(METRICS_PATH, metrics, methods=["GET"], include_in_schema=False)
    app.add_middleware(MetricsMiddleware, name=name)
    return app
