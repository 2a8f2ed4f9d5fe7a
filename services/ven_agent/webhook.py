"""The agents' webhook: one small HTTP receiver for every site agent of a process.

Each agent subscribes with the callback `<base>/notifications/<venName>` and a bearer token of
its own; the VTN POSTs the spec's notification there. The receiver checks the token (a
notification is an instruction to the site: nobody else may send one), hands the body to that
agent's inbox and answers at once; the agent acts on it in its own loop. Polling stays on as
the fallback: notifications are best effort (the VTN drops them after its retries).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response

log = logging.getLogger(__name__)


class Receiver:
    """Routes notifications to agents by venName."""

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url
        self._routes: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {}
        self._lock = threading.Lock()
        self.received = 0
        self.refused = 0

    def route(self, ven_name: str, deliver: Callable[[dict[str, Any]], None]) -> tuple[str, str]:
        """Register an agent: its callback URL and a fresh bearer token for its subscriptions."""
        if self.base_url is None:
            raise RuntimeError("the receiver has no URL yet: start it first (serve_receiver)")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._routes[ven_name] = (token, deliver)
        return f"{self.base_url}/notifications/{ven_name}", token

    def deliver(self, ven_name: str, authorization: str | None, body: Any) -> int:
        """The HTTP status for one POST: 204 delivered, 401 bad token, 404 unknown VEN, 400 bad body."""
        with self._lock:
            route = self._routes.get(ven_name)
        if route is None:
            self.refused += 1
            return 404
        token, deliver = route
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            self.refused += 1
            return 401
        if not isinstance(body, dict) or not isinstance(body.get("object"), dict):
            self.refused += 1
            return 400
        self.received += 1
        deliver(body)
        return 204

    def app(self) -> FastAPI:
        app = FastAPI(title="flexfleet VEN agents' notification receiver", docs_url=None, redoc_url=None)

        @app.post("/notifications/{ven_name}")
        async def notify(ven_name: str, request: Request, authorization: str | None = Header(None)) -> Any:
            try:
                body = await request.json()
            except ValueError:
                body = None
            status = self.deliver(ven_name, authorization, body)
            if status == 204:
                return Response(status_code=204)
            return JSONResponse({"title": "refused", "status": status}, status_code=status)

        return app


@contextmanager
def serve_receiver(receiver: Receiver, host: str = "127.0.0.1", port: int = 0,
                   public_url: str | None = None) -> Iterator[Receiver]:
    """Run the receiver in a uvicorn thread; `receiver.base_url` is set to where the VTN can
    reach it (`public_url` when given, else http://host:port). Port 0 picks a free one."""
    config = uvicorn.Config(receiver.app(), host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="ven-webhook")
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the notification receiver did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    receiver.base_url = public_url or f"http://{host}:{bound}"
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=10)


__all__ = ["Receiver", "serve_receiver"]
