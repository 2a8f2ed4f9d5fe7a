"""Shipped FCR price scenarios: levels, shape, scenario draws, and loud errors on bad files."""

import gzip
import io
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from flexfleet.markets import default_catalogue
from flexfleet.markets.prices import PriceDataError, PriceScenarios, parse_price_scenarios

PRICES = Path(__file__).parents[2] / "data/markets/prices"
IDS = [p.id for p in default_catalogue().products]
UP, DOWN, N = "FCR-D-up/SE_DK2", "FCR-D-down/SE_DK2", "FCR-N/SE_DK2"
TZ = ZoneInfo("Europe/Stockholm")
TARGETS = {"high": {UP: 57.0, DOWN: 31.0}, "low": {UP: 4.00, DOWN: 8.66, N: 25.30}}


@pytest.fixture(scope="module")
def history() -> dict[str, PriceScenarios]:
    return {r: parse_price_scenarios((PRICES / f"fcr_se3_{r}.csv.gz").read_bytes(), known_products=IDS)
            for r in ("high", "low")}


def test_shipped_files_are_small_and_parse(history: dict[str, PriceScenarios]) -> None:
    assert sum(p.stat().st_size for p in PRICES.glob("*.csv.gz")) < 2_000_000
    for regime, h in history.items():
        assert h.regime == regime and h.zone == "SE3"
        assert set(h.product_ids) == {UP, DOWN, N}
        assert h.n_scenarios == 1 and h.weights.tolist() == [1.0]
        assert len(h.days()) >= 8 * 7  # enough for 28-day backtests drawing from other weeks
        assert all(t.tzinfo is not None and t.utcoffset().total_seconds() == 0 for t in h.mtu_starts[:5])
    assert pd.read_csv(PRICES / "fcr_se3_low.csv.gz").shape[1] == 6  # pandas reads them directly


def test_regime_means_hit_their_published_targets(history: dict[str, PriceScenarios]) -> None:
    for regime, targets in TARGETS.items():
        for product, target in targets.items():
            assert history[regime].price(product).mean() == pytest.approx(target, rel=0.01), (regime, product)
    high, low = history["high"], history["low"]
    for product in (UP, DOWN, N):
        assert high.price(product).mean() > low.price(product).mean()  # batteries pushed prices down


def test_prices_have_zero_hours_spikes_and_a_daily_shape(history: dict[str, PriceScenarios]) -> None:
    low = history["low"]
    for product in (UP, DOWN, N):
        p = low.price(product)[0]
        assert (p == 0).mean() > 0.005, product  # zero-price hours exist
        assert p.max() > 5 * p.mean() and (p > 4 * p.mean()).mean() > 0.002, product  # spikes exist
    assert (low.price(UP)[0] == 0).mean() > 0.03  # batteries offering at zero, mostly FCR-D up
    assert (history["high"].price(UP)[0] == 0).sum() > 0
    hours = pd.DatetimeIndex(list(low.mtu_starts)).tz_convert(TZ).hour
    up = low.price(UP)[0]
    assert up[(hours >= 1) & (hours < 5)].mean() > up[(hours >= 11) & (hours < 15)].mean()


def test_demand_is_the_joint_market_volume(history: dict[str, PriceScenarios]) -> None:
    for h in history.values():
        assert 500 <= h.demand(UP).min() and h.demand(UP).max() <= 620
        assert 200 <= h.demand(N).min() and h.demand(N).max() <= 260
    assert 100 <= history["high"].demand(DOWN).min() and history["low"].demand(DOWN).max() <= 600


def test_data_files_are_what_the_generator_makes() -> None:
    from services.simulator.market_prices import LOW, generate_regime

    shipped = pd.read_csv(PRICES / "fcr_se3_low.csv.gz")
    fresh = generate_regime(LOW)
    assert (shipped["mtu_start"] == fresh["mtu_start"]).all()
    assert np.allclose(shipped["price_eur_per_mw_h"], fresh["price_eur_per_mw_h"], atol=0.005)
    assert np.allclose(shipped["demand_mw"], fresh["demand_mw"])


def test_draw_days_gives_scenarios_of_the_same_day_type(history: dict[str, PriceScenarios]) -> None:
    low = history["low"]
    day = date(2025, 11, 12)  # a Wednesday
    sc = low.draw_days(day, 20, seed=4)
    assert sc.prices.shape == (20, 3, 24) and sc.demand_mw.shape == (20, 3, 24)
    assert sc.weights.sum() == pytest.approx(1.0) and np.allclose(sc.weights, 1 / 20)
    assert sc.mtu_starts[0].astimezone(TZ).date() == day and sc.mtu_starts[0].astimezone(TZ).hour == 0
    assert all(d.weekday() < 5 and d != day for d in sc.source_days)
    assert len(set(sc.source_days)) == 20  # without replacement when there are enough days
    months = [d.month for d in sc.source_days]
    assert sum(m in (9, 10, 11, 12, 1) for m in months) >= 14  # mostly the same season
    k = sc.source_days.index(sc.source_days[3])
    np.testing.assert_array_equal(sc.price(UP)[k], low.day(sc.source_days[3]).price(UP)[0])
    again = low.draw_days(day, 20, seed=4)
    assert again.source_days == sc.source_days and np.array_equal(again.prices, sc.prices)
    weekend = low.draw_days(date(2025, 11, 15), 10, seed=4, before=date(2025, 11, 15))
    assert all(d.weekday() >= 5 and d < date(2025, 11, 15) for d in weekend.source_days)
    assert sc.expected_price(UP).shape == (24,)
    assert sc.on_grid(15).prices.shape == (20, 3, 96)


def test_draw_days_handles_daylight_saving_days(history: dict[str, PriceScenarios]) -> None:
    low = history["low"]
    assert low.draw_days(date(2025, 10, 26), 5).prices.shape[2] == 25
    assert low.draw_days(date(2025, 3, 30), 5).prices.shape[2] == 23
    assert low.draw_days(date(2026, 11, 24), 5).prices.shape[2] == 24  # a day after the data
    with pytest.raises(ValueError, match="no history day"):
        low.draw_days(date(2025, 11, 12), 3, before=date(2024, 1, 1))


GOOD = """mtu_start,regime,zone,product,price_eur_per_mw_h,demand_mw
2025-01-05T23:00:00Z,low,SE3,FCR-D-up/SE_DK2,3.10,600
2025-01-06T00:00:00Z,low,SE3,FCR-D-up/SE_DK2,2.50,600
2025-01-05T23:00:00Z,low,SE3,FCR-N/SE_DK2,20.00,248
2025-01-06T00:00:00Z,low,SE3,FCR-N/SE_DK2,0,248
"""


def _with_line(line_no: int, text: str) -> str:
    lines = GOOD.splitlines()
    lines[line_no - 1] = text
    return "\n".join(lines) + "\n"


def test_small_file_parses_from_text_bytes_gzip_and_dataframe() -> None:
    for data in (GOOD, GOOD.encode(), gzip.compress(GOOD.encode()), pd.read_csv(io.StringIO(GOOD))):
        ps = parse_price_scenarios(data, known_products=IDS)
        assert ps.product_ids == (UP, N) and ps.prices.shape == (1, 2, 2)
        assert ps.price(N)[0].tolist() == [20.0, 0.0]
    with pytest.raises(KeyError):
        ps.price(DOWN)


@pytest.mark.parametrize(
    ("line", "text", "row", "column", "words"),
    [
        (3, "2025-01-06T00:00:00Z,low,SE3,FCR-D-up/SE_DK2,abc,600", 2, "price_eur_per_mw_h", "not a number"),
        (4, "2025-01-05T23:00:00Z,low,SE3,FCR-N/SE_DK2,-1,248", 3, "price_eur_per_mw_h", "out of range"),
        (5, "2025-01-06T00:00:00Z,low,SE3,FCR-N/SE_DK2,20,0", 4, "demand_mw", "out of range"),
        (2, "2025-01-06T00:00:00+01:00,low,SE3,FCR-D-up/SE_DK2,3,600", 1, "mtu_start", "must be UTC"),
        (2, "2025-01-05T23:15:00Z,low,SE3,FCR-D-up/SE_DK2,3,600", 1, "mtu_start", "hourly MTU"),
        (2, "yesterdayZ,low,SE3,FCR-D-up/SE_DK2,3,600", 1, "mtu_start", "ISO 8601"),
        (3, "2025-01-05T23:00:00Z,low,SE3,FCR-D-up/SE_DK2,3,600", 2, "mtu_start", "appears twice"),
        (3, "2025-01-06T00:00:00Z,low,SE3,FCR-X/SE_DK2,3,600", 2, "product", "unknown product"),
        (3, "2025-01-06T00:00:00Z,low,SE4,FCR-D-up/SE_DK2,3,600", 2, "zone", "one zone"),
        (3, "2025-01-06T00:00:00Z,low,,FCR-D-up/SE_DK2,3,600", 2, "zone", "empty"),
    ],
)
def test_a_bad_row_names_its_row_and_column(line: int, text: str, row: int, column: str, words: str) -> None:
    with pytest.raises(PriceDataError) as err:
        parse_price_scenarios(_with_line(line, text), known_products=IDS)
    msg = str(err.value)
    assert f"row {row} (line {line})" in msg and f"column {column}" in msg and words in msg, msg


def test_file_level_problems_are_named() -> None:
    with pytest.raises(PriceDataError, match=r"missing column\(s\) \['demand_mw'\]"):
        parse_price_scenarios(GOOD.replace(",demand_mw", ",demand"))
    with pytest.raises(PriceDataError, match="FCR-N/SE_DK2.*no row for 2025-01-06T00:00:00Z"):
        parse_price_scenarios("\n".join(GOOD.splitlines()[:4]) + "\n")
    two = GOOD + "2025-01-05T23:00:00Z,high,SE3,FCR-D-up/SE_DK2,50,598\n"
    with pytest.raises(PriceDataError, match="several regimes"):
        parse_price_scenarios(two)
    assert parse_price_scenarios(two, regime="high").price(UP).tolist() == [[50.0]]
    with pytest.raises(PriceDataError, match="row 5 \\(line 6\\), column price_eur_per_mw_h"):
        parse_price_scenarios(two.replace(",50,598", ",x,598"), regime="high")
    with pytest.raises(PriceDataError, match="no data rows"):
        parse_price_scenarios(GOOD.splitlines()[0] + "\n")
