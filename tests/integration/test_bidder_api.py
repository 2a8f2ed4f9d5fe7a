"""The bidder's HTTP API against the real PostgreSQL: a day planned from a stored forecast of a
simulated fleet, its bids listed, cleared (in full, in part, rejected) and turned into
obligations; bad requests refused as RFC 9457 problem details naming the field at fault."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from bidding_support import bidding_clients
from fastapi.testclient import TestClient

from flexfleet.bidding.models import Bid, BidPlan, ObjectiveParts
from flexfleet.forecast.pipeline import issue_forecast, train_forecaster
from services.bidder.api import create_app
from services.bidder.store import save_plan
from services.forecaster.service import ISSUE_HISTORY, known_sessions
from services.forecaster.store import save_forecast, save_forecaster
from services.runtime.config import with_database
from services.sessions import import_sessions_csv
from services.simulator.fleet import generate_fleet
from services.simulator.registry import write_fleet
from services.simulator.telemetry import simulate_sessions

pytestmark = pytest.mark.integration

VEHICLES, SEED = 60, 7
# The forecast is issued at 00:00 Stockholm time on Tuesday 24 November, half an hour before the
# D-1 first auction for Wednesday 25 November closes; its 48 hours cover that delivery day.
ISSUED = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
DAY = date(2026, 11, 25)
NOW = "2026-11-24T00:15:00+01:00"
DAY_START, DAY_END = datetime(2026, 11, 24, 23, 0, tzinfo=UTC), datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
# Small models on the shortest history training takes (more than 10 days): seconds, not minutes.
HISTORY = timedelta(days=12)
FAST = {"rounds": 20, "rows_per_issue": 3000, "quantile_rounds": 20, "quantile_rows_per_issue": 3000}
PROBLEM = "application/problem+json"
UNREACHABLE = "postgresql://unused@127.0.0.1:1/none"


def issue_stored_forecast(url: str, issued_at: datetime) -> str:
    """What the forecaster service's first pass does (`ForecasterService.run_once`), without the
    broker: train on the sessions known, store the forecaster, issue and store the forecast."""
    with psycopg.connect(url) as conn:
        known_at = conn.execute("SELECT max(imported_at) FROM charging_sessions").fetchone()[0]
        sessions, specs = known_sessions(conn, url, issued_at - max(HISTORY, ISSUE_HISTORY), issued_at, known_at)
        forecaster = train_forecaster(sessions, specs, "SE3", issued_at - HISTORY, issued_at, SEED, **FAST)
        save_forecaster(conn, forecaster, trained_at=issued_at)
        forecast = issue_forecast(forecaster, sessions, specs, issued_at, history_start=issued_at - ISSUE_HISTORY)
        return save_forecast(conn, forecast, known_at).forecast_id


@pytest.fixture(scope="module")
def fleet_db(pg_server, _template, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(database url, forecast id): a simulated fleet registered, three weeks of its charging
    sessions imported as a CSV export, and a forecast issued from them. Shared by this module's
    tests, which only add plans and clearing results to it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_template}"')
    url = with_database(pg_server.url, name)
    try:
        fleet = generate_fleet(VEHICLES, seed=SEED, zone="SE3")
        with psycopg.connect(url) as conn:
            write_fleet(conn, fleet)
        sessions = simulate_sessions(fleet, ISSUED - timedelta(weeks=3), ISSUED, cadence_s=300, seed=SEED)
        path = tmp_path_factory.mktemp("bidder_api") / "sessions.csv"
        sessions.drop(columns="complete").to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ",
                                                 float_format="%.3f")
        with psycopg.connect(url) as conn:
            imported = import_sessions_csv(conn, path)
        assert not imported.errors and imported.inserted > 1000, imported.errors[:3]
        yield url, issue_stored_forecast(url, ISSUED)
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def bidding() -> Iterator[Callable[..., TestClient]]:
    """`bidding(database_url, ...)`: a client of the bidding app sending a bidder's token."""
    with bidding_clients() as client:
        yield client


def assert_problem(response, status: int, field: str | None, says: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert {"type", "title", "status", "detail", "field"} <= set(body)
    assert body["status"] == status and body["field"] == field, body
    assert says in body["detail"], body
    return body


def test_a_day_is_planned_listed_cleared_and_becomes_obligations(fleet_db, bidding):
    url, forecast_id = fleet_db
    client = bidding(url)

    # Plan: bids for the evening and night when cars are plugged in, each backed by named cars.
    response = client.post("/v1/bids/plan", json={"day": DAY.isoformat(), "zone": "SE3", "auction": "D-1",
                                                  "now": NOW, "regime": "low", "scenarios": 20, "seed": 0})
    assert response.status_code == 201, response.text
    plan = response.json()
    assert response.headers["location"] == f"/v1/bids?plan_id={plan['plan_id']}"
    assert (plan["zone"], plan["delivery_day"], plan["auction"], plan["forecast_id"]) == (
        "SE3", DAY.isoformat(), "D-1 first", forecast_id)
    assert datetime.fromisoformat(plan["planned_at"]) == datetime.fromisoformat(NOW)
    parts = {k: Decimal(v) for k, v in plan["expected"].items()}      # decimal strings
    assert parts["value_eur"] == parts["revenue_eur"] - parts["wear_eur"] - parts["penalty_eur"] > 0
    assert all(d["reason"] for d in plan["dropped"])
    bids = sorted(plan["bids"], key=lambda b: (b["mtu_start"], b["market_key"]))   # the listing's order
    assert len(bids) >= 3, ("a 60-car fleet bids a few night hours", plan["dropped"][:5])
    for b in bids:
        assert isinstance(b["volume_mw"], str) and isinstance(b["price_eur_per_mw_h"], str)
        assert Decimal(b["volume_mw"]) >= Decimal("0.1") and b["status"] == "planned" and b["accepted_mw"] is None
        assert b["bid_id"].startswith(plan["plan_id"] + "/") and b["product_id"].startswith("FCR-D-")
        assert DAY_START <= datetime.fromisoformat(b["mtu_start"]) < DAY_END and b["mtu_start"].endswith("Z")
        assert b["backing_vehicles"] and all(v["kw"] > 0 for v in b["backing_vehicles"])
        assert b["p90_kw_backing"] >= float(b["volume_mw"]) * 1000 * 0.999

    # Listed: the latest plan of the day, every bid planned; the other filters agree.
    listed = client.get("/v1/bids", params={"zone": "SE3", "day": DAY.isoformat()})
    assert listed.status_code == 200 and listed.json()["bids"] == bids
    assert client.get("/v1/bids", params={"plan_id": plan["plan_id"], "status": "planned"}).json()["bids"] == bids
    assert client.get("/v1/bids", params={"status": "accepted"}).json() == {"bids": []}
    assert client.get("/v1/bids", params={"day": "2026-11-26"}).json() == {"bids": []}

    # Cleared: the first in full, the second in part (numbers or strings), the third rejected.
    full, part, rejected = bids[0], bids[1], bids[2]
    half = Decimal(part["volume_mw"]) / 2
    clearing = {"results": [
        {"bid_id": full["bid_id"], "accepted_mw": full["volume_mw"], "price_eur_per_mw_h": "5.10"},
        {"bid_id": part["bid_id"], "accepted_mw": float(half), "price_eur_per_mw_h": 4.2, "source": "SvK FCR"},
        {"bid_id": rejected["bid_id"], "accepted_mw": 0, "price_eur_per_mw_h": None}]}
    response = client.post("/v1/clearing", json=clearing)
    assert response.status_code == 200, response.text
    obligations = response.json()["obligations"]
    assert [o["bid_id"] for o in obligations] == [full["bid_id"], part["bid_id"]]
    a, b = obligations
    assert (a["volume_mw"], a["price_eur_per_mw_h"], b["volume_mw"], b["price_eur_per_mw_h"]) == (
        full["volume_mw"], "5.10", str(half), "4.2")
    assert a["mtu_start"] == full["mtu_start"] and a["direction"] == full["direction"]
    assert datetime.fromisoformat(a["mtu_end"]) - datetime.fromisoformat(a["mtu_start"]) == timedelta(
        minutes=full["mtu_minutes"])
    assert a["vehicles"] == full["backing_vehicles"]
    offered = {v["vehicle_id"]: v["kw"] for v in part["backing_vehicles"]}
    assert {v["vehicle_id"]: v["kw"] for v in b["vehicles"]} == pytest.approx(
        {k: kw / 2 for k, kw in offered.items()}, abs=1e-3)

    # The same answers again: the same obligations, nothing duplicated.
    again = client.post("/v1/clearing", json=clearing)
    assert again.status_code == 200 and again.json()["obligations"] == obligations
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM obligations").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM clearing_results").fetchone()[0] == 3

    # Each bid's status; the obligations overlapping a window.
    status = {s: {x["bid_id"] for x in client.get("/v1/bids", params={"status": s}).json()["bids"]}
              for s in ("planned", "accepted", "partial", "rejected")}
    assert status == {"planned": {x["bid_id"] for x in bids[3:]}, "accepted": {full["bid_id"]},
                      "partial": {part["bid_id"]}, "rejected": {rejected["bid_id"]}}
    assert client.get("/v1/bids", params={"status": "partial"}).json()["bids"][0]["accepted_mw"] == str(half)
    listed = client.get("/v1/obligations", params={"start": DAY_START.isoformat(), "end": DAY_END.isoformat()})
    in_time_order = sorted(obligations, key=lambda o: (o["mtu_start"], o["obligation_id"]))
    assert listed.status_code == 200 and listed.json()["obligations"] == in_time_order
    assert [o["bid_id"] for o in client.get("/v1/obligations", params={"end": a["mtu_end"]}).json()["obligations"]
            ] == [o["bid_id"] for o in in_time_order if o["mtu_start"] < a["mtu_end"]]
    assert client.get("/v1/obligations", params={"start": DAY_END.isoformat()}).json() == {"obligations": []}

    # A different answer for a cleared bid is refused and changes nothing.
    wrong = {"results": [{"bid_id": part["bid_id"], "accepted_mw": part["volume_mw"], "price_eur_per_mw_h": "4.2"}]}
    assert_problem(client.post("/v1/clearing", json=wrong), 409, "results.0.bid_id", "already cleared")
    assert client.get("/v1/obligations").json()["obligations"] == in_time_order


# -- refusals ---------------------------------------------------------------------------------------
def hand_built_plan(url: str) -> list[str]:
    """Two stored bids of 0.1 MW (cheaper than a real plan, for the clearing refusals)."""
    up = "FCR-D-up/SE_DK2"
    t = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    bids = tuple(Bid(up, "D-1 first", t + timedelta(hours=h), Decimal("0.1"), Decimal("4"), ("v1", "v2"),
                     (60.0, 50.0), Decimal("0.2"), 110.0, 0.05, "up", up) for h in range(2))
    plan = BidPlan(bids, ObjectiveParts(Decimal("0.8"), Decimal("0"), Decimal("0")), 0.1, "optimal", ())
    with psycopg.connect(url, autocommit=True) as conn:
        stored = save_plan(conn, plan, "SE3", DAY, "D-1 first", datetime.fromisoformat(NOW), {up: 60})
    return [b.bid_id for b in stored.bids]


def test_bad_plan_requests_are_refused_naming_the_field(db_url, bidding):
    client = bidding(db_url)
    plan = lambda **body: client.post("/v1/bids/plan", json={"day": "2026-12-01", "now": NOW} | body)  # noqa: E731
    problem = assert_problem(plan(zone="SE9"), 400, "zone", "SE9")
    assert problem["type"] == "urn:flexfleet:problem:invalid-input" and problem["instance"] == "/v1/bids/plan"
    assert_problem(plan(day=DAY.isoformat(), auction="D-1 first", now="2026-11-24T12:00:00Z"), 400, "day",
                   f"gate closure of D-1 first for {DAY}")
    assert_problem(plan(day="2026-13-01"), 400, "day", "month")
    assert_problem(plan(now="2026-11-24T00:15:00"), 400, "now", "timezone")
    assert_problem(plan(scenarios=0), 400, "scenarios")
    assert_problem(plan(regime="medium"), 400, "regime", "medium")
    assert_problem(plan(auction="intraday"), 400, "auction", "intraday")
    assert_problem(plan(dya="2026-12-01"), 400, "dya", "not permitted")
    assert_problem(client.post("/v1/bids/plan", json={"zone": "SE3"}), 400, "day", "required")
    # Well-formed, but nothing to plan from: this database holds no forecast.
    assert_problem(plan(day=DAY.isoformat()), 400, "forecast", "none stored for SE3")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM bid_plans").fetchone()[0] == 0


def test_bad_clearing_results_are_refused_and_record_nothing(db_url, bidding):
    client = bidding(db_url)
    first, second = hand_built_plan(db_url)
    clear = lambda *results: client.post("/v1/clearing", json={"results": list(results)})  # noqa: E731
    ok = {"bid_id": first, "accepted_mw": "0.1", "price_eur_per_mw_h": "3.5"}

    assert_problem(clear(ok, {"bid_id": second, "accepted_mw": "abc"}), 400, "results.1.accepted_mw", "decimal")
    assert_problem(clear(ok | {"accepted_mw": "0.11"}), 400, "results.0.accepted_mw", "outside 0..0.1")
    assert_problem(clear(ok | {"accepted_mw": -0.01}), 400, "results.0.accepted_mw", "greater than or equal to 0")
    assert_problem(clear(ok | {"price_eur_per_mw_h": None}), 400, "results.0.price_eur_per_mw_h", "price paid")
    assert_problem(clear(ok | {"bid_id": 7}), 400, "results.0.bid_id")
    assert_problem(clear(), 400, "results")
    assert_problem(client.post("/v1/clearing", content=b"{", headers={"content-type": "application/json"}),
                   400, "body")
    # An unknown bid after a good answer: 404, and the good answer is not recorded either.
    problem = assert_problem(clear(ok, {"bid_id": "nope/0", "accepted_mw": 0}), 404, "results.1.bid_id", "nope/0")
    assert problem["type"] == "urn:flexfleet:problem:not-found"
    assert [b["status"] for b in client.get("/v1/bids").json()["bids"]] == ["planned", "planned"]

    # Recorded once; a contradicting answer later is a conflict, alone or in a batch.
    assert client.post("/v1/clearing", json={"results": [ok]}).status_code == 200
    assert_problem(clear(ok | {"price_eur_per_mw_h": "3.6"}), 409, "results.0.bid_id", "already cleared at 0.1 MW")
    assert_problem(clear({"bid_id": second, "accepted_mw": 0}, ok | {"accepted_mw": "0.05"}), 409,
                   "results.1.bid_id")
    assert [b["status"] for b in client.get("/v1/bids").json()["bids"]] == ["accepted", "planned"]
    assert len(client.get("/v1/obligations").json()["obligations"]) == 1

    # Query parameters.
    assert_problem(client.get("/v1/bids", params={"plan_id": "nope"}), 400, "plan_id", "UUID")
    assert_problem(client.get("/v1/bids", params={"status": "won"}), 400, "status")
    assert_problem(client.get("/v1/bids", params={"zone": "XX"}), 400, "zone", "XX")
    assert_problem(client.get("/v1/bids", params={"day": "2026-11-31"}), 400, "day")
    assert_problem(client.get("/v1/obligations", params={"start": "2026-11-25T00:00:00"}), 400, "start", "timezone")
    assert_problem(client.get("/v1/obligations", params={"start": "2026-11-25T00:00:00Z",
                                                         "end": "2026-11-24T00:00:00Z"}), 400, "end")
    assert client.get("/v1/bids", params={"plan_id": str(uuid.uuid4())}).json() == {"bids": []}
    assert_problem(client.get("/v1/nothing"), 404, None)


def test_without_a_token_reading_and_writing_are_refused_and_nothing_is_done(db_url, bidding):
    first, _ = hand_built_plan(db_url)
    anonymous, bidder = bidding(db_url, token=False), bidding(db_url)
    clear = {"results": [{"bid_id": first, "accepted_mw": "0.1", "price_eur_per_mw_h": "3.5"}]}
    routes = [("GET", "/v1/bids", None), ("GET", "/v1/obligations", None),                        # read
              ("POST", "/v1/bids/plan", {"day": DAY.isoformat(), "now": NOW}), ("POST", "/v1/clearing", clear)]
    for method, path, body in routes:
        response = anonymous.request(method, path, json=body)
        problem = assert_problem(response, 401, None, "bearer token is required")
        assert problem["type"] == "urn:flexfleet:problem:unauthenticated" and problem["instance"] == path
        assert response.headers["www-authenticate"] == 'Bearer realm="flexfleet"', path
    forged = anonymous.post("/v1/clearing", json=clear, headers={"Authorization": "Bearer not.a.token"})
    assert_problem(forged, 401, None)
    assert 'error="invalid_token"' in forged.headers["www-authenticate"]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM clearing_results").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM bid_plans").fetchone()[0] == 1
    # The bidder's token is all that was missing; and no app is built without the token check.
    assert [b["status"] for b in bidder.get("/v1/bids").json()["bids"]] == ["planned", "planned"]
    with pytest.raises(TypeError, match="auth"):
        create_app(db_url, None)  # type: ignore[arg-type]


def test_the_openapi_document_lists_the_four_routes_with_problem_details(bidding):
    client = bidding(UNREACHABLE, token=False)      # the document and /docs need neither
    doc = client.get("/openapi.json").json()
    assert doc["info"]["title"] == "flexfleet bidding" and doc["info"]["version"]
    routes = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == {("/v1/bids/plan", "post"), ("/v1/bids", "get"), ("/v1/clearing", "post"),
                      ("/v1/obligations", "get")}
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert "422" not in op["responses"] and PROBLEM in op["responses"]["400"]["content"], path
            assert {"401", "403"} <= set(op["responses"]) and op["security"] == [{"OAuth2": []}], path
    assert set(doc["paths"]["/v1/clearing"]["post"]["responses"]) >= {"200", "400", "404", "409"}
    # /docs has a request to try: the next delivery day whose auction is still open.
    example = doc["paths"]["/v1/bids/plan"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    day = date.fromisoformat(next(iter(example.values()))["value"]["day"])
    assert datetime.now(UTC).date() <= day <= datetime.now(UTC).date() + timedelta(days=3)
    schemas = doc["components"]["schemas"]
    assert schemas["PlanIn"]["examples"] and schemas["ClearingBatchIn"]["examples"]
    assert schemas["BidOut"]["properties"]["volume_mw"]["type"] == "string"     # decimal strings out
    assert client.get("/docs").status_code == 200


def test_an_unreachable_database_is_a_503_problem(db_url, bidding):
    client = bidding(UNREACHABLE, accounts_url=db_url)     # the token checks out; the bids' database is down
    response = client.get("/v1/obligations")
    assert_problem(response, 503, None, "unavailable")
    assert response.headers["retry-after"]

