"""The browser pages on the real PostgreSQL: a small simulated fleet reporting now (one car's link
gone quiet at its charger), a growing telemetry DLQ, an obligation this hour that its committed
cars' P90 cannot cover, a verified delivery with two assessed activations, bids of today and of
the day the clocks go back, a forecast with quantile bands, a broken departure promise and a
settled month. The broker is not configured here (the lag alert's own tests use the real one:
test_dashboard_lag.py).

Headless Chromium (Playwright) drives the app served by uvicorn: an operator logs in, reads the
fleet numbers, opens alerts and drills into a vehicle, and sees the live part refresh; an owner
sees only their own statements and is refused /ops. Without a browser, every new route is asked
by every role, and the login is checked for its cookie, its audit rows and its CSRF defences.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import uvicorn
from fastapi.testclient import TestClient

from flexfleet.domain.zones import BiddingZone
from flexfleet.forecast.portfolio import LEVELS
from services.api.accounts import create_account
from services.api.dashboard_queries import local_day, today
from services.api.app import create_app
from services.settlement.statements.pdf import CHROMIUM, CHROMIUM_ARGS
from services.simulator.fleet import generate_fleet
from services.simulator.registry import write_fleet

pytestmark = pytest.mark.integration

SECRET = "dashboard-test-signing-secret-32-bytes!!"
PASSWORD = "correct horse battery staple"
ZONE = "SE3"
ROLES = {"olle": "operator", "root": "admin", "bea": "bidder", "ven-7": "ven", "alice": "owner", "bob": "owner"}
Q = timedelta(minutes=15)


@dataclass(frozen=True)
class Seeded:
    url: str
    files: Path
    now: datetime
    plugged: list[str]             # plugged in with a reading in the last 15 minutes
    reporting: list[str]           # any reading in the last 15 minutes
    quiet: str                     # plugged in at its charger, silent for 40 minutes
    quiet_charger: str
    idle: str                      # reporting, not plugged in
    obligation: str
    month: str
    alice: str                     # owner ids
    bob: str
    alice_total: str
    bob_total: str
    dst_day: str                   # a day the clocks went back: 25 hours of bids


DST_DAY = datetime(2026, 10, 25).date()     # Europe/Stockholm: 03:00 CEST -> 02:00 CET


def _plan(conn: psycopg.Connection, day, auction: str, created: datetime,
          bids: list[tuple[str, str, str, datetime, float, float, float | None, float | None]]) -> str:
    """A bid plan and its bids: (product, market key, direction, MTU start, MW, price, accepted MW or
    None for no clearing result yet, clearing price)."""
    plan = conn.execute("INSERT INTO bid_plans (zone, delivery_day, auction, planned_at, solver_status, solve_seconds, "
                        "revenue_eur, wear_eur, penalty_eur, created_at) VALUES (%s, %s, %s, %s, 'optimal', 0.1, 1, 0, 0, "
                        "%s) RETURNING plan_id", (ZONE, day, auction, created, created)).fetchone()[0]
    for n, (product, key, direction, start, mw, price, accepted, cleared_price) in enumerate(bids):
        bid = f"{plan}/{n}"
        conn.execute("INSERT INTO bids (bid_id, plan_id, product_id, market_key, auction, direction, mtu_start, "
                     "mtu_minutes, volume_mw, price_eur_per_mw_h, expected_value_eur, p90_kw_backing, "
                     "shortfall_probability) VALUES (%s, %s, %s, %s, %s, %s, %s, 60, %s, %s, 1, 100, 0.1)",
                     (bid, plan, product, key, auction, direction, start, mw, price))
        if accepted is not None:
            conn.execute("INSERT INTO clearing_results (bid_id, accepted_mw, price_eur_per_mw_h, source) "
                         "VALUES (%s, %s, %s, 'test')", (bid, accepted, cleared_price))
    return str(plan)


def _portfolio(conn: psycopg.Connection, issued: datetime, start: datetime, end: datetime) -> None:
    """A forecast issued at `issued` with portfolio quantiles of flexible kW over [start, end): a band
    of 10-60 kW up and 20-80 kW down around 30 and 50."""
    forecast = conn.execute("INSERT INTO forecasts (zone, issued_at, forecaster_version, frames) VALUES "
                            "(%s, %s, 'test-v1', '{}') RETURNING forecast_id", (ZONE, issued)).fetchone()[0]
    rows, ts, n = [], start, 0
    while ts < end:
        for direction, q in (("up", (5, 10, 20, 30, 40, 60, 70)), ("down", (10, 20, 35, 50, 65, 80, 90))):
            rows.append((forecast, n, direction, ts, *q))
            n += 1
        ts += Q
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO forecast_portfolio (forecast_id, row_no, direction, endurance_min, target_start, "
                        "q05, q10, q25, q50, q75, q90, q95) VALUES (%s, %s, %s, 0, %s, %s, %s, %s, %s, %s, %s, %s)", rows)


def _readings(vid: str, charger: str | None, start: datetime, end: datetime, soc0: float, kw: float,
              plugged: bool = True) -> list[tuple]:
    rows, ts, soc = [], start, soc0
    while ts <= end:
        rows.append((vid, ts, plugged, charger if plugged else None, kw if plugged else 0.0, round(soc, 2)))
        ts += timedelta(minutes=5)
        soc = min(100.0, max(0.0, soc + kw * 5 / 60 / 60 * 100))
    return rows


def _insert(conn: psycopg.Connection, rows: list[tuple]) -> None:
    conn.execute("SELECT flexfleet_ensure_telemetry_partitions(%s, %s)", (min(r[1] for r in rows),
                                                                          max(r[1] for r in rows)))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO telemetry (vehicle_id, ts, plugged_in, charger_id, power_kw, soc_pct) "
                        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)


def _seed(url: str, files: Path) -> Seeded:
    now = datetime.now(UTC).replace(microsecond=0)
    fleet = generate_fleet(10, seed=5, zone=ZONE)
    homed = [v for v in fleet.vehicles if v.home_charger_id]
    v2g = [v for v in homed if v.spec.v2g_capable]
    assert len(homed) >= 6 and len(v2g) >= 3, "the simulated fleet changed: pick another seed"
    quiet, idle, *plugged = homed[:6]
    with psycopg.connect(url) as conn:
        write_fleet(conn, fleet)
        rows = []
        for i, v in enumerate(plugged):
            rows += _readings(v.vehicle_id, v.home_charger_id, now - timedelta(hours=3), now - timedelta(minutes=1),
                              20.0 + 15 * i, 7.0)
        rows += _readings(quiet.vehicle_id, quiet.home_charger_id, now - timedelta(hours=3), now - timedelta(minutes=40),
                          50.0, 3.0)
        rows += _readings(idle.vehicle_id, None, now - timedelta(hours=1), now - timedelta(minutes=2), 64.0, 0.0,
                          plugged=False)
        # The first plugged car's stay yesterday: charged to 58 %, left at 30 % at its declared departure.
        first = plugged[0]
        stay_in, stay_out = now - timedelta(hours=30), now - timedelta(hours=20)
        stay = _readings(first.vehicle_id, first.home_charger_id, stay_in, stay_out - timedelta(minutes=5), 40.0, 6.0)
        stay = [r[:5] + ((30.0,) if r[1] >= stay_out - timedelta(minutes=20) else (min(r[5], 58.0),)) for r in stay]
        rows += stay
        _insert(conn, rows)
        conn.execute("INSERT INTO charging_sessions (vehicle_id, charger_id, plug_in_at, plug_out_at, energy_kwh, "
                     "departure_declared_at, min_soc, source) VALUES (%s, %s, %s, %s, 12, %s, 20, 'telemetry')",
                     (first.vehicle_id, first.home_charger_id, stay_in, stay_out, stay_out - timedelta(minutes=10)))
        # The DLQ: three rejects in the last hour, one in the hour before.
        for n, age in enumerate((5, 20, 40, 90)):
            conn.execute("INSERT INTO telemetry_rejects (topic, partition, \"offset\", message, field, code, reason, "
                         "rejected_at) VALUES ('telemetry.v1', 0, %s, '\\x7b7d', 'soc_pct', 'range', "
                         "'must be between 0 and 100', %s)", (n, now - timedelta(minutes=age)))
        # An obligation this hour: 100 kW up, committed to three V2G cars of 10 kW each.
        hour = now.replace(minute=0, second=0)
        plan = conn.execute("INSERT INTO bid_plans (zone, delivery_day, auction, planned_at, solver_status, "
                            "solve_seconds, revenue_eur, wear_eur, penalty_eur) VALUES (%s, %s, 'd-1', %s, 'optimal', "
                            "0.1, 4, 0, 0) RETURNING plan_id", (ZONE, hour.date(), hour - timedelta(days=1))
                            ).fetchone()[0]
        bid = f"{plan}/0"
        conn.execute("INSERT INTO bids (bid_id, plan_id, product_id, market_key, auction, direction, mtu_start, "
                     "mtu_minutes, volume_mw, price_eur_per_mw_h, expected_value_eur, p90_kw_backing, "
                     "shortfall_probability) VALUES (%s, %s, 'FCR-D-up/SE_DK2', 'fcr_d_up', 'd-1', 'up', %s, 60, 0.1, "
                     "40, 4, 100, 0.1)", (bid, plan, hour))
        conn.execute("INSERT INTO obligations (obligation_id, bid_id, zone, product_id, direction, mtu_start, mtu_end, "
                     "volume_mw, price_eur_per_mw_h) VALUES (%s, %s, %s, 'FCR-D-up/SE_DK2', 'up', %s, %s, 0.1, 40)",
                     (bid, bid, ZONE, hour, hour + timedelta(hours=1)))
        committed = v2g[:3]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO obligation_vehicles VALUES (%s, %s, 10)", [(bid, v.vehicle_id)
                                                                                     for v in committed])
        conn.execute(
            "INSERT INTO deliveries (obligation_id, mtu_start, mtu_end, zone, product_id, direction, kind, "
            "baseline_method, required_mw, delivered_mw, delivered_share, capacity_share, response_share, "
            "shortfall_mw, shortfall_mwh, required_energy_mwh, delivered_energy_mwh, quarter_shares, vehicles, "
            "vehicles_without_data, content_hash, verified_at, response_time_s, required_response_s, activations) "
            "VALUES (%s, %s, %s, %s, 'FCR-D-up/SE_DK2', 'up', "
            "'frequency', 'schedule', 0.1, 0.08, 0.8, 0.8, NULL, 0.02, 0.02, 0.1, 0.08, '{0.8,0.8,0.8,0.8}', 3, 0, "
            "'h', now(), 5.2, 7.5, %s)", (bid, hour, hour + timedelta(hours=1), ZONE, json.dumps([
                _activation(hour + timedelta(minutes=3), 5.2, True), _activation(hour + timedelta(minutes=9), None, False)])))
        # A forecast issued this quarter hour: each committed car plugged in with 90 %, holding 10 kW.
        levels = list(LEVELS)
        conn.execute("INSERT INTO forecasters (version, zone, trained_until, body) VALUES ('test-v1', %s, %s, %s)",
                     (ZONE, hour - timedelta(days=1), json.dumps({"calibrations": {"up_20min": {
                         "rho": 0.1, "levels": levels, "model_levels": levels}}})))
        issued = now.replace(minute=now.minute - now.minute % 15, second=0)
        forecast = conn.execute("INSERT INTO forecasts (zone, issued_at, forecaster_version, frames) VALUES "
                                "(%s, %s, 'test-v1', '{}') RETURNING forecast_id", (ZONE, issued)).fetchone()[0]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO forecast_vehicles (forecast_id, row_no, vehicle_id, target_start, p_up, "
                            "capacity_up_kw, up_20_kw) VALUES (%s, %s, %s, %s, 0.9, 11, 10)",
                            [(forecast, n * 4 + k, v.vehicle_id, hour + k * Q)
                             for n, v in enumerate(committed) for k in range(4)])
        # Bids of today's local day: the obligation's bid, cleared; the second auction's answered plan (FCR-D
        # down cleared at 0 and in part, FCR-N not answered yet) and an older plan of it the market never saw.
        day = today(BiddingZone(ZONE), now)
        conn.execute("INSERT INTO clearing_results (bid_id, accepted_mw, price_eur_per_mw_h, source) "
                     "VALUES (%s, 0.1, 38.5, 'test')", (bid,))
        _plan(conn, day.day, "D-1 second", hour - timedelta(days=1), [
            ("FCR-D-down/SE_DK2", "fcr_d_down", "down", day.start + timedelta(hours=2), 0.3, 12, 0.0, None),
            ("FCR-D-down/SE_DK2", "fcr_d_down", "down", day.start + timedelta(hours=3), 0.4, 12, 0.2, 11.75),
            ("FCR-N/SE", "fcr_n", "up", day.start + timedelta(hours=5), 0.2, 25, None, None)])
        _plan(conn, day.day, "D-1 second", hour - timedelta(days=2), [
            ("FCR-D-up/SE_DK2", "fcr_d_up", "up", day.start + timedelta(hours=4), 9.9, 99, None, None)])
        # The DST day: 00:00 CEST, both 02:00s, 23:00 CET; and 23:00 CEST of the day before, not shown.
        dst = local_day(BiddingZone(ZONE), DST_DAY)
        _plan(conn, DST_DAY, "d-1", dst.start - timedelta(hours=20), [
            ("FCR-D-up/SE_DK2", "fcr_d_up", "up", at, mw, 30, mw, 31.0)
            for at, mw in ((dst.start - timedelta(hours=1), 7.7), (dst.start, 0.5), (dst.start + timedelta(hours=2), 0.6),
                           (dst.start + timedelta(hours=3), 0.7), (dst.end - timedelta(hours=1), 0.8))])
        # The forecast yesterday and today were planned on, with its quantile bands.
        _portfolio(conn, day.shifted(-1).start - timedelta(hours=1), day.shifted(-1).start, day.end)
        # Last month settled: one statement each for Alice (the first plugged car's owner) and Bob.
        month = (now.date().replace(day=1) - timedelta(days=1)).replace(day=1)
        label = month.strftime("%Y-%m")
        alice, bob = first.owner_id, quiet.owner_id
        assert alice != bob, "the simulated fleet changed: pick cars of two owners"
        conn.execute("INSERT INTO settlement_runs (zone, month, version, input_digest, status, finished_at) "
                     "VALUES (%s, %s, 1, 'd', 'posted', now())", (ZONE, month))
        for owner, total in ((alice, 12345), (bob, 67890)):
            conn.execute("INSERT INTO owner_statements (zone, month, owner_id, version, currency, total) "
                         "VALUES (%s, %s, %s, 1, 'SEK', %s)", (ZONE, month, owner, total))
            folder = files / ZONE / label / "v1" / "statements"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{owner}_{label}_v1.html").write_text(f"<html><body><h1>Statement of {owner}</h1></body></html>")
            (folder / f"{owner}_{label}_v1.pdf").write_bytes(b"%PDF-1.4 " + owner.encode())
        conn.execute("INSERT INTO settlement_lines (zone, month, version, line_id, seq, owner_id, contract_id, "
                     "vehicle_id, source, term_id, currency, amount, quantity, unit, rate_unit, period_start, "
                     "period_end) VALUES (%s, %s, 1, 'l1', 1, %s, 'k1', %s, 'availability', 't1', 'SEK', 12345, 98, "
                     "'h', 'SEK/h', %s, %s)", (ZONE, month, alice, first.vehicle_id, month, now.date().replace(day=1)))
        for name, role in ROLES.items():
            create_account(conn, name, PASSWORD, role, {"alice": alice, "bob": bob}.get(name),
                           ven_name="site-ven-7" if role == "ven" else None)
    ids = [v.vehicle_id for v in plugged]
    return Seeded(url, files, now, ids, ids + [idle.vehicle_id], quiet.vehicle_id, quiet.home_charger_id,
                  idle.vehicle_id, bid, label, alice, bob, "123.45", "678.90", DST_DAY.isoformat())


def _activation(start: datetime, response_s: float | None, passed: bool) -> dict:
    """An assessed FCR-D activation as services.dispatcher.deliveries stores it."""
    return {"start": start.isoformat().replace("+00:00", "Z"), "reference_mw": 0.1, "required_response_s": 7.5,
            "required_share": 0.86, "response_time_s": response_s, "power_mw": 0.09 if passed else 0.02,
            "energy_mws": 0.5, "required_energy_mws": 0.3, "steady_state_ratio": 1.0, "over_delivery": False,
            "proven_share": 1.0 if passed else 0.2, "passed": passed}


@pytest.fixture(scope="module")
def seeded(module_db_url, tmp_path_factory):
    return _seed(module_db_url, tmp_path_factory.mktemp("settlement"))


@pytest.fixture(scope="module")
def client(seeded):
    with TestClient(create_app(seeded.url, secret=SECRET, settlement_dir=seeded.files),
                    follow_redirects=False) as c:
        yield c


def _bearer(client: TestClient, username: str) -> dict[str, str]:
    answer = client.post("/v1/auth/token", data={"grant_type": "password", "username": username,
                                                 "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _pages(s: Seeded) -> dict[str, str]:
    return {"ops": "/ops", "live": "/ops/live", "charger": f"/ops/alerts/charger/{s.quiet_charger}",
            "dlq": "/ops/alerts/dlq/telemetry", "obligation": f"/ops/alerts/obligation/{s.obligation}",
            "vehicle": f"/ops/vehicles/{s.plugged[0]}", "offline": "/ops/chargers/offline", "me": "/me",
            "forecast": "/ops/forecast", "bids": "/ops/bids", "lag": "/ops/alerts/lag/ingest"}


# ------------------------------------------------------------------------------ authorization


def test_every_page_answers_each_role_exactly_as_it_should(seeded, client):
    pages = _pages(seeded)
    client.cookies.clear()
    for name, path in pages.items():          # anonymous: to the login page
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/login", name
    expected = {"operator": {n: 200 for n in pages} | {"me": 403}, "admin": {n: 200 for n in pages} | {"me": 403},
                "owner": {n: 403 for n in pages} | {"me": 200}, "bidder": {n: 403 for n in pages},
                "ven": {n: 403 for n in pages}}
    for username, role in ROLES.items():
        headers = _bearer(client, username)
        for name, path in pages.items():
            answer = client.get(path, headers=headers)
            assert answer.status_code == expected[role][name], (username, name, answer.text[:200])
            assert answer.headers["content-type"].startswith("text/html")
            assert "script-src 'self'" in answer.headers["content-security-policy"]
            if answer.status_code == 403:
                assert "Not for this account" in answer.text
    for username in (None, *ROLES):             # open to everyone
        headers = _bearer(client, username) if username else {}
        assert client.get("/login", headers=headers).status_code == 200
        assert client.get("/healthz", headers=headers).json() == {"status": "ok"}
        assert client.get("/static/dashboard.js", headers=headers).status_code == 200


def test_the_cookie_login_sets_a_strict_httponly_session_and_redirects_by_role(seeded, client):
    for username, home in (("olle", "/ops"), ("root", "/ops"), ("alice", "/me")):
        client.cookies.clear()
        answer = client.post("/login", data={"username": username, "password": PASSWORD})
        assert answer.status_code == 303 and answer.headers["location"] == home, answer.text
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("flexfleet_session=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Secure" not in cookie and "Path=/" in cookie           # plain http: the browser would drop it
        assert client.get(home).status_code == 200                     # the cookie alone opens the page
    # The owner's JSON API takes the cookie too (the /me page links to its files).
    listed = client.get("/v1/owners/me/statements").json()
    assert listed["owner_id"] == seeded.alice and len(listed["statements"]) == 1
    assert client.get(listed["statements"][0]["links"]["pdf"]).content == b"%PDF-1.4 " + seeded.alice.encode()
    # Logging out clears it.
    out = client.post("/logout")
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert 'flexfleet_session=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    client.cookies.clear()
    assert client.get("/me").status_code == 303
    # Over https the cookie is Secure.
    # (Not entered: the app's lifespan belongs to the module's client; running it twice closes its pools.)
    https = TestClient(client.app, base_url="https://testserver", follow_redirects=False)
    answer = https.post("/login", data={"username": "olle", "password": PASSWORD})
    assert answer.status_code == 303 and "Secure" in answer.headers["set-cookie"]


def test_bidder_and_ven_accounts_get_no_session_and_failures_are_one_answer(seeded, client):
    client.cookies.clear()
    for username in ("bea", "ven-7"):
        answer = client.post("/login", data={"username": username, "password": PASSWORD})
        assert answer.status_code == 403 and "set-cookie" not in answer.headers and "use the API" in answer.text
    failures = [client.post("/login", data={"username": u, "password": p})
                for u, p in (("olle", PASSWORD + "!"), ("mallory", PASSWORD), ("../etc", PASSWORD), ("", ""))]
    for answer in failures:
        assert answer.status_code == 401 and "set-cookie" not in answer.headers
        assert "Unknown username or wrong password." in answer.text


def test_every_login_and_logout_is_in_the_audit_log(seeded, client):
    with psycopg.connect(seeded.url) as conn:
        before = conn.execute("SELECT coalesce(max(audit_id), 0) FROM audit_log").fetchone()[0]
    client.cookies.clear()
    client.post("/login", data={"username": "olle", "password": "wrong password here"})
    client.post("/login", data={"username": "Olle", "password": PASSWORD})
    client.post("/logout")
    client.post("/login", data={"username": "no such user", "password": PASSWORD})
    with psycopg.connect(seeded.url) as conn:
        rows = conn.execute("SELECT actor, role, action, object, status, detail->>'result' FROM audit_log "
                            "WHERE audit_id > %s ORDER BY audit_id", (before,)).fetchall()
        text = str(conn.execute("SELECT array_agg(detail::text) FROM audit_log WHERE audit_id > %s",
                                (before,)).fetchone())
    assert rows == [("olle", None, "POST /login", "accounts/olle", 401, "failed"),
                    ("olle", "operator", "POST /login", "accounts/olle", 303, "logged in"),
                    ("olle", "operator", "POST /logout", "accounts/olle", 303, None),
                    ("anonymous", None, "POST /login", None, 401, "failed")]
    assert PASSWORD not in text and "wrong password" not in text


def test_cross_site_form_posts_are_refused(seeded, client):
    client.cookies.clear()
    evil = {"Origin": "https://evil.example"}
    answer = client.post("/login", data={"username": "olle", "password": PASSWORD}, headers=evil)
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
    assert client.post("/login", data={"username": "olle", "password": PASSWORD},
                       headers={"Origin": "http://testserver"}).status_code == 303
    assert client.post("/logout", headers=evil).status_code == 403
    assert client.get("/ops").status_code == 200                      # still logged in
    client.cookies.clear()


def test_unknown_objects_are_404_problems(seeded, client):
    headers = _bearer(client, "olle")
    for path, field in (("/ops/vehicles/no-such-car", "vehicle_id"), ("/ops/alerts/obligation/nope/1", "obligation_id"),
                        ("/ops/alerts/dlq/other", "queue"), ("/ops/alerts/weather/x", "kind"),
                        ("/ops/alerts/charger/no-such-charger", "charger_id")):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json", path
        assert answer.json()["field"] == field


def test_healthz_is_503_when_the_database_does_not_answer(seeded):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with TestClient(create_app(f"postgresql://nobody@127.0.0.1:{port}/none", secret=SECRET,
                               settlement_dir=seeded.files)) as down:
        answer = down.get("/healthz")
        assert answer.status_code == 503 and answer.json() == {"status": "unavailable"}


def test_the_pages_show_what_the_data_says(seeded, client):
    headers = _bearer(client, "olle")
    ops = client.get("/ops", headers=headers).text
    assert re.search(r'id="plugged-in">(\d+)<', ops).group(1) == str(len(seeded.plugged))
    assert re.search(r'id="reporting">(\d+)<', ops).group(1) == str(len(seeded.reporting))
    assert f"/ops/alerts/charger/{seeded.quiet_charger}" in ops and "/ops/alerts/dlq/telemetry" in ops
    assert f"Obligation {seeded.obligation} at risk" in ops and "80 %" in ops and ops.count("<svg") == 1
    obligation = client.get(f"/ops/alerts/obligation/{seeded.obligation}", headers=headers).text
    kw = float(re.search(r"committed vehicles:\s*([\d.]+) kW", obligation).group(1))
    assert 0 < kw < 30.0 and "at risk" in obligation       # 3 cars x 10 kW at 90 % each cannot hold 100 kW
    vehicle = client.get(f"/ops/vehicles/{seeded.plugged[0]}", headers=headers).text
    assert "broken" in vehicle and "departure SoC" in vehicle and "123.45 SEK" in vehicle and "<svg" in vehicle
    dlq = client.get("/ops/alerts/dlq/telemetry", headers=headers).text
    assert "3 rejected in the last hour" in dlq and "1 in the hour before" in dlq
    offline = client.get("/ops/chargers/offline", headers=headers).text
    assert "Chargers offline (1)" in offline and f"/ops/alerts/charger/{seeded.quiet_charger}" in offline


# ------------------------------------------------------------------------------ in the browser


@pytest.fixture(scope="module")
def served(seeded):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(seeded.url, secret=SECRET, settlement_dir=seeded.files),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path):
    """Where screenshots go: the test's tmp dir, copied to $FLEXFLEET_TEST_ARTIFACTS when set."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    yield folder
    target = os.environ.get("FLEXFLEET_TEST_ARTIFACTS")
    if target:
        shutil.copytree(folder, Path(target) / "dashboard", dirs_exist_ok=True)


def _log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")


def test_an_operator_reads_the_fleet_opens_alerts_and_drills_into_a_vehicle(seeded, served, browser, shots):
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{served}/ops")
    assert page.url == f"{served}/login"                          # not logged in yet
    _log_in(page, served, "olle")
    page.wait_for_url(f"{served}/ops")
    assert page.text_content("#plugged-in") == str(len(seeded.plugged))
    assert page.text_content("#reporting") == str(len(seeded.reporting))
    assert page.locator("#fleet svg").count() == 1
    page.screenshot(path=str(shots / "ops.png"), full_page=True)
    # The at-risk obligation's alert, then the quiet charger's, and from it the car plugged in there.
    page.click(f"text=Obligation {seeded.obligation} at risk")
    page.wait_for_url(f"**/ops/alerts/obligation/{seeded.obligation}")
    assert "at risk" in page.text_content("#coverage")
    page.screenshot(path=str(shots / "alert-obligation.png"), full_page=True)
    page.go_back()
    page.click(f"text=Charger {seeded.quiet_charger} offline")
    page.wait_for_url(f"**/ops/alerts/charger/{seeded.quiet_charger}")
    page.screenshot(path=str(shots / "alert-charger.png"), full_page=True)
    page.click(f"main >> text={seeded.quiet}")
    page.wait_for_url(f"**/ops/vehicles/{seeded.quiet}")
    assert page.locator("#soc svg").count() == 1
    page.goto(f"{served}/ops/vehicles/{seeded.plugged[0]}")
    assert "broken" in page.text_content("#promises") and "123.45 SEK" in page.text_content("#earnings")
    page.screenshot(path=str(shots / "vehicle.png"), full_page=True)
    # The pages linked from /ops: forecast bands, bids and clearing (today and the DST day), the broker's lag.
    page.goto(f"{served}/ops")
    page.click("#pages >> text=Forecast vs realised")
    page.wait_for_url(f"{served}/ops/forecast")
    assert page.locator("#forecast-up svg").count() == 1 and page.locator("#forecast-down svg").count() == 1
    page.screenshot(path=str(shots / "forecast.png"), full_page=True)
    page.go_back()
    page.click("#pages >> text=Bids and clearing")
    page.wait_for_url(f"{served}/ops/bids")
    assert page.locator("section.product svg").count() == 3
    page.screenshot(path=str(shots / "bids.png"), full_page=True)
    page.goto(f"{served}/ops/bids?day={seeded.dst_day}")
    assert "(25 h)" in page.text_content("main")
    page.screenshot(path=str(shots / "bids-dst-day.png"), full_page=True)
    page.goto(f"{served}/ops")
    page.click("#pages >> text=Ingest consumer lag")
    page.wait_for_url(f"{served}/ops/alerts/lag/ingest")
    assert page.locator("#lag-state").count() == 1
    page.screenshot(path=str(shots / "lag.png"), full_page=True)
    # The live part refreshes by itself: the idle car plugs in, and the count follows.
    page.goto(f"{served}/ops?every=2")
    assert page.text_content("#plugged-in") == str(len(seeded.plugged))
    with psycopg.connect(seeded.url) as conn:
        _insert(conn, [(seeded.idle, datetime.now(UTC), True, None, 7.0, 65.0)])
    expect(page.locator("#plugged-in")).to_have_text(str(len(seeded.plugged) + 1), timeout=15_000)
    page.screenshot(path=str(shots / "ops-refreshed.png"), full_page=True)


def test_an_owner_sees_only_their_statements_and_not_the_operations_pages(seeded, served, browser, shots):
    page = browser.new_context().new_page()
    _log_in(page, served, "alice")
    page.wait_for_url(f"{served}/me")
    body = page.text_content("main")
    assert seeded.month in body and seeded.alice_total in body and seeded.bob_total not in body
    page.screenshot(path=str(shots / "me.png"), full_page=True)
    page.click("a:text-is('page')")
    page.wait_for_url(f"**/v1/owners/me/statements/{seeded.month}/v1.html")
    assert page.text_content("h1") == f"Statement of {seeded.alice}"
    answer = page.goto(f"{served}/ops")
    assert answer.status == 403 and "operator and admin" in page.text_content("main")
    page.screenshot(path=str(shots / "owner-on-ops.png"), full_page=True)


# ------------------------------------------------------------------------------ forecast, bids, responses, local day


def test_the_bids_page_shows_the_answered_plan_per_product_in_local_time(seeded, client):
    headers = _bearer(client, "olle")
    page = client.get("/ops/bids", headers=headers).text
    assert page.count("<svg") == 3                          # one chart per product and direction
    for product in ("FCR-D-up/SE_DK2 up", "FCR-D-down/SE_DK2 down", "FCR-N/SE up"):
        assert f"<h2>{product}</h2>" in page
    assert "38.50 EUR/MW/h" in page and "11.75 EUR/MW/h" in page and "not cleared yet" in page
    assert ">9.9<" not in page and ">0.3<" in page          # not the plan the market never answered
    assert "Europe/Stockholm" in page and re.search(r"\d\d:\d\d CES?T", page)
    # The day the clocks go back: 25 hours, both 02:00s, and nothing of the evening before.
    dst = client.get(f"/ops/bids?day={seeded.dst_day}", headers=headers).text
    assert "(25 h)" in dst and "02:00 CEST–02:00 CET" in dst and "02:00 CET–03:00 CET" in dst
    assert "00:00 CEST–01:00 CEST" in dst and "23:00 CET–00:00 CET" in dst and ">7.7<" not in dst
    spring = client.get("/ops/bids?day=2026-03-29", headers=headers).text
    assert "No bids for 2026-03-29" in spring and "(23 h)" in spring
    bad = client.get("/ops/bids?day=2026-13-01", headers=headers)
    assert bad.status_code == 400 and bad.json()["field"] == "day"


def test_the_forecast_page_draws_bands_against_realised_for_two_days(seeded, client):
    page = client.get("/ops/forecast", headers=_bearer(client, "olle")).text
    assert page.count("<svg") == 2 and 'id="forecast-up"' in page and 'id="forecast-down"' in page
    day = today(BiddingZone(ZONE), seeded.now)
    rows = re.findall(r"<tr><td>(up|down)</td><td>([\d-]+)</td>\s*<td>([^<]+)</td><td class=\"num\">(\d+)</td>", page)
    assert {(d, x) for d, x, _, _ in rows} == {(d, x.isoformat()) for d in ("up", "down")
                                               for x in (day.day - timedelta(days=1), day.day)}
    realised_today = {d: int(n) for d, x, _, n in rows if x == day.day.isoformat()}
    ended = int((min(seeded.now, day.end) - day.start) // Q)
    assert realised_today == {"up": ended, "down": ended}   # every ended MTU of today has a realised value
    assert all("no forecast" not in issued for _, _, issued, _ in rows)


def test_response_times_show_on_the_obligation_and_on_ops(seeded, client):
    headers = _bearer(client, "olle")
    page = client.get(f"/ops/alerts/obligation/{seeded.obligation}", headers=headers).text
    assert "2 activations assessed: median 5.2 s, slowest\n5.2 s, 1 never reached" in page
    assert page.count("never reached") >= 2 and "failed" in page and "passed" in page
    ops = client.get("/ops", headers=headers).text
    assert re.search(r'id="activations">2<', ops) and re.search(r'id="response-median">5.2 s<', ops)
    assert re.search(r'id="response-passed">1 / 2<', ops)
    assert "Today's obligations (" + today(BiddingZone(ZONE), seeded.now).label in ops
