"""RFC 9457 problem details for every error the API answers (application/problem+json), with a
`field` member naming the field at fault ("username", "month"), and the error handlers that
turn validation, domain and HTTP errors into them.

The OAuth2 token endpoint answers RFC 6749 5.2 bodies instead (`error`, `error_description`,
as OAuth2 clients expect, application/json); they carry the same problem members as well.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from flexfleet.domain.errors import DomainError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPES = {  # stable identifiers a client can switch on
    400: "urn:flexfleet:problem:invalid-input",
    401: "urn:flexfleet:problem:unauthenticated",
    403: "urn:flexfleet:problem:forbidden",
    404: "urn:flexfleet:problem:not-found",
    405: "urn:flexfleet:problem:method-not-allowed",
    500: "urn:flexfleet:problem:internal-error",
    503: "urn:flexfleet:problem:database-unavailable",
}
DESCRIBED = {400: "Bad input: `field` names it.", 401: "No valid bearer token (missing, expired or forged).",
             403: "The token's role may not do this.", 404: "Not found (or not yours).",
             503: "The database is unavailable."}


class FieldError(BaseModel):
    field: str
    reason: str


class Problem(BaseModel):
    """RFC 9457 problem details, with the field at fault."""

    type: str = Field(description="Identifies the kind of problem.")
    title: str
    status: int
    detail: str
    field: str | None = Field(None, description='The field at fault, e.g. "month" or "results.0.accepted_mw".')
    instance: str | None = Field(None, description="The request path.")
    errors: list[FieldError] | None = Field(None, description="Every field at fault, when there are several.")


class ApiProblem(Exception):
    """A client error raised by a route: answered as a problem with this status and field."""

    def __init__(self, status: int, reason: str, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.status, self.reason, self.field, self.headers = status, reason, field, dict(headers or {})


def problem_body(request: Request, status: int, reason: str, field: str | None = None,
                 errors: list[dict] | None = None, title: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": PROBLEM_TYPES.get(status, "about:blank"),
                            "title": title or HTTPStatus(status).phrase, "status": status,
                            "detail": f"{field}: {reason}" if field else reason, "field": field,
                            "instance": request.url.path}
    if errors:
        body["errors"] = errors
    return body


def problem(request: Request, status: int, reason: str, field: str | None = None, errors: list[dict] | None = None,
            title: str | None = None, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(problem_body(request, status, reason, field, errors, title), status_code=status,
                        media_type=PROBLEM_JSON, headers=dict(headers or {}))


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these problem statuses (`with_problem_schemas` adds the
    schema they refer to)."""
    return {s: {"description": DESCRIBED[s], "content": {PROBLEM_JSON: {"schema": {
        "$ref": "#/components/schemas/Problem"}}}} for s in statuses}


def with_problem_schemas(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI document with the Problem schema (and what it uses) among its components."""
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(problem_schema.pop("$defs", {}))
    components["Problem"] = problem_schema
    return schema


def location(loc: tuple) -> str:
    """("body", "username") -> "username"; ("path", "month") -> "month"."""
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        return ".".join(str(p) for p in loc[1:]) or str(loc[0])
    return ".".join(str(p) for p in loc) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": "body" if e.get("type") == "json_invalid" else location(tuple(e.get("loc", ()))),
                   "reason": str(e.get("msg", "invalid"))} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "reason": "invalid request"}
        return problem(request, 400, first["reason"], first["field"], errors if len(errors) > 1 else None,
                       title="Invalid input")

    @app.exception_handler(DomainError)
    async def domain(request: Request, exc: DomainError) -> JSONResponse:
        return problem(request, 400, exc.reason, exc.field, title="Invalid input")

    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem(request, exc.status, exc.reason, exc.field, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(request, exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return problem(request, 503, "the database is unavailable; try again shortly", title="Database unavailable",
                       headers={"Retry-After": "5"})
