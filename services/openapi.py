"""OpenAPI documents of our FastAPI apps: bad input is answered with a 400 problem, never
FastAPI's 422, so the document must not promise one."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi


def openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of the app's routes, without the 422 responses and their schemas."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                         servers=app.servers or None)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    return schema
