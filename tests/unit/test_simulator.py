"""The simulated fleet behaves like one, and everything it sends is valid unless broken on purpose."""

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

from flexfleet.telemetry import FleetLimits, Limits, Reading, Rejection, parse_reading
from services.simulator.fleet import Archetype, generate_fleet
from services.simulator.telemetry import BAD_KINDS, simulate, simulate_sessions

END = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday, midnight UTC


def limits_of(fleet) -> FleetLimits:
    return FleetLimits(
        {v.vehicle_id: Limits(v.spec.max_ac_charge_kw, v.spec.max_discharge_kw) for v in fleet.vehicles},
        {c.charger_id: Limits(c.max_charge_kw, c.max_discharge_kw) for c in fleet.chargers})


@pytest.fixture(scope="module")
def week():
    """Two hundred vehicles over a week at 15-minute cadence, decoded."""
    fleet = generate_fleet(200, seed=3)
    messages = list(simulate(fleet, END - timedelta(days=7), END, cadence_s=900, seed=3))
    return fleet, messages, [orjson.loads(m.value) for m in messages]


def test_same_seed_same_bytes_other_seed_other_fleet():
    fleet = generate_fleet(30, seed=11)
    start = END - timedelta(hours=6)
    a = [m.value for m in simulate(fleet, start, END, 300, seed=11, bad_share=0.05)]
    b = [m.value for m in simulate(generate_fleet(30, seed=11), start, END, 300, seed=11, bad_share=0.05)]
    c = [m.value for m in simulate(generate_fleet(30, seed=12), start, END, 300, seed=12, bad_share=0.05)]
    assert a == b
    assert a != c


def test_every_good_reading_is_valid_and_every_broken_one_refused_for_its_reason():
    fleet = generate_fleet(120, seed=5)
    limits = limits_of(fleet)
    seen: Counter[str] = Counter()
    for m in simulate(fleet, END - timedelta(days=1), END, cadence_s=300, seed=5, bad_share=0.02):
        result = parse_reading(m.value, limits, END)
        if m.expected is None:
            assert isinstance(result, Reading), (result, m.value)
            assert m.key == result.vehicle_id.encode()
        else:
            assert isinstance(result, Rejection), m.value
            assert f"{result.field}:{result.code}" == m.expected
            seen[m.expected] += 1
    assert set(seen) == set(BAD_KINDS)


def test_fleet_registry_is_consistent():
    fleet = generate_fleet(300, seed=2)
    charger_ids = {c.charger_id for c in fleet.chargers}
    owner_ids = {o.owner_id for o in fleet.owners}
    assert len(charger_ids) == len(fleet.chargers)
    assert {v.owner_id for v in fleet.vehicles} == owner_ids
    assert all(v.home_charger_id in charger_ids for v in fleet.vehicles if v.home_charger_id)
    kinds = Counter(h.archetype for h in fleet.habits)
    assert set(kinds) == set(Archetype)
    # Car-sharing cars share an operator; each private car has its own owner.
    assert len(owner_ids) < len(fleet.vehicles)
    assert sum(v.spec.v2g_capable for v in fleet.vehicles) > 0.3 * len(fleet.vehicles)


def test_physics_stays_within_limits(week):
    fleet, messages, docs = week
    limits = limits_of(fleet)
    for d in docs:
        assert 0 <= d.get("soc_pct", 50) <= 100
        if d["plugged_in"]:
            pair = min(limits.vehicles[d["vehicle_id"]].max_charge_kw, limits.chargers[d["charger_id"]].max_charge_kw)
            assert 0 <= d["power_kw"] <= pair * 1.02
        else:
            assert d["power_kw"] == 0 and "charger_id" not in d


def test_each_vehicle_clock_moves_forward(week):
    _, _, docs = week
    last: dict[str, str] = {}
    for d in docs:
        assert d["ts"] > last.get(d["vehicle_id"], ""), d
        last[d["vehicle_id"]] = d["ts"]


def test_commuters_charge_at_home_at_night_and_are_away_on_weekday_mornings(week):
    fleet, messages, docs = week
    arch = {v.vehicle_id: h.archetype for v, h in zip(fleet.vehicles, fleet.habits)}
    tz = fleet.zone.tzinfo
    share: dict[tuple[bool, int], list[bool]] = defaultdict(list)
    for m, d in zip(messages, docs):
        if arch[d["vehicle_id"]] is Archetype.COMMUTER:
            local = datetime.fromtimestamp(m.ts_s, tz)
            share[(local.weekday() >= 5, local.hour)].append(d["plugged_in"])
    weekday_night, weekday_late_morning = np.mean(share[(False, 2)]), np.mean(share[(False, 11)])
    weekend_late_morning = np.mean(share[(True, 11)])
    assert weekday_night > 0.75
    assert weekday_late_morning < weekday_night - 0.25
    assert weekend_late_morning > weekday_late_morning + 0.15


def test_owners_declare_departures_and_chargers_drop_off(week):
    fleet, messages, docs = week
    declared = [d for d in docs if "departure_at" in d]
    assert 0.1 < len(declared) / len(docs) < 0.9
    assert all(d["ts"] < datetime.fromisoformat(d["departure_at"]).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
               or d["plugged_in"] for d in declared)
    # A vehicle that reported plugged in at one step and not at all at the next, while it never
    # unplugged: its charger was offline.
    steps = sorted({m.ts_s for m in messages})
    present = defaultdict(set)
    for m, d in zip(messages, docs):
        present[m.ts_s].add(d["vehicle_id"])
    assert any(len(present[a] - present[b]) > 0 for a, b in zip(steps, steps[1:]))


def test_a_declared_departure_comes_with_the_owners_minimum_and_target(week):
    fleet, _, docs = week
    habits = {v.vehicle_id: h for v, h in zip(fleet.vehicles, fleet.habits)}
    declared = [d for d in docs if "departure_at" in d]
    assert declared and all("target_soc_pct" not in d and "min_soc_pct" not in d
                            for d in docs if "departure_at" not in d)
    for d in declared:
        h = habits[d["vehicle_id"]]
        assert (d["min_soc_pct"], d["target_soc_pct"]) == (h.min_soc_pct, h.target_soc_pct)
    targets = [h.target_soc_pct for h in fleet.habits]
    assert set(targets) <= {70.0, 80.0, 90.0, 100.0} and Counter(targets).most_common(1)[0][0] == 80.0
    assert all(h.min_soc_pct <= h.target_soc_pct <= h.charge_limit_pct for h in fleet.habits)
    assert {h.target_soc_pct for h in fleet.habits if h.archetype is Archetype.SHARED} == {80.0}


def test_one_second_cadence_for_fcr_measurement():
    fleet = generate_fleet(10, seed=1)
    msgs = list(simulate(fleet, END - timedelta(minutes=2), END, cadence_s=1, seed=1))
    per_vehicle = Counter(m.key for m in msgs)
    assert max(per_vehicle.values()) == 120


def test_a_later_end_repeats_the_earlier_simulation_and_emit_from_carries_it_on():
    """History (sessions up to T) and the stream after T can come from one simulation: the
    sessions before T do not depend on how far the simulation runs, and the stream reports
    from T on without a cold start."""
    fleet = generate_fleet(100, seed=7)
    start, t = END - timedelta(days=9), END - timedelta(days=2)
    history = simulate_sessions(fleet, start, t, cadence_s=300, seed=7)
    longer = simulate_sessions(fleet, start, END, cadence_s=300, seed=7)
    longer = longer[longer["plug_in_at"] < t].assign(plug_out_at=lambda d: d["plug_out_at"].clip(upper=t))
    key = ["vehicle_id", "charger_id", "plug_in_at", "plug_out_at"]
    assert history[key].reset_index(drop=True).equals(longer[key].reset_index(drop=True))

    stream = list(simulate(fleet, start, END, cadence_s=300, seed=7, emit_from=t))
    assert min(m.ts_s for m in stream) == int(t.timestamp())
    plugged_at_t = {m.key.decode() for m in stream if m.ts_s == int(t.timestamp())
                    and orjson.loads(m.value)["plugged_in"]}
    open_at_t = set(history.loc[~history["complete"], "vehicle_id"])
    # Every car plugged in when the history ends still is (cars behind an offline charger are silent).
    assert plugged_at_t <= open_at_t and len(plugged_at_t) >= 0.8 * len(open_at_t)
