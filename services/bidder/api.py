"""The bidder's HTTP API: plan a delivery day's bids, list them, take the market's clearing results
back and list the obligations that follow (`create_app(database_url, auth)`; OpenAPI docs at /docs).
Every route takes the platform's OAuth2 bearer token (services.api.security.Auth): reading needs
bids:read, planning and clearing bids:write. There is no open mode: an API that places market
bids is never served without tokens. The platform API serves it at /bidding.

Money and MW travel as decimal strings in responses and are accepted as numbers or strings.
Errors are RFC 9457 problem details (application/problem+json) with a `field` member naming the
field at fault, e.g. "day" or "results.0.accepted_mw".
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, Literal
from uuid import UUID

import psycopg
from fastapi import Body, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from flexfleet.bidding import BiddingInputError
from flexfleet.domain.errors import DomainError
from flexfleet.domain.zones import BiddingZone
from flexfleet.auth.roles import BIDS_READ, BIDS_WRITE
from services.api.problems import ApiProblem, Problem
from services.api.security import Auth, principal_dependency, requiring
from services.bidder.files import bid_record, plan_record
from services.bidder.store import (ClearingConflict, ClearingIn, NotFound, Obligation, list_bids, list_obligations,
                                   record_clearing)
from services.openapi import openapi_without_422
from services.runtime.metrics import instrument

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPES = {  # RFC 9457 problem types: stable identifiers a client can switch on
    400: "urn:flexfleet:problem:invalid-input",
    401: "urn:flexfleet:problem:unauthenticated",       # the platform API's identifiers (services.api.problems)
    403: "urn:flexfleet:problem:forbidden",
    404: "urn:flexfleet:problem:not-found",
    409: "urn:flexfleet:problem:clearing-conflict",
    500: "urn:flexfleet:problem:internal-error",
    503: "urn:flexfleet:problem:database-unavailable",
}


def _version() -> str:
    try:
        return version("flexfleet")
    except PackageNotFoundError:
        return "0.0.0"


# -- models -------------------------------------------------------------------------------------
class _In(BaseModel):
    """A request body: unknown members are refused, naming them."""

    model_config = ConfigDict(extra="forbid")


class _Model(BaseModel):
    """A response body."""


class PlanIn(_In):
    """Plan a delivery day's bids from the latest forecast issued before `now`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"day": "2026-11-25", "zone": "SE3", "auction": "D-1", "now": "2026-11-23T23:15:00Z", "regime": "low",
         "scenarios": 20, "seed": 0}]})

    day: date = Field(description="Local delivery day.")
    zone: str = Field("SE3", description="Bidding zone, e.g. SE3.")
    auction: str = Field("D-1", description="Auction name, or a prefix such as D-1 (the earliest such).")
    now: AwareDatetime | None = Field(None, description="Plan as of this time (RFC 3339, with offset); default "
                                      "the server's clock. Gate closures are checked against it.")
    regime: str = Field("low", description="Price history the scenarios are drawn from: low (2025) or high (2022-23).")
    scenarios: int = Field(20, ge=1, le=200, description="Price scenarios the plan weighs.")
    seed: int = Field(0, ge=0, description="Seed of the price scenarios and the expected activation.")


class BackingVehicle(_Model):
    vehicle_id: str
    kw: float = Field(description="What this car holds for the bid when activated.")


class BidOut(_Model):
    bid_id: str = Field(description='"<plan_id>/<n>"')
    plan_id: str
    zone: str
    delivery_day: date
    product_id: str
    market_key: str
    auction: str
    direction: Literal["up", "down"]
    grid_node: str | None = Field(description="The grid node whose cars back a local-flex bid; null for TSO products.")
    order_id: str | None = Field(None, description="The DSO order a local-flex bid answers; null for TSO products.")
    mtu_start: datetime = Field(description="UTC.")
    mtu_minutes: int
    volume_mw: Decimal
    price_eur_per_mw_h: Decimal
    expected_value_eur: Decimal
    p90_kw_backing: float
    shortfall_probability: float
    status: Literal["planned", "accepted", "partial", "rejected"]
    accepted_mw: Decimal | None = Field(description="null until the market's answer is recorded.")
    backing_vehicles: list[BackingVehicle]


class ExpectedValue(_Model):
    revenue_eur: Decimal
    wear_eur: Decimal
    penalty_eur: Decimal
    value_eur: Decimal = Field(description="Revenue minus wear minus penalties.")


class DroppedOut(_Model):
    product_id: str
    market_key: str
    mtu_start: datetime | None = Field(description="null: the whole market for the day.")
    reason: str


class PlanOut(_Model):
    plan_id: str
    zone: str
    delivery_day: date
    auction: str
    planned_at: datetime
    forecast_id: str | None
    solver_status: str
    solve_seconds: float
    expected: ExpectedValue
    bids: list[BidOut]
    dropped: list[DroppedOut] = Field(description="Bids not made, and why.")
    notes: list[str]


class BidsOut(_Model):
    bids: list[BidOut]


class ClearingResultIn(_In):
    """The market's answer for one bid."""

    bid_id: str = Field(min_length=1, max_length=200)
    accepted_mw: Decimal = Field(ge=0, allow_inf_nan=False, description="0: rejected; at most the bid's volume.")
    price_eur_per_mw_h: Decimal | None = Field(None, ge=0, allow_inf_nan=False,
                                               description="The price paid; null if nothing was accepted.")
    source: str = Field("market", min_length=1, max_length=100)


class ClearingBatchIn(_In):
    """Clearing results, recorded all or nothing. Posting the same answers again changes nothing;
    an answer contradicting one already recorded is refused with 409."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"results": [
            {"bid_id": "0b7f5a52-3d0e-4d59-9a53-6f1f0c2f4c11/0", "accepted_mw": "0.1",
             "price_eur_per_mw_h": "4.20", "source": "market"},
            {"bid_id": "0b7f5a52-3d0e-4d59-9a53-6f1f0c2f4c11/1", "accepted_mw": "0.05",
             "price_eur_per_mw_h": "3.10", "source": "market"},
            {"bid_id": "0b7f5a52-3d0e-4d59-9a53-6f1f0c2f4c11/2", "accepted_mw": "0",
             "price_eur_per_mw_h": None, "source": "market"}]}]})

    results: list[ClearingResultIn] = Field(min_length=1, max_length=10_000)


class ObligationVehicle(_Model):
    vehicle_id: str
    kw: float = Field(description="The car's share of the accepted volume.")


class ObligationOut(_Model):
    obligation_id: str
    bid_id: str
    zone: str
    product_id: str
    direction: Literal["up", "down"]
    grid_node: str | None
    mtu_start: datetime
    mtu_end: datetime
    volume_mw: Decimal = Field(description="The accepted volume.")
    price_eur_per_mw_h: Decimal = Field(description="The price paid.")
    vehicles: list[ObligationVehicle]


class ObligationsOut(_Model):
    obligations: list[ObligationOut]


def _problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {400: "Bad input: `field` names it.", 401: "No valid bearer token (POST /v1/auth/token).",
                 403: "The token's role lacks the scope.", 404: "No such bid.",
                 409: "Contradicts a clearing result already recorded.", 503: "The database is unavailable."}
    schema = _inline(Problem.model_json_schema())
    return {s: {"description": described[s], "content": {PROBLEM_JSON: {"schema": schema}}} for s in statuses}


def _inline(schema: dict) -> dict:
    """A JSON schema with its $defs substituted where they are referenced (a self-contained one)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


# -- records ------------------------------------------------------------------------------------
def obligation_record(o: Obligation) -> dict:
    return {"obligation_id": o.obligation_id, "bid_id": o.bid_id, "zone": o.zone, "product_id": o.product_id,
            "direction": o.direction, "grid_node": o.grid_node, "mtu_start": o.mtu_start, "mtu_end": o.mtu_end,
            "volume_mw": o.volume_mw, "price_eur_per_mw_h": o.price_eur_per_mw_h,
            "vehicles": [{"vehicle_id": v, "kw": round(kw, 3)} for v, kw in zip(o.vehicles, o.kw)]}


# -- errors -------------------------------------------------------------------------------------
class _FieldProblem(Exception):
    """A client error about one field, raised inside this module."""

    def __init__(self, status: int, field: str | None, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.status, self.field, self.reason = status, field, reason


def _split(message: str) -> tuple[str | None, str]:
    """"field: reason" -> (field, reason); a message without a field -> (None, message)."""
    head, sep, tail = message.partition(": ")
    if sep and head and " " not in head.strip():
        return head, tail
    return None, message


def problem(request: Request, status: int, reason: str, field: str | None = None,
            errors: list[dict] | None = None, title: str | None = None) -> JSONResponse:
    """The problem details response; `detail` reads "field: reason" when a field is at fault."""
    detail = f"{field}: {reason}" if field else reason
    body: dict[str, Any] = {"type": PROBLEM_TYPES.get(status, "about:blank"),
                            "title": title or HTTPStatus(status).phrase, "status": status, "detail": detail,
                            "field": field, "instance": request.url.path}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _location(loc: tuple) -> str:
    """("body", "results", 0, "accepted_mw") -> "results.0.accepted_mw"; ("query", "day") -> "day"."""
    if loc and loc[0] in ("body", "query", "path", "header"):
        return ".".join(str(p) for p in loc[1:]) or str(loc[0])
    return ".".join(str(p) for p in loc) or "body"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": "body" if e.get("type") == "json_invalid" else _location(tuple(e.get("loc", ()))),
                   "reason": str(e.get("msg", "invalid"))} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "reason": "invalid request"}
        return problem(request, 400, first["reason"], first["field"],
                       errors if len(errors) > 1 else None, title="Invalid input")

    @app.exception_handler(BiddingInputError)
    async def bidding_input(request: Request, exc: BiddingInputError) -> JSONResponse:
        field, reason = _split(str(exc))
        return problem(request, 400, reason, field, title="Invalid input")

    @app.exception_handler(DomainError)
    async def domain(request: Request, exc: DomainError) -> JSONResponse:
        return problem(request, 400, exc.reason, exc.field, title="Invalid input")

    @app.exception_handler(_FieldProblem)
    async def field_problem(request: Request, exc: _FieldProblem) -> JSONResponse:
        titles = {400: "Invalid input", 404: "Not found", 409: "Clearing conflict"}
        return problem(request, exc.status, exc.reason, exc.field, title=titles.get(exc.status))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        field, reason = _split(str(exc))
        return problem(request, 404, reason, field, title="Not found")

    @app.exception_handler(ClearingConflict)
    async def conflict(request: Request, exc: ClearingConflict) -> JSONResponse:
        field, reason = _split(str(exc))
        return problem(request, 409, reason, field, title="Clearing conflict")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem(request, exc.status_code, str(exc.detail))
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        response = problem(request, exc.status, exc.reason, exc.field)
        for k, v in exc.headers.items():
            response.headers[k] = v
        return response

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        response = problem(request, 503, "the database is unavailable; try again shortly",
                           title="Database unavailable")
        response.headers["Retry-After"] = "5"
        return response


# -- the application ----------------------------------------------------------------------------
def _plan_example(now: datetime) -> dict:
    """A request that passes the gate check now: the next delivery day whose auction is open."""
    from flexfleet.markets import default_catalogue
    from services.bidder.problem import next_open_auction

    day, auction = next_open_auction(default_catalogue(), "SE3", now)
    return {"day": day.isoformat(), "zone": "SE3", "auction": auction, "regime": "low", "scenarios": 20, "seed": 0}


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document, with 400 problem details where it would say 422, and a plan example
    for the next open auction (so "Try it out" in /docs works on a database with a fresh forecast)."""
    schema = openapi_without_422(app)
    try:
        example = _plan_example(datetime.now(UTC))
    except BiddingInputError:
        return schema
    body = schema["paths"]["/v1/bids/plan"]["post"]["requestBody"]["content"]["application/json"]
    body["examples"] = {"next_open_day": {"summary": f"{example['day']}, {example['auction']}, now = the clock",
                                          "value": example}}
    return schema


def create_app(database_url: str, auth: Auth) -> FastAPI:
    """The bidder's API on one database; each request uses a connection of its own.

    Every route takes the platform's bearer token, checked by `auth` (the platform API mounts the
    app so, at /bidding): reading needs bids:read, planning and clearing bids:write (the bidder
    role). `auth` is required, so the app cannot be served open by mistake; the caller owns its
    connections and closes them."""
    from flexfleet.markets import default_catalogue
    from services.bidder.service import PlanRequest, plan_day, validate

    if not isinstance(auth, Auth):
        raise TypeError(f"auth: the bidding API needs the platform's token check (services.api.security.Auth), "
                        f"got {type(auth).__name__}")
    principal = principal_dependency(auth)
    read = [Depends(requiring(BIDS_READ, principal, "reading bids and obligations needs the bids:read scope"))]
    write = [Depends(requiring(BIDS_WRITE, principal, "planning and clearing need the bids:write scope "
                                                      "(the bidder role)"))]
    secured = (401, 403)     # every route: no token, or a role without the scope
    app = FastAPI(title="flexfleet bidding", version=_version(), docs_url="/docs",
                  description=__doc__.split("\n\n", 1)[0])
    _install_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    def connect() -> psycopg.Connection:
        return psycopg.connect(database_url)

    @app.post("/v1/bids/plan", status_code=201, response_model=PlanOut, tags=["bids"], dependencies=write,
              summary="Plan a delivery day's bids", responses=_problem_responses(400, *secured, 503))
    def plan(body: PlanIn, response: Response) -> dict:
        """Plan, store and return the day's bids from the latest forecast issued before `now`:
        each bid with its backing vehicles and their kW, the expected value's parts, and what was
        left out and why. A plan for the same day again replaces the listed one (the latest counts)."""
        request = PlanRequest(body.day, body.zone, body.auction, body.now, body.regime, body.scenarios, body.seed)
        catalogue = default_catalogue()
        validate(request, catalogue)      # bad input is refused before any I/O
        with connect() as conn:
            stored = plan_day(conn, request, catalogue)
            conn.commit()
        response.headers["Location"] = f"/v1/bids?plan_id={stored.plan_id}"
        return plan_record(stored)

    @app.get("/v1/bids", response_model=BidsOut, tags=["bids"], summary="List bids", dependencies=read,
             responses=_problem_responses(400, *secured, 503))
    def bids(zone: Annotated[str | None, Query(description="Bidding zone, e.g. SE3.")] = None,
             day: Annotated[date | None, Query(description="Local delivery day.")] = None,
             plan_id: Annotated[UUID | None, Query(description="This plan's bids (default: the latest plan "
                                                                "of each zone, day and auction).")] = None,
             status: Annotated[Literal["planned", "accepted", "partial", "rejected"] | None,
                               Query(description="Only bids with this clearing status.")] = None) -> dict:
        """The bids of the latest plan per zone, delivery day and auction (or of `plan_id`), with
        their clearing status."""
        if zone is not None:
            try:
                zone = BiddingZone.parse(zone).value
            except ValueError as exc:
                raise _FieldProblem(400, "zone", getattr(exc, "reason", str(exc))) from None
        with connect() as conn:
            found = list_bids(conn, zone, day, None if plan_id is None else str(plan_id), status)
        return {"bids": [bid_record(b) for b in found]}

    @app.post("/v1/clearing", response_model=ObligationsOut, tags=["clearing"], dependencies=write,
              summary="Record the market's clearing results",
              responses=_problem_responses(400, *secured, 404, 409, 503))
    def clearing(body: Annotated[ClearingBatchIn, Body()]) -> dict:
        """Record the market's answer for each bid, all or nothing, and return the obligations the
        accepted ones became (each car's kW scaled to the accepted share of the offered volume).
        The same answers again change nothing and return the same obligations; an answer that
        contradicts one already recorded is refused (409), as is an unknown bid (404)."""
        obligations: list[Obligation] = []
        with connect() as conn:
            with conn.transaction():
                for i, r in enumerate(body.results):
                    try:
                        obligations += record_clearing(conn, [ClearingIn(r.bid_id, r.accepted_mw,
                                                                         r.price_eur_per_mw_h, r.source)])
                    except DomainError as exc:
                        raise _FieldProblem(400, f"results.{i}.{exc.field}", exc.reason) from None
                    except NotFound as exc:
                        raise _FieldProblem(404, f"results.{i}.bid_id", _split(str(exc))[1]) from None
                    except ClearingConflict as exc:
                        raise _FieldProblem(409, f"results.{i}.bid_id", _split(str(exc))[1]) from None
        unique = {o.obligation_id: o for o in obligations}   # a bid posted twice in one batch: once
        return {"obligations": [obligation_record(o) for o in unique.values()]}

    @app.get("/v1/obligations", response_model=ObligationsOut, tags=["clearing"], dependencies=read,
             summary="List obligations", responses=_problem_responses(400, *secured, 503))
    def obligations(start: Annotated[AwareDatetime | None, Query(description="RFC 3339 with offset.")] = None,
                    end: Annotated[AwareDatetime | None, Query(description="RFC 3339 with offset.")] = None) -> dict:
        """Obligations whose MTU overlaps [start, end), in time order: what dispatch must deliver."""
        if start is not None and end is not None and end <= start:
            raise _FieldProblem(400, "end", f"must be after start ({start.isoformat()})")
        with connect() as conn:
            found = list_obligations(conn, start, end)
        return {"obligations": [obligation_record(o) for o in found]}

    return instrument(app, "bidding")
