"""Health for long-running processes that serve no HTTP of their own (the ingest consumer).

A container orchestrator only sees a process; a consumer stuck behind a database that never
answers is alive but useless. So the loop beats a `Heartbeat` each time round, and a tiny
stdlib HTTP server in a daemon thread answers GET /healthz with 200 and JSON while the last beat
is younger than the staleness bound, 503 once it is older (restart me). The bound is a parameter,
so a test can make a stuck loop visible in seconds rather than minutes. A loop that comes round
but fails each time (the forecaster's passes) adds a `problem` check: 503 while it names one.

`python -m services.runtime.health probe URL` is the probe for images without curl
(python:3.12-slim): exit 0 on a 200 answer, 1 otherwise. `python -m services.runtime.health
database` checks that DATABASE_URL answers, for processes whose only dependency is the database.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flexfleet.domain.errors import DomainError
from services.runtime.metrics import METRICS_PATH, metrics_text

HEALTH_PATH = "/healthz"


class Heartbeat:
    """When a loop last made progress (monotonic clock), thread-safe."""

    def __init__(self, stale_after_s: float, clock: Callable[[], float] = time.monotonic):
        if not stale_after_s > 0:
            raise DomainError("stale_after_s", f"must be positive, got {stale_after_s!r}")
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last = clock()      # a process just started counts as fresh: it has a bound to join
        self.beats = 0

    def beat(self) -> None:
        with self._lock:
            self._last = self._clock()
            self.beats += 1

    def age_s(self) -> float:
        with self._lock:
            return self._clock() - self._last

    def healthy(self) -> bool:
        return self.age_s() <= self.stale_after_s


class HealthServer:
    """GET /healthz on host:port (port 0: any free port, see `.port`) from a daemon thread.

    `details` adds the process's own figures (an ingest worker's totals) to the JSON body.
    `problem` returns why the process is unhealthy although its loop comes round, or None; any
    unhealthy answer names its reason in the body."""

    def __init__(self, heartbeat: Heartbeat, host: str = "0.0.0.0", port: int = 0,
                 details: Callable[[], dict[str, Any]] | None = None,
                 problem: Callable[[], str | None] | None = None):
        self.heartbeat = heartbeat
        self._details = details
        self._problem = problem
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def status(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) as GET /healthz answers now."""
        age = self.heartbeat.age_s()
        stale = age > self.heartbeat.stale_after_s
        reasons = [f"no progress for {age:.1f} s (stale after {self.heartbeat.stale_after_s:g} s)"] if stale else []
        if self._problem is not None:
            try:
                problem = self._problem()
            except Exception as exc:  # a check that cannot tell is no proof of health
                problem = f"health check failed: {exc!r}"
            if problem:
                reasons.append(problem)
        healthy = not reasons
        body: dict[str, Any] = {"status": "ok" if healthy else "stale" if stale else "failing",
                                "last_progress_s": round(age, 3),
                                "stale_after_s": self.heartbeat.stale_after_s, "beats": self.heartbeat.beats}
        if reasons:
            body["reason"] = "; ".join(reasons)
        if self._details is not None:
            try:
                body["details"] = self._details()
            except Exception as exc:  # the figures are extra: never let them turn health into a 500
                body["details_error"] = repr(exc)
        return (200 if healthy else 503), body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == METRICS_PATH:
                    self._write(200, *metrics_text())
                elif path == HEALTH_PATH:
                    self._send(*owner.status())
                else:
                    self._send(404, {"error": f"not found: GET {HEALTH_PATH} and {METRICS_PATH} are served"})

            def _send(self, code: int, body: dict[str, Any]) -> None:
                self._write(code, json.dumps(body).encode(), "application/json")

            def _write(self, code: int, data: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: no log lines
                pass

        return Handler

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def health_answer(url: str, timeout_s: float = 3.0) -> tuple[int, str]:
    """(HTTP status, body) of GET url; (0, why) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read(20_000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(20_000).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def probe(url: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    """(answered 200, what was seen) for GET url."""
    status, body = health_answer(url, timeout_s)
    return status == 200, f"{status} {body[:2000]}" if status else f"no answer: {body}"


def database_answers(database_url: str, timeout_s: int = 5) -> tuple[bool, str]:
    """(SELECT 1 answered, what was seen) on database_url."""
    import psycopg

    try:
        with psycopg.connect(database_url, connect_timeout=timeout_s) as conn:
            conn.execute("SELECT 1").fetchone()
        return True, "database answers"
    except psycopg.Error as exc:
        return False, f"database: {exc}"


def add_healthz(app: Any, database_url: str, timeout_s: int = 3) -> None:
    """GET /healthz on a FastAPI app that needs only its database: 200 {"status": "ok"} when it
    answers a query within `timeout_s`, else 503 {"status": "unavailable"}. Needs no login (a
    load balancer asks it); in a worker thread, off the event loop."""
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse

    @app.get(HEALTH_PATH, tags=["operations"], summary="Liveness: whether the database answers", response_model=None,
             responses={503: {"description": "The database does not answer."}})
    async def healthz() -> JSONResponse:
        """200 {"status": "ok"} when the database answers a query within a few seconds, else 503
        {"status": "unavailable"}. Needs no login (a load balancer asks it)."""
        ok, _ = await run_in_threadpool(database_answers, database_url, timeout_s)
        return JSONResponse({"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503,
                            headers={"Cache-Control": "no-store"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.runtime.health",
                                     description="Container health probes (exit 0 healthy, 1 not).")
    commands = parser.add_subparsers(dest="command", required=True)
    http = commands.add_parser("probe", help="GET a URL; healthy on 200.")
    http.add_argument("url")
    http.add_argument("--timeout-s", type=float, default=3.0)
    db = commands.add_parser("database", help="SELECT 1 on DATABASE_URL.")
    db.add_argument("--timeout-s", type=int, default=5)
    args = parser.parse_args(argv)
    if args.command == "probe":
        ok, seen = probe(args.url, args.timeout_s)
    else:
        url = os.environ.get("DATABASE_URL")
        if not url:
            print("DATABASE_URL: must be set", file=sys.stderr)
            return 1
        ok, seen = database_answers(url, args.timeout_s)
    print(seen, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
