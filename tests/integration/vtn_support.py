"""Shared set-up of the VTN tests (no tests here): an app on a fresh database, registered clients,
their tokens, a real uvicorn server on a free port, and a webhook receiver."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import requests
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.dispatcher.vtn import BASE_PATH, create_app, register_client
from services.dispatcher.vtn.notifier import Delivery
from services.runtime.config import with_database

SECRET = "test-signing-secret-of-at-least-32-bytes!"
BL = ("bl-client", "bl-secret-123")
VENS = {"ven-a": ("ven-a-client", "ven-a-secret"), "ven-b": ("ven-b-client", "ven-b-secret")}


def register_all(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        register_client(conn, *BL)
        for ven_name, (client_id, secret) in VENS.items():
            register_client(conn, client_id, secret, ven_name)


def token(client: TestClient, client_id: str, secret: str, base_path: str = BASE_PATH, **extra: str) -> str:
    """An access token from the token endpoint under base_path (one token serves both versions)."""
    response = client.post(f"{base_path}/auth/token", data={"grant_type": "client_credentials",
                                                            "client_id": client_id, "client_secret": secret, **extra})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app in a real uvicorn server on a free local port, in a thread: its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Webhook:
    """A tiny HTTP server that records the notifications POSTed to it; `fail_first` answers the
    first n requests with 500 to exercise retries, `delay_s` makes every answer that late."""

    def __init__(self, fail_first: int = 0, delay_s: float = 0.0) -> None:
        self.received: list[tuple[dict, dict]] = []
        self.attempts = 0
        self.fail_first = fail_first
        self.delay_s = delay_s
        self._cond = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(hook.delay_s)
                with hook._cond:
                    hook.attempts += 1
                    failing = hook.attempts <= hook.fail_first
                    if not failing:
                        hook.received.append((json.loads(body), dict(self.headers)))
                    hook._cond.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.block_on_close = False
        self.server.server_close()

    def wait_for(self, count: int, timeout_s: float = 15.0) -> list[tuple[dict, dict]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.received) >= count, timeout=timeout_s)
            return list(self.received)


@contextmanager
def running_vtn(admin_url: str, template: str, base_path: str) -> Iterator[dict]:
    """A VTN served by uvicorn on a database of its own (from the migrated template), for the
    conformance runs: its base URL under `base_path`, BL and VEN-a bearer headers, and room for
    seeded ids. Generated subscriptions name callbacks anywhere: the VTN may only call back here."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = with_database(admin_url, name)
    register_all(url)
    app = create_app(url, secret=SECRET, delivery=Delivery(attempts=2, backoff_s=0.05, timeout_s=2,
                                                           allowed_hosts=frozenset({"127.0.0.1", "localhost"})))
    try:
        with serve(app) as base:
            yield {"base_url": f"{base}{base_path}", "bl": _bearer_for(base, base_path, *BL),
                   "ven": _bearer_for(base, base_path, *VENS["ven-a"]), "ids": {}, "random": random.Random(7)}
            app.state.notifier.drain()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _bearer_for(base: str, base_path: str, client_id: str, secret: str) -> dict[str, str]:
    response = requests.post(f"{base}{base_path}/auth/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    response.raise_for_status()
    return bearer(response.json()["access_token"])


def post_id(vtn: dict, path: str, body: dict, headers: dict[str, str] | None = None) -> str:
    """POST to a live VTN as the BL (or `headers`): the new object's id."""
    response = requests.post(f"{vtn['base_url']}{path}", json=body, headers=headers or vtn["bl"], timeout=10)
    response.raise_for_status()
    return response.json()["id"]


def call_and_validate(case, vtn: dict, checks: list) -> None:
    """Send a schemathesis case to a live VTN as the BL, or as VEN a for report writes (a VEN
    reports as itself), and run the checks."""
    reporting = case.operation.path.startswith("/reports") and case.method in ("POST", "PUT", "DELETE")
    case.call_and_validate(base_url=vtn["base_url"], headers=vtn["ven"] if reporting else vtn["bl"], checks=checks,
                           timeout=10)
