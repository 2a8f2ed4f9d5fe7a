"""The OpenADR 3.0.1 VTN over HTTP: `create_app(database_url)` serves the official API
(shared/specs/openadr3/3.0.1/openadr3.yaml) under /openadr3/3.0.1, with its state in PostgreSQL.

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
"""


import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import quote

import psycopg
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from flexfleet.domain.errors import DomainError
from flexfleet.openadr.models301 import (
    OBJECT_ID_PATTERN,
    AuthError,
    ClientCredentialResponse,
    Event,
    ObjectType,
    Problem,
    Program,
    Report,
    Resource,
    Subscription,
    Ven,
    storable,
)
from flexfleet.openadr.notifications import Change
from flexfleet.openadr.paging import page
from flexfleet.openadr.targets import TargetFilter, reaches, target_filter, target_keys
from flexfleet.openadr.tokens import (
    READ_ALL,
    WRITE_EVENTS,
    WRITE_PROGRAMS,
    WRITE_REPORTS,
    WRITE_SUBSCRIPTIONS,
    WRITE_VENS,
    Principal,
)
from services.dispatcher.vtn import store
from services.dispatcher.vtn.auth import Forbidden, TokenPolicy, Unauthorized, principal_of, require, token_endpoint
from services.dispatcher.vtn.notifier import Delivery, Notifier
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
    Where,
)
from services.openapi import openapi_without_422

log = logging.getLogger(__name__)

BASE_PATH = "/openadr3/3.0.1"
SECRET_ENV = "FLEXFLEET_VTN_SECRET"
PROBLEM_TYPES = {400: "urn:flexfleet:problem:invalid-input", 401: "urn:flexfleet:problem:unauthenticated",
                 403: "urn:flexfleet:problem:forbidden", 404: "urn:flexfleet:problem:not-found",
                 409: "urn:flexfleet:problem:conflict", 500: "urn:flexfleet:problem:internal-error",
                 503: "urn:flexfleet:problem:database-unavailable"}

ID = Annotated[str, Path(pattern=OBJECT_ID_PATTERN, min_length=1, max_length=128)]
QueryID = Annotated[str | None, Query(pattern=OBJECT_ID_PATTERN, min_length=1, max_length=128)]
Skip = Annotated[int | None, Query(description="Records to skip.")]
Limit = Annotated[int | None, Query(description="Records to return, at most 50 (the default).")]
TargetType = Annotated[str | None, Query(description="Targeting type, e.g. GROUP or VEN_NAME.")]
TargetValues = Annotated[list[str] | None, Query(description="Target values, any of which matches.")]


# -- errors -------------------------------------------------------------------------------------
def problem(request: Request, status: int, reason: str, field: str | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    """The spec's problem object, sent as application/json as the spec declares it."""
    body = Problem(type=PROBLEM_TYPES.get(status, "about:blank"), title=HTTPStatus(status).phrase, status=status,
                   detail=f"{field}: {reason}" if field else reason, instance=_instance(request),
                   field=field)
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _instance(request: Request) -> str:
    """The request's URL without its query, percent-encoded: the spec wants an absolute URI."""
    return f"{request.url.scheme}://{request.url.netloc}{quote(request.url.path)}"


def _location(loc: tuple) -> str:
    """("body", "intervals", 0, "id") -> "intervals.0.id"; ("query", "limit") -> "limit"."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
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

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        field = "body" if first.get("type") == "json_invalid" else _location(tuple(first.get("loc", ())))
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
            storable(value)
        except ValueError as exc:
            raise DomainError(name, str(exc)) from None
    return value


def _filter(target_type: str | None, target_values: list[str] | None) -> TargetFilter | None:
    _text("targetType", target_type)
    for v in target_values or ():
        _text("targetValues", v)
    return target_filter(target_type, target_values)


def _targeted(where: Where, flt: TargetFilter | None) -> Where:
    if flt is not None and flt.values:
        where.add("target_keys && %s::text[]", flt.keys)
    elif flt is not None:
        where.add("%s = ANY(target_types)", flt.type)
    return where


def _respond(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _doc(model: type, status: int = 200, list_of: bool = False) -> dict[str, Any]:
    """OpenAPI responses of an operation: its object (or a list of them) and the problems."""
    problems = {s: {"model": Problem, "description": HTTPStatus(s).phrase} for s in (400, 401, 403, 404, 409, 500)}
    return {status: {"model": list[model] if list_of else model, "description": HTTPStatus(status).phrase},
            **problems}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of the routes, with the problem (400) where it would say 422. The
    official document is shared/specs/openadr3/3.0.1/openadr3.yaml; this one is for /docs."""
    if app.openapi_schema is None:
        app.openapi_schema = openapi_without_422(app)
    return app.openapi_schema


# -- the application ----------------------------------------------------------------------------
def create_app(database_url: str, *, secret: str | None = None, token_ttl: timedelta = timedelta(hours=1),
               delivery: Delivery = Delivery()) -> FastAPI:
    """The VTN on one database. `secret` signs access tokens (default: $FLEXFLEET_VTN_SECRET, at
    least 32 bytes); `delivery` sets how hard webhook notifications are retried."""
    secret = secret or os.environ.get(SECRET_ENV)
    if not secret:
        raise ValueError(f"the VTN needs a token signing secret: pass secret= or set {SECRET_ENV}")
    policy = TokenPolicy(secret, token_ttl)
    notifier = Notifier(database_url, delivery)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        notifier.close()

    app = FastAPI(title="flexfleet OpenADR 3.0.1 VTN", version="3.0.1", lifespan=lifespan,
                  description=__doc__.split("\n\n", 1)[0], docs_url=f"{BASE_PATH}/docs",
                  openapi_url=f"{BASE_PATH}/openapi.json")
    app.state.notifier = notifier
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    _install_error_handlers(app)
    router = APIRouter(prefix=BASE_PATH)

    def connect() -> psycopg.Connection:
        return psycopg.connect(database_url, autocommit=True, connect_timeout=5)

    def scoped(scope: str) -> Callable[[Request], Principal]:
        def caller(request: Request) -> Principal:
            return require(principal_of(request, policy), scope)
        return caller

    Reader = Annotated[Principal, Depends(scoped(READ_ALL))]

    def publish(object_type: str, operation: str, body: dict, owner_ven: str | None = None) -> None:
        notifier.publish(Change(object_type, operation, body), owner_ven)

    # -- visibility ---------------------------------------------------------------------------
    def reachable(conn: psycopg.Connection, who: Principal, where: Where) -> Where:
        """Programs and events: a VEN's searches keep what is targeted at it or at no one."""
        if who.is_ven:
            where.add("(cardinality(target_keys) = 0 OR target_keys && %s::text[])",
                      sorted(store.identity(conn, who.ven_name)))
        return where

    def check_reaches(conn: psycopg.Connection, who: Principal, stored: store.Stored, kind: Kind) -> None:
        if who.is_ven and not reaches(stored.target_keys, store.identity(conn, who.ven_name)):
            raise Forbidden(f"this {kind.object_type.lower()} is not targeted at VEN {who.ven_name}")

    def check_owner(who: Principal, stored: store.Stored, kind: Kind) -> None:
        if who.is_ven and stored.owner_ven != who.ven_name:
            raise Forbidden(f"this {kind.object_type.lower()} belongs to another client")

    def own_ven(conn: psycopg.Connection, who: Principal, ven_id: str) -> dict:
        """The ven at ven_id, which a VEN may only reach when it is its own."""
        ven = store.get(conn, VENS, ven_id)
        if who.is_ven and ven["venName"] != who.ven_name:
            raise Forbidden(f"ven {ven_id} is not VEN {who.ven_name}")
        return ven

    def unchanged_targets(who: Principal, new: list | None, old: list | None) -> None:
        if who.is_ven and target_keys(new) != target_keys(old):
            raise Forbidden("a VEN cannot set its own targets; the business logic does", "targets")

    # -- token ----------------------------------------------------------------------------------
    @router.post("/auth/token", tags=["Auth"], summary="fetch a token", response_model=ClientCredentialResponse,
                 responses={400: {"model": AuthError, "description": "RFC 6749 5.2 error"},
                            401: {"model": AuthError, "description": "invalid_client with HTTP Basic"}})
    async def fetch_token(request: Request) -> JSONResponse:
        """OAuth2 client credentials (form body or HTTP Basic); RFC 6749 errors."""
        return await token_endpoint(request, database_url, policy)

    # -- programs -------------------------------------------------------------------------------
    @router.get("/programs", tags=["programs"], responses=_doc(Program, list_of=True))
    def search_programs(who: Reader, targetType: TargetType = None, targetValues: TargetValues = None,
                        skip: Skip = None, limit: Limit = None) -> JSONResponse:
        flt, pg = _filter(targetType, targetValues), page(skip, limit)
        with connect() as conn:
            return _respond(store.search(conn, PROGRAMS, reachable(conn, who, _targeted(Where(), flt)), pg))

    @router.post("/programs", tags=["programs"], status_code=201, responses=_doc(Program, 201))
    def create_program(body: Program, who: Annotated[Principal, Depends(scoped(WRITE_PROGRAMS))]) -> JSONResponse:
        with connect() as conn:
            stored = store.insert(conn, PROGRAMS, body.body())
        publish("PROGRAM", "POST", stored)
        return _respond(stored, 201)

    @router.get("/programs/{programID}", tags=["programs"], responses=_doc(Program))
    def get_program(programID: ID, who: Reader) -> JSONResponse:
        with connect() as conn:
            stored = store.fetch(conn, PROGRAMS, programID)
            check_reaches(conn, who, stored, PROGRAMS)
        return _respond(stored.body)

    @router.put("/programs/{programID}", tags=["programs"], responses=_doc(Program))
    def update_program(programID: ID, body: Program,
                       who: Annotated[Principal, Depends(scoped(WRITE_PROGRAMS))]) -> JSONResponse:
        with connect() as conn:
            stored = store.replace(conn, PROGRAMS, programID, body.body())
        publish("PROGRAM", "PUT", stored)
        return _respond(stored)

    @router.delete("/programs/{programID}", tags=["programs"], responses=_doc(Program))
    def delete_program(programID: ID, who: Annotated[Principal, Depends(scoped(WRITE_PROGRAMS))]) -> JSONResponse:
        with connect() as conn:
            stored = store.delete(conn, PROGRAMS, programID)
        publish("PROGRAM", "DELETE", stored)
        return _respond(stored)

    # -- events ---------------------------------------------------------------------------------
    @router.get("/events", tags=["events"], responses=_doc(Event, list_of=True))
    def search_events(who: Reader, programID: QueryID = None, targetType: TargetType = None,
                      targetValues: TargetValues = None, skip: Skip = None, limit: Limit = None) -> JSONResponse:
        flt, pg = _filter(targetType, targetValues), page(skip, limit)
        where = _targeted(Where(), flt)
        if programID is not None:
            where.add("program_id = %s", programID)
        with connect() as conn:
            return _respond(store.search(conn, EVENTS, reachable(conn, who, where), pg))

    @router.post("/events", tags=["events"], status_code=201, responses=_doc(Event, 201))
    def create_event(body: Event, who: Annotated[Principal, Depends(scoped(WRITE_EVENTS))]) -> JSONResponse:
        with connect() as conn:
            stored = store.insert(conn, EVENTS, body.body())
        publish("EVENT", "POST", stored)
        return _respond(stored, 201)

    @router.get("/events/{eventID}", tags=["events"], responses=_doc(Event))
    def get_event(eventID: ID, who: Reader) -> JSONResponse:
        with connect() as conn:
            stored = store.fetch(conn, EVENTS, eventID)
            check_reaches(conn, who, stored, EVENTS)
        return _respond(stored.body)

    @router.put("/events/{eventID}", tags=["events"], responses=_doc(Event))
    def update_event(eventID: ID, body: Event,
                     who: Annotated[Principal, Depends(scoped(WRITE_EVENTS))]) -> JSONResponse:
        with connect() as conn:
            stored = store.replace(conn, EVENTS, eventID, body.body())
        publish("EVENT", "PUT", stored)
        return _respond(stored)

    @router.delete("/events/{eventID}", tags=["events"], responses=_doc(Event))
    def delete_event(eventID: ID, who: Annotated[Principal, Depends(scoped(WRITE_EVENTS))]) -> JSONResponse:
        with connect() as conn:
            stored = store.delete(conn, EVENTS, eventID)
        publish("EVENT", "DELETE", stored)
        return _respond(stored)

    # -- reports --------------------------------------------------------------------------------
    def check_report(conn: psycopg.Connection, who: Principal, report: Report) -> None:
        """A VEN reports as itself, on an event it can see."""
        if not who.is_ven:
            return
        if report.clientName != who.ven_name:
            raise Forbidden(f"a VEN reports as itself: clientName must be {who.ven_name!r}", "clientName")
        try:
            event = store.fetch(conn, EVENTS, report.eventID)
        except NotFound:
            raise BadReference("eventID", f"no such event: {report.eventID!r}") from None
        if not reaches(event.target_keys, store.identity(conn, who.ven_name)):
            raise Forbidden(f"event {report.eventID} is not targeted at VEN {who.ven_name}", "eventID")

    @router.get("/reports", tags=["reports"], responses=_doc(Report, list_of=True))
    def search_reports(who: Reader, programID: QueryID = None, eventID: QueryID = None, clientName: str | None = None,
                       skip: Skip = None, limit: Limit = None) -> JSONResponse:
        pg, where = page(skip, limit), Where()
        for column, value in (("program_id", programID), ("event_id", eventID),
                              ("client_name", _text("clientName", clientName))):
            if value is not None:
                where.add(f"{column} = %s", value)
        if who.is_ven:
            where.add("owner_ven = %s", who.ven_name)
        with connect() as conn:
            return _respond(store.search(conn, REPORTS, where, pg))

    @router.post("/reports", tags=["reports"], status_code=201, responses=_doc(Report, 201))
    def create_report(body: Report, who: Annotated[Principal, Depends(scoped(WRITE_REPORTS))]) -> JSONResponse:
        with connect() as conn:
            check_report(conn, who, body)
            stored = store.insert(conn, REPORTS, body.body(), owner_ven=who.ven_name)
        publish("REPORT", "POST", stored, who.ven_name)
        return _respond(stored, 201)

    @router.get("/reports/{reportID}", tags=["reports"], responses=_doc(Report))
    def get_report(reportID: ID, who: Reader) -> JSONResponse:
        with connect() as conn:
            stored = store.fetch(conn, REPORTS, reportID)
        check_owner(who, stored, REPORTS)
        return _respond(stored.body)

    @router.put("/reports/{reportID}", tags=["reports"], responses=_doc(Report))
    def update_report(reportID: ID, body: Report,
                      who: Annotated[Principal, Depends(scoped(WRITE_REPORTS))]) -> JSONResponse:
        with connect() as conn:
            old = store.fetch(conn, REPORTS, reportID)
            check_owner(who, old, REPORTS)
            check_report(conn, who, body)
            stored = store.replace(conn, REPORTS, reportID, body.body())
        publish("REPORT", "PUT", stored, old.owner_ven)
        return _respond(stored)

    @router.delete("/reports/{reportID}", tags=["reports"], responses=_doc(Report))
    def delete_report(reportID: ID, who: Annotated[Principal, Depends(scoped(WRITE_REPORTS))]) -> JSONResponse:
        with connect() as conn:
            old = store.fetch(conn, REPORTS, reportID)
            check_owner(who, old, REPORTS)
            stored = store.delete(conn, REPORTS, reportID)
        publish("REPORT", "DELETE", stored, old.owner_ven)
        return _respond(stored)

    # -- subscriptions --------------------------------------------------------------------------
    @router.get("/subscriptions", tags=["subscriptions"], responses=_doc(Subscription, list_of=True))
    def search_subscriptions(who: Reader, programID: QueryID = None, clientName: str | None = None,
                             targetType: TargetType = None, targetValues: TargetValues = None,
                             objects: Annotated[list[ObjectType] | None, Query()] = None,
                             skip: Skip = None, limit: Limit = None) -> JSONResponse:
        flt, pg = _filter(targetType, targetValues), page(skip, limit)
        where = _targeted(Where(), flt)
        for column, value in (("program_id", programID), ("client_name", _text("clientName", clientName))):
            if value is not None:
                where.add(f"{column} = %s", value)
        if objects:
            where.add("object_types && %s::text[]", list(objects))
        if who.is_ven:
            where.add("owner_ven = %s", who.ven_name)
        with connect() as conn:
            return _respond(store.search(conn, SUBSCRIPTIONS, where, pg))

    @router.post("/subscriptions", tags=["subscriptions"], status_code=201, responses=_doc(Subscription, 201))
    def create_subscription(body: Subscription,
                            who: Annotated[Principal, Depends(scoped(WRITE_SUBSCRIPTIONS))]) -> JSONResponse:
        with connect() as conn:
            stored = store.insert(conn, SUBSCRIPTIONS, body.body(), owner_ven=who.ven_name)
        publish("SUBSCRIPTION", "POST", stored, who.ven_name)
        return _respond(stored, 201)

    @router.get("/subscriptions/{subscriptionID}", tags=["subscriptions"], responses=_doc(Subscription))
    def get_subscription(subscriptionID: ID, who: Reader) -> JSONResponse:
        with connect() as conn:
            stored = store.fetch(conn, SUBSCRIPTIONS, subscriptionID)
        check_owner(who, stored, SUBSCRIPTIONS)
        return _respond(stored.body)

    @router.put("/subscriptions/{subscriptionID}", tags=["subscriptions"], responses=_doc(Subscription))
    def update_subscription(subscriptionID: ID, body: Subscription,
                            who: Annotated[Principal, Depends(scoped(WRITE_SUBSCRIPTIONS))]) -> JSONResponse:
        with connect() as conn:
            old = store.fetch(conn, SUBSCRIPTIONS, subscriptionID)
            check_owner(who, old, SUBSCRIPTIONS)
            stored = store.replace(conn, SUBSCRIPTIONS, subscriptionID, body.body())
        publish("SUBSCRIPTION", "PUT", stored, old.owner_ven)
        return _respond(stored)

    @router.delete("/subscriptions/{subscriptionID}", tags=["subscriptions"], responses=_doc(Subscription))
    def delete_subscription(subscriptionID: ID,
                            who: Annotated[Principal, Depends(scoped(WRITE_SUBSCRIPTIONS))]) -> JSONResponse:
        with connect() as conn:
            old = store.fetch(conn, SUBSCRIPTIONS, subscriptionID)
            check_owner(who, old, SUBSCRIPTIONS)
            stored = store.delete(conn, SUBSCRIPTIONS, subscriptionID)
        publish("SUBSCRIPTION", "DELETE", stored, old.owner_ven)
        return _respond(stored)

    # -- vens -----------------------------------------------------------------------------------
    def ven_body(ven: Ven) -> dict:
        """A ven as stored: its resources live at /vens/{venID}/resources and are read from there."""
        body = ven.body()
        body.pop("resources", None)
        return body

    @router.get("/vens", tags=["vens"], responses=_doc(Ven, list_of=True))
    def search_vens(who: Reader, venName: str | None = None, targetType: TargetType = None,
                    targetValues: TargetValues = None, skip: Skip = None, limit: Limit = None) -> JSONResponse:
        flt, pg = _filter(targetType, targetValues), page(skip, limit)
        where = _targeted(Where(), flt)
        if venName is not None:
            where.add("ven_name = %s", _text("venName", venName))
        if who.is_ven:
            where.add("ven_name = %s", who.ven_name)
        with connect() as conn:
            return _respond(store.search(conn, VENS, where, pg))

    @router.post("/vens", tags=["vens"], status_code=201, responses=_doc(Ven, 201))
    def create_ven(body: Ven, who: Annotated[Principal, Depends(scoped(WRITE_VENS))]) -> JSONResponse:
        if who.is_ven and body.venName != who.ven_name:
            raise Forbidden(f"a VEN registers only itself: venName must be {who.ven_name!r}", "venName")
        unchanged_targets(who, body.body().get("targets"), None)
        with connect() as conn:
            stored = store.insert(conn, VENS, ven_body(body))
            stored = store.get(conn, VENS, stored["id"])
        publish("VEN", "POST", stored)
        return _respond(stored, 201)

    @router.get("/vens/{venID}", tags=["vens"], responses=_doc(Ven))
    def get_ven(venID: ID, who: Reader) -> JSONResponse:
        with connect() as conn:
            return _respond(own_ven(conn, who, venID))

    @router.put("/vens/{venID}", tags=["vens"], responses=_doc(Ven))
    def update_ven(venID: ID, body: Ven, who: Annotated[Principal, Depends(scoped(WRITE_VENS))]) -> JSONResponse:
        with connect() as conn:
            old = own_ven(conn, who, venID)
            if who.is_ven and body.venName != old["venName"]:
                raise Forbidden("a VEN cannot rename itself", "venName")
            unchanged_targets(who, body.body().get("targets"), old.get("targets"))
            store.replace(conn, VENS, venID, ven_body(body))
            stored = store.get(conn, VENS, venID)
        publish("VEN", "PUT", stored)
        return _respond(stored)

    @router.delete("/vens/{venID}", tags=["vens"], responses=_doc(Ven))
    def delete_ven(venID: ID, who: Annotated[Principal, Depends(scoped(WRITE_VENS))]) -> JSONResponse:
        with connect() as conn:
            stored = own_ven(conn, who, venID)
            store.delete(conn, VENS, venID)
        publish("VEN", "DELETE", stored)
        return _respond(stored)

    # -- resources ------------------------------------------------------------------------------
    def resource_of(conn: psycopg.Connection, ven_id: str, resource_id: str) -> dict:
        resource = store.get(conn, RESOURCES, resource_id)
        if resource["venID"] != ven_id:
            raise NotFound(f"resourceID: ven {ven_id} has no resource {resource_id}")
        return resource

    @router.get("/vens/{venID}/resources", tags=["vens"], responses=_doc(Resource, list_of=True))
    def search_resources(venID: ID, who: Reader, resourceName: str | None = None, targetType: TargetType = None,
                         targetValues: TargetValues = None, skip: Skip = None, limit: Limit = None) -> JSONResponse:
        flt, pg = _filter(targetType, targetValues), page(skip, limit)
        where = _targeted(Where(), flt).add("ven_id = %s", venID)
        if resourceName is not None:
            where.add("resource_name = %s", _text("resourceName", resourceName))
        with connect() as conn:
            own_ven(conn, who, venID)
            return _respond(store.search(conn, RESOURCES, where, pg))

    @router.post("/vens/{venID}/resources", tags=["vens"], status_code=201, responses=_doc(Resource, 201))
    def create_resource(venID: ID, body: Resource,
                        who: Annotated[Principal, Depends(scoped(WRITE_VENS))]) -> JSONResponse:
        unchanged_targets(who, body.body().get("targets"), None)
        with connect() as conn:
            own_ven(conn, who, venID)
            stored = store.insert(conn, RESOURCES, {**body.body(), "venID": venID})
        publish("RESOURCE", "POST", stored)
        return _respond(stored, 201)

    @router.get("/vens/{venID}/resources/{resourceID}", tags=["vens"], responses=_doc(Resource))
    def get_resource(venID: ID, resourceID: ID, who: Reader) -> JSONResponse:
        with connect() as conn:
            own_ven(conn, who, venID)
            return _respond(resource_of(conn, venID, resourceID))

    @router.put("/vens/{venID}/resources/{resourceID}", tags=["vens"], responses=_doc(Resource))
    def update_resource(venID: ID, resourceID: ID, body: Resource,
                        who: Annotated[Principal, Depends(scoped(WRITE_VENS))]) -> JSONResponse:
        with connect() as conn:
            own_ven(conn, who, venID)
            old = resource_of(conn, venID, resourceID)
            unchanged_targets(who, body.body().get("targets"), old.get("targets"))
            stored = store.replace(conn, RESOURCES, resourceID, {**body.body(), "venID": venID})
        publish("RESOURCE", "PUT", stored)
        return _respond(stored)

    @router.delete("/vens/{venID}/resources/{resourceID}", tags=["vens"], responses=_doc(Resource))
    def delete_resource(venID: ID, resourceID: ID,
                        who: Annotated[Principal, Depends(scoped(WRITE_VENS))]) -> JSONResponse:
        with connect() as conn:
            own_ven(conn, who, venID)
            resource_of(conn, venID, resourceID)
            stored = store.delete(conn, RESOURCES, resourceID)
        publish("RESOURCE", "DELETE", stored)
        return _respond(stored)

    app.include_router(router)
    return app
