"""Site agents against the real VTN (uvicorn) on the real PostgreSQL, end to end: the business
logic dispatches an FCR-D up obligation to two sites; each site's agent registers its VEN and
resources through openadr3-client, hears of its event by webhook (and, with the webhook down,
by polling); a simulated hour with a frequency dip runs on the simulated clock; the agents post
their reports; the business logic reads them back into measured_power (twice: nothing twice);
and delivery verification finds the healthy site answering within 7.5 s and the deliberately
slow one not, with the shortfall attributed to it."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import psycopg
import pytest
from vtn_support import BL, SECRET, register_all, serve

from flexfleet.bidding.models import Bid, BidPlan, ObjectiveParts
from flexfleet.domain import Charger, Owner, Site, Vehicle
from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import CurrentType, SiteKind, VehicleSpec
from flexfleet.markets.clearing import FrequencyEvent, generate_frequency
from services.bidder.store import ClearingIn, record_clearing, save_plan
from services.dispatcher.bl import Dispatcher, bl_client
from services.dispatcher.deliveries import load_measurements, verify_deliveries, write_frequency
from services.dispatcher.reports import collect_reports, fetch_reports
from services.dispatcher.vtn import BASE_PATH, create_app, register_client
from services.dispatcher.vtn.notifier import Delivery
from services.simulator.registry import write_registry
from services.ven_agent import Broken, PlugSession, Receiver, SimSite, Simulation, SiteAgent, VenLink, World
from services.ven_agent.layout import DESCRIPTORS, READING
from services.ven_agent.webhook import serve_receiver

pytestmark = pytest.mark.integration

FCR_UP = "FCR-D-up/SE_DK2"
T = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
DIP = T + timedelta(minutes=20)
CREDS = {"home1": ("home1-client", "home1-secret"), "home2": ("home2-client", "home2-secret")}
V2G = VehicleSpec("Renault", "5 E-Tech", 52.0, "NMC", 11.0, True, 11.0, CurrentType.AC)
V1G = VehicleSpec("Volkswagen", "ID.3", 58.0, "NMC", 11.0)
SITES = {"home1": Site("home1", SiteKind.HOME, "SE3-N1", "SE3", 17.0, 17.0),
         "home2": Site("home2", SiteKind.HOME, "SE3-N2", "SE3", 17.0, 17.0)}
CHARGERS = {"c1": Charger("c1", SITES["home1"], CurrentType.AC, True, 11.0, 11.0),
            "c2": Charger("c2", SITES["home2"], CurrentType.AC, False, 11.0)}
VEHICLES = {"v1": Vehicle("v1", "o1", V2G, "c1"), "v2": Vehicle("v2", "o2", V1G, "c2")}


def obligations(conn: psycopg.Connection) -> list:
    """FCR-D up 16:00 and 17:00, 12 kW each, 6 kW on each car."""
    def bid(mtu: datetime) -> Bid:
        return Bid(FCR_UP, "D-1", mtu, Decimal("0.012"), Decimal("5"), ("v1", "v2"), (6.0, 6.0), Decimal("1"), 12.0,
                   0.05, "up", FCR_UP)

    plan = BidPlan((bid(T), bid(T + timedelta(hours=1))), ObjectiveParts(Decimal(1), Decimal(0), Decimal(0)), 0.1,
                   "optimal", ())
    stored = save_plan(conn, plan, "SE3", date(2026, 11, 25), "D-1", T - timedelta(days=1), {FCR_UP: 60})
    return record_clearing(conn, [ClearingIn(b.bid_id, b.volume_mw, Decimal("5")) for b in stored.bids])


@pytest.fixture
def world(db_url: str, monkeypatch) -> Iterator[tuple[str, psycopg.Connection, list]]:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    register_all(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for ven, (client_id, secret) in CREDS.items():
            register_client(conn, client_id, secret, ven)
        write_registry(conn, [Owner("o1", "Owner 1"), Owner("o2", "Owner 2")], list(SITES.values()),
                       list(CHARGERS.values()), list(VEHICLES.values()))
        found = obligations(conn)
        app = create_app(db_url, secret=SECRET, delivery=Delivery(attempts=1, backoff_s=0.01, timeout_s=2.0))
        with serve(app) as base:
            yield f"{base}{BASE_PATH}", conn, found


def simulated_sites() -> list[SimSite]:
    """Both cars plugged in all afternoon, charging towards 80 % (an hour's charging to go);
    home2's chargers are slow: 8 s before they move, then 0.3 kW/s."""
    stay = dict(plug_in_s=(T - timedelta(hours=1)).timestamp(), plug_out_s=(T + timedelta(hours=4)).timestamp(),
                departure_s=(T + timedelta(hours=4)).timestamp(), min_soc_pct=30.0, target_soc_pct=80.0)
    return [SimSite(SITES["home1"], ((CHARGERS["c1"], VEHICLES["v1"]),), (PlugSession("c1/v1", soc_pct=55.0, **stay),)),
            SimSite(SITES["home2"], ((CHARGERS["c2"], VEHICLES["v2"]),), (PlugSession("c2/v2", soc_pct=50.0, **stay),),
                    broken=Broken("slow"))]


def wait_for(check, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_two_sites_receive_their_event_respond_to_a_dip_and_the_slow_one_is_found_out(world) -> None:
    base_url, conn, (fcr, fcr_later) = world
    bl = bl_client(base_url, *BL)
    dispatcher = Dispatcher(conn, bl)
    dispatcher.ensure_programs([FCR_UP])
    sites = simulated_sites()
    agents = [SiteAgent(s.site_id, s.resources, VenLink(base_url, *CREDS[s.site_id]), broken=s.broken) for s in sites]
    trace = generate_frequency(T - timedelta(minutes=10), duration_s=90 * 60, seed=5,
                               events=[FrequencyEvent(DIP, 49.3, time_to_extreme_s=6.0, recovery_s=240.0)])
    write_frequency(conn, trace)
    sim = Simulation(World(sites), agents, trace, poll_every_s=3600.0, keep_trace=True)

    with serve_receiver(Receiver()) as receiver:
        sim.start(receiver)
        # Registered: each VEN by its name, with its resource; subscribed to the program.
        vens = {v.ven_name: v for v in bl.vens.get_vens(ven_name=None, target=None, pagination=None)}
        assert set(vens) == {"home1", "home2"}
        assert [r.resource_name for r in bl.vens.get_ven_resources(ven_id=vens["home1"].id, resource_name=None,
                                                                     target=None, pagination=None)] == ["c1/v1"]
        assert all(a.events == {} for a in agents)
        sim.start(receiver)                     # a restart registers nothing twice
        assert len(bl.vens.get_vens(ven_name=None, target=None, pagination=None)) == 2
        assert len(bl.subscriptions.get_subscriptions(pagination=None, target=None, program_id=None,
                                                      client_name="home1", objects=None)) == 1

        dispatcher.dispatch([fcr])
        wait_for(lambda: all(a.inbox for a in agents))
        for a in agents:
            assert a.process_inbox()
            assert [e.signal.obligation_id for e in a.events.values()] == [fcr.obligation_id]
            assert (a.stats.by_webhook, a.stats.by_poll) == (1, 0)
        home1_event = next(iter(agents[0].events.values()))
        assert home1_event.signal.resources == ("c1/v1",) and home1_event.checkpoint == (7.5, 0.86)

    # The webhook is down: the next obligation reaches the agents by polling.
    dispatcher.dispatch([fcr_later])
    for a in agents:
        assert not a.inbox
        assert a.poll()
        assert len(a.events) == 2 and (a.stats.by_webhook, a.stats.by_poll) == (1, 1)
        assert not a.poll()                                   # nothing new: nothing changes

    start_s, end_s = int((T - timedelta(minutes=5)).timestamp()), int((T + timedelta(minutes=61)).timestamp())
    stats = sim.run(start_s, end_s)
    assert stats.simulated_s == 66 * 60 and stats.wall_s < 30
    assert stats.too_slow_s > 0 and stats.below_min_s == 0 and not stats.unknown_resources
    assert all(a.stats.report_failures == 0 and not a.outbox for a in agents)

    # What the simulation did, second by second: the healthy car answers the dip in seconds.
    power, baseline = sim.trace.array("power_kw"), sim.trace.array("baseline_kw")
    k = int(DIP.timestamp()) - start_s
    required = 6.0 * np.array([min(1.0, max(0.0, (49.9 - f) / 0.4)) for f in sim.trace.frequency_hz])
    response = baseline - power
    assert response[k + 7, 0] >= 0.86 * required[k + 7]           # home1 at 7.5 s
    assert response[k + 7, 1] < 0.2 * required[k + 7]             # home2 has barely moved
    assert (baseline[k:k + 120, 0] == baseline[k - 1, 0]).all()    # the declared schedule holds

    # The business logic reads the reports back: one per event and batch period.
    reports = fetch_reports(bl, home1_event.event_id)
    assert sorted(r["reportName"] for r in reports) == [
        f"{fcr.obligation_id}@home1|{(T + timedelta(minutes=m)).isoformat().replace('+00:00', 'Z')}"
        for m in (0, 15, 30, 45)]
    described = [{k: d.get(k) for k in ("payloadType", "readingType", "units")} for d in DESCRIPTORS]
    assert all(r["clientName"] == "home1" and [{k: d.get(k) for k in ("payloadType", "readingType", "units")}
                                               for d in r["payloadDescriptors"]] == described for r in reports)
    first = collect_reports(conn, bl, T, T + timedelta(hours=1))
    assert first.events == 2 and first.reports == 8 and not first.refused
    assert first.stored == first.samples > 0
    again = collect_reports(conn, bl, T, T + timedelta(hours=1))
    assert (again.samples, again.stored) == (first.samples, 0)      # read twice: stored once

    # 1 s samples through the dip (equal seconds merged), minute means otherwise; lossless: held
    # second by second they give back what the charger did.
    stored = load_measurements(conn, ["v1"], T, T + timedelta(hours=1)).sort_values("ts")
    gaps = stored["ts"].diff().dt.total_seconds()
    around = (stored["ts"] > DIP) & (stored["ts"] < DIP + timedelta(seconds=40))
    assert around.sum() >= 20 and gaps[around].min() == 1 and gaps.max() == 60
    seconds = pd.date_range(T, T + timedelta(hours=1), freq="1s", inclusive="left")
    held = stored.set_index("ts")["power_kw"].reindex(seconds, method="ffill").to_numpy()
    during = slice(int(DIP.timestamp()) - start_s, int(DIP.timestamp()) - start_s + 120)
    assert held[int((DIP - T).total_seconds()):][:120] == pytest.approx(power[during, 0], abs=1e-3)
    assert stored["baseline_kw"].notna().all() and stored["plugged_in"].all()
    assert set(stored["charger_id"]) == {"c1"}

    # Verification: delivered share and response time per site; the slow site carries the shortfall.
    result = verify_deliveries(conn, T, T + timedelta(hours=1))
    (d,) = [x for x in result.deliveries if x.obligation_id == fcr.obligation_id]
    by_site = {s.site_id: s for s in d.sites}
    assert by_site["home1"].response_time_s is not None and by_site["home1"].response_time_s <= 7.5
    assert by_site["home1"].delivered_share == pytest.approx(1.0, abs=0.02)
    assert by_site["home2"].response_time_s is None or by_site["home2"].response_time_s > 7.5
    assert by_site["home2"].delivered_share < 0.9
    assert d.delivered_share < 1.0 and d.shortfall_mw > 0
    assert by_site["home2"].shortfall_mw >= 0.95 * d.shortfall_mw
    assert by_site["home1"].shortfall_mw <= 0.05 * d.shortfall_mw
    assert math.isfinite(d.response_share) and d.activations


def test_a_site_that_ignores_events_reports_no_response_and_a_stranger_resource_is_refused(world) -> None:
    base_url, conn, (fcr, _) = world
    bl = bl_client(base_url, *BL)
    Dispatcher(conn, bl).dispatch([fcr])
    sites = simulated_sites()
    sites[1] = SimSite(sites[1].site, sites[1].pairs, sites[1].sessions, broken=Broken("ignores-events"))
    agents = [SiteAgent(s.site_id, s.resources, VenLink(base_url, *CREDS[s.site_id]), broken=s.broken) for s in sites]
    trace = generate_frequency(T - timedelta(minutes=10), duration_s=40 * 60, seed=6,
                               events=[FrequencyEvent(T + timedelta(minutes=5), 49.2)])
    sim = Simulation(World(sites), agents, trace, batch_s=600, keep_trace=True)
    sim.start()                                       # no receiver: polling only
    assert all(a.stats.by_poll == 1 for a in agents)
    sim.run(int(T.timestamp()) - 120, int((T + timedelta(minutes=10)).timestamp()))
    power, baseline = sim.trace.array("power_kw")[120:], sim.trace.array("baseline_kw")[120:]
    assert (baseline[:, 1] - power[:, 1] == 0).all()        # it has the event, it never acts on it
    assert (baseline[:, 0] - power[:, 0]).max() >= 5.9      # the other site does
    # A report naming a car its event does not list (home1's) is refused; the others are stored.
    event_id = next(iter(agents[1].events))
    (first,) = [r for r in fetch_reports(bl, event_id) if r["reportName"].endswith("16:00:00Z")]
    forged = {k: v for k, v in first.items() if k not in ("id", "createdDateTime", "modificationDateTime",
                                                          "objectType")}
    forged["resources"] = [{**first["resources"][0], "resourceName": "c1/v1"}]
    agents[1].link.post_report(forged)
    result = collect_reports(conn, bl, T, T + timedelta(hours=1))
    assert result.reports == 3 and len(result.refused) == 1 and "c1/v1" in result.refused[0][1]
    assert result.stored == result.samples > 0
    assert all(i["payloads"][0]["type"] == READING for i in first["resources"][0]["intervals"])


# -- without a VTN: the layout, the receiver, refusing events, an offline site -----------------------
def test_report_layout_is_the_specs_and_gives_back_every_second() -> None:
    from flexfleet.openadr.models301 import Report
    from services.ven_agent.layout import parse_report, report_body

    rng = np.random.default_rng(3)
    n, start = 600, int(T.timestamp()) + 17
    power = np.round(rng.normal(5, 3, (n, 2)), 2)
    power[200:260] = 7.0                                       # flat stretches merge
    baseline = np.full((n, 2), 11.0)
    plugged = np.ones((n, 2), bool)
    plugged[400:, 1] = False
    measured = np.ones((n, 2), bool)
    measured[100:130, 0] = False                               # the meter was unreachable
    fine = np.zeros(n, bool)
    fine[150:300] = True
    body = report_body(program_id="1", event_id="2", ven_name="home1", event_name="o@home1", start_s=start,
                       resources=["c1/v1", "c2/v2"], power_kw=power, baseline_kw=baseline, plugged=plugged,
                       measured=measured, fine=fine)
    Report.model_validate(body)
    samples = parse_report(body)
    for j, vehicle in enumerate(("v1", "v2")):
        mine = sorted((s for s in samples if s.vehicle_id == vehicle), key=lambda s: s.ts)
        assert all(s.duration_s <= 60 for s in mine)
        covered = np.zeros(n, bool)
        for s in mine:
            a = int(s.ts.timestamp()) - start
            k = slice(a, a + int(s.duration_s))
            covered[k] = True
            if fine[a] and plugged[a, j]:
                assert (power[k, j] == s.power_kw).all()       # 1 s, merged only where equal
            else:
                assert s.power_kw == pytest.approx(power[k, j][measured[k, j]].mean(), abs=1e-4)
            assert (plugged[k, j] == s.plugged_in).all()
        assert (covered == measured[:, j]).all()               # unreadable seconds are left out, not 0
    bad = {**body, "resources": [{**body["resources"][0], "intervals": [
        {**body["resources"][0]["intervals"][0], "payloads": [{"type": "READING", "values": ["11"]}]}]}]}
    with pytest.raises(DomainError, match=r"intervals\.0\.READING"):
        parse_report(bad)


def test_the_receiver_takes_only_its_agents_token() -> None:
    got: list[dict] = []
    receiver = Receiver("http://127.0.0.1:1")
    url, token = receiver.route("home1", got.append)
    assert url == "http://127.0.0.1:1/notifications/home1"
    note = {"objectType": "EVENT", "operation": "POST", "object": {"id": "1"}}
    assert receiver.deliver("home1", f"Bearer {token}", note) == 204 and got == [note]
    assert receiver.deliver("home1", "Bearer guess", note) == 401
    assert receiver.deliver("home2", f"Bearer {token}", note) == 404
    assert receiver.deliver("home1", f"Bearer {token}", ["not", "a", "notification"]) == 400
    assert len(got) == 1


def test_a_bad_event_is_refused_and_the_last_good_version_kept_and_an_offline_site_goes_quiet() -> None:
    from flexfleet.dispatch.signals import Direction, SignalKind, SiteInterval, SiteSignal

    sites = simulated_sites()
    offline = Broken.parse(f"offline@{T.timestamp() + 600}")
    sites[1] = SimSite(sites[1].site, sites[1].pairs, sites[1].sessions, broken=offline)
    agents = [SiteAgent(s.site_id, s.resources, broken=s.broken) for s in sites]
    for s, a in zip(sites, agents):
        signal = SiteSignal("ob", s.site_id, SignalKind.FCR, Direction.UP, 1, s.resources,
                            (SiteInterval(T, T + timedelta(hours=1), (6.0,)),), ((49.5, 1.0), (49.9, 0.0)),
                            timedelta(minutes=20))
        a.programs = {"p": FCR_UP}
        assert a.receive({**signal.event_body("p"), "id": "e1"})
    good = agents[0].events["e1"]
    broken_body = {**good.body, "intervals": [{**good.body["intervals"][0], "payloads": [
        p if p["type"] != "FLEXFLEET_FCR_CAPACITY" else {**p, "values": [6.0, 1.0]}
        for p in good.body["intervals"][0]["payloads"]]}]}
    assert not agents[0].receive(broken_body) and agents[0].stats.refused == 1
    assert agents[0].events["e1"] is good
    assert not agents[0].receive({**good.body, "eventName": "ob@home2",
                                  "targets": [{"type": "VEN_NAME", "values": ["home2"]},
                                              {"type": "RESOURCE_NAME", "values": ["c2/v2"]}]})
    world = World(sites)
    sim = Simulation(world, agents, None, batch_s=300)
    sim.run(int(T.timestamp()), int(T.timestamp()) + 1200)
    names = {a.ven_name: [r["reportName"][-9:-1] for r in a.sent] for a in agents}
    assert names == {"home1": ["16:00:00", "16:05:00", "16:10:00", "16:15:00"], "home2": ["16:00:00", "16:05:00"]}
    assert world.plant.power_kw[1] == 11.0                     # offline: the charger runs its fallback


def test_a_car_on_another_charger_of_its_site_is_followed_and_reported_there(world) -> None:
    """The dispatcher expects v1 on its home charger c1 (no session says otherwise); it plugs
    into c3 of the same site instead, as a shared hub's cars take whichever charger is free. The
    site's agent controls c3 for v1's share, reports it as c3/v1, and the business logic takes
    that report: the car is listed, the charger is the site's."""
    base_url, conn, (fcr, _) = world
    c3 = Charger("c3", SITES["home1"], CurrentType.AC, True, 11.0, 11.0)
    write_registry(conn, chargers=[c3])
    bl = bl_client(base_url, *BL)
    Dispatcher(conn, bl).dispatch([fcr])
    stay = dict(plug_in_s=(T - timedelta(hours=1)).timestamp(), plug_out_s=(T + timedelta(hours=4)).timestamp(),
                departure_s=(T + timedelta(hours=4)).timestamp(), min_soc_pct=30.0, target_soc_pct=80.0)
    site = SimSite(SITES["home1"], ((CHARGERS["c1"], VEHICLES["v1"]), (c3, VEHICLES["v1"])),
                   (PlugSession("c3/v1", soc_pct=55.0, **stay),))
    agent = SiteAgent("home1", site.resources, VenLink(base_url, *CREDS["home1"]))
    trace = generate_frequency(T - timedelta(minutes=10), duration_s=75 * 60, seed=6,
                               events=[FrequencyEvent(T + timedelta(minutes=5), 49.2, time_to_extreme_s=6.0)])
    write_frequency(conn, trace)
    sim = Simulation(World([site]), [agent], trace, batch_s=600, keep_trace=True)
    sim.start()
    assert [e.signal.resources for e in agent.events.values()] == [("c1/v1",)]
    stats = sim.run(int(T.timestamp()) - 120, int((T + timedelta(minutes=61)).timestamp()))
    assert not stats.unknown_resources
    power, baseline = sim.trace.array("power_kw")[120:], sim.trace.array("baseline_kw")[120:]
    assert (baseline[:, 1] - power[:, 1]).max() >= 5.9            # c3 (column 1) answers the dip
    assert (power[:, 0] == 0).all()                               # c1 has no car

    result = collect_reports(conn, bl, T, T + timedelta(hours=1))
    assert result.reports >= 1 and not result.refused and result.stored == result.samples > 0
    stored = load_measurements(conn, ["v1"], T, T + timedelta(hours=1))
    assert set(stored["charger_id"]) == {"c3"} and stored["plugged_in"].all()
    delivery = verify_deliveries(conn, T, T + timedelta(hours=1))
    (d,) = [x for x in delivery.deliveries if x.obligation_id == fcr.obligation_id]
    (home1,) = [s for s in d.sites if s.site_id == "home1"]
    assert home1.response_time_s is not None and home1.response_time_s <= 7.5
    assert home1.delivered_share == pytest.approx(1.0, abs=0.02)
