"""The site controller (flexfleet.dispatch.control) and the charger it commands, without I/O:
the site's fuse is split across its chargers, never copied to each; no discharge on a stale or
missing SoC; a car under its minimum charges at full power whatever is asked; the latest-start
plan arrives at the departure SoC; FCR-D reaches 86 % within 7.5 s on a healthy charger and not
on a slow one; the baseline does not move with the activation. Properties (hypothesis): the SoC
never goes under the minimum, the departure SoC is reached whenever it was reachable at the
start, commands stay within pair and site limits, and a resource that holds its capacity
delivers exactly capacity x share."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexfleet.dispatch.control import (
    ChargePolicy,
    ChargerPlant,
    ControlConfig,
    FcrHoldings,
    Resources,
    ResourceSpec,
    ResourceState,
    SiteLimits,
    control_step,
    estimate_soc,
    track_baseline,
)
from flexfleet.dispatch.signals import frequency_share
from flexfleet.domain import Charger, Site, Vehicle
from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import CurrentType, SiteKind, VehicleSpec

FCR_D_UP = ((49.5, 1.0), (49.9, 0.0))
FCR_D_DOWN = ((50.1, 0.0), (50.5, -1.0))
FCR_N = ((49.9, 1.0), (50.1, -1.0))
NOW = 1_790_000_000.0


def spec(name: str = "c/v", site: int = 0, battery: float = 50.0, charge: float = 11.0, discharge: float = 11.0,
         latency: float = 1.0, ramp: float = 4.0, soc_min: float = 0.0, soc_max: float = 100.0) -> ResourceSpec:
    return ResourceSpec(name, site, battery, charge, discharge, soc_min, soc_max, 0.92, latency, ramp)


def state(n: int, soc: float | list[float] = 50.0, *, age: float = 0.0, min_soc: float = 20.0,
          target: float = math.nan, departure: float = math.nan, plugged: bool = True) -> ResourceState:
    full = lambda x: np.broadcast_to(np.asarray(x, float), (n,)).copy()   # noqa: E731
    return ResourceState(np.full(n, plugged), np.ones(n, bool), full(soc), full(age), full(min_soc), full(target),
                         full(departure))


def holdings(rows) -> FcrHoldings:
    return FcrHoldings.of([(i, kw, curve, 1200.0, 7.5, 0.86) for i, kw, curve in rows])


def sites(imp: float = 100.0, exp: float = 100.0, n: int = 1) -> SiteLimits:
    return SiteLimits(np.full(n, imp), np.full(n, exp))


# -- the layers -------------------------------------------------------------------------------------
def test_a_site_limit_is_split_across_its_chargers_not_written_to_each() -> None:
    res = Resources.of([spec(f"c{i}/v{i}") for i in range(3)])
    step = control_step(NOW, 50.0, res, sites(imp=11.0, exp=4.2), state(3, 50.0), FcrHoldings.none())
    assert step.hi_kw.sum() == pytest.approx(11.0) and step.command_kw.sum() == pytest.approx(11.0)
    assert step.hi_kw == pytest.approx([11 / 3] * 3)
    assert step.lo_kw.sum() == pytest.approx(-4.2)          # what they may export together


def test_no_discharge_on_a_stale_or_missing_soc() -> None:
    res = Resources.of([spec("a/1"), spec("b/2"), spec("c/3")])
    st_ = ResourceState(np.ones(3, bool), np.ones(3, bool), np.array([80.0, 80.0, np.nan]),
                        np.array([10.0, 3600.0, 0.0]), np.full(3, 20.0), np.full(3, 80.0), np.full(3, np.nan))
    step = control_step(NOW, 49.0, res, sites(), st_, holdings([(i, 10.0, FCR_D_UP) for i in range(3)]))
    # at its target the fresh car idles and holds 10 kW up by discharging; the stale one may only
    # give up charging, so to hold 10 kW up it must charge at 10 kW; unknown SoC: charging on
    assert step.baseline_kw == pytest.approx([0.0, 10.0, 11.0])
    assert step.command_kw == pytest.approx([-10.0, 0.0, 1.0])     # the response, never a discharge
    assert (step.lo_kw[1:] == 0).all() and step.lo_kw[0] < 0


def test_under_the_minimum_it_charges_at_full_power_whatever_is_asked() -> None:
    res = Resources.of([spec()])
    step = control_step(NOW, 49.0, res, sites(), state(1, 10.0, min_soc=30.0),
                        holdings([(0, 11.0, FCR_D_UP)]), np.array([-5.0]))
    assert step.below_min[0] and step.command_kw[0] == pytest.approx(11.0)


def test_a_minimum_is_kept_with_room_for_the_chargers_lag() -> None:
    res = Resources.of([spec(latency=2.0, ramp=1.0)])
    just_above = state(1, 20.05, min_soc=20.0, target=20.0)
    step = control_step(NOW, 49.0, res, sites(), just_above, holdings([(0, 11.0, FCR_D_UP)]))
    assert step.command_kw[0] == 0.0      # 25 Wh above the minimum, but 11 kW takes 22 s to stop


def test_latest_start_plan_reaches_the_departure_soc_and_waits_until_it_must() -> None:
    res = Resources.of([spec(battery=40.0, charge=7.4, discharge=0.0)])
    departure = NOW + 4 * 3600
    cfg = ControlConfig(dt_s=5.0, policy=ChargePolicy.LATEST)
    plant = ChargerPlant(res, np.array([40.0]), dt_s=5.0)
    powers, t = [], NOW
    while t < departure:
        st_ = state(1, float(plant.soc_pct[0]), target=80.0, departure=departure)
        step = control_step(t, 50.0, res, sites(), st_, FcrHoldings.none(), None, cfg)
        powers.append(plant.step(step.command_kw, np.ones(1, bool), np.ones(1, bool))[0])
        t += 5.0
    powers = np.array(powers)
    # 16 kWh at 7.4 kW x 0.92 is 2.35 h: idle for the first 1.5 h, then full power
    assert (powers[: int(1.4 * 3600 / 5)] == 0).all()
    assert plant.soc_pct[0] >= 80.0 - 1e-6


def fcr_step_response(latency: float, ramp: float, capacity: float = 11.0, seconds: int = 20) -> np.ndarray:
    """Response (baseline - power) of one charging V1G car to a step to 49.0 Hz at t = 0."""
    res = Resources.of([spec(discharge=0.0, latency=latency, ramp=ramp)])
    plant = ChargerPlant(res, np.array([30.0]), power_kw=np.array([11.0]))
    held = holdings([(0, capacity, FCR_D_UP)])
    out = []
    for k in range(-5, seconds):
        step = control_step(NOW + k, 50.0 if k < 0 else 49.0, res, sites(), state(1, float(plant.soc_pct[0])), held)
        p = plant.step(step.command_kw, np.ones(1, bool), np.ones(1, bool))
        if k >= 0:
            out.append(step.baseline_kw[0] - p[0])
    return np.array(out)


def test_fcr_d_healthy_charger_gives_86_percent_within_7_5_s_and_a_slow_one_does_not() -> None:
    healthy = fcr_step_response(latency=1.0, ramp=4.0)
    assert healthy[7] >= 0.86 * 11.0 and healthy[-1] == pytest.approx(11.0)    # second 7: the value at 7.5 s
    first = int(np.argmax(healthy >= 0.86 * 11.0))
    assert first <= 5                                                          # well within 7.5 s
    slow = fcr_step_response(latency=8.0, ramp=0.3)
    assert slow[7] < 0.86 * 11.0 and slow[7] == 0.0
    res = Resources.of([spec(latency=8.0, ramp=0.3)])
    flagged = control_step(NOW, 50.0, res, sites(), state(1, 50.0), holdings([(0, 11.0, FCR_D_UP)]))
    assert flagged.too_slow[0]


def test_the_baseline_holds_through_an_activation_and_rejoins_the_soc_after() -> None:
    res = Resources.of([spec(battery=40.0, charge=11.0, discharge=11.0)])
    held = holdings([(0, 6.0, FCR_D_UP)])
    plant = ChargerPlant(res, np.array([70.0]), power_kw=np.array([11.0]))
    soc, age = np.array([70.0]), np.array([0.0])
    base_soc, quiet = soc.copy(), np.array([np.inf])
    baselines = []
    for k in range(400):
        hz = 49.0 if 10 <= k < 200 else 50.0
        st_ = state(1, float(soc[0]), target=75.0, departure=NOW + 10 * 3600)
        step = control_step(NOW + k, hz, res, sites(), st_, held, None, ControlConfig(), base_soc)
        p = plant.step(step.command_kw, np.ones(1, bool), np.ones(1, bool))
        soc, age = estimate_soc(soc, age, p, res, 1.0)
        base_soc, quiet = track_baseline(base_soc, soc, quiet, step, res, 1.0)
        baselines.append(step.baseline_kw[0])
    # charging to 75 % takes 2 kWh / 0.92 at 11 kW (about 12 min): the baseline stays at 11 kW
    # through the activation although the car itself charged at 5 kW
    assert baselines[10:200] == pytest.approx([11.0] * 190)
    assert base_soc[0] >= soc[0] - 1e-9 and quiet[0] > 60


def test_setpoints_run_inside_the_band_fcr_reserves() -> None:
    res = Resources.of([spec("a/1", discharge=0.0), spec("b/2")])
    held = holdings([(0, 4.0, FCR_D_UP), (1, 5.0, FCR_D_DOWN)])
    step = control_step(NOW, 50.0, res, sites(), state(2, 50.0), held, np.array([2.0, 8.0]))
    # V1G car holding 4 kW up must charge at least 4 (it can only give up charging); the other
    # holding 5 kW down may not charge more than 11 - 5
    assert step.baseline_kw == pytest.approx([4.0, 6.0])
    assert (step.held_up_kw[0], step.held_down_kw[1]) == pytest.approx((4.0, 5.0))


def test_a_full_car_discharges_when_asked_whatever_the_other_resources_hold() -> None:
    # Found by the simulated dispatch day: a full car (at its target, no departure declared) was
    # told to export for a local order and did nothing whenever any resource of the process held
    # FCR, because the endurance check planned its recharge at the 0 kW a full battery takes now.
    res = Resources.of([spec("a/1"), spec("b/2")])
    full = state(2, [100.0, 50.0], target=100.0)
    alone = control_step(NOW, 50.0, res, sites(), full, FcrHoldings.none(), np.array([-8.0, np.nan]))
    beside = control_step(NOW, 50.0, res, sites(), full, holdings([(1, 4.0, FCR_D_DOWN)]), np.array([-8.0, np.nan]))
    assert alone.baseline_kw[0] == beside.baseline_kw[0] == pytest.approx(-8.0)
    held = control_step(NOW, 50.0, res, sites(), full, holdings([(0, 6.0, FCR_D_UP)]))
    assert held.held_up_kw[0] == pytest.approx(6.0)      # and it holds FCR-D up capacity


def test_estimate_soc_counts_metered_energy_and_takes_readings() -> None:
    res = Resources.of([spec(battery=46.0), spec("d/2", battery=46.0)])
    soc, age = estimate_soc(np.array([50.0, 50.0]), np.array([0.0, 0.0]), np.array([10.0, -10.0]), res, 3600.0)
    assert soc == pytest.approx([50 + 9.2 / 46 * 100, 50 - 10 / 0.92 / 46 * 100]) and age.tolist() == [3600, 3600]
    soc, age = estimate_soc(soc, age, np.zeros(2), res, 1.0, np.array([np.nan, 42.0]))
    assert soc[1] == 42.0 and age.tolist() == [3601.0, 0.0]


def test_bad_resources_are_refused_naming_the_field() -> None:
    with pytest.raises(DomainError, match=r"battery_kwh\[1\]"):
        Resources.of([spec("a/1"), spec("b/2", battery=0.0)])
    with pytest.raises(DomainError, match="names"):
        Resources.of([spec("a/1"), spec("a/1")])
    with pytest.raises(DomainError, match="soc_min_pct"):
        Resources.of([spec(soc_min=90.0, soc_max=80.0)])


def test_resource_of_a_registry_pair_uses_the_domain_limits() -> None:
    site = Site("h1", SiteKind.HOME, "SE3-N1", "SE3", 17.0, 17.0)
    car = Vehicle("v1", "o1", VehicleSpec("Renault", "5", 52.0, "NMC", 11.0, True, 11.0, CurrentType.AC))
    one_way = ResourceSpec.of(car, Charger("c1", site, CurrentType.AC, False, 7.4), 0)
    both = ResourceSpec.of(car, Charger("c2", site, CurrentType.AC, True, 11.0, 11.0), 0)
    assert (one_way.name, one_way.max_charge_kw, one_way.max_discharge_kw) == ("c1/v1", 7.4, 0.0)
    assert (both.max_charge_kw, both.max_discharge_kw) == (11.0, 11.0)


# -- properties ---------------------------------------------------------------------------------------
cars = st.fixed_dictionaries({
    "battery": st.floats(20, 100), "charge": st.floats(2, 22), "discharge": st.one_of(st.just(0.0), st.floats(2, 11)),
    "latency": st.floats(0, 3), "ramp": st.floats(0.5, 20), "soc": st.floats(5, 95), "min_soc": st.floats(10, 60),
    "target": st.floats(20, 100), "stay_h": st.floats(0.5, 4), "fcr": st.sampled_from(["none", "up", "down", "n"]),
    "fcr_kw": st.floats(0.5, 11), "setpoint": st.one_of(st.just(math.nan), st.floats(-11, 22)),
    "policy": st.sampled_from(list(ChargePolicy)),
})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cars, min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_mobility_holds_over_whole_stays_whatever_the_frequency_asks(params, seed) -> None:
    """Each car alone at its site, a frequency with deep dips both ways, FCR holdings and
    setpoints: the SoC never drops under the minimum (or under where it started, if it came
    in below it), and the departure SoC is there at the departure whenever it was reachable."""
    dt = 10.0
    rng = np.random.default_rng(seed)
    n = len(params)
    res = Resources.of([spec(f"c{i}/v{i}", i, p["battery"], p["charge"], p["discharge"], p["latency"], p["ramp"])
                        for i, p in enumerate(params)])
    cfg = ControlConfig(dt_s=dt)
    run_cfg = ControlConfig(dt_s=dt, policy=params[0]["policy"])
    lim = SiteLimits(np.array([p["charge"] for p in params]), np.array([p["discharge"] for p in params]))
    departure = np.array([NOW + p["stay_h"] * 3600 for p in params])
    curves = {"up": FCR_D_UP, "down": FCR_D_DOWN, "n": FCR_N}
    held = FcrHoldings.of([(i, min(p["fcr_kw"], max(p["charge"], p["discharge"])), curves[p["fcr"]], 1200.0, 7.5, 0.86)
                           for i, p in enumerate(params) if p["fcr"] != "none"])
    setpoint = np.array([p["setpoint"] for p in params])
    soc0 = np.array([p["soc"] for p in params])
    min_soc, target = np.array([p["min_soc"] for p in params]), np.array([p["target"] for p in params])
    plant = ChargerPlant(res, soc0, dt_s=dt)
    steps = int(max(p["stay_h"] for p in params) * 3600 / dt) + 1
    hz = 50.0 + np.cumsum(rng.normal(0, 0.03, steps)) * 0.3
    for k in rng.integers(0, steps, 6):
        hz[k:k + 60] += rng.choice([-0.8, 0.8])
    lowest = soc0.copy()
    at_departure = np.full(n, np.nan)
    plugged = np.ones(n, bool)
    for k in range(steps):
        t = NOW + k * dt
        plugged = t < departure
        st_ = ResourceState(plugged, np.ones(n, bool), plant.soc_pct.copy(), np.zeros(n), min_soc, target, departure)
        step = control_step(t, float(hz[k]), res, lim, st_, held, setpoint, run_cfg)
        assert (step.command_kw >= -res.max_discharge_kw - 1e-9).all()
        assert (step.command_kw <= res.max_charge_kw + 1e-9).all()
        plant.step(step.command_kw, plugged, np.ones(n, bool))
        lowest = np.minimum(lowest, plant.soc_pct)
        leaving = np.isnan(at_departure) & (t + dt >= departure)
        at_departure[leaving] = plant.soc_pct[leaving]
    floor = np.maximum(min_soc, 0.0)
    assert (lowest >= np.minimum(floor, soc0) - 1e-6).all()
    lag = res.lag_s(dt)
    due = np.minimum(np.maximum(target, min_soc), 100.0)
    reachable = soc0 / 100 * res.battery_kwh + res.max_charge_kw * 0.92 * (
        departure - NOW - lag - cfg.departure_margin_s) / 3600 >= due / 100 * res.battery_kwh
    assert (at_departure[reachable] >= due[reachable] - 1e-6).all(), (at_departure, due, reachable)


car_state = st.fixed_dictionaries({
    "site": st.integers(0, 2), "charge": st.floats(1, 22), "discharge": st.one_of(st.just(0.0), st.floats(1, 11)),
    "soc": st.one_of(st.just(math.nan), st.floats(0, 100)), "age": st.sampled_from([0.0, 100.0, 5000.0]),
    "min_soc": st.one_of(st.just(math.nan), st.floats(0, 80)),
    "target": st.one_of(st.just(math.nan), st.floats(0, 100)),
    "departure_h": st.one_of(st.just(math.nan), st.floats(-1, 12)), "plugged": st.booleans(),
    "fcr": st.sampled_from([None, FCR_D_UP, FCR_D_DOWN, FCR_N]), "fcr_kw": st.floats(0, 11),
    "setpoint": st.one_of(st.just(math.nan), st.floats(-11, 22)),
})


@settings(max_examples=300, deadline=None)
@given(st.lists(car_state, min_size=1, max_size=8), st.floats(49.0, 51.0), st.floats(0, 40), st.floats(0, 40))
def test_every_command_is_within_pair_and_site_limits_and_held_capacity_is_delivered(cars_, hz, imp, exp) -> None:
    n = len(cars_)
    res = Resources.of([spec(f"c{i}/v{i}", c["site"], 60.0, c["charge"], c["discharge"]) for i, c in enumerate(cars_)])
    lim = SiteLimits(np.full(3, imp), np.full(3, exp))
    st_ = ResourceState(np.array([c["plugged"] for c in cars_]), np.ones(n, bool), np.array([c["soc"] for c in cars_]),
                        np.array([c["age"] for c in cars_]), np.array([c["min_soc"] for c in cars_]),
                        np.array([c["target"] for c in cars_]),
                        np.array([NOW + c["departure_h"] * 3600 for c in cars_]))
    held = FcrHoldings.of([(i, c["fcr_kw"], c["fcr"], 1200.0, 7.5, 0.86) for i, c in enumerate(cars_) if c["fcr"]])
    step = control_step(NOW, hz, res, lim, st_, held, np.array([c["setpoint"] for c in cars_]))
    cmd = step.command_kw
    assert (cmd <= res.max_charge_kw + 1e-9).all() and (cmd >= -res.max_discharge_kw - 1e-9).all()
    assert (cmd[~st_.plugged] == 0).all()
    stale = np.isnan(st_.soc_pct) | (st_.soc_age_s > ControlConfig().max_soc_age_s)
    assert (cmd[stale] >= 0).all()
    site = res.site
    assert (np.bincount(site, np.maximum(cmd, 0), minlength=3) <= imp + 1e-6).all()
    assert (np.bincount(site, np.maximum(-cmd, 0), minlength=3) <= exp + 1e-6).all()
    # where the controller says it holds the whole capacity, the response is exactly capacity x share
    for i, c in enumerate(cars_):
        if not c["fcr"] or step.below_min[i] or step.departure_at_risk[i]:
            continue
        share = frequency_share(c["fcr"], hz)
        held_kw = step.held_up_kw[i] if share > 0 else step.held_down_kw[i]
        if held_kw >= c["fcr_kw"] * abs(share) - 1e-9 and (step.held_up_kw[i] >= c["fcr_kw"] * max(
                s for _, s in c["fcr"]) - 1e-9 or share <= 0) and (step.held_down_kw[i] >= c["fcr_kw"] * max(
                -s for _, s in c["fcr"]) - 1e-9 or share >= 0):
            assert step.baseline_kw[i] - cmd[i] == pytest.approx(c["fcr_kw"] * share, abs=1e-6)
