"""The dispatcher's business logic against a real VTN (uvicorn) on the real PostgreSQL, with
openadr3-client on both sides: obligations cleared from stored bids become one program per
product and one event per obligation and site VEN; each site's VEN, through openadr3-client,
finds only its own events with target filters and reads its resources' assignments back; a car
that leaves early has its share moved to the others (events updated, the move recorded); and
reruns, or a run that died before recording its events, duplicate nothing."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
import requests
from openadr3_client.oadr301._vtn.interfaces.filters import PaginationFilter, TargetFilter
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
from openadr3_client.version import OADRVersion
from typer.testing import CliRunner
from vtn_support import BL, SECRET, register_all, serve

from flexfleet.bidding.models import Bid, BidPlan, ObjectiveParts
from flexfleet.dispatch.signals import Direction, SignalKind, parse_assignments, parse_event
from flexfleet.domain import Charger, Owner, Site, Vehicle
from flexfleet.domain.model import CurrentType, SiteKind, VehicleSpec
from flexfleet.markets import default_catalogue
from services.bidder.store import ClearingIn, record_clearing, save_plan
from services.dispatcher.bl import Dispatcher, bl_client
from services.dispatcher.cli_bl import app as dispatch_cli
from services.dispatcher.vtn import BASE_PATH, create_app, register_client
from services.dispatcher.vtn.notifier import Delivery
from services.simulator.registry import write_registry

pytestmark = pytest.mark.integration

FCR_UP, MFRR = "FCR-D-up/SE_DK2", "mFRR-energy/SE"
T = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
SITE_VENS = {"home1": ("home1-client", "home1-secret"), "hub1": ("hub1-client", "hub1-secret-1")}
V2G = VehicleSpec("Renault", "5 E-Tech", 52.0, "NMC", 11.0, True, 11.0, CurrentType.AC)


def register_fleet(conn: psycopg.Connection) -> None:
    """v1 at home1; v2 and v3 car-sharing cars at hub1 (no home charger: placed by their charging
    sessions, v2 plugged in at T, v3 last seen the day before); v4 with no charger anywhere."""
    home = Site("home1", SiteKind.HOME, "SE3-N1", "SE3", 17.0, 17.0)
    hub = Site("hub1", SiteKind.SHARED_FLEET, "SE3-H1", "SE3", 22.0, 11.0)
    chargers = [Charger("c1", home, CurrentType.AC, True, 11.0, 11.0),
                Charger("c2h", hub, CurrentType.AC, True, 11.0, 11.0),
                Charger("c3h", hub, CurrentType.AC, True, 11.0, 11.0)]
    owners = [Owner("o1", "Owner 1"), Owner("o-hub", "Car sharing")]
    vehicles = [Vehicle("v1", "o1", V2G, "c1"), Vehicle("v2", "o-hub", V2G), Vehicle("v3", "o-hub", V2G),
                Vehicle("v4", "o-hub", V2G)]
    write_registry(conn, owners, [home, hub], chargers, vehicles)
    conn.execute("INSERT INTO charging_sessions (vehicle_id, charger_id, plug_in_at, plug_out_at, energy_kwh, source) "
                 "VALUES ('v2', 'c2h', %s, %s, 3, 'import'), ('v3', 'c3h', %s, %s, 5, 'import')",
                 (T - timedelta(hours=2), T + timedelta(hours=3), T - timedelta(days=1), T - timedelta(hours=20)))


def clear(conn: psycopg.Connection) -> list:
    """Three accepted bids: FCR-D up at 16:00 and 17:00 (bundle v1-v4), mFRR down 16:00-16:15."""
    def bid(product: str, mtu: datetime, mw: str, bundle: dict[str, float], direction: str) -> Bid:
        return Bid(product, "D-1", mtu, Decimal(mw), Decimal("5"), tuple(bundle), tuple(bundle.values()),
                   Decimal("1"), sum(bundle.values()), 0.05, direction, product)

    bundle = {"v1": 8.0, "v2": 6.0, "v3": 6.0, "v4": 4.0}
    plan = BidPlan((bid(FCR_UP, T, "0.012", bundle, "up"), bid(FCR_UP, T + timedelta(hours=1), "0.012", bundle, "up"),
                    bid(MFRR, T, "0.01", {"v1": 7.0, "v2": 7.0}, "down")),
                   ObjectiveParts(Decimal(1), Decimal(0), Decimal(0)), 0.1, "optimal", ())
    stored = save_plan(conn, plan, "SE3", date(2026, 11, 25), "D-1", T - timedelta(days=1), {FCR_UP: 60, MFRR: 15})
    return record_clearing(conn, [ClearingIn(b.bid_id, b.volume_mw, Decimal("5")) for b in stored.bids])


@pytest.fixture
def world(db_url: str, monkeypatch) -> Iterator[tuple[str, psycopg.Connection, list, str]]:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    register_all(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for ven, (client_id, secret) in SITE_VENS.items():
            register_client(conn, client_id, secret, ven)
        register_fleet(conn)
        obligations = clear(conn)
        app = create_app(db_url, secret=SECRET, delivery=Delivery(attempts=1, backoff_s=0.01))
        with serve(app) as base:
            yield f"{base}{BASE_PATH}", conn, obligations, db_url


def ven_client(base_url: str, ven: str):
    client_id, secret = SITE_VENS[ven]
    return VirtualEndNodeHttpClientFactory.create_http_ven_client(
        vtn_base_url=base_url, client_id=client_id, client_secret=secret, token_url=f"{base_url}/auth/token",
        version=OADRVersion.OADR_301)


def own_events(client, ven: str) -> list:
    return list(client.events.get_events(target=TargetFilter(target_type="VEN_NAME", target_values=[ven]),
                                         pagination=PaginationFilter(skip=0, limit=50), program_id=None))


def counts(conn: psycopg.Connection) -> tuple[int, ...]:
    return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                 for t in ("oadr_programs", "oadr_events", "dispatch_events", "dispatch_moves"))


def kw_by_vehicle(events: list, obligation_id: str, at: datetime) -> dict[str, float]:
    """What each resource holds at `at` for one obligation, as the VTN's events say."""
    out = {}
    for e in events:
        for a in parse_assignments(e):
            if e.event_name.startswith(obligation_id + "@") and a.start <= at < a.end:
                out[a.vehicle_id] = a.kw
    return out


def test_obligations_become_events_each_site_reads_its_own_and_a_departure_moves_the_share(world) -> None:
    base_url, conn, obligations, db_url = world
    fcr, fcr_later, mfrr = obligations
    bl = bl_client(base_url, *BL)
    dispatcher = Dispatcher(conn, bl)
    report = dispatcher.dispatch_window(T, T + timedelta(hours=2))

    # One program per product, named by it; one event per obligation and site VEN.
    assert sorted(report.programs) == [FCR_UP, MFRR]
    programs = {p.program_name: p for p in bl.programs.get_programs(target=None, pagination=None)}
    assert set(programs) == {FCR_UP, MFRR} and programs[FCR_UP].binding_events is False
    assert sorted(report.obligations) == sorted(o.obligation_id for o in obligations) and report.created == 6
    # v4 has no charger: its share went to the others, and nothing was left uncovered.
    assert [(m.obligation_id, m.vehicle_id, m.reason, m.uncovered_kw) for m in report.moves] == [
        (fcr.obligation_id, "v4", "unplaced", 0.0), (fcr_later.obligation_id, "v4", "unplaced", 0.0)]

    events = list(bl.events.get_events(target=None, pagination=None, program_id=None))
    assert sorted(e.event_name for e in events) == sorted(f"{o.obligation_id}@{ven}" for o in obligations
                                                          for ven in ("home1", "hub1"))
    for o in obligations:
        held = kw_by_vehicle(events, o.obligation_id, o.mtu_start)
        assert math.fsum(held.values()) == pytest.approx(float(o.volume_mw) * 1000, rel=1e-9)
        assert all(held[v] <= dict(zip(o.vehicles, o.kw))[v] + 1e-9 for v in held)
    assert set(kw_by_vehicle(events, fcr.obligation_id, T)) == {"v1", "v2", "v3"}

    # Each site's VEN, through openadr3-client, sees its own events and no one else's.
    home, hub = ven_client(base_url, "home1"), ven_client(base_url, "hub1")
    mine = own_events(home, "home1")
    assert sorted(e.event_name for e in mine) == sorted(f"{o.obligation_id}@home1" for o in obligations)
    assert own_events(home, "hub1") == []
    with pytest.raises(requests.HTTPError) as denied:
        home.events.get_event_by_id(next(e.id for e in events if e.event_name.endswith("@hub1")))
    assert denied.value.response.status_code == 403
    hub_fcr = next(parse_event(e) for e in own_events(hub, "hub1") if e.event_name == f"{fcr.obligation_id}@hub1")
    assert (hub_fcr.kind, hub_fcr.direction, hub_fcr.resources) == (SignalKind.FCR, Direction.UP, ("c2h/v2", "c3h/v3"))
    assert hub_fcr.curve == ((49.5, 1.0), (49.9, 0.0))           # + is up: full at 49.5 Hz
    assert hub_fcr.endurance == timedelta(minutes=20)
    mfrr_home = next(e for e in mine if e.event_name == f"{mfrr.obligation_id}@home1")
    assert [p.type for p in mfrr_home.intervals[0].payloads] == [
        "FLEXFLEET_DIRECTION", "DISPATCH_SETPOINT", "FLEXFLEET_RESOURCE_SETPOINT"]

    # A rerun, from the command line: nothing new anywhere, not even a program rewritten.
    before = counts(conn)
    env = {"DATABASE_URL": db_url, "FLEXFLEET_VTN_URL": base_url, "FLEXFLEET_BL_CLIENT_ID": BL[0],
           "FLEXFLEET_BL_CLIENT_SECRET": BL[1], "COLUMNS": "200"}
    again = CliRunner(env=env).invoke(dispatch_cli, ["send", "--day", "2026-11-25", "--zone", "SE3"])
    assert again.exit_code == 0, again.output
    assert "0 obligation(s) sent, 3 sent before; events: 0 created, 0 updated" in again.output
    assert counts(conn) == before
    assert {p.program_name: p.modification_date_time for p in bl.programs.get_programs(target=None, pagination=None)
            } == {name: p.modification_date_time for name, p in programs.items()}
    # A product changed in the catalogue: its program is updated in place.
    catalogue = default_catalogue()
    changed = catalogue.model_copy(update={"products": tuple(
        p.model_copy(update={"operator": "Another TSO"}) if p.id == FCR_UP else p for p in catalogue.products)})
    assert Dispatcher(conn, bl, changed).ensure_programs([FCR_UP]) == {FCR_UP: programs[FCR_UP].id}
    assert "Another TSO" in bl.programs.get_program_by_id(programs[FCR_UP].id).program_long_name
    assert counts(conn) == before

    # v2 leaves at 16:20: its share of the 16:00 obligation moves to v1 and v3 from then on.
    left_at = T + timedelta(minutes=20)
    moved = dispatcher.vehicle_left("v2", left_at)
    assert [(m.obligation_id, m.vehicle_id, m.reason) for m in moved.moves] == [(fcr.obligation_id, "v2", "left")]
    assert moved.moves[0].share_kw > 0 and moved.moves[0].uncovered_kw == 0.0
    assert (moved.created, moved.updated) == (0, 2)
    events = list(bl.events.get_events(target=None, pagination=None, program_id=None))
    early, late = kw_by_vehicle(events, fcr.obligation_id, T), kw_by_vehicle(events, fcr.obligation_id, left_at)
    assert early["v2"] > 0 and late["v2"] == 0.0
    assert math.fsum(late.values()) == pytest.approx(12.0, rel=1e-9)
    assert late["v1"] > early["v1"] and late["v3"] > early["v3"]
    assert late["v1"] <= 8.0 + 1e-9 and late["v3"] <= 6.0 + 1e-9          # within each car's held kW
    # The hub's VEN reads the change: its interval split at the departure.
    hub_now = next(parse_event(e) for e in own_events(hub, "hub1") if e.event_name == f"{fcr.obligation_id}@hub1")
    assert [(i.start, i.end) for i in hub_now.intervals] == [(T, left_at), (left_at, T + timedelta(hours=1))]
    # The obligations that started later keep v2 (it is expected back): untouched.
    assert kw_by_vehicle(events, fcr_later.obligation_id, T + timedelta(hours=1))["v2"] > 0

    # Told twice: nothing moves, nothing is sent.
    before = counts(conn)
    twice = dispatcher.vehicle_left("v2", left_at)
    assert (twice.created, twice.updated, twice.moves) == (0, 0, []) and counts(conn) == before

    # A run that died after creating the events but before recording them: found by name, not duplicated.
    conn.execute("DELETE FROM dispatch_events WHERE obligation_id = %s", (fcr_later.obligation_id,))
    conn.execute("DELETE FROM dispatch_obligations WHERE obligation_id = %s", (fcr_later.obligation_id,))
    conn.execute("DELETE FROM dispatch_moves WHERE obligation_id = %s", (fcr_later.obligation_id,))
    redo = Dispatcher(conn, bl_client(base_url, *BL)).dispatch_window(T, T + timedelta(hours=2))
    assert redo.obligations == [fcr_later.obligation_id] and (redo.created, redo.updated, redo.unchanged) == (0, 0, 2)
    assert counts(conn) == before


def test_a_car_gone_until_later_leaves_every_obligation_meanwhile_and_a_lone_site_is_cancelled(world) -> None:
    base_url, conn, (fcr, fcr_later, mfrr), _ = world
    bl = bl_client(base_url, *BL)
    dispatcher = Dispatcher(conn, bl)
    dispatcher.dispatch([fcr])                                  # the others are sent on the way
    report = dispatcher.vehicle_left("v1", T + timedelta(minutes=5), until=T + timedelta(hours=3), reason="offline")
    assert sorted(m.obligation_id for m in report.moves if m.vehicle_id == "v1") == sorted(
        o.obligation_id for o in (fcr, fcr_later, mfrr))
    assert report.created == 4                                  # fcr_later and mfrr were sent first
    events = list(bl.events.get_events(target=None, pagination=None, program_id=None))
    # FCR: v2 and v3 each have 2.4 kW of room, but the hub may export 11 kW in all and already
    # does 7.2: they share the 3.8 kW left, not take 3.8 each. The last 1 kW is uncovered.
    late = kw_by_vehicle(events, fcr.obligation_id, T + timedelta(minutes=5))
    assert late == {"v1": 0.0, "v2": pytest.approx(5.5), "v3": pytest.approx(5.5)}
    assert next(m.uncovered_kw for m in report.moves if m.obligation_id == fcr.obligation_id) == pytest.approx(1.0)
    # mFRR down: v2 alone takes v1's 5 kW share within its 7 kW; the hub may import 22 kW.
    late = kw_by_vehicle(events, mfrr.obligation_id, T + timedelta(minutes=5))
    assert late == {"v1": 0.0, "v2": pytest.approx(7.0)}
    # ...and 3 kW of the 10 cannot be covered: recorded, not dropped.
    short = conn.execute("SELECT uncovered_kw, reason FROM dispatch_moves "
                         "WHERE obligation_id = %s AND vehicle_id = 'v1'", (mfrr.obligation_id,)).fetchone()
    assert short == (pytest.approx(3.0), "offline")
    # home1's only car is gone from 16:05 on: its events say 0 kW from then on (cancelled, not deleted).
    home_fcr = next(parse_event(e) for e in events if e.event_name == f"{fcr_later.obligation_id}@home1")
    assert [i.kw for i in home_fcr.intervals] == [(0.0,)]
