"""Obligations to OpenADR signals and back, and re-dispatch inside a bundle, without I/O: the
assignment sums to the obligation, site by site and resource by resource; an event parses back
to what it was made from (also through JSON and openadr3-client's models, as a VEN reads it);
a re-dispatch never gives a car more than its headroom, never a site more than its limit (split
among its cars, not copied to each), and either moves a leaving car's whole share or reports
the rest as uncovered."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openadr3_client.oadr301.models.event.event import NewEvent
from openadr3_client.oadr301.models.program.program import NewProgram

from flexfleet.dispatch.redispatch import Capability, peak_holdings, redispatch
from flexfleet.dispatch.signals import (
    DISPATCH_SETPOINT,
    EXPORT_SETPOINT,
    FCR_CAPACITY,
    RESOURCE_SETPOINT,
    Direction,
    Placement,
    ProductSignal,
    SignalKind,
    assign,
    dispatch_from_signals,
    frequency_share,
    parse_assignments,
    parse_event,
    program_body,
    site_signals,
)
from flexfleet.domain.errors import DomainError
from flexfleet.markets import default_catalogue
from services.bidder.store import Obligation

T = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
CATALOGUE = default_catalogue()
PRODUCTS = ["FCR-D-up/SE_DK2", "FCR-D-down/SE_DK2", "FCR-N/SE_DK2", "mFRR-energy/SE", "mFRR-capacity/SE",
            "local-flex/NODES"]


def signal(product_id: str) -> ProductSignal:
    return ProductSignal.from_product(CATALOGUE.by_id(product_id))


def obligation(product_id: str, bundle: dict[str, float], volume_kw: float, direction: str = "up",
               mtus: int = 1, start: datetime = T) -> Obligation:
    end = start + mtus * signal(product_id).mtu
    return Obligation("plan-1/0", "plan-1/0", "SE3", product_id, direction, None, start, end,
                      Decimal(str(volume_kw)) / 1000, Decimal("5"), tuple(bundle), tuple(bundle.values()))


def placed(sites: dict[str, str]) -> dict[str, Placement]:
    return {v: Placement(v, f"c-{v}", s) for v, s in sites.items()}


def total_at(d, t: datetime) -> float:
    return math.fsum(s.total_kw for s in d.slots if s.start <= t < s.end)


# -- products and programs -------------------------------------------------------------------------
def test_each_catalogue_product_has_a_valid_program_and_the_curve_is_signed_up_positive() -> None:
    for product in CATALOGUE.products:
        body = program_body(ProductSignal.from_product(product), ["https://example.org/rules"])
        assert body["programName"] == product.id and body["bindingEvents"] is False
        assert NewProgram.model_validate(body).program_name == product.id       # what the BL client sends
    up, down, n = signal("FCR-D-up/SE_DK2"), signal("FCR-D-down/SE_DK2"), signal("FCR-N/SE_DK2")
    assert (up.kind, up.fixed_direction, up.endurance) == (SignalKind.FCR, Direction.UP, timedelta(minutes=20))
    assert down.curve == ((50.1, 0.0), (50.5, -1.0)) and n.curve == ((49.9, 1.0), (50.1, -1.0))
    assert json.dumps(down.curve) == "[[50.1, 0.0], [50.5, -1.0]]"                # no -0.0 on the wire
    assert frequency_share(up.curve, 49.7) == pytest.approx(0.5) and frequency_share(up.curve, 49.0) == 1.0
    assert frequency_share(up.curve, 50.0) == 0.0 and frequency_share(down.curve, 50.3) == pytest.approx(-0.5)
    assert frequency_share(n.curve, 50.05) == pytest.approx(-0.5)
    mfrr = signal("mFRR-energy/SE")
    assert (mfrr.kind, mfrr.fixed_direction, mfrr.mtu, mfrr.priority) == (SignalKind.SETPOINT, None,
                                                                         timedelta(minutes=15), 2)
    assert up.priority < mfrr.priority < signal("local-flex/NODES").priority   # FCR first, as the power manager


def test_directions_are_checked_against_the_product() -> None:
    assert signal("FCR-N/SE_DK2").direction_of("down") is Direction.SYMMETRIC
    assert signal("mFRR-energy/SE").direction_of("down") is Direction.DOWN
    with pytest.raises(DomainError) as bad:
        signal("FCR-D-up/SE_DK2").direction_of("down")
    assert bad.value.field == "direction"
    with pytest.raises(DomainError):
        signal("mFRR-energy/SE").direction_of("sideways")


# -- assignment and site signals ---------------------------------------------------------------------
def test_a_bundle_is_scaled_alike_to_the_volume_and_split_by_site() -> None:
    o = obligation("FCR-D-up/SE_DK2", {"v1": 8.0, "v2": 6.0, "v3": 6.0}, 10.0, mtus=2)
    d = assign(o, signal(o.product_id), placed({"v1": "home1", "v2": "hub", "v3": "hub"}))
    assert [dict(s.kw) for s in d.slots] == [{"v1": 4.0, "v2": 3.0, "v3": 3.0}] * 2
    home, hub = site_signals(d)
    assert (home.ven_name, home.resources, [i.kw for i in home.intervals]) == ("home1", ("c-v1/v1",), [(4.0,)] * 2)
    assert (hub.resources, [i.kw for i in hub.intervals]) == (("c-v2/v2", "c-v3/v3"), [(3.0, 3.0)] * 2)
    body = hub.event_body("prog-1")
    assert body["eventName"] == "plan-1/0@hub" and body["priority"] == 1
    assert body["targets"] == [{"type": "VEN_NAME", "values": ["hub"]},
                               {"type": "RESOURCE_NAME", "values": ["c-v2/v2", "c-v3/v3"]}]
    first = body["intervals"][0]
    assert first["intervalPeriod"] == {"start": "2026-11-25T16:00:00Z", "duration": "PT1H"}
    assert first["payloads"] == [{"type": "FLEXFLEET_DIRECTION", "values": ["UP"]},
                                 {"type": FCR_CAPACITY, "values": [3.0, 3.0]},
                                 {"type": "FLEXFLEET_FREQUENCY_CURVE", "values": [49.5, 1.0, 49.9, 0.0]},
                                 {"type": "FLEXFLEET_ENDURANCE", "values": ["PT20M"]}]


def test_a_setpoint_gives_the_site_total_once_and_its_split_per_resource() -> None:
    """The site's DISPATCH_SETPOINT is the sum for the site's cars together, never each car's."""
    o = obligation("mFRR-energy/SE", {"v2": 6.0, "v3": 6.0}, 8.4, direction="down")
    (hub,) = site_signals(assign(o, signal(o.product_id), placed({"v2": "hub", "v3": "hub"})))
    payloads = {p["type"]: p["values"] for p in hub.event_body("p")["intervals"][0]["payloads"]}
    assert payloads[DISPATCH_SETPOINT] == [pytest.approx(8.4)] and payloads[RESOURCE_SETPOINT] == [4.2, 4.2]
    assert EXPORT_SETPOINT not in payloads
    up = obligation("mFRR-energy/SE", {"v2": 6.0}, 5.0, direction="up")
    (site,) = site_signals(assign(up, signal(up.product_id), placed({"v2": "hub"})))
    types = [p["type"] for p in site.event_body("p")["intervals"][0]["payloads"]]
    assert types == ["FLEXFLEET_DIRECTION", EXPORT_SETPOINT, RESOURCE_SETPOINT]
    assert [(a.resource_name, a.kind, a.direction, a.kw) for a in parse_assignments(site.event_body("p"))] == [
        ("c-v2/v2", SignalKind.SETPOINT, Direction.UP, 5.0)]


def test_a_bundle_short_of_the_volume_is_assigned_in_full_and_the_rest_is_uncovered() -> None:
    o = obligation("FCR-D-up/SE_DK2", {"v1": 3.0, "v2": 2.0}, 8.0)
    d = assign(o, signal(o.product_id), placed({"v1": "a", "v2": "b"}))
    assert dict(d.slots[0].kw) == {"v1": 3.0, "v2": 2.0}
    assert d.uncovered() == [(T, T + timedelta(hours=1), pytest.approx(3.0))]


def test_a_car_holding_kw_without_a_site_is_refused_until_its_share_moves() -> None:
    o = obligation("FCR-D-up/SE_DK2", {"v1": 8.0, "v2": 6.0}, 7.0)
    d = assign(o, signal(o.product_id), placed({"v1": "home1"}))
    with pytest.raises(DomainError) as refused:
        site_signals(d)
    assert refused.value.field == "placements" and "v2" in refused.value.reason
    moved = redispatch(d, "v2", T, {"v1": Capability("v1", 11.0, 0.0, 8.0)}, gone={"v2"}).after
    assert [i.kw for i in site_signals(moved)[0].intervals] == [(7.0,)]


@pytest.mark.parametrize(("change", "field"), [
    (dict(mtu_start=datetime(2026, 11, 25, 16)), "mtu_start"),
    (dict(mtu_end=T + timedelta(minutes=30)), "mtu_end"),
    (dict(mtu_end=T), "mtu_end"),
    (dict(kw=(1.0,)), "kw"),
    (dict(vehicles=("v1", "v1")), "vehicles"),
    (dict(kw=(1.0, -2.0)), "kw[v2]"),
    (dict(kw=(0.0, 0.0)), "kw"),
    (dict(volume_mw=Decimal(0)), "volume_mw"),
    (dict(direction="down"), "direction"),
])
def test_bad_obligations_are_refused_naming_the_field(change: dict, field: str) -> None:
    base = obligation("FCR-D-up/SE_DK2", {"v1": 8.0, "v2": 6.0}, 7.0).__dict__
    bad = Obligation(**{**base, **change})
    with pytest.raises(DomainError) as refused:
        assign(bad, signal("FCR-D-up/SE_DK2"))
    assert refused.value.field == field


# -- parsing ---------------------------------------------------------------------------------------
def _hub_event() -> dict:
    o = obligation("mFRR-energy/SE", {"v2": 6.0, "v3": 6.0}, 8.0, direction="down", mtus=2)
    return site_signals(assign(o, signal(o.product_id), placed({"v2": "hub", "v3": "hub"})))[0].event_body("p")


def _set(body: dict, path: list, value) -> dict:
    body = json.loads(json.dumps(body))
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


@pytest.mark.parametrize(("path", "value", "field"), [
    (["eventName"], "no-at-sign", "eventName"),
    (["targets", 0, "values"], ["home1"], "targets"),
    (["targets", 1, "values"], ["c-v2/v2", "c-v2/v2"], "targets"),
    (["targets", 1, "values"], ["c-v2-v2", "c-v3/v3"], "resourceName"),
    (["intervals", 0, "payloads", 2, "values"], [4.0], f"intervals.0.{RESOURCE_SETPOINT}"),
    (["intervals", 0, "payloads", 2, "values"], [4.0, -1.0], f"intervals.0.{RESOURCE_SETPOINT}"),
    (["intervals", 0, "payloads", 1, "values"], [9.0], f"intervals.0.{DISPATCH_SETPOINT}"),
    (["intervals", 0, "payloads", 0, "values"], ["LEFT"], "intervals.0.FLEXFLEET_DIRECTION"),
    (["intervals", 0, "payloads", 0, "values"], ["UP"], "intervals.0.payloads"),   # UP needs EXPORT_SETPOINT
    (["intervals", 0, "intervalPeriod", "duration"], "PT0S", "intervals.0.intervalPeriod.duration"),
    (["intervals", 0, "intervalPeriod", "duration"], 900, "intervals.0.intervalPeriod.duration"),
    (["intervals", 0, "intervalPeriod", "start"], "2026-11-25T16:00:00", "intervals.0.intervalPeriod.start"),
    (["intervals", 1, "intervalPeriod", "start"], "2026-11-25T16:05:00Z", "intervals"),
    (["intervals"], [], "intervals"),
])
def test_an_event_that_does_not_fit_the_format_is_refused_naming_the_member(path: list, value, field: str) -> None:
    body = _set(_hub_event(), path, value)
    with pytest.raises(DomainError) as refused:
        parse_event(body)
    assert refused.value.field == field


def test_intervals_that_disagree_on_the_direction_are_refused() -> None:
    body = _hub_event()
    body["intervals"][1]["payloads"] = [{"type": "FLEXFLEET_DIRECTION", "values": ["UP"]},
                                        {"type": EXPORT_SETPOINT, "values": [8.0]},
                                        {"type": RESOURCE_SETPOINT, "values": [4.0, 4.0]}]
    with pytest.raises(DomainError) as refused:
        parse_event(body)
    assert refused.value.field == "intervals.FLEXFLEET_DIRECTION"


# -- properties --------------------------------------------------------------------------------------
@st.composite
def dispatches(draw, all_placed: bool = True):
    product_id = draw(st.sampled_from(PRODUCTS))
    sig = signal(product_id)
    n = draw(st.integers(1, 7))
    vehicles = [f"v{i}" for i in range(n)]
    bundle = {v: draw(st.floats(0.5, 20.0)) for v in vehicles}
    share = draw(st.floats(0.05, 1.3))
    volume = round(max(0.001, share * math.fsum(bundle.values())), 3)
    direction = draw(st.sampled_from(["up", "down"])) if sig.fixed_direction is None else (
        "up" if sig.fixed_direction is Direction.SYMMETRIC else sig.fixed_direction.value.lower())
    sites = {v: draw(st.sampled_from(["s0", "s1", "s2"] + ([] if all_placed else [None]))) for v in vehicles}
    o = obligation(product_id, bundle, volume, direction, mtus=draw(st.integers(1, 3)))
    return o, assign(o, sig, placed({v: s for v, s in sites.items() if s is not None}))


@settings(max_examples=150, deadline=None)
@given(dispatches())
def test_site_and_resource_capacities_sum_to_the_obligation_and_round_trip(case) -> None:
    o, d = case
    volume = float(o.volume_mw) * 1000
    expected = min(volume, math.fsum(o.kw))
    signals = site_signals(d)
    for k, slot in enumerate(d.slots):
        per_site = [math.fsum(i.kw) for sig in signals for i in sig.intervals if i.start <= slot.start < i.end]
        assert math.fsum(per_site) == pytest.approx(expected, rel=1e-9)
        assert all(slot.kw[v] <= dict(zip(o.vehicles, o.kw))[v] * (1 + 1e-12) for v in slot.kw)
    for sig in signals:
        body = sig.event_body("program-1")
        assert parse_event(body) == sig
        assert parse_event(json.loads(json.dumps(body))) == sig                     # as the VTN stores it
        assert parse_event(NewEvent.model_validate(body)) == sig                      # as openadr3-client has it
    assert dispatch_from_signals(o, d.signal, [parse_event(s.event_body("p")) for s in signals]) == d.normalised()


@st.composite
def redispatches(draw):
    o, d = draw(dispatches(all_placed=False))
    leaving = draw(st.sampled_from(d.vehicles))
    at = d.start + timedelta(minutes=draw(st.integers(-30, int((d.end - d.start).total_seconds() // 60) + 30)))
    caps = {v: Capability(v, draw(st.floats(0, 15)), draw(st.floats(0, 5)), draw(st.floats(0, 20)))
            for v in d.vehicles if draw(st.booleans()) or v == leaving}
    rooms = {s: draw(st.floats(0, 30)) for s in ("s0", "s1", "s2") if draw(st.booleans())}
    gone = {v for v in d.vehicles if v != leaving and draw(st.integers(0, 4)) == 0}
    return d, leaving, at, caps, rooms, gone


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(redispatches())
def test_redispatch_stays_within_headroom_and_conserves_kw_or_reports_it(case) -> None:
    d, leaving, at, caps, rooms, gone = case
    r = redispatch(d, leaving, at, caps, rooms, gone)
    after = r.after
    times = sorted({s.start for s in d.slots} | {s.start for s in after.slots})
    uncovered = {m.start: m.uncovered_kw for m in r.moves}
    for t in times:
        before_kw = {v: d.kw_at(v, t) for v in d.vehicles}
        after_kw = {v: after.kw_at(v, t) for v in d.vehicles}
        if t < at:
            assert after_kw == before_kw
            continue
        assert after_kw[leaving] == 0.0
        share = before_kw[leaving]
        lost = next((u for start, u in sorted(uncovered.items()) if start <= t), 0.0) if share > 0 else 0.0
        # conservation: what the bundle held is still held, or reported uncovered
        assert math.fsum(after_kw.values()) + lost == pytest.approx(math.fsum(before_kw.values()), abs=1e-6)
        for v in d.vehicles:
            gained = after_kw[v] - before_kw[v]
            if v == leaving:
                continue
            assert gained >= -1e-12
            if gained > 1e-9:                    # only placed, known, present cars take; within their headroom
                assert v in d.placements and v in caps and v not in gone
                assert after_kw[v] <= caps[v].limit_kw + 1e-9
        for site, room in rooms.items():         # a site's limit is shared by its cars, not given to each
            members = [v for v, p in d.placements.items() if p.site_id == site and v != leaving]
            held_before = math.fsum(before_kw[v] for v in members)
            held_after = math.fsum(after_kw[v] for v in members)
            if held_after > held_before + 1e-9:
                assert held_after <= room + 1e-9
        if lost > 1e-9:                          # short only when no car outside a tight site had room
            free = [v for v in d.placements if v != leaving and v not in gone and v in caps
                    and d.placements[v].site_id not in rooms]
            assert all(after_kw[v] >= caps[v].limit_kw - 1e-9 for v in free)


def test_a_site_limit_is_split_among_its_cars_not_given_to_each() -> None:
    """Two cars at one site, 11 kW pairs each, the site may export 18 kW: the 14.3 kW of a car
    that leaves fills the site to 18 kW in all (9 each), not each car to its own 11 kW."""
    o = obligation("FCR-D-up/SE_DK2", {"v1": 20.0, "v2": 11.0, "v3": 11.0}, 30.0)
    d = assign(o, signal(o.product_id), placed({"v1": "home", "v2": "hub", "v3": "hub"}))
    assert dict(d.slots[0].kw) == pytest.approx({"v1": 20 * 30 / 42, "v2": 11 * 30 / 42, "v3": 11 * 30 / 42})
    caps = {v: Capability(v, 11.0, 0.0, 11.0) for v in ("v2", "v3")}
    r = redispatch(d, "v1", T, caps, {"hub": 18.0})
    assert dict(r.after.slots[0].kw) == pytest.approx({"v2": 9.0, "v3": 9.0})
    assert (r.share_kw, r.uncovered_kw) == (pytest.approx(20 * 30 / 42), pytest.approx(12.0))
    assert r.after.uncovered() == [(T, T + timedelta(hours=1), pytest.approx(12.0))]
    unlimited = redispatch(d, "v1", T, caps)                          # no site limit: each to its own pair kW
    assert dict(unlimited.after.slots[0].kw) == pytest.approx({"v2": 11.0, "v3": 11.0})
    assert unlimited.uncovered_kw == pytest.approx(8.0)


def test_a_departure_mid_mtu_splits_the_interval_and_only_the_rest_moves() -> None:
    o = obligation("FCR-D-up/SE_DK2", {"v1": 8.0, "v2": 8.0}, 8.0, mtus=2)
    d = assign(o, signal(o.product_id), placed({"v1": "a", "v2": "b"}))
    left = T + timedelta(minutes=20)
    r = redispatch(d, "v1", left, {"v2": Capability("v2", 11.0, 0.0, 8.0)})
    assert [(s.start, s.end, dict(s.kw)) for s in r.after.slots] == [
        (T, left, {"v1": 4.0, "v2": 4.0}), (left, T + timedelta(hours=1), {"v2": 8.0}),
        (T + timedelta(hours=1), T + timedelta(hours=2), {"v2": 8.0})]
    a, b = site_signals(r.after)
    assert [(i.start, i.end, i.kw) for i in a.intervals] == [
        (T, left, (4.0,)), (left, T + timedelta(hours=1), (0.0,)),
        (T + timedelta(hours=1), T + timedelta(hours=2), (0.0,))]
    assert [i.kw for i in b.intervals] == [(4.0,), (8.0,), (8.0,)]
    assert (r.share_kw, r.uncovered_kw) == (4.0, 0.0)
    again = redispatch(r.after, "v1", left, {"v2": Capability("v2", 11.0, 0.0, 8.0)})
    assert again.after == r.after and again.moves == ()                  # told twice: nothing moves
    with pytest.raises(DomainError) as refused:
        redispatch(d, "v9", left, {})
    assert refused.value.field == "vehicle_id"
    with pytest.raises(DomainError):
        redispatch(d, "v1", datetime(2026, 11, 25, 16, 20), {})


def test_headroom_counts_other_obligations_and_both_ways_for_symmetric() -> None:
    fcr = assign(obligation("FCR-D-up/SE_DK2", {"v1": 6.0}, 6.0), signal("FCR-D-up/SE_DK2"))
    n = assign(obligation("FCR-N/SE_DK2", {"v1": 2.0}, 2.0, start=T + timedelta(minutes=60)), signal("FCR-N/SE_DK2"))
    mfrr = assign(obligation("mFRR-energy/SE", {"v1": 3.0}, 3.0, direction="up", start=T + timedelta(minutes=15)),
                  signal("mFRR-energy/SE"))
    held = peak_holdings([fcr, n, mfrr], T, T + timedelta(hours=2))["v1"]
    assert held == {Direction.UP: 9.0, Direction.DOWN: 2.0}          # FCR-D + mFRR overlap; FCR-N both ways
    assert peak_holdings([fcr, n, mfrr], T, T + timedelta(hours=2), exclude=fcr.obligation_id) == {}
    cap = Capability.of("v1", Direction.SYMMETRIC, pair_up_kw=11, pair_down_kw=7, other_up_kw=9, other_down_kw=2,
                        held_kw=10)
    assert cap.limit_kw == 2.0                                       # up binds: 11 - 9 < 7 - 2
    with pytest.raises(DomainError) as bad:
        Capability("v1", -1.0)
    assert bad.value.field == "pair_kw"
