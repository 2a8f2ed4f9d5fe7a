"""Wear pay: the reference trace, counting on turning points, and what the platform pays for."""

from datetime import UTC, datetime
from decimal import Decimal as D

import numpy as np
import pytest
import rainflow
from hypothesis import given, settings
from hypothesis import strategies as st

from flexfleet.battery.wear import stress_curve
from flexfleet.settlement import SocTrace
from flexfleet.settlement.wear_pay import assess_wear, cycle_loss, reference_soc, throughput_by_mtu

START = datetime(2026, 12, 1, tzinfo=UTC)
socs = st.lists(st.sampled_from([0.1, 0.2, 0.25, 0.5, 0.55, 0.8, 0.9, 1.0]) | st.floats(0, 1), min_size=3, max_size=60)


@settings(max_examples=300, deadline=None)
@given(socs, st.sampled_from([(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (2e-5, 3e-5, 4e-6)]))
def test_counting_on_turning_points_finds_the_cycles_of_the_whole_trace(xs, coeffs) -> None:
    """(From three samples: the rainflow package drops the second of a two-sample series.)"""
    c1, c2, c3 = coeffs
    whole = sum(c * (c1 * r + c2 * r**2 + c3 * r**3) for r, _, c, _, _ in rainflow.extract_cycles(xs))
    assert cycle_loss(np.array(xs), coeffs) == pytest.approx(whole, rel=1e-9, abs=1e-15)


def _evening(dip: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hourly day: away 8-17 (drives 0.8 -> 0.6), plugged in 17-8; the platform discharges `dip` at 18-19."""
    soc, plugged, discharging = [], [], []
    s = 0.8
    for h in range(24 * 3):
        hour = h % 24
        home, platform = not 8 <= hour < 17, False
        if 8 <= hour < 12:
            s -= 0.05
        elif home and hour in (18, 19) and dip:
            s, platform = s - dip / 2, True
        elif home:
            s = min(s + 0.1, 0.8)
        soc.append(round(s, 10))
        plugged.append(home)
        discharging.append(platform)
    return np.array(soc), np.array(plugged), np.array(discharging)


def test_the_reference_undoes_a_v2g_dip_and_its_recharge_and_nothing_else() -> None:
    soc, plugged, discharging = _evening(0.2)
    ref = reference_soc(soc, plugged, discharging)
    away = ~plugged
    assert np.array_equal(ref[away], soc[away])                       # trips are the owner's
    assert (ref >= soc).all()
    assert all((np.diff(ref[17 + 24 * d: 32 + 24 * d]) >= 0).all() for d in range(3))   # evening stays only rise
    assert ref[18] == ref[19] == soc[17] and soc[19] == pytest.approx(soc[17] - 0.2)
    plain, p2, d2 = _evening(0.0)
    assert np.array_equal(reference_soc(plain, p2, d2), plain)        # no discharge: the trace itself


def _trace(soc: np.ndarray, ref: np.ndarray | None) -> SocTrace:
    return SocTrace("car-1", START, 3600.0, soc, "NMC", D(60), D("100"), "EUR", 20.0, ref)


def test_wear_pays_the_platforms_cycles_only() -> None:
    soc, plugged, discharging = _evening(0.2)
    wear = assess_wear(_trace(soc, reference_soc(soc, plugged, discharging)))
    curve = stress_curve("NMC", 20.0)
    assert wear.reference_cycling_loss == pytest.approx(cycle_loss(_evening(0.0)[0], curve.coeffs))
    assert wear.platform_loss == pytest.approx(wear.cycling_loss - wear.reference_cycling_loss) and wear.platform_loss > 0
    assert wear.efc == pytest.approx(3 * 0.2)                         # 0.2 down and 0.2 back up, each evening
    deeper = assess_wear(_trace(*(lambda s, p, d: (s, reference_soc(s, p, d)))(*_evening(0.3))))
    assert deeper.platform_loss > wear.platform_loss                  # deeper dips cost more
    mine = assess_wear(_trace(_evening(0.0)[0], _evening(0.0)[0]))
    assert mine.platform_loss == 0 and mine.lost_kwh == 0


def test_wear_spreads_over_the_mtus_where_the_platform_moved_the_soc() -> None:
    soc, plugged, discharging = _evening(0.2)
    moved = throughput_by_mtu(_trace(soc, reference_soc(soc, plugged, discharging)), START)
    hours = sorted({(t - START).total_seconds() // 3600 % 24 for t in moved})
    assert hours == [17, 18, 19, 20]        # the dip's steps and the recharge past the reference
    assert float(sum(moved.values())) == pytest.approx(3 * 0.4)
