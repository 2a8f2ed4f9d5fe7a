"""Metrics and structured logs shared by the services (services.runtime.metrics, .logs)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import urllib.request
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from flexfleet.domain.errors import DomainError
from services.runtime.logs import JsonFormatter, configure_logging
from services.runtime.metrics import UNMATCHED, instrument, push_metrics, rejected_field, start_metrics_server

ROOT = Path(__file__).parents[2]


def requests_counted(app: str, route: str, method: str, status: int) -> float:
    return REGISTRY.get_sample_value("flexfleet_http_requests_total",
                                     {"app": app, "route": route, "method": method, "status": str(status)}) or 0.0


def request_seconds_count(app: str, route: str) -> float:
    return REGISTRY.get_sample_value("flexfleet_http_request_seconds_count", {"app": app, "route": route}) or 0.0


def small_app(name: str) -> FastAPI:
    app = FastAPI(title="small")

    @app.get("/v1/vehicles/{vehicle_id}")
    def vehicle(vehicle_id: str) -> dict:
        if vehicle_id == "ghost":
            raise HTTPException(404, "no such vehicle")
        if vehicle_id == "crash":
            raise RuntimeError("a bug")
        return {"vehicle_id": vehicle_id}

    @app.post("/v1/bids")
    def bids(body: dict) -> dict:
        return body

    return instrument(app, name)


def test_requests_are_labelled_by_route_template_and_status():
    app = small_app("t-template")
    before = {key: requests_counted("t-template", *key) for key in [
        ("/v1/vehicles/{vehicle_id}", "GET", 200), ("/v1/vehicles/{vehicle_id}", "GET", 404),
        ("/v1/vehicles/{vehicle_id}", "GET", 500), ("/v1/vehicles/{vehicle_id}", "DELETE", 405),
        ("/v1/bids", "POST", 422), (UNMATCHED, "GET", 404)]}
    timed = request_seconds_count("t-template", "/v1/vehicles/{vehicle_id}")
    with TestClient(app, raise_server_exceptions=False) as client:
        for vehicle in ("v1", "v2", "v3"):
            assert client.get(f"/v1/vehicles/{vehicle}").status_code == 200
        assert client.get("/v1/vehicles/ghost").status_code == 404
        assert client.get("/v1/vehicles/crash").status_code == 500
        assert client.delete("/v1/vehicles/v1").status_code == 405
        assert client.post("/v1/bids", content=b"not json").status_code == 422
        for path in ("/etc/passwd", "/v2/anything/at/all"):
            assert client.get(path).status_code == 404
    after = {key: requests_counted("t-template", *key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        ("/v1/vehicles/{vehicle_id}", "GET", 200): 3, ("/v1/vehicles/{vehicle_id}", "GET", 404): 1,
        ("/v1/vehicles/{vehicle_id}", "GET", 500): 1, ("/v1/vehicles/{vehicle_id}", "DELETE", 405): 1,
        ("/v1/bids", "POST", 422): 1, (UNMATCHED, "GET", 404): 2}
    assert request_seconds_count("t-template", "/v1/vehicles/{vehicle_id}") - timed == 6
    # No raw path ever became a label value.
    routes = {s.labels["route"] for s in REGISTRY.collect() if s.name == "flexfleet_http_requests"
              for s in s.samples if s.labels.get("app") == "t-template"}
    assert routes == {"/v1/vehicles/{vehicle_id}", "/v1/bids", UNMATCHED}


def test_metrics_endpoint_serves_the_text_format_outside_the_openapi_document():
    app = small_app("t-endpoint")
    with TestClient(app) as client:
        client.get("/v1/vehicles/v1")
        response = client.get("/metrics")
        schema = client.get("/openapi.json").json()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["flexfleet_http_requests"].type == "counter"
    assert families["flexfleet_http_request_seconds"].type == "histogram"
    assert families["flexfleet_ingest_consumer_lag"].type == "gauge"
    assert any(s.labels.get("app") == "t-endpoint" and s.labels["route"] == "/v1/vehicles/{vehicle_id}"
               for s in families["flexfleet_http_requests"].samples)
    assert "/metrics" not in schema["paths"] and "/v1/vehicles/{vehicle_id}" in schema["paths"]


@pytest.mark.parametrize("factory", ["api", "vtn", "bidding"])
def test_every_platform_app_is_instrumented(factory, monkeypatch):
    """Built on a database that is never reached: /metrics needs none, and the apps' own
    OpenAPI documents leave it out."""
    url = "postgresql://nobody@127.0.0.1:1/none"
    secret = "s" * 40
    if factory == "api":
        from services.api.app import create_app
        app = create_app(url, secret=secret)
    elif factory == "vtn":
        from services.dispatcher.vtn import create_app
        app = create_app(url, secret=secret)
    else:
        from services.api.security import Auth
        from services.api.settings import ApiSettings
        from services.bidder.api import create_app
        from services.runtime.connection import PooledConnections
        app = create_app(url, Auth(ApiSettings.resolve(secret=secret), PooledConnections(url)))
    before = requests_counted(factory, "/metrics", "GET", 200)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 200
        assert "/metrics" not in app.openapi()["paths"]
    assert requests_counted(factory, "/metrics", "GET", 200) - before == 1


def test_unknown_members_share_one_rejected_field_label():
    assert rejected_field("soc_pct", "out_of_range") == "soc_pct"
    assert rejected_field("x-anything-a-sender-invents", "unknown_field") == "(unknown)"


_WORKER = """
from services.runtime import metrics
metrics.HTTP_REQUESTS.labels("mp", "/r", "GET", "200").inc({n})
metrics.DISPATCH_DELIVERED_SHARE.labels("mp-product").set({share})
metrics.INGEST_CONSUMER_LAG.labels("mp-{n}").set({n})
"""
_SCRAPE = "import sys; from services.runtime.metrics import metrics_text; sys.stdout.buffer.write(metrics_text()[0])"


def test_multiprocess_scrape_adds_up_every_worker(tmp_path):
    """Three processes (as uvicorn workers) write to one PROMETHEUS_MULTIPROC_DIR; a scrape from
    any process adds up all of them."""
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for n, share in ((2, 0.8), (3, 0.95)):
        subprocess.run([sys.executable, "-c", _WORKER.format(n=n, share=share)], env=env, cwd=ROOT, check=True)
    scraped = subprocess.run([sys.executable, "-c", _SCRAPE], env=env, cwd=ROOT, check=True,
                             capture_output=True).stdout.decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(scraped) for s in f.samples}
    assert samples[("flexfleet_http_requests_total",
                    (("app", "mp"), ("method", "GET"), ("route", "/r"), ("status", "200")))] == 5
    assert samples[("flexfleet_dispatch_delivered_share", (("product", "mp-product"),))] == 0.95  # the latest
    assert samples[("flexfleet_ingest_consumer_lag", (("partition", "mp-2"),))] == 2
    assert samples[("flexfleet_ingest_consumer_lag", (("partition", "mp-3"),))] == 3


def _record(message: str, *args, **extra) -> logging.LogRecord:
    logger = logging.getLogger("services.ingest.worker")
    return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, args, None, extra=extra)


def test_json_log_lines_parse_with_their_fields():
    line = JsonFormatter("ingest").format(_record("offset commit failed: %s", "rebalance", partition=3,
                                                  batch={"stored": 10}))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["service"] == "ingest" and doc["level"] == "WARNING"
    assert doc["logger"] == "services.ingest.worker"
    assert doc["message"] == "offset commit failed: rebalance"
    assert doc["partition"] == 3 and doc["batch"] == {"stored": 10}
    assert doc["ts"].endswith("Z") and "T" in doc["ts"]


def test_configure_logging_json_and_text(monkeypatch):
    root = logging.getLogger()
    level = root.level
    out = io.StringIO()
    try:
        monkeypatch.setenv("FLEXFLEET_LOG_FORMAT", "json")
        handler = configure_logging("forecaster", stream=out)
        again = configure_logging("forecaster", stream=out)       # replaces, does not add
        assert handler not in root.handlers and again in root.handlers
        try:
            raise ValueError("no sessions")
        except ValueError:
            logging.getLogger("services.forecaster.service").exception("pass failed", extra={"zone": "SE3"})
        lines = out.getvalue().splitlines()
        doc = json.loads(lines[0])
        assert len([line for line in lines if line.startswith("{")]) == 1
        assert doc["message"] == "pass failed" and doc["zone"] == "SE3" and doc["service"] == "forecaster"
        assert "ValueError: no sessions" in doc["exception"]

        monkeypatch.delenv("FLEXFLEET_LOG_FORMAT")
        out.truncate(0), out.seek(0)
        configure_logging("vtn", stream=out)
        logging.getLogger("services.dispatcher.vtn").info("serving %s", "3.0.1", extra={"workers": 2})
        text = out.getvalue().strip()
        assert text.endswith(" INFO vtn services.dispatcher.vtn: serving 3.0.1 workers=2")
        assert text[:24].endswith("Z")

        with pytest.raises(DomainError) as exc:
            configure_logging("vtn", level="LOUD", stream=out)
        assert exc.value.field == "FLEXFLEET_LOG_LEVEL"
    finally:
        for h in [h for h in root.handlers if h.get_name() == "flexfleet"]:
            root.removeHandler(h)
        root.setLevel(level)


def test_metrics_server_for_processes_without_an_app():
    server = start_metrics_server(0, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert "flexfleet_forecast_run_seconds_bucket" in body


def test_jobs_push_to_the_gateway_only_when_one_is_configured(monkeypatch):
    """A one-shot job's metrics go to $FLEXFLEET_PUSHGATEWAY_URL under its job name; without
    one nothing is sent, and a gateway that is down does not fail the job."""
    received: list[tuple[str, str, bytes]] = []

    class Gateway(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            received.append((self.command, self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    gateway = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("FLEXFLEET_PUSHGATEWAY_URL", raising=False)
        assert push_metrics("dispatch-verify") is False
        monkeypatch.setenv("FLEXFLEET_PUSHGATEWAY_URL", f"http://127.0.0.1:{gateway.server_port}")
        assert push_metrics("dispatch-verify") is True
    finally:
        gateway.shutdown()
        gateway.server_close()
    [(method, path, body)] = received
    assert method == "PUT" and path == "/metrics/job/dispatch-verify"
    assert b"flexfleet_dispatch_delivered_share" in body
    assert push_metrics("dispatch-verify") is False          # the gateway is gone: logged, not raised


def test_delivered_share_is_weighted_by_required_volume_and_duration():
    from services.dispatcher.deliveries import record_deliveries

    def delivery(product: str, mw: float, hours: float, share: float, response: float | None):
        return SimpleNamespace(product_id=product, required_mw=mw, hours=hours, delivered_share=share,
                               response_time_s=response)

    responses = REGISTRY.get_sample_value("flexfleet_dispatch_response_seconds_count", {"product": "t-fcr"}) or 0
    record_deliveries([delivery("t-fcr", 1.0, 1.0, 1.0, 4.0), delivery("t-fcr", 3.0, 1.0, 0.8, None),
                       delivery("t-local", 0.5, 0.25, 0.5, None)])
    share = REGISTRY.get_sample_value("flexfleet_dispatch_delivered_share", {"product": "t-fcr"})
    assert share == pytest.approx((1.0 * 1.0 + 3.0 * 0.8) / 4.0)
    assert REGISTRY.get_sample_value("flexfleet_dispatch_delivered_share", {"product": "t-local"}) == 0.5
    assert REGISTRY.get_sample_value("flexfleet_dispatch_response_seconds_count", {"product": "t-fcr"}) - responses == 1


def test_bids_are_counted_per_product():
    from services.bidder.service import _count_bids

    def bids(product: str) -> float:
        return REGISTRY.get_sample_value("flexfleet_bid_bids_total", {"product": product}) or 0.0

    def mw(product: str) -> float:
        return REGISTRY.get_sample_value("flexfleet_bid_offered_mw_total", {"product": product}) or 0.0

    before = bids("t-up"), mw("t-up"), bids("t-down"), mw("t-down")
    _count_bids([SimpleNamespace(product_id="t-up", volume_mw=Decimal("1.2")),
                 SimpleNamespace(product_id="t-up", volume_mw=Decimal("0.3")),
                 SimpleNamespace(product_id="t-down", volume_mw=Decimal("2"))])
    after = bids("t-up"), mw("t-up"), bids("t-down"), mw("t-down")
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, pytest.approx(1.5), 1, 2]


def test_the_log_handler_follows_stderr_survives_a_closed_capture_and_lets_libraries_redirect_it(monkeypatch):
    """pyomo's solvers point every stderr handler at a file of their own for a while and set it back;
    a test runner closes the stream it captured stderr into. Neither may break logging."""
    level = logging.getLogger().level
    handler = configure_logging("test", fmt="text", level="INFO")
    try:
        captured = io.StringIO()
        monkeypatch.setattr(sys, "stderr", captured)
        assert handler.stream is captured                   # whatever stderr is now
        redirected = io.StringIO()
        handler.stream = redirected                         # a library redirects it ...
        logging.getLogger("x").warning("while redirected")
        assert "while redirected" in redirected.getvalue() and not captured.getvalue()
        handler.stream = sys.stderr                         # ... and sets it back
        assert handler.stream is captured
        captured.close()                                    # the capture ends before a late record
        assert handler.stream is sys.__stderr__
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(level)


def test_an_access_log_switched_off_stays_off():
    """`uvicorn --no-access-log` empties uvicorn.access and stops its propagation; an app factory
    that configures logging afterwards must not route it back (a line per request: the VTN's
    polls), while uvicorn's own loggers that have handlers are routed to ours."""
    import uvicorn

    root = logging.getLogger()
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
             for n in ("uvicorn", "uvicorn.error", "uvicorn.access")}
    try:
        uvicorn.Config(FastAPI(), access_log=False).configure_logging()
        assert not logging.getLogger("uvicorn.access").hasHandlers()
        out = io.StringIO()
        configure_logging("vtn", stream=out)
        access, error = logging.getLogger("uvicorn.access"), logging.getLogger("uvicorn.error")
        assert not access.hasHandlers() and not access.propagate
        assert error.propagate and not error.handlers
        error.info("Started server process", extra={"color_message": "Started \x1b[36mserver\x1b[0m process"})
        assert out.getvalue().rstrip().endswith("uvicorn.error: Started server process")     # no colour copy
    finally:
        for h in [h for h in root.handlers if h.get_name() == "flexfleet"]:
            root.removeHandler(h)
        for name, (handlers, propagate) in saved.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate
