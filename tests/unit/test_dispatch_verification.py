"""Delivery verification: required vs delivered per obligation and MTU, FCR response against the
product's requirement, the two baselines, and the shortfall with each site's part in it."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexfleet.dispatch.baselines import (Baseline, BaselineMethod, VerificationInputError, baseline_method_for,
                                          declared_schedule, rolling_average, working_days_before)
from flexfleet.dispatch.fcr import required_share, response_requirement
from flexfleet.dispatch.verification import Measurements, Resource, shared_kw, verify, verify_obligation
from flexfleet.markets import CatalogueError, default_catalogue, parse_catalogue
from flexfleet.markets.clearing import FrequencyEvent, generate_frequency

CAT = default_catalogue()
FCRD_UP = CAT.product("FCR-D-up", "SE3")
FCRD_DOWN = CAT.product("FCR-D-down", "SE3")
FLEX = CAT.product("local-flex", "SE3")
T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)          # a Friday
HOUR = timedelta(hours=1)
EVENT_S = 1200                                      # the disturbance starts 20 minutes in
RAW = json.loads((Path(__file__).parents[2] / "data/markets/nordic_products.json").read_text())


@dataclass(frozen=True)
class Ob:
    """Shaped like services.bidder.store.Obligation."""

    obligation_id: str
    product_id: str
    direction: str
    mtu_start: datetime
    mtu_end: datetime
    volume_mw: float
    vehicles: tuple[str, ...]
    kw: tuple[float, ...]


def fleet(per_site: list[int], kw: float = 4.0) -> tuple[list[str], dict[str, Resource], dict[str, float]]:
    vehicles, resources = [], {}
    for s, n in enumerate(per_site):
        for i in range(n):
            v = f"s{s}-v{i}"
            vehicles.append(v)
            resources[v] = Resource(f"site-{s}", 11.0, 0.0)
    return vehicles, resources, {v: kw for v in vehicles}


def obligation(product, vehicles, kws, oid="ob-1", start=T0) -> Ob:
    kw = tuple(kws[v] for v in vehicles)
    direction = product.direction.value if product.direction.value in ("up", "down") else "up"
    return Ob(oid, product.id, direction, start, start + HOUR, sum(kw) / 1000, tuple(vehicles), kw)


def step_frequency(hz: float = 49.0, at_s: int = EVENT_S, hold_s: int = 300, start: datetime = T0) -> pd.Series:
    """1 Hz frequency: 50.0, a step to `hz` at `at_s` held for `hold_s`, back to 50.0."""
    secs = np.arange(-120, 3600 + 400)
    values = np.where((secs >= at_s) & (secs < at_s + hold_s), hz, 50.0)
    return pd.Series(values, index=pd.DatetimeIndex([start + timedelta(seconds=int(s)) for s in secs]))


def measured(ob: Ob, share: np.ndarray, behaviour: dict[str, tuple[float, int, bool]], base_kw: float = 7.0,
             start: datetime = T0, unplugged: dict[str, slice] | None = None) -> tuple[Measurements, Baseline]:
    """One-second measurements of every vehicle following `share` (per second from start - 120 s)
    with its (follow factor, lag in seconds, reporting at all)."""
    secs = np.arange(-120, 3600 + 400)
    ts = pd.DatetimeIndex([start + timedelta(seconds=int(s)) for s in secs])
    sign = -1.0 if ob.direction == "up" else 1.0
    frames = []
    for v, kw in zip(ob.vehicles, ob.kw):
        follow, lag, online = behaviour.get(v, (1.0, 0, True))
        if not online:
            continue
        lagged = np.concatenate([np.zeros(lag), share[:len(share) - lag]]) if lag else share
        plugged = np.ones(len(secs), bool)
        if unplugged and v in unplugged:
            plugged[unplugged[v]] = False
        frames.append(pd.DataFrame({"vehicle_id": v, "ts": ts, "power_kw": base_kw + sign * kw * follow * lagged,
                                    "plugged_in": plugged, "baseline_kw": base_kw}))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {"vehicle_id": pd.Series(dtype=str), "ts": pd.Series(dtype="datetime64[ns, UTC]"),
         "power_kw": pd.Series(dtype=float), "plugged_in": pd.Series(dtype=bool),
         "baseline_kw": pd.Series(dtype=float)})
    schedule = frame[frame["ts"] == ts[0]] if len(frame) else frame
    if len(frame) == 0:
        # Nobody reported: the declared schedule is still known from before the MTU.
        schedule = pd.DataFrame({"vehicle_id": list(ob.vehicles), "ts": ts[0], "baseline_kw": base_kw})
    return Measurements(frame[["vehicle_id", "ts", "power_kw", "plugged_in"]]), declared_schedule(schedule)


def fcr_share(product, freq: pd.Series, direction: str = "up") -> np.ndarray:
    return required_share(product.activation.value, freq.to_numpy(float), direction, False)


def flex_share() -> np.ndarray:
    secs = np.arange(-120, 3600 + 400)
    return ((secs >= 0) & (secs < 3600)).astype(float)


def flex_baseline(ob: Ob, kw: float = 7.0) -> Baseline:
    return Baseline(BaselineMethod.ROLLING_WORKING_DAYS,
                    pd.DataFrame({"vehicle_id": list(ob.vehicles), "ts": T0 - timedelta(hours=2), "baseline_kw": kw}))


def check_accounting(d) -> None:
    assert 0 <= d.delivered_share <= 1
    assert d.delivered_mw + d.shortfall_mw == pytest.approx(d.required_mw, abs=1e-12)
    assert d.shortfall_mwh == pytest.approx(d.shortfall_mw * d.hours, abs=1e-12)
    assert sum(s.shortfall_mw for s in d.sites) == pytest.approx(d.shortfall_mw, abs=1e-9)
    assert sum(s.required_mw for s in d.sites) == pytest.approx(d.required_mw, abs=1e-12)
    for s in d.sites:
        assert 0 <= s.delivered_share <= 1 and s.shortfall_mw >= 0
        assert s.shortfall_mw <= s.required_mw + 1e-9 or d.shortfall_mw <= d.required_mw


# ------------------------------------------------------------------------------------ FCR-D


def test_perfect_fleet_delivers_all_and_responds_at_once() -> None:
    vehicles, resources, kws = fleet([3, 2, 4])
    ob = obligation(FCRD_UP, vehicles, kws)
    freq = step_frequency()
    m, b = measured(ob, fcr_share(FCRD_UP, freq), {})
    (d,) = verify_obligation(ob, FCRD_UP, m, b, resources, freq)
    check_accounting(d)
    assert d.delivered_share == 1 and d.shortfall_mw == 0 and d.capacity_share == 1
    assert d.response_share == 1 and d.response_time_s == 0 and d.required_response_s == 7.5
    (a,) = d.activations
    assert a.start == T0 + timedelta(seconds=EVENT_S) and a.passed and a.reference_mw == pytest.approx(0.036)
    # A step asks 7.5 s x capacity in 7.5 s; the bar is 3.2 s of the test ramp's 6.67 s of that.
    assert a.energy_mws == pytest.approx(7.5 * 0.036)
    assert a.required_energy_mws == pytest.approx(3.2 / (7.5 - 0.4 / 0.24 / 2) * 7.5 * 0.036)
    # 300 s at full activation: 0.036 MW x 300 s
    assert d.required_energy_mwh == pytest.approx(0.036 * 300 / 3600)
    assert d.delivered_energy_mwh == pytest.approx(d.required_energy_mwh)
    assert d.baseline_method is BaselineMethod.DECLARED_SCHEDULE and d.kind == "frequency"


BAR = 3.2 / (7.5 - 0.4 / 0.24 / 2) * 7.5       # s x capacity a step to 49.0 Hz asks of 7.5 s' energy


@pytest.mark.parametrize(("lag", "share"), [(0, 1.0), (3, 1.0), (4, 3.5 / BAR), (6, 1.5 / BAR), (8, 0.0)])
def test_response_lag_against_the_fcr_d_requirement(lag: int, share: float) -> None:
    """A step to 49.0 Hz: a response in full after `lag` seconds has 7.5 - lag s x capacity of
    energy by 7.5 s (the bar is 3.6); after 7 s nothing is there at 7.5 s."""
    vehicles, resources, kws = fleet([2, 2])
    ob = obligation(FCRD_UP, vehicles, kws)
    freq = step_frequency()
    m, b = measured(ob, fcr_share(FCRD_UP, freq), {v: (1.0, lag, True) for v in vehicles})
    (d,) = verify_obligation(ob, FCRD_UP, m, b, resources, freq)
    check_accounting(d)
    assert d.delivered_share == pytest.approx(share)
    (a,) = d.activations
    assert a.response_time_s == lag and a.passed == (share == 1.0)
    assert d.shortfall_mwh == pytest.approx(ob.volume_mw * (1 - share))


def ramp_frequency(start: datetime = T0) -> pd.Series:
    """The TSO's ramp 5 (Table 4): from 49.9 Hz down at 0.24 Hz/s to 49.0 Hz, sampled at 1 Hz
    half a second into each second, held 5 minutes."""
    secs = np.arange(-120, 3600 + 400)
    t = secs - EVENT_S + 0.5
    values = np.where(t < 0, 50.0, np.where(t < 600, np.maximum(49.9 - 0.24 * t, 49.0), 50.0))
    return pd.Series(values, index=pd.DatetimeIndex([start + timedelta(seconds=int(s)) for s in secs]))


@pytest.mark.parametrize(("first_8_s", "late_s", "proven"), [
    (0.86, 0, 1.0),              # exactly requirement 2 at 7.5 s, energy to spare
    (0.5, 0, 0.5 / 0.86),        # requirement 2 fails: the capacity it proves is 0.5 / 0.86
    (1.0, 5, 2.5 / 3.2),         # nothing for 5 s: requirement 2 holds, 3 proves 2.5 / 3.2
    (0.0, 8, 0.0),
])
def test_on_the_tso_test_ramp_the_checks_are_requirements_2_and_3(first_8_s: float, late_s: int,
                                                                   proven: float) -> None:
    """The response holds `first_8_s` of capacity (nothing for the first `late_s` s), then full."""
    vehicles, resources, kws = fleet([2])
    ob = obligation(FCRD_UP, vehicles, kws)
    freq = ramp_frequency()
    share = (fcr_share(FCRD_UP, freq) > 0).astype(float)
    start = 120 + EVENT_S
    share[start:start + 8] = first_8_s
    share[start:start + late_s] = 0.0
    m, b = measured(ob, share, {})
    (d,) = verify_obligation(ob, FCRD_UP, m, b, resources, freq)
    assert d.activations[0].start == T0 + timedelta(seconds=EVENT_S)
    assert d.delivered_share == pytest.approx(proven, rel=0.01)


def test_fcr_d_down_and_the_simulated_frequency_trace() -> None:
    """A simulator trace (FrequencyTrace) with an over-frequency trip activates FCR-D down; the
    OU noise around 50 Hz makes small activations that are reported but not assessed."""
    vehicles, resources, kws = fleet([3, 3])
    ob = obligation(FCRD_DOWN, vehicles, kws)
    trace = generate_frequency(T0 - timedelta(minutes=5), duration_s=4200, seed=3,
                               events=[FrequencyEvent(T0 + timedelta(seconds=EVENT_S), 50.45, 5.0, 200.0)])
    secs = np.arange(-120, 3600 + 400)
    hz = np.interp(secs + 300.0, trace.seconds(), trace.hz)
    share = required_share(FCRD_DOWN.activation.value, hz, "down", False)
    m, b = measured(ob, share, {}, base_kw=2.0)
    (d,) = verify_obligation(ob, FCRD_DOWN, m, b, resources, trace)
    check_accounting(d)
    assert d.delivered_share == pytest.approx(1.0) and d.direction == "down"
    assert any(a.start >= T0 + timedelta(seconds=EVENT_S) for a in d.activations)
    assert all(a.passed for a in d.activations)


def test_capacity_held_counts_the_lowest_quarter() -> None:
    """A site unplugged for the second quarter: the maintained capacity drops there, and that
    quarter is what counts, as in the bid backtest. Every car charges its 4 kW: no headroom
    for another to cover it."""
    vehicles, resources, kws = fleet([2, 2])
    ob = obligation(FCRD_UP, vehicles, kws)
    freq = step_frequency(hz=50.0)          # no activation this hour
    gone = {v: slice(120 + 900, 120 + 1800) for v in vehicles if v.startswith("s1")}
    m, b = measured(ob, fcr_share(FCRD_UP, freq), {}, base_kw=4.0, unplugged=gone)
    (d,) = verify_obligation(ob, FCRD_UP, m, b, resources, freq)
    check_accounting(d)
    assert d.quarter_shares == pytest.approx((1.0, 0.5, 1.0, 1.0))
    # Charging 7 kW, the cars still plugged in can give up 14 kW of the 16: the bundle covers.
    m, b = measured(ob, fcr_share(FCRD_UP, freq), {}, base_kw=7.0, unplugged=gone)
    (d,) = verify_obligation(ob, FCRD_UP, m, b, resources, freq)
    check_accounting(d)
    assert d.quarter_shares == pytest.approx((1.0, 14 / 16, 1.0, 1.0))
    assert d.capacity_share == pytest.approx(14 / 16) and d.response_share is None and d.activations == ()
    site = {s.site_id: s for s in d.sites}
    assert site["site-1"].shortfall_mw == pytest.approx(d.shortfall_mw) and site["site-0"].shortfall_mw == 0


def test_headroom_bounds_capacity() -> None:
    """V1G up: a car can give up only what it charges; charging 2 kW it cannot back 4 kW."""
    vehicles, resources, kws = fleet([2])
    ob = obligation(FCRD_UP, vehicles, kws)
    freq = step_frequency(hz=50.0)
    m, b = measured(ob, fcr_share(FCRD_UP, freq), {}, base_kw=2.0)
    (d,) = verify_obligation(ob, FCRD_UP, m, b, resources, freq)
    assert d.capacity_share == pytest.approx(0.5)
    v2g = {v: Resource(r.site_id, 11.0, 5.0) for v, r in resources.items()}
    (d,) = verify_obligation(ob, FCRD_UP, m, b, v2g, freq)
    assert d.capacity_share == 1


def test_stale_measurements_prove_nothing() -> None:
    """A vehicle whose reports stop holds its last sample for max_gap_s, then counts nothing."""
    vehicles, resources, kws = fleet([1, 1])
    ob = obligation(FCRD_UP, vehicles, kws)
    freq = step_frequency(hz=50.0)
    m, b = measured(ob, fcr_share(FCRD_UP, freq), {}, base_kw=4.0)
    frame = m.frame[~((m.frame.vehicle_id == "s1-v0") & (m.frame.ts >= T0 + timedelta(minutes=30)))]
    (d,) = verify_obligation(ob, FCRD_UP, Measurements(frame, max_gap_s=60), b, resources, freq)
    assert d.quarter_shares[:2] == (1.0, 1.0)
    assert d.quarter_shares[2] == pytest.approx(1 - 0.5 * (900 - 60) / 900)   # 60 s more of the last sample
    assert d.quarter_shares[3] == pytest.approx(0.5) and d.vehicles_without_data == 0


# ----------------------------------------------------------------------- local flexibility


def test_local_flex_energy_per_quarter_and_the_broken_site() -> None:
    vehicles, resources, kws = fleet([2, 2, 2])
    ob = obligation(FLEX, vehicles, kws)
    m, _ = measured(ob, flex_share(), {v: (0.0, 0, True) for v in vehicles if v.startswith("s2")})
    (d,) = verify_obligation(ob, FLEX, m, flex_baseline(ob), resources)
    check_accounting(d)
    assert d.kind == "dso_order" and d.baseline_method is BaselineMethod.ROLLING_WORKING_DAYS
    assert d.delivered_share == pytest.approx(2 / 3) and d.capacity_share is None and d.response_time_s is None
    assert d.required_energy_mwh == pytest.approx(ob.volume_mw) and d.delivered_energy_mwh == pytest.approx(0.016)
    site = {s.site_id: s for s in d.sites}
    assert site["site-2"].delivered_share == 0 and site["site-2"].shortfall_mw == pytest.approx(0.008)
    assert site["site-0"].shortfall_mw == 0 == site["site-1"].shortfall_mw


def test_over_delivery_in_one_quarter_does_not_cover_another() -> None:
    vehicles, resources, kws = fleet([2])
    ob = obligation(FLEX, vehicles, kws)
    share = flex_share()
    share[120:120 + 900] = 2.0          # double in the first quarter ...
    share[120 + 900:120 + 1800] = 0.0    # ... nothing in the second
    m, _ = measured(ob, share, {})
    (d,) = verify_obligation(ob, FLEX, m, flex_baseline(ob), resources)
    assert d.quarter_shares == pytest.approx((1.0, 0.0, 1.0, 1.0)) and d.delivered_share == 0


def test_unknown_baseline_proves_nothing() -> None:
    vehicles, resources, kws = fleet([2])
    ob = obligation(FLEX, vehicles, kws)
    m, _ = measured(ob, flex_share(), {})
    base = flex_baseline(ob)
    frame = base.frame.copy()
    frame.loc[frame.vehicle_id == vehicles[0], "baseline_kw"] = np.nan
    (d,) = verify_obligation(ob, FLEX, m, Baseline(base.method, frame), resources)
    assert d.delivered_share == pytest.approx(0.5)


# ------------------------------------------------------------------------------- properties

behaviours = st.tuples(st.floats(0, 1.5), st.integers(0, 10), st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(per_site=st.lists(st.integers(1, 3), min_size=1, max_size=4), flex=st.booleans(),
       data=st.data(), hz=st.floats(48.8, 49.85))
def test_accounting_holds_for_any_behaviour(per_site, flex, data, hz) -> None:
    """Delivered share within [0, 1], delivered + shortfall = required, shortfall MWh = MW x h,
    and the sites' parts add up to the obligation's shortfall, whatever the fleet did."""
    vehicles, resources, kws = fleet(per_site)
    product = FLEX if flex else FCRD_UP
    ob = obligation(product, vehicles, kws)
    behaviour = {v: data.draw(behaviours) for v in vehicles}
    freq = step_frequency(hz=hz)
    share = flex_share() if flex else fcr_share(FCRD_UP, freq)
    m, b = measured(ob, share, behaviour)
    (d,) = verify_obligation(ob, product, m, flex_baseline(ob) if flex else b, resources, None if flex else freq)
    check_accounting(d)
    if all(f >= 1 and lag == 0 and online for f, lag, online in behaviour.values()):
        assert d.shortfall_mw == pytest.approx(0, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(per_site=st.lists(st.integers(1, 3), min_size=2, max_size=4), flex=st.booleans(), data=st.data(),
       reports=st.booleans())
def test_a_site_that_does_nothing_carries_the_whole_shortfall(per_site, flex, data, reports) -> None:
    """Every other site follows perfectly: the shortfall is at most the idle site's share, and
    all of it is attributed to that site (idle = reports but does not respond, or is silent)."""
    vehicles, resources, kws = fleet(per_site)
    idle = f"site-{data.draw(st.integers(0, len(per_site) - 1))}"
    product = FLEX if flex else FCRD_UP
    ob = obligation(product, vehicles, kws)
    freq = step_frequency()
    share = flex_share() if flex else fcr_share(FCRD_UP, freq)
    behaviour = {v: (0.0, 0, reports) for v in vehicles if resources[v].site_id == idle}
    m, b = measured(ob, share, behaviour, base_kw=4.0)     # headroom = obligation: none to spare
    (d,) = verify_obligation(ob, product, m, flex_baseline(ob, 4.0) if flex else b, resources,
                             None if flex else freq)
    check_accounting(d)
    site = {s.site_id: s for s in d.sites}
    assert site[idle].delivered_share == 0
    assert site[idle].shortfall_mw == pytest.approx(d.shortfall_mw, abs=1e-12)
    assert all(s.shortfall_mw == 0 for k, s in site.items() if k != idle)
    assert d.shortfall_mw <= site[idle].required_mw + 1e-12
    if flex or not reports:     # energy, or capacity lost: exactly its share is missing
        assert d.shortfall_mw == pytest.approx(site[idle].required_mw)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_row_order_does_not_matter(seed) -> None:
    vehicles, resources, kws = fleet([2, 1, 2])
    ob = obligation(FCRD_UP, vehicles, kws)
    freq = step_frequency()
    rng = np.random.default_rng(seed)
    behaviour = {v: (float(rng.uniform(0, 1.2)), int(rng.integers(0, 9)), True) for v in vehicles}
    m, b = measured(ob, fcr_share(FCRD_UP, freq), behaviour)
    shuffled = Measurements(m.frame.sample(frac=1, random_state=seed).reset_index(drop=True))
    assert verify_obligation(ob, FCRD_UP, m, b, resources, freq) == verify_obligation(
        ob, FCRD_UP, shuffled, b, resources, freq)


# --------------------------------------------------------------------------- shared vehicles


def test_vehicle_in_two_obligations_counts_for_each_in_proportion() -> None:
    vehicles, resources, kws = fleet([2])
    a = obligation(FCRD_UP, vehicles, kws, "a")
    b_ob = Ob("b", FLEX.id, "up", T0, T0 + HOUR, 0.004, (vehicles[0],), (4.0,))
    assert shared_kw([a, b_ob]) == {"a": {vehicles[0]: 8.0, vehicles[1]: 4.0}, "b": {vehicles[0]: 8.0}}
    freq = step_frequency(hz=50.0)
    m, base = measured(a, fcr_share(FCRD_UP, freq), {})
    both = {BaselineMethod.DECLARED_SCHEDULE: base, BaselineMethod.ROLLING_WORKING_DAYS: flex_baseline(a)}
    da, db = verify([a, b_ob], CAT.by_id, m, both, resources, freq)
    # base 7 kW of headroom: vehicle 0 gives 3.5 to each; vehicle 1 its 7 to a alone.
    assert da.capacity_share == 1 and db.obligation_id == "b"
    down = Ob("c", FCRD_DOWN.id, "down", T0, T0 + HOUR, 0.004, (vehicles[0],), (4.0,))
    assert shared_kw([a, down])["a"] == {vehicles[0]: 4.0, vehicles[1]: 4.0}


# ----------------------------------------------------------------------------------- inputs


def test_bad_inputs_name_the_field() -> None:
    vehicles, resources, kws = fleet([2])
    ob = obligation(FCRD_UP, vehicles, kws)
    freq = step_frequency()
    m, b = measured(ob, fcr_share(FCRD_UP, freq), {})
    naive = m.frame.assign(ts=m.frame.ts.dt.tz_localize(None))
    with pytest.raises(VerificationInputError, match=r"^measurements\.ts: must be timezone-aware"):
        Measurements(naive)
    with pytest.raises(VerificationInputError, match=r"^measurements\.power_kw: .*s0-v1"):
        Measurements(m.frame.assign(power_kw=np.where(m.frame.vehicle_id == "s0-v1", np.nan, 1.0)))
    with pytest.raises(VerificationInputError, match=r"^measurements\.plugged_in"):
        Measurements(m.frame.assign(plugged_in="yes"))
    with pytest.raises(VerificationInputError, match=r"^measurements\.plugged_in: missing column"):
        Measurements(m.frame.drop(columns="plugged_in"))
    with pytest.raises(VerificationInputError, match=r"^resources: no site and limits for vehicle s0-v1"):
        verify_obligation(ob, FCRD_UP, m, b, {vehicles[0]: resources[vehicles[0]]}, freq)
    with pytest.raises(VerificationInputError, match=r"^kw: obligation ob-1 needs one kW per vehicle"):
        verify_obligation(Ob("ob-1", FCRD_UP.id, "up", T0, T0 + HOUR, 0.008, tuple(vehicles), (4.0,)),
                          FCRD_UP, m, b, resources, freq)
    with pytest.raises(VerificationInputError, match=r"^frequency: FCR-D-up/SE_DK2 is frequency-activated"):
        verify_obligation(ob, FCRD_UP, m, b, resources)
    with pytest.raises(VerificationInputError, match=r"^frequency: no reading at 2026-11-20T10:30:0\d"):
        verify_obligation(ob, FCRD_UP, m, b, resources, freq[freq.index < T0 + timedelta(minutes=30)])
    with pytest.raises(VerificationInputError, match=r"^direction: obligation ob-1 is down"):
        verify_obligation(Ob("ob-1", FCRD_UP.id, "down", T0, T0 + HOUR, 0.008, tuple(vehicles), (4.0, 4.0)),
                          FCRD_UP, m, b, resources, freq)
    with pytest.raises(VerificationInputError, match=r"^mtu_start: must be a timezone-aware"):
        verify_obligation(Ob("ob-1", FCRD_UP.id, "up", T0.replace(tzinfo=None), T0 + HOUR, 0.008,
                             tuple(vehicles), (4.0, 4.0)), FCRD_UP, m, b, resources, freq)
    with pytest.raises(VerificationInputError, match=r"^mtu_end: obligation ob-1 is not a whole number of 60-minute"):
        verify_obligation(Ob("ob-1", FCRD_UP.id, "up", T0, T0 + timedelta(minutes=90), 0.008,
                             tuple(vehicles), (4.0, 4.0)), FCRD_UP, m, b, resources, freq)
    with pytest.raises(VerificationInputError, match=r"^baselines: local-flex/NODES is verified against the "
                                                     r"rolling_5_working_days baseline"):
        verify_obligation(obligation(FLEX, vehicles, kws), FLEX, m, {BaselineMethod.DECLARED_SCHEDULE: b}, resources)
    mfrr = CAT.product("mFRR-energy", "SE3")
    with pytest.raises(VerificationInputError, match=r"^product_id: mFRR-energy/SE is activated manually"):
        verify_obligation(Ob("m", mfrr.id, "up", T0, T0 + timedelta(minutes=15), 1, ("x",), (1000.0,)), mfrr, m, b,
                          {"x": Resource("s", 1, 1)})
    with pytest.raises(VerificationInputError, match=r"^resources\.max_charge_kw"):
        Resource("s", -1.0, 0.0)


def test_an_obligation_over_two_mtus_gives_one_delivery_each() -> None:
    vehicles, resources, kws = fleet([2])
    ob = Ob("two", FLEX.id, "up", T0, T0 + 2 * HOUR, 0.008, tuple(vehicles), (4.0, 4.0))
    secs = np.arange(-120, 7200 + 400)
    share = ((secs >= 0) & (secs < 3600)).astype(float)     # delivers the first hour only
    ts = pd.DatetimeIndex([T0 + timedelta(seconds=int(s)) for s in secs])
    frame = pd.concat([pd.DataFrame({"vehicle_id": v, "ts": ts, "power_kw": 7.0 - 4.0 * share, "plugged_in": True})
                       for v in vehicles])
    first, second = verify_obligation(ob, FLEX, Measurements(frame), flex_baseline(ob), resources)
    assert (first.mtu_start, second.mtu_start) == (T0, T0 + HOUR)
    assert (first.delivered_share, second.delivered_share) == (1.0, 0.0)


# ---------------------------------------------------------------------------------- baselines


def test_baseline_method_per_product() -> None:
    assert baseline_method_for(FLEX) is BaselineMethod.ROLLING_WORKING_DAYS
    for p in (FCRD_UP, FCRD_DOWN, CAT.product("FCR-N", "FI"), CAT.product("mFRR-energy", "FI")):
        assert baseline_method_for(p) is BaselineMethod.DECLARED_SCHEDULE


def test_working_days_skip_weekends_holidays_and_excluded_days() -> None:
    monday = date(2026, 11, 23)
    assert working_days_before(monday, 5) == [date(2026, 11, d) for d in (20, 19, 18, 17, 16)]
    assert working_days_before(monday, 3, holidays={date(2026, 11, 19)}, exclude={date(2026, 11, 20)}) == [
        date(2026, 11, 18), date(2026, 11, 17), date(2026, 11, 16)]
    with pytest.raises(VerificationInputError, match="^working_days"):
        working_days_before(monday, 0)


def test_rolling_average_is_the_same_slot_over_five_working_days() -> None:
    """Each day the car draws (day of month) kW from 17:00 to 18:00 local and 1 kW otherwise;
    the baseline of Monday 23 November is the mean over 16-20 November, the weekend left out."""
    ts = pd.date_range("2026-11-09", "2026-11-23", freq="1min", tz="Europe/Stockholm", inclusive="left")
    evening = (ts.hour == 17)
    power = np.where(evening, ts.day.astype(float), 1.0)
    history = pd.DataFrame({"vehicle_id": "car", "ts": ts.tz_convert("UTC"), "power_kw": power})
    start = datetime(2026, 11, 23, 16, tzinfo=UTC)                         # 17:00 in Stockholm
    base = rolling_average(history, start, start + HOUR, "Europe/Stockholm", vehicles=["car", "new-car"])
    assert base.method is BaselineMethod.ROLLING_WORKING_DAYS
    frame = base.frame.set_index(["vehicle_id", "ts"])["baseline_kw"]
    at = lambda h, m: frame[("car", pd.Timestamp(datetime(2026, 11, 23, h, m, tzinfo=UTC)))]  # noqa: E731
    assert at(16, 0) == pytest.approx(np.mean([16, 17, 18, 19, 20])) == at(16, 45)
    assert at(15, 45) == 1.0 and at(17, 0) == 1.0
    assert frame.xs("new-car").isna().all() and len(frame.xs("car")) == 96
    short = rolling_average(history, start, start + HOUR, "Europe/Stockholm", holidays={date(2026, 11, 20)})
    assert short.frame.set_index("ts").loc[pd.Timestamp(start), "baseline_kw"] == pytest.approx(
        np.mean([13, 16, 17, 18, 19]))


def test_rolling_average_across_the_dst_change_keeps_wall_clock_slots() -> None:
    """On 25 October 2026 Stockholm has 25 hours: 100 slots, each with its wall-clock value."""
    ts = pd.date_range("2026-10-12", "2026-10-24", freq="15min", tz="Europe/Stockholm", inclusive="left")
    history = pd.DataFrame({"vehicle_id": "car", "ts": ts, "power_kw": ts.hour.astype(float)})
    day = datetime(2026, 10, 24, 22, tzinfo=UTC)                            # local midnight
    base = rolling_average(history, day, day + timedelta(hours=25), "Europe/Stockholm")
    local = pd.DatetimeIndex(base.frame["ts"]).tz_convert("Europe/Stockholm")
    assert len(base.frame) == 100
    assert (base.frame["baseline_kw"].to_numpy() == local.hour.to_numpy()).all()


def test_rolling_baseline_drives_local_flex_verification() -> None:
    """The car usually draws 6 kW at 17:00 and today draws 2: 4 kW delivered of a 4 kW order."""
    ts = pd.date_range("2026-11-09", "2026-11-23", freq="1min", tz="UTC", inclusive="left")
    history = pd.DataFrame({"vehicle_id": "car", "ts": ts, "power_kw": 6.0})
    start = datetime(2026, 11, 23, 16, tzinfo=UTC)
    base = rolling_average(history, start, start + HOUR, "Europe/Stockholm")
    ob = Ob("flex", FLEX.id, "up", start, start + HOUR, 0.004, ("car",), (4.0,))
    now = pd.date_range(start - timedelta(minutes=5), start + HOUR, freq="1min")
    m = Measurements(pd.DataFrame({"vehicle_id": "car", "ts": now, "power_kw": 2.0, "plugged_in": True}))
    (d,) = verify_obligation(ob, FLEX, m, base, {"car": Resource("home-1", 11.0, 0.0)})
    assert d.delivered_share == 1 and d.delivered_energy_mwh == pytest.approx(0.004)


def test_baseline_input_errors() -> None:
    with pytest.raises(VerificationInputError, match=r"^baseline\.baseline_kw: missing column"):
        declared_schedule(pd.DataFrame({"vehicle_id": ["a"], "ts": [T0]}))
    with pytest.raises(VerificationInputError, match=r"^baseline\.baseline_kw: .*inf"):
        Baseline(BaselineMethod.DECLARED_SCHEDULE, pd.DataFrame({"vehicle_id": ["a"], "ts": [T0],
                                                                 "baseline_kw": [np.inf]}))
    with pytest.raises(VerificationInputError, match=r"^timezone: unknown IANA timezone"):
        rolling_average(pd.DataFrame({"vehicle_id": [], "ts": [], "power_kw": []}), T0, T0 + HOUR, "Europe/Stokholm")
    with pytest.raises(VerificationInputError, match=r"^history\.ts: must be timezone-aware"):
        rolling_average(pd.DataFrame({"vehicle_id": ["a"], "ts": [datetime(2026, 1, 1)], "power_kw": [1.0]}),
                        T0, T0 + HOUR, "Europe/Stockholm")


# ---------------------------------------------------------------------------------- catalogue


def test_catalogue_carries_the_fcr_response_requirements() -> None:
    r = response_requirement(FCRD_UP)
    assert r.checkpoints == ((Decimal("7.5"), Decimal("0.86")),) and r.test_ramp_hz_per_s == Decimal("0.24")
    assert (r.min_energy_s, r.energy_within_s) == (Decimal("3.2"), Decimal("7.5"))
    assert (r.steady_state_under, r.steady_state_over) == (Decimal("0.05"), Decimal("0.2"))
    assert FCRD_UP.response.source == "nordic_fcr_techreq_v1_1" and FCRD_UP.response.verified
    assert "statnett.no" in CAT.sources["nordic_fcr_techreq_v1_1"].url
    n = response_requirement(CAT.product("FCR-N", "NO1"))
    assert n.checkpoints == ((60, Decimal("0.63")), (180, 1)) and n.min_energy_s is None
    assert response_requirement(CAT.product("mFRR-capacity", "FI")).checkpoints == ((750, 1),)
    assert response_requirement(FLEX) is None and FLEX.response is None


def test_catalogue_refuses_a_bad_response_requirement() -> None:
    raw = copy.deepcopy(RAW)
    prod = next(p for p in raw["products"] if p["id"] == "FCR-D-up/FI")
    prod["response"]["value"]["checkpoints"] = [["7.5", "0.86"], ["5", "1"]]
    with pytest.raises(CatalogueError, match=r"product FCR-D-up/FI: field response.*increasing"):
        parse_catalogue(raw)
    prod["response"]["value"] = {**prod["response"]["value"], "checkpoints": [["7.5", "0.86"]],
                                 "min_energy_s": None}
    with pytest.raises(CatalogueError, match=r"product FCR-D-up/FI: field response.*go together"):
        parse_catalogue(raw)


# ------------------------------------------------------------------------------- docs, schema


def test_the_worked_example_in_deliveries_md_prints_what_it_says(capsys) -> None:
    text = (Path(__file__).parents[2] / "services/dispatcher/DELIVERIES.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    expected = text.split("gives\n\n```\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "DELIVERIES.md", "exec"), {})
    assert capsys.readouterr().out == expected


def test_the_schema_examples_are_valid() -> None:
    schema = json.loads((Path(__file__).parents[2] / "docs/schemas/deliveries.v1.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for example in schema["examples"]:
        validator.validate(example)
        assert sum(s["shortfall_mw"] for s in example["sites"]) == pytest.approx(example["shortfall_mw"])
