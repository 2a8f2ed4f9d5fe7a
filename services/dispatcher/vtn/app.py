"""The OpenADR 3 VTN over HTTP: `create_app(database_url)` serves the official 3.0.1 API
(shared/specs/openadr3/3.0.1/openadr3.yaml) under /openadr3/3.0.1 and the 3.1.0 one
(shared/specs/openadr3/3.1.0/openadr3.yaml) under /openadr3/3.1.0, on one store in PostgreSQL.

Who may do what (the spec leaves it to the implementation):
- the business logic (BL) reads everything and writes programs, events, subscriptions, vens
  and resources;
- a VEN reads the programs and events targeted at it (or at no one), and reads and writes only
  its own ven object, its resources, its reports and its subscriptions. It cannot rename
  itself nor set the targets of its ven or resources: those decide which events reach it, so
  the business logic sets them. Its reports carry its venName as clientName and answer events
  it can see.
No token, or an expired or forged one: 401. A valid token lacking the scope, or reaching for
another VEN's object: 403. Bad input: 400 with the member at fault in `detail` (and `field`).
Every error is the spec's problem object.

Each operation is one function, mounted once per version (`Api`): the versions differ in their
models, their target filters and a VEN's read rules for targeted objects (3.0.1: its name and
the targets on its ven and resources; 3.1.0: the targets granted to it that it asks for), and
the shape objects are shown in (services/dispatcher/vtn/README.md, "3.1.0").
"""


import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import quote

import orjson
import psycopg
from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from flexfleet.domain.errors import DomainError
from flexfleet.openadr import models301, models310
from flexfleet.openadr.models301 import OBJECT_ID_PATTERN, AuthError, ClientCredentialResponse, ObjectType, Problem
from flexfleet.openadr.models310 import V301, V310, hide_targets
from flexfleet.openadr.paging import page
from flexfleet.openadr.targets import TargetFilter, reaches, target_filter, target_keys
from flexfleet.auth import Principal, Role
from flexfleet.openadr.scopes import READ_ALL, WRITE_EVENTS, WRITE_PROGRAMS, WRITE_REPORTS, WRITE_SUBSCRIPTIONS, WRITE_VENS
from services.dispatcher.vtn import store
from services.api.accounts import load_account
from services.api.audit import AuditWrites
from services.api.security import Auth
from services.api.settings import ApiSettings
from services.dispatcher.vtn.auth import Forbidden, TokenPolicy, Unauthorized, principal_of, require, token_endpoint
from services.dispatcher.vtn.notifier import Delivery, Notifier, Published
from services.dispatcher.vtn.store import (
    EVENTS,
    PROGRAMS,
    REPORTS,
    RESOURCES,
    SUBSCRIPTIONS,
    VENS,
    BadReference,
    Conflict,
    Kind,
    NotFound,
    Stored,
    Where,
)
from services.openapi import openapi_without_422
from services.runtime.config import Settings
from services.runtime.connection import PooledConnections
from services.runtime.health import add_healthz
from services.runtime.logs import configure_logging
from services.runtime.metrics import instrument

log = logging.getLogger(__name__)

BASE_PATH = "/openadr3/3.0.1"
BASE_PATH_310 = "/openadr3/3.1.0"
PROBLEM_TYPES = {400: "urn:flexfleet:problem:invalid-input", 401: "urn:flexfleet:problem:unauthenticated",
                 403: "urn:flexfleet:problem:forbidden", 404: "urn:flexfleet:problem:not-found",
                 409: "urn:flexfleet:problem:conflict", 500: "urn:flexfleet:problem:internal-error",
                 501: "urn:flexfleet:problem:not-implemented", 503: "urn:flexfleet:problem:database-unavailable"}
# The discriminator values of 3.1.0's request unions: pydantic puts them in an error's location.
UNION_TAGS = frozenset({"BL_VEN_REQUEST", "VEN_VEN_REQUEST", "BL_RESOURCE_REQUEST", "VEN_RESOURCE_REQUEST",
                        "EVENT_PAYLOAD_DESCRIPTOR", "REPORT_PAYLOAD_DESCRIPTOR"})

OBJECT_ID = re.compile(r"[a-zA-Z0-9_-]{1,128}")     # the spec's objectID, for paths checked by hand
ID = Annotated[str, Path(pattern=OBJECT_ID_PATTERN, min_length=1, max_length=128)]
QueryID = Annotated[str | None, Query(pattern=OBJECT_ID_PATTERN, min_length=1, max_length=128)]
Skip = Annotated[int | None, Query(description="Records to skip.")]
Limit = Annotated[int | None, Query(description="Records to return, at most 50 (the default).")]
TargetType = Annotated[str | None, Query(description="Targeting type, e.g. GROUP or VEN_NAME.")]
TargetValues = Annotated[list[str] | None, Query(description="Target values, any of which matches.")]
Targets = Annotated[list[str] | None, Query(description="Targets, all of which an object must have.")]


# -- errors -------------------------------------------------------------------------------------
class NotImplementedFeature(Exception):
    """A part of the spec this VTN does not provide: 501."""


def problem(request: Request, status: int, reason: str, field: str | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """The spec's problem object, sent as application/json as the spec declares it."""
    body = Problem(type=PROBLEM_TYPES.get(status, "about:blank"), title=HTTPStatus(status).phrase, status=status,
                   detail=f"{field}: {reason}" if field else reason, instance=_instance(request),
                   field=field)
    return JSONResponse(body.body(), status_code=status, headers=headers)


def _instance(request: Request) -> str:
    """The request's URL without its query, percent-encoded: the spec wants an absolute URI."""
    return f"{request.url.scheme}://{request.url.netloc}{quote(request.url.path)}"


def _location(loc: tuple) -> str:
    """("body", "intervals", 0, "id") -> "intervals.0.id"; ("query", "limit") -> "limit"."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
    parts = tuple(p for p in parts if p not in UNION_TAGS)
    return ".".join(str(p) for p in parts) or (str(loc[0]) if loc else "body")


def _install_error_handlers(app: FastAPI) -> None:
    def on(exc_type: type[Exception], status: int, reason: Callable[[Any], tuple[str | None, str]],
           headers: dict[str, str] | None = None) -> None:
        async def handle(request: Request, exc: Exception) -> JSONResponse:
            field, text = reason(exc)
            return problem(request, status, text, field, headers)
        app.add_exception_handler(exc_type, handle)

    on(DomainError, 400, lambda e: (e.field, e.reason))
    on(BadReference, 400, lambda e: (e.field, e.reason))
    on(Conflict, 409, lambda e: (e.field, e.reason))
    on(NotFound, 404, lambda e: (None, str(e)))
    on(Unauthorized, 401, lambda e: (None, str(e)), {"WWW-Authenticate": "Bearer"})
    on(Forbidden, 403, lambda e: (e.field, str(e)))
    on(NotImplementedFeature, 501, lambda e: (None, str(e)))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = tuple(first.get("loc", ()))
        if first.get("type") in ("union_tag_not_found", "union_tag_invalid"):   # names the discriminator
            loc = (*loc, str(first.get("ctx", {}).get("discriminator", "")).strip("'"))
        field = "body" if first.get("type") == "json_invalid" else _location(loc)
        return problem(request, 400, str(first.get("msg", "invalid request")), field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(request, exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return problem(request, 503, "the database is unavailable; try again shortly", headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return problem(request, 500, "internal error")


# -- helpers ------------------------------------------------------------------------------------
def _text(name: str, value: str | None) -> str | None:
    """A query string that can reach the database."""
    if value is not None:
        try:
            models301.storable(value)
        except ValueError as exc:
            raise DomainError(name, str(exc)) from None
    return value


class _ObjectsResponse(JSONResponse):
    """Objects are JSON from the database: orjson renders them several times faster."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _respond(body: Any, status: int = 200) -> JSONResponse:
    return _ObjectsResponse(body, status_code=status)


def _doc(model: Any, status: int = 200, list_of: bool = False) -> dict[int | str, Any]:
    """OpenAPI responses of an operation: its object (or a list of them) and the problems."""
    problems = {s: {"model": Problem, "description": HTTPStatus(s).phrase} for s in (400, 401, 403, 404, 409, 500)}
    return {status: {"model": list[model] if list_of else model, "description": HTTPStatus(status).phrase},
            **problems}


# -- targets of a search, and who sees what of a targeted object ----------------------------------------
@dataclass(frozen=True)
class Filter301:
    """3.0.1's targetType/targetValues; a VEN sees what its identity reaches, targets and all."""

    flt: TargetFilter | None = None

    def filtered(self, where: Where) -> Where:
        if self.flt is not None and self.flt.values:
            where.add("target_keys && %s::text[]", self.flt.keys)
        elif self.flt is not None:
            where.add("%s = ANY(target_types)", self.flt.type)
        return where

    async def reachable(self, conn: psycopg.AsyncConnection, who: Principal, where: Where
                        ) -> tuple[Where, frozenset | None]:
        """Programs and events: a VEN's searches keep what is targeted at it or at no one."""
        self.filtered(where)
        if who.is_ven:
            reaching, params = store.identity_sql(who.ven_name)
            where.add(f"(cardinality(target_keys) = 0 OR target_keys && {reaching})", *params)
        return where, None


@dataclass(frozen=True)
class Filter310:
    """3.1.0's targets: an object must have all of them. A VEN reads a targeted program or event
    only by asking for targets granted to it (read_targets): of those it asked for, the granted
    ones must all be on the object, and are the only targets it is shown."""

    targets: tuple[str, ...] = ()

    def filtered(self, where: Where) -> Where:
        return where.add("target_values @> %s::text[]", list(self.targets)) if self.targets else where

    async def reachable(self, conn: psycopg.AsyncConnection, who: Principal, where: Where
                        ) -> tuple[Where, frozenset | None]:
        if not who.is_ven:
            return self.filtered(where), None
        if not self.targets:
            return where.add("cardinality(target_keys) = 0"), frozenset()
        asked = await store.agranted(conn, who.ven_name) & set(self.targets)
        if not asked:
            return where.add("FALSE"), frozenset()
        return where.add("target_values @> %s::text[]", sorted(asked)), frozenset(asked)


# The request's dependencies are `async def`: they only compute, and FastAPI would run a plain
# `def` in a worker thread, a thread hop per dependency per request (benchmarks/vtn.py).
async def filter_301(targetType: TargetType = None, targetValues: TargetValues = None) -> Filter301:
    _text("targetType", targetType)
    for value in targetValues or ():
        _text("targetValues", value)
    return Filter301(target_filter(targetType, targetValues))


async def filter_310(targets: Targets = None) -> Filter310:
    for value in targets or ():
        _text("targets", value)
        if not 1 <= len(value) <= 128:
            raise DomainError("targets", "each target has 1 to 128 characters")
    return Filter310(tuple(dict.fromkeys(targets or ())))


async def no_filter() -> Filter310:
    """3.1.0 took the target filter off subscription searches."""
    return Filter310()


async def no_active() -> bool | None:
    return None


async def active_310(active: Annotated[bool | None, Query(description="Only events that have not transpired.")] = None
                     ) -> bool | None:
    return active


async def ven_in_path(venID: ID) -> str:
    return venID


async def ven_in_query(venID: QueryID = None) -> str | None:
    return venID


async def ven_in_body() -> None:
    """3.1.0: a resource names its ven in its body."""


@dataclass(frozen=True)
class Api:
    """One version of the API on the shared store: its models and what its operations take.
    The models are the request bodies' (for 3.1.0 a ven or resource is a union of two forms)."""

    version: str
    base_path: str
    program: Any
    event: Any
    report: Any
    subscription: Any
    ven: Any
    resource: Any
    shown: dict[str, Any]                       # object type -> the model of what is sent (/docs)
    targets: Callable[..., Any]                 # target filter of program, event, ven, resource searches
    subscription_targets: Callable[..., Any]    # target filter of subscription searches
    active: Callable[..., bool | None]          # the events search's `active` (3.1.0)
    resources_path: str
    resources_ven: Callable[..., str | None]    # the venID a resource search is scoped to
    resource_ven: Callable[..., str | None]     # the venID a resource operation is scoped to


API_301 = Api(
    V301, BASE_PATH, program=models301.Program, event=models301.Event, report=models301.Report,
    subscription=models301.Subscription, ven=models301.Ven, resource=models301.Resource,
    shown={"PROGRAM": models301.Program, "EVENT": models301.Event, "REPORT": models301.Report,
           "SUBSCRIPTION": models301.Subscription, "VEN": models301.Ven, "RESOURCE": models301.Resource},
    targets=filter_301, subscription_targets=filter_301, active=no_active,
    resources_path="/vens/{venID}/resources", resources_ven=ven_in_path, resource_ven=ven_in_path)
API_310 = Api(
    V310, BASE_PATH_310, program=models310.ProgramRequest, event=models310.EventRequest,
    report=models310.ReportRequest, subscription=models310.SubscriptionRequest, ven=models310.VenRequest,
    resource=models310.ResourceRequest,
    shown={"PROGRAM": models310.Program, "EVENT": models310.Event, "REPORT": models310.Report,
           "SUBSCRIPTION": models310.Subscription, "VEN": models310.Ven, "RESOURCE": models310.Resource},
    targets=filter_310, subscription_targets=no_filter, active=active_310,
    resources_path="/resources", resources_ven=ven_in_query, resource_ven=ven_in_body)


def _openapi(router: APIRouter, api: Api, description: str) -> dict[str, Any]:
    """FastAPI's document of one version's routes, with the problem (400) where it would say
    422, paths relative to `servers`. The official documents are
    shared/specs/openadr3/*/openadr3.yaml; these are for /docs."""
    documented = FastAPI(title=f"flexfleet OpenADR {api.version} VTN", version=api.version, description=description,
                         servers=[{"url": api.base_path}])
    documented.include_router(router)
    document = openapi_without_422(documented)
    # paths relative to the version's base, as in the official document, wherever the VTN is mounted
    document["paths"] = {path.removeprefix(router.prefix): item for path, item in document["paths"].items()}
    return document


# -- the application ----------------------------------------------------------------------------
def create_app(database_url: str, *, secret: str | None = None, token_ttl: timedelta | None = None,
               delivery: Delivery = Delivery(), auth: Auth | None = None, mounted_at: str = "") -> FastAPI:
    """The VTN on one database, under the platform's authentication scheme: the platform API
    mounts it at /openadr3 (`mounted_at`) with its `auth`; alone (`flexfleet dispatch vtn`) it
    signs and checks the same tokens with `secret` (default: $FLEXFLEET_API_SECRET) and the
    same accounts. `delivery` sets how hard webhook notifications are retried."""
    owned = auth is None
    if auth is None:
        auth = Auth(ApiSettings.resolve(secret, token_ttl=token_ttl), PooledConnections(database_url))
    policy = TokenPolicy(auth.settings.secret)
    connections = auth.connections
    notifier = Notifier(connections, delivery)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        notifier.close()
        if owned:
            connections.close()
            await connections.aclose()

    app = FastAPI(title="flexfleet OpenADR 3 VTN", version="3.0.1", lifespan=lifespan, root_path_in_servers=False,
                  description=__doc__.split("\n\n", 1)[0], docs_url=f"{BASE_PATH.removeprefix(mounted_at)}/docs",
                  openapi_url=f"{BASE_PATH.removeprefix(mounted_at)}/openapi.json")
    app.state.notifier = notifier
    documents: dict[str, dict[str, Any]] = {}
    routers: dict[str, APIRouter] = {}

    def document(api: Api) -> dict[str, Any]:
        if api.version not in documents:
            documents[api.version] = _openapi(routers[api.version], api, app.description)
        return documents[api.version]

    app.openapi = lambda: document(API_301)  # type: ignore[method-assign]
    _install_error_handlers(app)

    connect = connections.connection

    def scoped(scope: str) -> Callable[[Request], Awaitable[Principal]]:
        async def caller(request: Request) -> Principal:
            return require(await principal_of(request, policy, connections), scope)
        return caller

    # 3.1.0's read_targets and read_ven_objects are granted as read_all (auth.READ_ALIASES).
    Reader = Annotated[Principal, Depends(scoped(READ_ALL))]

    def publish(kind: Kind, operation: str, stored: Stored) -> None:
        notifier.publish(Published(kind, operation, stored))  # type: ignore[arg-type]

    # -- who sees what --------------------------------------------------------------------------
    def visible(conn: psycopg.Connection, who: Principal, stored: Stored, kind: Kind, version: str
                ) -> frozenset | None:
        """A VEN's read of a program or event by id: the targets it may be shown (None: all),
        or Forbidden. 3.1.0's by-id reads take no targets, so the granted ones stand for them."""
        if not who.is_ven:
            return None
        if version == V301:
            if not reaches(stored.target_keys, store.identity(conn, who.ven_name)):
                raise Forbidden(f"this {kind.object_type.lower()} is not targeted at VEN {who.ven_name}")
            return None
        if not stored.targeted:
            return frozenset()
        shown = store.granted(conn, who.ven_name) & set(stored.target_values)
        if not shown:
            raise Forbidden(f"this {kind.object_type.lower()} is not targeted at VEN {who.ven_name}")
        return frozenset(shown)

    def check_owner(who: Principal, stored: Stored, kind: Kind) -> None:
        if who.is_ven and stored.owner_ven != who.ven_name:
            raise Forbidden(f"this {kind.object_type.lower()} belongs to another client")

    def own_ven(conn: psycopg.Connection, who: Principal, ven_id: str) -> Stored:
        """The ven at ven_id, which a VEN may only reach when it is its own."""
        ven = store.fetch(conn, VENS, ven_id)
        if who.is_ven and ven.body["venName"] != who.ven_name:
            raise Forbidden(f"ven {ven_id} is not VEN {who.ven_name}")
        return ven

    def unchanged_targets(who: Principal, new: list | None, old: list | None) -> None:
        if who.is_ven and target_keys(new) != target_keys(old):
            raise Forbidden("a VEN cannot set its own targets; the business logic does", "targets")

    def registered(conn: psycopg.Connection, client_id: str, ven_name: str) -> None:
        """A 3.1.0 ven or resource names its VEN's client: one registered for that venName."""
        client = load_account(conn, client_id)
        if client is None or client.role is not Role.VEN or client.ven_name != ven_name:
            raise DomainError("clientID", f"no VEN client {client_id!r} is registered for venName {ven_name!r}")

    def mount(api: Api) -> None:
        router = routers[api.version] = APIRouter(prefix=api.base_path.removeprefix(mounted_at))
        version, shown = api.version, api.shown

        def out(kind: Kind, stored: Stored, targets: frozenset | None = None) -> dict:
            body = store.view(kind, stored, version)
            return body if targets is None else hide_targets(body, targets)

        def outs(kind: Kind, rows: list[Stored], targets: frozenset | None = None) -> JSONResponse:
            return _respond([out(kind, r, targets) for r in rows])

        Filter = Annotated[Any, Depends(api.targets)]

        # -- token ------------------------------------------------------------------------------
        @router.post("/auth/token", tags=["Auth"], summary="fetch a token", response_model=ClientCredentialResponse,
                     responses={400: {"model": AuthError, "description": "RFC 6749 5.2 error"},
                                401: {"model": AuthError, "description": "invalid_client with HTTP Basic"}})
        async def fetch_token(request: Request) -> JSONResponse:
            """OAuth2 client credentials (form body or HTTP Basic); RFC 6749 errors."""
            return await token_endpoint(request, auth)

        # -- programs ---------------------------------------------------------------------------
        @router.get("/programs", tags=["programs"], responses=_doc(shown["PROGRAM"], list_of=True))
        async def search_programs(who: Reader, sel: Filter, skip: Skip = None, limit: Limit = None) -> JSONResponse:
            pg = page(skip, limit)
            async with connections.aconnection() as conn:
                where, targets = await sel.reachable(conn, who, Where())
                return outs(PROGRAMS, await store.asearch(conn, PROGRAMS, where, pg), targets)

        @router.post("/programs", tags=["programs"], status_code=201, responses=_doc(shown["PROGRAM"], 201))
        def create_program(body: Annotated[api.program, Body()],
                           who: Annotated[Principal, Depends(scoped(WRITE_PROGRAMS))]) -> JSONResponse:
            with connect() as conn:
                created = store.insert(conn, PROGRAMS, body.body(), version=version)
                stored = store.fetch(conn, PROGRAMS, created["id"])
            publish(PROGRAMS, "CREATE", stored)
            return _respond(out(PROGRAMS, stored), 201)

        @router.get("/programs/{programID}", tags=["programs"], responses=_doc(shown["PROGRAM"]))
        def get_program(programID: ID, who: Reader) -> JSONResponse:
            with connect() as conn:
                stored = store.fetch(conn, PROGRAMS, programID)
                return _respond(out(PROGRAMS, stored, visible(conn, who, stored, PROGRAMS, version)))

        @router.put("/programs/{programID}", tags=["programs"], responses=_doc(shown["PROGRAM"]))
        def update_program(programID: ID, body: Annotated[api.program, Body()],
                           who: Annotated[Principal, Depends(scoped(WRITE_PROGRAMS))]) -> JSONResponse:
            with connect() as conn:
                store.replace(conn, PROGRAMS, programID, body.body(), version=version)
                stored = store.fetch(conn, PROGRAMS, programID)
            publish(PROGRAMS, "UPDATE", stored)
            return _respond(out(PROGRAMS, stored))

        @router.delete("/programs/{programID}", tags=["programs"], responses=_doc(shown["PROGRAM"]))
        def delete_program(programID: ID, who: Annotated[Principal, Depends(scoped(WRITE_PROGRAMS))]) -> JSONResponse:
            with connect() as conn:
                stored = store.fetch(conn, PROGRAMS, programID)
                store.delete(conn, PROGRAMS, programID)
            publish(PROGRAMS, "DELETE", stored)
            return _respond(out(PROGRAMS, stored))

        # -- events -----------------------------------------------------------------------------
        @router.get("/events", tags=["events"], responses=_doc(shown["EVENT"], list_of=True))
        async def search_events(who: Reader, sel: Filter, active: Annotated[bool | None, Depends(api.active)],
                                programID: QueryID = None, skip: Skip = None, limit: Limit = None) -> JSONResponse:
            pg, where = page(skip, limit), Where()
            if programID is not None:
                where.add("program_id = %s", programID)
            if active:
                where.add("(ends_at IS NULL OR ends_at > now())")
            async with connections.aconnection() as conn:
                where, targets = await sel.reachable(conn, who, where)
                return outs(EVENTS, await store.asearch(conn, EVENTS, where, pg), targets)

        @router.post("/events", tags=["events"], status_code=201, responses=_doc(shown["EVENT"], 201))
        def create_event(body: Annotated[api.event, Body()],
                         who: Annotated[Principal, Depends(scoped(WRITE_EVENTS))]) -> JSONResponse:
            with connect() as conn:
                created = store.insert(conn, EVENTS, body.body(), version=version)
                stored = store.fetch(conn, EVENTS, created["id"])
            publish(EVENTS, "CREATE", stored)
            return _respond(out(EVENTS, stored), 201)

        @router.get("/events/{eventID}", tags=["events"], responses=_doc(shown["EVENT"]))
        def get_event(eventID: ID, who: Reader) -> JSONResponse:
            with connect() as conn:
                stored = store.fetch(conn, EVENTS, eventID)
                return _respond(out(EVENTS, stored, visible(conn, who, stored, EVENTS, version)))

        @router.put("/events/{eventID}", tags=["events"], responses=_doc(shown["EVENT"]))
        def update_event(eventID: ID, body: Annotated[api.event, Body()],
                         who: Annotated[Principal, Depends(scoped(WRITE_EVENTS))]) -> JSONResponse:
            with connect() as conn:
                store.replace(conn, EVENTS, eventID, body.body(), version=version)
                stored = store.fetch(conn, EVENTS, eventID)
            publish(EVENTS, "UPDATE", stored)
            return _respond(out(EVENTS, stored))

        @router.delete("/events/{eventID}", tags=["events"], responses=_doc(shown["EVENT"]))
        def delete_event(eventID: ID, who: Annotated[Principal, Depends(scoped(WRITE_EVENTS))]) -> JSONResponse:
            with connect() as conn:
                stored = store.fetch(conn, EVENTS, eventID)
                store.delete(conn, EVENTS, eventID)
            publish(EVENTS, "DELETE", stored)
            return _respond(out(EVENTS, stored))

        # -- reports ----------------------------------------------------------------------------
        def report_event(conn: psycopg.Connection, who: Principal, report: Any) -> Stored:
            """The report's event; a VEN reports as itself, on an event it can see."""
            if who.is_ven and report.clientName != who.ven_name:
                raise Forbidden(f"a VEN reports as itself: clientName must be {who.ven_name!r}", "clientName")
            try:
                event = store.fetch(conn, EVENTS, report.eventID)
            except NotFound:
                raise BadReference("eventID", f"no such event: {report.eventID!r}") from None
            if who.is_ven:
                try:
                    visible(conn, who, event, EVENTS, version)
                except Forbidden:
                    raise Forbidden(f"event {report.eventID} is not targeted at VEN {who.ven_name}", "eventID"
                                    ) from None
            return event

        def report_body(report: Any, client_id: str) -> dict:
            """The body to store: 3.1.0's names its client, and not its program (a column)."""
            return report.body() if version == V301 else {**report.body(), "clientID": client_id}

        @router.get("/reports", tags=["reports"], responses=_doc(shown["REPORT"], list_of=True))
        def search_reports(who: Reader, programID: QueryID = None, eventID: QueryID = None,
                           clientName: str | None = None, skip: Skip = None, limit: Limit = None) -> JSONResponse:
            pg, where = page(skip, limit), Where()
            for column, value in (("program_id", programID), ("event_id", eventID),
                                  ("client_name", _text("clientName", clientName))):
                if value is not None:
                    where.add(f"{column} = %s", value)
            if who.is_ven:
                where.add("owner_ven = %s", who.ven_name)
            with connect() as conn:
                return outs(REPORTS, store.search(conn, REPORTS, where, pg))

        @router.post("/reports", tags=["reports"], status_code=201, responses=_doc(shown["REPORT"], 201))
        def create_report(body: Annotated[api.report, Body()],
                          who: Annotated[Principal, Depends(scoped(WRITE_REPORTS))]) -> JSONResponse:
            with connect() as conn:
                event = report_event(conn, who, body)
                new = report_body(body, who.username)
                columns = {} if version == V301 else {"program_id": event.program_id}
                created = store.insert(conn, REPORTS, new, owner_ven=who.ven_name, version=version,
                                       owner_client=who.username, columns=columns)
                stored = store.fetch(conn, REPORTS, created["id"])
            publish(REPORTS, "CREATE", stored)
            return _respond(out(REPORTS, stored), 201)

        @router.get("/reports/{reportID}", tags=["reports"], responses=_doc(shown["REPORT"]))
        def get_report(reportID: ID, who: Reader) -> JSONResponse:
            with connect() as conn:
                stored = store.fetch(conn, REPORTS, reportID)
            check_owner(who, stored, REPORTS)
            return _respond(out(REPORTS, stored))

        @router.put("/reports/{reportID}", tags=["reports"], responses=_doc(shown["REPORT"]))
        def update_report(reportID: ID, body: Annotated[api.report, Body()],
                          who: Annotated[Principal, Depends(scoped(WRITE_REPORTS))]) -> JSONResponse:
            with connect() as conn:
                old = store.fetch(conn, REPORTS, reportID)
                check_owner(who, old, REPORTS)
                event = report_event(conn, who, body)
                new = report_body(body, old.client_id or who.username)
                columns = {} if version == V301 else {"program_id": event.program_id}
                store.replace(conn, REPORTS, reportID, new, version=version, columns=columns)
                stored = store.fetch(conn, REPORTS, reportID)
            publish(REPORTS, "UPDATE", stored)
            return _respond(out(REPORTS, stored))

        @router.delete("/reports/{reportID}", tags=["reports"], responses=_doc(shown["REPORT"]))
        def delete_report(reportID: ID, who: Annotated[Principal, Depends(scoped(WRITE_REPORTS))]) -> JSONResponse:
            with connect() as conn:
                stored = store.fetch(conn, REPORTS, reportID)
                check_owner(who, stored, REPORTS)
                store.delete(conn, REPORTS, reportID)
            publish(REPORTS, "DELETE", stored)
            return _respond(out(REPORTS, stored))

        # -- subscriptions ----------------------------------------------------------------------
        def subscription_body(subscription: Any, client_id: str) -> dict:
            return subscription.body() if version == V301 else {**subscription.body(), "clientID": client_id}

        @router.get("/subscriptions", tags=["subscriptions"], responses=_doc(shown["SUBSCRIPTION"], list_of=True))
        def search_subscriptions(who: Reader, sel: Annotated[Any, Depends(api.subscription_targets)],
                                 programID: QueryID = None, clientName: str | None = None,
                                 objects: Annotated[list[ObjectType] | None, Query()] = None,
                                 skip: Skip = None, limit: Limit = None) -> JSONResponse:
            pg, where = page(skip, limit), sel.filtered(Where())
            for column, value in (("program_id", programID), ("client_name", _text("clientName", clientName))):
                if value is not None:
                    where.add(f"{column} = %s", value)
            if objects:
                where.add("object_types && %s::text[]", list(objects))
            if who.is_ven:
                where.add("owner_ven = %s", who.ven_name)
            with connect() as conn:
                return outs(SUBSCRIPTIONS, store.search(conn, SUBSCRIPTIONS, where, pg))

        @router.post("/subscriptions", tags=["subscriptions"], status_code=201,
                     responses=_doc(shown["SUBSCRIPTION"], 201))
        def create_subscription(body: Annotated[api.subscription, Body()],
                                who: Annotated[Principal, Depends(scoped(WRITE_SUBSCRIPTIONS))]) -> JSONResponse:
            with connect() as conn:
                created = store.insert(conn, SUBSCRIPTIONS, subscription_body(body, who.username),
                                       owner_ven=who.ven_name, version=version, owner_client=who.username)
                stored = store.fetch(conn, SUBSCRIPTIONS, created["id"])
            publish(SUBSCRIPTIONS, "CREATE", stored)
            return _respond(out(SUBSCRIPTIONS, stored), 201)

        @router.get("/subscriptions/{subscriptionID}", tags=["subscriptions"], responses=_doc(shown["SUBSCRIPTION"]))
        def get_subscription(subscriptionID: ID, who: Reader) -> JSONResponse:
            with connect() as conn:
                stored = store.fetch(conn, SUBSCRIPTIONS, subscriptionID)
            check_owner(who, stored, SUBSCRIPTIONS)
            return _respond(out(SUBSCRIPTIONS, stored))

        @router.put("/subscriptions/{subscriptionID}", tags=["subscriptions"], responses=_doc(shown["SUBSCRIPTION"]))
        def update_subscription(subscriptionID: ID, body: Annotated[api.subscription, Body()],
                                who: Annotated[Principal, Depends(scoped(WRITE_SUBSCRIPTIONS))]) -> JSONResponse:
            with connect() as conn:
                old = store.fetch(conn, SUBSCRIPTIONS, subscriptionID)
                check_owner(who, old, SUBSCRIPTIONS)
                store.replace(conn, SUBSCRIPTIONS, subscriptionID,
                              subscription_body(body, old.client_id or who.username), version=version)
                stored = store.fetch(conn, SUBSCRIPTIONS, subscriptionID)
            publish(SUBSCRIPTIONS, "UPDATE", stored)
            return _respond(out(SUBSCRIPTIONS, stored))

        @router.delete("/subscriptions/{subscriptionID}", tags=["subscriptions"],
                       responses=_doc(shown["SUBSCRIPTION"]))
        def delete_subscription(subscriptionID: ID,
                                who: Annotated[Principal, Depends(scoped(WRITE_SUBSCRIPTIONS))]) -> JSONResponse:
            with connect() as conn:
                stored = store.fetch(conn, SUBSCRIPTIONS, subscriptionID)
                check_owner(who, stored, SUBSCRIPTIONS)
                store.delete(conn, SUBSCRIPTIONS, subscriptionID)
            publish(SUBSCRIPTIONS, "DELETE", stored)
            return _respond(out(SUBSCRIPTIONS, stored))

        # -- vens -------------------------------------------------------------------------------
        def ven_body(conn: psycopg.Connection, who: Principal, ven: Any, old: Stored | None) -> tuple[dict, str]:
            """The ven to store, in the shape of a version, for a create (old None) or an update.
            3.0.1: as sent, without resources (they live at /vens/{venID}/resources). 3.1.0: a
            business-logic request as sent, its clientID that of the VEN's registered client; a
            VEN request (which has neither clientID nor targets) keeps the stored ones."""
            if old is not None and who.is_ven and ven.venName != old.body["venName"]:
                raise Forbidden("a VEN cannot rename itself", "venName")
            if old is None and who.is_ven and ven.venName != who.ven_name:
                raise Forbidden(f"a VEN registers only itself: venName must be {who.ven_name!r}", "venName")
            if version == V301:
                body = ven.body()
                body.pop("resources", None)
                unchanged_targets(who, body.get("targets"), None if old is None else store.view(VENS, old, V301)
                                  .get("targets"))
                return body, V301
            if isinstance(ven, models310.BlVenRequest):
                if who.is_ven:
                    raise Forbidden("a VEN sends a VEN_VEN_REQUEST: clientID and targets are the business "
                                    "logic's to set", "objectType")
                registered(conn, ven.clientID, ven.venName)
                return ven.body(), V310
            if old is None:
                own = {"clientID": who.username} if who.is_ven else {}
                return {**ven.body(), "targets": None, **own}, V310
            return {**old.body, "venName": ven.venName, "attributes": ven.body().get("attributes")}, old.version

        @router.get("/vens", tags=["vens"], responses=_doc(shown["VEN"], list_of=True))
        def search_vens(who: Reader, sel: Filter, venName: str | None = None, skip: Skip = None,
                        limit: Limit = None) -> JSONResponse:
            pg, where = page(skip, limit), sel.filtered(Where())
            if venName is not None:
                where.add("ven_name = %s", _text("venName", venName))
            if who.is_ven:
                where.add("ven_name = %s", who.ven_name)
            with connect() as conn:
                return outs(VENS, store.search(conn, VENS, where, pg))

        @router.post("/vens", tags=["vens"], status_code=201, responses=_doc(shown["VEN"], 201))
        def create_ven(body: Annotated[api.ven, Body()],
                       who: Annotated[Principal, Depends(scoped(WRITE_VENS))]) -> JSONResponse:
            with connect() as conn:
                new, shape = ven_body(conn, who, body, None)
                created = store.insert(conn, VENS, new, version=shape)
                stored = store.fetch(conn, VENS, created["id"])
            publish(VENS, "CREATE", stored)
            return _respond(out(VENS, stored), 201)

        @router.get("/vens/{venID}", tags=["vens"], responses=_doc(shown["VEN"]))
        def get_ven(venID: ID, who: Reader) -> JSONResponse:
            with connect() as conn:
                return _respond(out(VENS, own_ven(conn, who, venID)))

        @router.put("/vens/{venID}", tags=["vens"], responses=_doc(shown["VEN"]))
        def update_ven(venID: ID, body: Annotated[api.ven, Body()],
                       who: Annotated[Principal, Depends(scoped(WRITE_VENS))]) -> JSONResponse:
            with connect() as conn:
                new, shape = ven_body(conn, who, body, own_ven(conn, who, venID))
                store.replace(conn, VENS, venID, new, version=shape)
                stored = store.fetch(conn, VENS, venID)
            publish(VENS, "UPDATE", stored)
            return _respond(out(VENS, stored))

        @router.delete("/vens/{venID}", tags=["vens"], responses=_doc(shown["VEN"]))
        def delete_ven(venID: ID, who: Annotated[Principal, Depends(scoped(WRITE_VENS))]) -> JSONResponse:
            with connect() as conn:
                stored = own_ven(conn, who, venID)
                store.delete(conn, VENS, venID)
            publish(VENS, "DELETE", stored)
            return _respond(out(VENS, stored))

        # -- resources --------------------------------------------------------------------------
        # 3.0.1 reaches a resource through its ven (/vens/{venID}/resources); 3.1.0 made it a
        # first-level object (/resources, venID in the body and as a search filter).
        VensScope = Annotated[str | None, Depends(api.resources_ven)]
        VenScope = Annotated[str | None, Depends(api.resource_ven)]
        resources = api.resources_path

        def resource_of(conn: psycopg.Connection, who: Principal, ven_id: str | None, resource_id: str) -> Stored:
            """The resource, reached through its ven (ven_id: the path's), which a VEN must own."""
            if ven_id is not None:
                own_ven(conn, who, ven_id)
            resource = store.fetch(conn, RESOURCES, resource_id)
            if ven_id is not None and resource.body["venID"] != ven_id:
                raise NotFound(f"resourceID: ven {ven_id} has no resource {resource_id}")
            if ven_id is None:
                own_ven(conn, who, resource.body["venID"])
            return resource

        def resource_body(conn: psycopg.Connection, who: Principal, resource: Any, ven_id: str,
                          old: Stored | None) -> tuple[dict, str]:
            """As ven_body, for a resource of the ven at ven_id (which a VEN must own)."""
            ven = own_ven(conn, who, ven_id)
            if version == V301:
                body = resource.body()
                unchanged_targets(who, body.get("targets"), None if old is None else store.view(
                    RESOURCES, old, V301).get("targets"))
                return {**body, "venID": ven_id}, V301
            if isinstance(resource, models310.BlResourceRequest):
                if who.is_ven:
                    raise Forbidden("a VEN sends a VEN_RESOURCE_REQUEST: clientID and targets are the business "
                                    "logic's to set", "objectType")
                registered(conn, resource.clientID, ven.body["venName"])
                return resource.body(), V310
            if old is None:
                own = {"clientID": who.username} if who.is_ven else {}
                return {**resource.body(), "targets": None, **own}, V310
            return {**old.body, "resourceName": resource.resourceName, "venID": ven_id,
                    "attributes": resource.body().get("attributes")}, old.version

        def ven_of(ven_id: str | None, body: Any) -> str:
            """The path's venID (3.0.1), else the body's (3.1.0)."""
            return body.venID if ven_id is None else ven_id

        @router.get(resources, tags=["resources" if version == V310 else "vens"],
                    responses=_doc(shown["RESOURCE"], list_of=True))
        def search_resources(who: Reader, sel: Filter, venID: VensScope, resourceName: str | None = None,
                             skip: Skip = None, limit: Limit = None) -> JSONResponse:
            pg, where = page(skip, limit), sel.filtered(Where())
            if resourceName is not None:
                where.add("resource_name = %s", _text("resourceName", resourceName))
            with connect() as conn:
                if venID is not None:
                    own_ven(conn, who, venID)
                    where.add("ven_id = %s", venID)
                elif who.is_ven:
                    where.add("ven_id IN (SELECT id FROM oadr_vens WHERE ven_name = %s)", who.ven_name)
                return outs(RESOURCES, store.search(conn, RESOURCES, where, pg))

        @router.post(resources, tags=["resources" if version == V310 else "vens"], status_code=201,
                     responses=_doc(shown["RESOURCE"], 201))
        def create_resource(body: Annotated[api.resource, Body()], venID: VenScope,
                            who: Annotated[Principal, Depends(scoped(WRITE_VENS))]) -> JSONResponse:
            with connect() as conn:
                new, shape = resource_body(conn, who, body, ven_of(venID, body), None)
                created = store.insert(conn, RESOURCES, new, version=shape)
                stored = store.fetch(conn, RESOURCES, created["id"])
            publish(RESOURCES, "CREATE", stored)
            return _respond(out(RESOURCES, stored), 201)

        @router.get(resources + "/{resourceID}", tags=["resources" if version == V310 else "vens"],
                    responses=_doc(shown["RESOURCE"]))
        def get_resource(resourceID: ID, venID: VenScope, who: Reader) -> JSONResponse:
            with connect() as conn:
                return _respond(out(RESOURCES, resource_of(conn, who, venID, resourceID)))

        @router.put(resources + "/{resourceID}", tags=["resources" if version == V310 else "vens"],
                    responses=_doc(shown["RESOURCE"]))
        def update_resource(resourceID: ID, body: Annotated[api.resource, Body()], venID: VenScope,
                            who: Annotated[Principal, Depends(scoped(WRITE_VENS))]) -> JSONResponse:
            with connect() as conn:
                old = resource_of(conn, who, venID, resourceID)
                new, shape = resource_body(conn, who, body, ven_of(venID, body), old)
                store.replace(conn, RESOURCES, resourceID, new, version=shape)
                stored = store.fetch(conn, RESOURCES, resourceID)
            publish(RESOURCES, "UPDATE", stored)
            return _respond(out(RESOURCES, stored))

        @router.delete(resources + "/{resourceID}", tags=["resources" if version == V310 else "vens"],
                       responses=_doc(shown["RESOURCE"]))
        def delete_resource(resourceID: ID, venID: VenScope,
                            who: Annotated[Principal, Depends(scoped(WRITE_VENS))]) -> JSONResponse:
            with connect() as conn:
                stored = resource_of(conn, who, venID, resourceID)
                store.delete(conn, RESOURCES, resourceID)
            publish(RESOURCES, "DELETE", stored)
            return _respond(out(RESOURCES, stored))

        if version == V310:
            _mount_310_only(router, api, Reader)
        app.include_router(router)

    def _mount_310_only(router: APIRouter, api: Api, reader: Any) -> None:
        """What 3.1.0 added besides the objects: token URL discovery, the notifier bindings, and
        the MQTT topics, which this VTN (webhooks only, no broker) refuses with 501."""

        @router.get("/auth/server", tags=["Auth"], response_model=models310.AuthServerInfo)
        def get_auth_server_info(request: Request) -> JSONResponse:
            """Where to fetch tokens: this VTN's own token endpoint."""
            base = f"{request.url.scheme}://{request.url.netloc}"
            return _respond(models310.AuthServerInfo(tokenURL=f"{base}{api.base_path}/auth/token").body())

        @router.get("/notifiers", tags=["notifiers"], response_model=models310.NotifiersResponse,
                    responses=_doc(models310.NotifiersResponse))
        def list_notifiers(who: reader) -> JSONResponse:
            return _respond(models310.NotifiersResponse().body())

        def mqtt_topics(request: Request, who: reader) -> JSONResponse:
            for name, value in request.path_params.items():
                if not OBJECT_ID.fullmatch(value):
                    raise DomainError(name, "must be an objectID (1 to 128 of a-z A-Z 0-9 _ -)")
            raise NotImplementedFeature("this VTN has no MQTT notifier binding (GET /notifiers lists WEBHOOK only); "
                                        "subscribe with a webhook (POST /subscriptions)")

        for path in ("programs", "programs/{programID}", "events", "programs/{programID}/events", "reports",
                     "subscriptions", "vens", "vens/{venID}", "resources", "vens/{venID}/events",
                     "vens/{venID}/programs", "vens/{venID}/resources"):
            router.add_api_route(f"/notifiers/mqtt/topics/{path}", mqtt_topics, methods=["GET"], tags=["MQTT_notifier"],
                                 responses={501: {"model": Problem, "description": "no MQTT binding"}},
                                 name=f"mqtt_topics_{path}")

    for api in (API_301, API_310):
        mount(api)

    @app.get(f"{BASE_PATH_310.removeprefix(mounted_at)}/openapi.json", include_in_schema=False)
    def openapi_310() -> JSONResponse:
        return JSONResponse(document(API_310))

    @app.get(f"{BASE_PATH_310.removeprefix(mounted_at)}/docs", include_in_schema=False)
    def docs_310() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{BASE_PATH_310}/openapi.json", title="flexfleet OpenADR 3.1.0 VTN")

    if owned:                 # mounted, the platform API's /healthz stands for it
        add_healthz(app, database_url)
    app.add_middleware(AuditWrites, connections=connections)
    return instrument(app, "vtn")


def app_from_env() -> FastAPI:
    """`create_app` on $DATABASE_URL (and $FLEXFLEET_API_SECRET): the factory each uvicorn worker
    process calls (`flexfleet dispatch vtn --workers N`)."""
    configure_logging("vtn")
    url = Settings.from_env().database_url
    if not url:
        raise ValueError("DATABASE_URL must be set to the VTN's database")
    return create_app(url)
