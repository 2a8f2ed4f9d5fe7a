"""The platform's one API application (`create_app(database_url)`; OpenAPI docs at /docs).

It serves the owner portal's statements, the browser pages (login, the operations dashboard at
/ops, the owner portal page at /me: services.api.dashboard), /healthz, the bidding API at
/bidding and the OpenADR 3 VTN at /openadr3/3.0.1 and /openadr3/3.1.0, under one authentication
scheme: accounts with a role, OAuth2 bearer tokens with an expiry from POST /v1/auth/token (or
the VTN's token URLs), the signing secret from FLEXFLEET_API_SECRET, and an audit row for every
write. Errors are RFC 9457 problem details naming the field at fault (the VTN's, the OpenADR
spec's problem object).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.api.audit import AuditWrites
from services.api.dashboard import install_dashboard
from services.api.dashboard_lag import LagMonitor
from services.api.owners import owner_router
from services.bidder.api import create_app as bidding_app
from services.api.problems import install_error_handlers, with_problem_schemas
from services.api.security import (TOKEN_REQUEST_BODY, TOKEN_URL, Auth, OAuthError, TokenOut, principal_dependency,
                                   token_endpoint)
from services.api.settings import ApiSettings
from services.dispatcher.vtn import create_app as vtn_app
from services.openapi import openapi_without_422
from services.runtime.config import ConfigError, Settings
from services.runtime.connection import PooledConnections
from services.runtime.logs import configure_logging
from services.runtime.metrics import instrument


BIDDING_PATH = "/bidding"         # the bidding API (services.bidder.api): /bidding/v1/bids, /bidding/docs
OPENADR_PATH = "/openadr3"        # the VTN (services.dispatcher.vtn): /openadr3/3.0.1/programs, /openadr3/3.1.0/docs


def _version() -> str:
    try:
        return version("flexfleet")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(database_url: str, secret: str | None = None, settlement_dir: Path | str | None = None,
               token_ttl: timedelta | None = None, lag: LagMonitor | None = None) -> FastAPI:
    """The API on one database. What is not given comes from the environment (services.api.settings,
    and for the dashboard's consumer-lag look-ups `LagMonitor.from_env`): a missing or short
    secret is refused here, before anything is served."""
    settings = ApiSettings.resolve(secret, settlement_dir, token_ttl)
    connections = PooledConnections(database_url)
    auth = Auth(settings, connections)
    vtn = vtn_app(database_url, auth=auth, mounted_at=OPENADR_PATH)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield                              # a mounted app's own lifespan does not run
        vtn.state.notifier.close()
        connections.close()
        await connections.aclose()

    app = FastAPI(title="flexfleet", version=_version(), docs_url="/docs", lifespan=lifespan,
                  description=__doc__.split("\n\n", 1)[1].split("\n\n", 1)[0])
    install_error_handlers(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_problem_schemas(openapi_without_422(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.post(TOKEN_URL, tags=["auth"], summary="Log in: an access token", response_model=TokenOut,
              openapi_extra=TOKEN_REQUEST_BODY,
              responses={400: {"model": OAuthError, "description": "A field is missing or wrong: `field` names it."},
                         401: {"model": OAuthError, "description": "Unknown username or wrong password."}})
    async def token(request: Request) -> JSONResponse:
        """A bearer token that expires (`expires_in` seconds), for the password grant (RFC 6749 4.3:
        a person's username and password) or the client-credentials grant (4.4: a machine
        client's client_id and client_secret, in the form or by HTTP Basic). `scope` may ask for
        fewer than the role's scopes. Send the token as `Authorization: Bearer <token>`."""
        return await token_endpoint(request, auth)

    app.include_router(owner_router(auth, principal_dependency(auth)))
    install_dashboard(app, auth, lag)
    app.mount(BIDDING_PATH, bidding_app(database_url, auth))     # its own problems and /docs, our tokens
    app.mount(OPENADR_PATH, vtn)
    app.add_middleware(AuditWrites, connections=connections)
    return instrument(app, "api")


def app_from_env() -> FastAPI:
    """The app as configured by the environment (DATABASE_URL and the FLEXFLEET_API_* settings):
    `uvicorn --factory services.api.app:app_from_env`."""
    configure_logging("api")
    url = Settings.from_env().database_url
    if not url:
        raise ConfigError("DATABASE_URL must be set (see `flexfleet up`)")
    return create_app(url)
