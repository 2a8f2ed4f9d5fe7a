"""Shared set-up of the VTN tests (no tests here): an app on a fresh database, registered clients,
their tokens, a real uvicorn server on a free port, and a webhook receiver."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.dispatcher.vtn import BASE_PATH, register_client

SECRET = "test-signing-secret-of-at-least-32-bytes!"
BL = ("bl-client", "bl-secret-123")
VENS = {"ven-a": ("ven-a-client", "ven-a-secret"), "ven-b": ("ven-b-client", "ven-b-secret")}


def register_all(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        register_client(conn, *BL, "BL")
        for ven_name, (client_id, secret) in VENS.items():
            register_client(conn, client_id, secret, "VEN", ven_name)


def token(client: TestClient, client_id: str, secret: str, **extra: str) -> str:
    response = client.post(f"{BASE_PATH}/auth/token", data={"grant_type": "client_credentials",
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
