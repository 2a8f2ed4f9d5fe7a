"""The owner portal's API: an owner's own settlement statements, listed and downloaded.

Only an owner account reaches these routes, and every query is bound to the owner_id its
token names: another owner's statement is answered exactly like one that does not exist (404),
so the answer never tells whether another owner exists. A file is found from the statement's
row in owner_statements (zone, month, version, owner), under the settings' settlement folder,
never from a path the client sends.

The files are where `flexfleet settle` writes them:
<settlement dir>/<ZONE>/<YYYY-MM>/v<N>/statements/<owner>_<YYYY-MM>_v<N>.html|.pdf
"""

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from flexfleet.auth import Principal
from flexfleet.auth.roles import OWN_READ
from flexfleet.domain.model import Currency
from flexfleet.settlement.money import major
from services.api.problems import ApiProblem, problem_responses
from services.api.security import Auth, requiring

BASE = "/v1/owners/me"
FileKind = Literal["html", "pdf"]
MEDIA_TYPES: dict[str, str] = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_VERSION = re.compile(r"^[1-9][0-9]{0,5}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# A statement page is ours (escaped by its template), but it is served from the API's origin:
# no script may run in it, and it may load nothing (its charts are inline SVG, its styles inline).
FILE_HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}
HTML_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                           "font-src data:; sandbox"}


# -- store --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatementTotal:
    currency: Currency
    total: int                      # minor units
    previous_total: int | None      # what the version before paid; None on version 1


@dataclass(frozen=True)
class OwnerStatement:
    zone: str
    month: date                     # first day
    version: int
    issued_at: datetime             # when the version's settlement run was posted
    totals: tuple[StatementTotal, ...]

    @property
    def label(self) -> str:
        return self.month.strftime("%Y-%m")


def owner_statements(conn: psycopg.Connection, owner_id: str) -> list[OwnerStatement]:
    """The owner's issued statements, newest month first, then newest version first."""
    rows = conn.execute(
        "SELECT s.zone, s.month, s.version, r.finished_at, s.currency, s.total, s.previous_total "
        "FROM owner_statements s JOIN settlement_runs r USING (zone, month, version) "
        "WHERE s.owner_id = %s AND r.status = 'posted' "
        "ORDER BY s.month DESC, s.zone, s.version DESC, s.currency", (owner_id,)).fetchall()
    totals: dict[tuple, list[StatementTotal]] = defaultdict(list)
    issued: dict[tuple, datetime] = {}
    for zone, month, version, finished_at, currency, total, previous in rows:
        key = (zone, month, version)
        issued[key] = finished_at
        totals[key].append(StatementTotal(Currency(currency), total, previous))
    return [OwnerStatement(*key, issued[key], tuple(t)) for key, t in totals.items()]


def statement_zones(conn: psycopg.Connection, owner_id: str, month: date, version: int) -> list[str]:
    """The zones in which the owner has an issued statement of this month and version."""
    return [z for (z,) in conn.execute(
        "SELECT DISTINCT s.zone FROM owner_statements s JOIN settlement_runs r USING (zone, month, version) "
        "WHERE s.owner_id = %s AND s.month = %s AND s.version = %s AND r.status = 'posted' ORDER BY 1",
        (owner_id, month, version))]


def statement_path(root: Path, zone: str, month: date, owner_id: str, version: int, kind: FileKind) -> Path | None:
    """Where settlement wrote this statement's file, if it did; None when it is missing or when the
    stored names would lead outside `root` (they come from the database, but are checked anyway)."""
    label = month.strftime("%Y-%m")
    if not (_SAFE_NAME.fullmatch(zone) and _SAFE_NAME.fullmatch(owner_id)) or ".." in owner_id:
        return None
    base = root.resolve()
    path = (base / zone / label / f"v{version}" / "statements" / f"{owner_id}_{label}_v{version}.{kind}").resolve()
    return path if path.is_relative_to(base) and path.is_file() else None


def month_of(text: str) -> date | None:
    m = _MONTH.fullmatch(text)
    return date(int(m.group(1)), int(m.group(2)), 1) if m else None


# -- models -------------------------------------------------------------------------------------
class TotalOut(BaseModel):
    currency: Literal["EUR", "SEK", "NOK", "DKK"]
    total: Decimal = Field(description="What this version pays for the month, in the currency (decimal string).")
    previous_total: Decimal | None = Field(description="What the version before paid; null on version 1.")
    difference: Decimal = Field(description="What this version pays on top of the one before (total on version 1).")


class LinksOut(BaseModel):
    html: str | None = Field(description="The statement page; null while its file has not been written.")
    pdf: str | None = Field(description="The statement PDF; null while its file has not been written.")


class StatementOut(BaseModel):
    zone: str
    month: str = Field(description="YYYY-MM")
    version: int = Field(description="1, or n > 1 after late data re-settled the month.")
    latest: bool = Field(description="Whether this is the month's latest version (the one that counts).")
    issued_at: datetime
    totals: list[TotalOut] = Field(description="One per currency the owner is paid in.")
    links: LinksOut


class StatementsOut(BaseModel):
    owner_id: str
    statements: list[StatementOut]


def _total_out(t: StatementTotal) -> TotalOut:
    return TotalOut(currency=t.currency.value, total=major(t.total, t.currency),
                    previous_total=None if t.previous_total is None else major(t.previous_total, t.currency),
                    difference=major(t.total - (t.previous_total or 0), t.currency))


def _statement_out(s: OwnerStatement, owner_id: str, root: Path, latest: bool, ambiguous: bool) -> StatementOut:
    query = f"?zone={s.zone}" if ambiguous else ""

    def link(kind: FileKind) -> str | None:
        found = statement_path(root, s.zone, s.month, owner_id, s.version, kind)
        return None if found is None else f"{BASE}/statements/{s.label}/v{s.version}.{kind}{query}"

    return StatementOut(zone=s.zone, month=s.label, version=s.version, latest=latest, issued_at=s.issued_at,
                        totals=[_total_out(t) for t in s.totals], links=LinksOut(html=link("html"), pdf=link("pdf")))


def statements_out(found: list[OwnerStatement], owner_id: str, root: Path) -> list[StatementOut]:
    """The owner's statements as the API lists them (and the owner portal page shows them)."""
    zones = defaultdict(set)
    newest: dict[tuple, int] = {}
    for s in found:
        zones[(s.month, s.version)].add(s.zone)
        newest[(s.zone, s.month)] = max(newest.get((s.zone, s.month), 0), s.version)
    return [_statement_out(s, owner_id, root, newest[(s.zone, s.month)] == s.version,
                           len(zones[(s.month, s.version)]) > 1) for s in found]


# -- routes -------------------------------------------------------------------------------------
def owner_router(auth: Auth, principal: Any) -> APIRouter:
    """The routes under /v1/owners/me. (No `from __future__ import annotations` in this module:
    FastAPI reads the routes' annotations, which name this function's local dependencies.)"""
    router = APIRouter(prefix=BASE, tags=["owner portal"])
    owner = requiring(OWN_READ, principal, "only an owner account has an owner portal (/v1/owners/me)")
    Owner = Annotated[Principal, Depends(owner)]
    root = auth.settings.settlement_dir

    @router.get("/statements", response_model=StatementsOut, summary="My statements",
                responses=problem_responses(401, 403, 503))
    def statements(who: Owner) -> StatementsOut:
        """Every statement issued to the owner: month, version, totals per currency, when it was
        issued, and links to its page and PDF."""
        assert who.owner_id is not None
        with auth.connections.connection() as conn:
            found = owner_statements(conn, who.owner_id)
        return StatementsOut(owner_id=who.owner_id, statements=statements_out(found, who.owner_id, root))

    def statement_file(who: Principal, month: str, version: str, zone: str | None, kind: FileKind) -> FileResponse:
        assert who.owner_id is not None
        first_day = month_of(month)
        number = int(version) if _VERSION.fullmatch(version) else 0
        if first_day is None or number < 1:
            raise ApiProblem(404, f"you have no statement {month} v{version}", "month" if first_day is None
                             else "version")
        with auth.connections.connection() as conn:
            zones = statement_zones(conn, who.owner_id, first_day, number)
        if zone is not None:
            zones = [z for z in zones if z == zone]
        if len(zones) > 1:
            raise ApiProblem(400, f"you have statements {month} v{number} in {', '.join(zones)}: name one", "zone")
        path = statement_path(root, zones[0], first_day, who.owner_id, number, kind) if zones else None
        if path is None:
            raise ApiProblem(404, f"you have no statement {month} v{number} ({kind})", "month")
        headers = FILE_HEADERS | (HTML_HEADERS if kind == "html" else {})
        return FileResponse(path, media_type=MEDIA_TYPES[kind], headers=headers, filename=path.name,
                            content_disposition_type="inline")

    zone_query = Query(description="The bidding zone, needed only when the owner has statements of this "
                                   "month and version in two zones.")
    file_responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "The file.", "content": {"application/pdf": {}, "text/html": {}}},
        **problem_responses(400, 401, 403, 404, 503)}

    @router.get("/statements/{month}/v{version}.pdf", response_class=FileResponse, summary="My statement as PDF",
                responses=file_responses)
    def statement_pdf(who: Owner, month: str, version: str,
                      zone: Annotated[str | None, zone_query] = None) -> FileResponse:
        """The statement's PDF, as printed from its page. 404 when it is not the owner's or not written."""
        return statement_file(who, month, version, zone, "pdf")

    @router.get("/statements/{month}/v{version}.html", response_class=FileResponse, summary="My statement page",
                responses=file_responses)
    def statement_html(who: Owner, month: str, version: str,
                       zone: Annotated[str | None, zone_query] = None) -> FileResponse:
        """The statement's page. 404 when it is not the owner's or not written."""
        return statement_file(who, month, version, zone, "html")

    return router
