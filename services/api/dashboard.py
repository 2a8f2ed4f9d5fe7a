"""The browser side of the API: login, the operations dashboard (/ops) with its alerts and vehicle
drill-down, the owner portal page (/me), and /healthz.

Pages are rendered on the server (Jinja2, inline SVG charts); the only script re-fetches the
/ops page's live fragment every few seconds (services/api/README.md says why not Server-Sent
Events). A browser holds its access token in the session cookie set by POST /login
(services.api.security); pages also take a bearer token, so scripts and tests can read them.
A page for another role answers 403; a page without a valid login redirects to /login.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Annotated, Any
from urllib.parse import parse_qsl

import jinja2
import psycopg
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from flexfleet.auth import Principal, Role, username as parse_username
from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency
from flexfleet.settlement.money import format_money
from services.api import dashboard_queries as q
from services.api.accounts import record_audit
from services.api.dashboard_bids import day_bids
from services.api.dashboard_charts import bids_chart, forecast_chart, soc_histogram_chart, soc_trace_chart
from services.api.dashboard_forecast import DIRECTIONS, day_forecast, realised, score
from services.api.dashboard_lag import GroupLag, LagMonitor
from services.api.dashboard_templates import REFRESH_JS, TEMPLATES
from services.api.owners import owner_statements, statements_out
from services.api.problems import ApiProblem
from services.api.security import (Auth, LoginFailed, authenticate, bearer, clear_session_cookie, resolve_principal,
                                   same_origin, set_session_cookie)
from services.runtime.health import add_healthz

OPERATIONS_ROLES = frozenset({Role.OPERATOR, Role.ADMIN})
HOME = {Role.OPERATOR: "/ops", Role.ADMIN: "/ops", Role.OWNER: "/me"}
DEFAULT_REFRESH_S, MIN_REFRESH_S, MAX_REFRESH_S = 30, 2, 600
# Our pages load nothing from elsewhere and run only /static/dashboard.js.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
                                           "style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
                                           "frame-ancestors 'none'; base-uri 'none'",
                "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
ALERT_KINDS = ("charger", "dlq", "obligation", "lag")


def _utc(ts: datetime | None) -> str:
    return "–" if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _local(ts: datetime | None, tz: tzinfo) -> str:
    """A time in the zone's local time, its abbreviation named (CET / CEST tell the DST days apart)."""
    return "–" if ts is None else ts.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def _lhm(ts: datetime, tz: tzinfo) -> str:
    return ts.astimezone(tz).strftime("%H:%M %Z")


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.0f} %"


def _soc(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} %"


def _money(minor: int, currency: Currency) -> str:
    return format_money(minor, currency)


_ENV = jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined)
_ENV.filters.update(utc=_utc, pct=_pct, soc=_soc, money=_money, local=_local, lhm=_lhm, seconds=_seconds)


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("who", None)
    return HTMLResponse(_ENV.get_template(name).render(**context), status_code=status, headers=PAGE_HEADERS)


class LoginRequired(Exception):
    """No valid login on a page: the browser is sent to /login."""


class PageForbidden(Exception):
    def __init__(self, reason: str, who: Principal | None) -> None:
        super().__init__(reason)
        self.reason, self.who = reason, who


def page_principal(auth: Auth, roles: frozenset[Role], reason: str) -> Callable[..., Principal]:
    """A page's dependency: the principal (session cookie or bearer token) if its role is one of
    `roles`; LoginRequired without a valid login, PageForbidden for another role."""

    def dependency(request: Request, token: Annotated[str | None, Depends(bearer)]) -> Principal:
        try:
            who = resolve_principal(auth, request, token)
        except ApiProblem as exc:
            if exc.status == 401:
                raise LoginRequired() from None
            raise
        if who.role not in roles:
            raise PageForbidden(reason, who)
        return who

    return dependency


@dataclass(frozen=True)
class Alert:
    kind: str
    id: str
    title: str
    text: str
    link: str | None = None         # where it leads, when not its own detail page

    @property
    def href(self) -> str:
        return self.link or f"/ops/alerts/{self.kind}/{self.id}"


# Charger alerts listed one by one up to this many; past it, one line leads to the whole list
# (a broken mobile network or ingest makes hundreds at once: a screen of them helps nobody).
LISTED_CHARGERS = 10
OFFLINE_LIST = "/ops/chargers/offline"


@dataclass(frozen=True)
class Live:
    """What the live part of /ops shows."""

    fleet: q.FleetNow
    offline: list[q.OfflineCharger]
    dlq: q.DlqGrowth
    obligations: list[tuple[q.Obligation, q.Coverage | None]]
    day: q.LocalDay
    responses: q.ResponseTimes
    lag: GroupLag
    last_reading: datetime | None = None    # the fleet's latest reading, any car

    @property
    def stream_stopped(self) -> bool:
        """No car has reported for the offline bound: the cause is upstream (ingest, the broker, the
        cars' network), not hundreds of chargers at once."""
        return self.last_reading is None or self.fleet.at - self.last_reading > q.OFFLINE_AFTER

    @property
    def alerts(self) -> list[Alert]:
        out: list[Alert] = []
        if self.stream_stopped and self.offline:
            since = (f"since {_utc(self.last_reading)}" if self.last_reading
                     else f"in the last {int(q.LOOKBACK / timedelta(hours=1))} h")
            out.append(Alert("telemetry", "stream", "Telemetry stopped",
                             f"no reading from any car {since}; {len(self.offline)} chargers with a car plugged in "
                             "look offline because of it", OFFLINE_LIST))
        else:
            out += [Alert("charger", c.charger_id, f"Charger {c.charger_id} offline",
                          f"last reading naming it {_utc(c.last_seen)}; plugged in: {', '.join(c.vehicles)}")
                    for c in self.offline[:LISTED_CHARGERS]]
            if len(self.offline) > LISTED_CHARGERS:
                out.append(Alert("charger", "more", f"{len(self.offline) - LISTED_CHARGERS} more chargers offline",
                                 f"{len(self.offline)} in all", OFFLINE_LIST))
        if self.dlq.growing:
            out.append(Alert("dlq", "telemetry", "Telemetry DLQ growing",
                             f"{self.dlq.last_hour} rejects in the last hour, {self.dlq.hour_before} the hour before"))
        out += [Alert("obligation", o.obligation_id, f"Obligation {o.obligation_id} at risk",
                      f"P90 {c.weakest_kw:.0f} kW committed for {c.required_kw:.0f} kW, "
                      f"{_lhm(o.mtu_start, self.day.tz)}-{_lhm(o.mtu_end, self.day.tz)}")
                for o, c in self.obligations if c is not None and c.at_risk and o.mtu_end > self.fleet.at]
        out += lag_alerts(self.lag)
        return out


def lag_alerts(lag: GroupLag) -> list[Alert]:
    """The broker's answer as alerts: unreachable (or not configured), or the ingest group behind."""
    if not lag.reachable:
        return [Alert("lag", "ingest", "Broker unreachable",
                      f"consumer lag of group {lag.group} on {lag.topic} unknown: {lag.error}")]
    if lag.lagging:
        behind = sum(1 for p in lag.partitions if p.lag)
        return [Alert("lag", "ingest", "Ingest consumer lag",
                      f"group {lag.group} is {lag.total:,} messages behind on {lag.topic} ({behind} of "
                      f"{len(lag.partitions)} partitions), above the {lag.alert_messages:,} alert threshold")]
    return []


def read_live(conn: psycopg.Connection, now: datetime, lag: GroupLag) -> Live:
    """What /ops shows at `now`: "today" is the fleet's zone's local delivery day."""
    day = q.today(q.fleet_zone(conn), now)
    obligations = q.obligations_between(conn, day.start, day.end)
    return Live(q.fleet_now(conn, now), q.offline_chargers(conn, now), q.dlq_growth(conn, now),
                [(o, q.p90_coverage(conn, o, now)) for o in obligations], day,
                q.response_times(conn, day.start, day.end), lag, q.last_reading(conn, now))


def _live_context(live: Live, every: int) -> dict[str, Any]:
    return dict(fleet=live.fleet, offline=live.offline, alerts=live.alerts, obligations=live.obligations,
                day=live.day, tz=live.day.tz, responses=live.responses, lag=live.lag, every=every,
                soc_chart=Markup(soc_histogram_chart(q.soc_histogram(live.fleet.plugged_soc))),
                window_min=int(q.REPORTING_WINDOW / timedelta(minutes=1)),
                offline_min=int(q.OFFLINE_AFTER / timedelta(minutes=1)),
                lookback_h=int(q.LOOKBACK / timedelta(hours=1)))


def _login_audit(auth: Auth, request: Request, name: str, who: Principal | None, status: int, result: str) -> None:
    """A login attempt in the audit log, as writes are: who (the name as stored, or "anonymous"
    for one no account can have), the outcome and where from; never the password."""
    try:
        actor = parse_username(name)
    except DomainError:
        actor = "anonymous"
    client = request.client.host if request.client else None
    request.state.audited = True          # this row is the request's audit (services.api.audit)
    with auth.connections.connection() as conn:
        record_audit(conn, actor, f"{request.method} {request.url.path}",
                     f"accounts/{actor}" if actor != "anonymous" else None, None if who is None else who.role,
                     status, {"result": result, "client": client})


def _form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return {}


def _zone_tz(conn: psycopg.Connection, zone: str) -> tzinfo:
    """The local time of an obligation's zone (the fleet's for a zone the catalogue does not know)."""
    try:
        return q.BiddingZone.parse(zone).tzinfo
    except DomainError:
        return q.fleet_zone(conn).tzinfo


def _day(conn: psycopg.Connection, now: datetime, day: date | None) -> q.LocalDay:
    zone = q.fleet_zone(conn)
    return q.today(zone, now) if day is None else q.local_day(zone, day)


def _forecast_context(conn: psycopg.Connection, day: q.LocalDay, now: datetime) -> dict[str, Any]:
    """The chart per direction over the day before and the day, and each day's score."""
    days = (day.shifted(-1), day)
    real = realised(conn, days[0].start, day.end, now)
    charts, scores = [], []
    for direction in DIRECTIONS:
        forecasts = [day_forecast(conn, d, direction) for d in days]
        bands = [(b.target_start, b.q) for f in forecasts for b in f.bands]
        marks = [(day.start, day.day.strftime("%d %b"))] + ([(now, "now")] if day.start <= now < day.end else [])
        title = f"Flexible kW {direction}: forecast vs realised ({day.zone.timezone})"
        charts.append((direction, Markup(forecast_chart(bands, list(zip(real.starts, real.kw[direction], strict=True)),
                                                        title, day.tz, marks, f"forecast-{direction}"))))
        scores += [(direction, f, score(f, real, direction)) for f in forecasts]
    return dict(day=day, tz=day.tz, charts=charts, scores=scores, realised_to=real.starts[-1] + q.MTU
                if real.starts else None)


def dashboard_router(auth: Auth, lag: LagMonitor) -> APIRouter:
    """The pages. Their dependencies are given as defaults (`who: Principal = operator`), so the
    module's postponed annotations never have to name this function's locals."""
    router = APIRouter(include_in_schema=False)
    day_query = Query(None, description="A delivery day (YYYY-MM-DD) of the fleet's zone; default today.")
    operator = Depends(page_principal(auth, OPERATIONS_ROLES, "The operations pages are for operator and admin "
                                                              "accounts."))
    owner = Depends(page_principal(auth, frozenset({Role.OWNER}), "The owner portal is for owner accounts."))
    every_query = Query(DEFAULT_REFRESH_S, ge=MIN_REFRESH_S, le=MAX_REFRESH_S,
                        description="Seconds between refreshes of the live part.")

    @router.get("/login")
    def login_page() -> HTMLResponse:
        return render("login.html", title="Log in", error=None, username="")

    @router.post("/login")
    async def login(request: Request) -> Response:
        """Checks the account as the password grant does (security.authenticate), records the
        attempt, and on success sets the session cookie and sends the browser to its role's page."""
        if not same_origin(request):
            return render("forbidden.html", 403, title="Forbidden", reason="Log in from this site's own login page.")
        form = _form(await request.body())
        name, password = form.get("username", ""), form.get("password", "")

        def attempt() -> Response:
            try:
                token = authenticate(auth, name, password)
            except LoginFailed as exc:
                _login_audit(auth, request, name, None, 401, "failed")
                return render("login.html", 401, title="Log in", error=str(exc).capitalize() + ".",
                              username=name[:64])
            home = HOME.get(token.principal.role)
            if home is None:
                _login_audit(auth, request, name, token.principal, 403, "no pages for this role")
                return render("login.html", 403, title="Log in", username=name[:64],
                              error=f"A {token.principal.role.value} account has no pages here: use the API.")
            _login_audit(auth, request, name, token.principal, 303, "logged in")
            response = RedirectResponse(home, status_code=303, headers={"Cache-Control": "no-store"})
            set_session_cookie(response, request, token)
            return response

        return await run_in_threadpool(attempt)

    @router.post("/logout")
    def logout(request: Request, token: Annotated[str | None, Depends(bearer)]) -> Response:
        if not same_origin(request):
            return render("forbidden.html", 403, title="Forbidden", reason="Log out from this site's own pages.")
        try:
            who: Principal | None = resolve_principal(auth, request, token)
        except ApiProblem:
            who = None
        if who is not None:
            request.state.audited = True
            with auth.connections.connection() as conn:
                record_audit(conn, who.username, "POST /logout", f"accounts/{who.username}", who.role, 303)
        response = RedirectResponse("/login", status_code=303)
        clear_session_cookie(response, request)
        return response

    @router.get("/static/dashboard.js")
    def script() -> Response:
        return Response(REFRESH_JS, media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})

    @router.get("/ops")
    def ops(who: Principal = operator, every: int = every_query) -> HTMLResponse:
        state = lag.read()
        with auth.connections.connection() as conn:
            live = read_live(conn, datetime.now(UTC), state)
        return render("ops.html", title="Operations", who=who, **_live_context(live, every))

    @router.get("/ops/live")
    def ops_live(who: Principal = operator, every: int = every_query) -> HTMLResponse:
        """The live part of /ops alone: what the page's script swaps in."""
        state = lag.read()
        with auth.connections.connection() as conn:
            live = read_live(conn, datetime.now(UTC), state)
        return render("live.html", **_live_context(live, every))

    @router.get("/ops/forecast")
    def forecast_page(who: Principal = operator, day: date | None = day_query) -> HTMLResponse:
        """Forecast quantile bands against realised flexible kW, the day before and the day."""
        now = datetime.now(UTC)
        with auth.connections.connection() as conn:
            context = _forecast_context(conn, _day(conn, now, day), now)
        return render("forecast.html", title="Forecast vs realised", who=who, **context)

    @router.get("/ops/bids")
    def bids_page(who: Principal = operator, day: date | None = day_query) -> HTMLResponse:
        """Offered vs cleared MW per product and MTU of one delivery day, with prices."""
        now = datetime.now(UTC)
        with auth.connections.connection() as conn:
            d = _day(conn, now, day)
            products = day_bids(conn, d)
        chart = [Markup(bids_chart([(r.mtu_start, r.mtu_minutes, r.offered_mw, r.accepted_mw) for r in p.rows],
                                   f"{p.product_id} {p.direction}: offered vs cleared MW", d.tz, d.start, d.end,
                                   f"bids-{i}")) for i, p in enumerate(products)]
        return render("bids.html", title="Bids and clearing", who=who, day=d, tz=d.tz,
                      products=list(zip(products, chart, strict=True)))

    @router.get("/ops/alerts/{kind}/{alert_id:path}")
    def alert(kind: str, alert_id: str, who: Principal = operator) -> HTMLResponse:
        """An alert's detail; it stays readable after the alert has cleared."""
        now = datetime.now(UTC)
        with auth.connections.connection() as conn:
            if kind == "charger":
                found = q.charger(conn, alert_id)
                offline = q.offline_chargers(conn, now, alert_id)
                readings = q.charger_readings(conn, alert_id, now)
                if found is None and not offline and not readings:
                    raise ApiProblem(404, f"no charger {alert_id!r}", "charger_id")
                return render("charger.html", title=f"Charger {alert_id}", who=who, charger_id=alert_id,
                              charger=found, alert=offline[0] if offline else None, readings=readings,
                              lookback_h=int(q.LOOKBACK / timedelta(hours=1)))
            if kind == "dlq":
                if alert_id != "telemetry":
                    raise ApiProblem(404, f"no dead-letter queue {alert_id!r} (there is one: telemetry)", "queue")
                return render("dlq.html", title="Telemetry DLQ", who=who, growth=q.dlq_growth(conn, now),
                              by_reason=q.dlq_by_reason(conn, now), latest=q.latest_rejects(conn, now))
            if kind == "obligation":
                o = q.obligation(conn, alert_id)
                if o is None:
                    raise ApiProblem(404, f"no obligation {alert_id!r}", "obligation_id")
                return render("obligation.html", title=f"Obligation {alert_id}", who=who, o=o,
                              tz=_zone_tz(conn, o.zone),
                              coverage=q.p90_coverage(conn, o, now),
                              responses=q.response_times(conn, o.mtu_start, o.mtu_end, o.obligation_id))
            if kind == "lag":
                if alert_id != "ingest":
                    raise ApiProblem(404, f"no consumer group alert {alert_id!r} (there is one: ingest)", "group")
                return render("lag.html", title="Ingest consumer lag", who=who, lag=lag.read())
        raise ApiProblem(404, f"must be one of {', '.join(ALERT_KINDS)}", "kind")

    @router.get(OFFLINE_LIST)
    def offline_list(who: Principal = operator) -> HTMLResponse:
        """Every charger offline now, for when there are too many to list among the alerts."""
        now = datetime.now(UTC)
        with auth.connections.connection() as conn:
            offline, last = q.offline_chargers(conn, now), q.last_reading(conn, now)
        return render("offline.html", title="Chargers offline", who=who, offline=offline, last_reading=last,
                      offline_min=int(q.OFFLINE_AFTER / timedelta(minutes=1)))

    @router.get("/ops/vehicles/{vehicle_id}")
    def vehicle_page(vehicle_id: str, who: Principal = operator) -> HTMLResponse:
        now = datetime.now(UTC)
        with auth.connections.connection() as conn:
            v = q.vehicle(conn, vehicle_id)
            if v is None:
                raise ApiProblem(404, f"no vehicle {vehicle_id!r}", "vehicle_id")
            trace = q.soc_trace(conn, vehicle_id, now)
            context = dict(sessions=q.sessions(conn, vehicle_id), promises=q.promises(conn, v, now),
                           earnings=q.earnings_by_month(q.earnings(conn, vehicle_id)))
        chart = Markup(soc_trace_chart(trace)) if trace else None
        return render("vehicle.html", title=f"Vehicle {vehicle_id}", who=who, v=v, soc_chart=chart,
                      days=q.SOC_TRACE_DAYS, **context)

    @router.get("/me")
    def me(who: Principal = owner) -> HTMLResponse:
        """The owner's statements, each linked to the owner API's page and PDF (which take the
        same session cookie). Bound to the login's owner_id like every owner route."""
        assert who.owner_id is not None
        with auth.connections.connection() as conn:
            found = owner_statements(conn, who.owner_id)
        return render("me.html", title="My statements", who=who,
                      statements=statements_out(found, who.owner_id, auth.settings.settlement_dir))

    return router


def install_dashboard(app: FastAPI, auth: Auth, lag: LagMonitor | None = None) -> None:
    """The pages, /healthz, and the answers for a page without login or for another role. The
    consumer-lag look-ups go to the broker the environment names (`LagMonitor.from_env`)."""
    app.include_router(dashboard_router(auth, lag or LagMonitor.from_env()))

    add_healthz(app, auth.connections.url)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse("/login", status_code=303, headers={"Cache-Control": "no-store"})

    @app.exception_handler(PageForbidden)
    async def forbidden(request: Request, exc: PageForbidden) -> Response:
        return render("forbidden.html", 403, title="Forbidden", who=exc.who, reason=exc.reason)
