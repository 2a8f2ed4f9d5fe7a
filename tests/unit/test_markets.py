"""Market catalogue: the shipped data parses, rule typos fail loudly, bid rules and gate closures hold."""

import copy
import datetime as dt
import json
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexfleet.markets import (
    BIDDING_ZONES,
    CatalogueError,
    FrequencyActivation,
    ProductType,
    check_bid,
    default_catalogue,
    gate_closure,
    is_open,
    parse_catalogue,
    round_to_step,
)
from flexfleet.markets.exchange_rates import default_exchange_rates, parse_exchange_rates

DATA = Path(__file__).parents[2] / "data/markets/nordic_products.json"
RAW = json.loads(DATA.read_text())
UTC = dt.UTC


def _raw_with(product_id: str, **changes: object) -> dict:
    raw = copy.deepcopy(RAW)
    prod = next(p for p in raw["products"] if p["id"] == product_id)
    prod.update(changes)
    return raw


def test_packaged_catalogue_is_the_data_file() -> None:
    assert default_catalogue() == parse_catalogue(DATA.read_text())


def test_packaged_exchange_rates_are_the_data_files() -> None:
    rates = DATA.parent / "exchange_rates"
    assert default_exchange_rates() == parse_exchange_rates(rates.with_suffix(".json").read_text(),
                                                            rates.with_suffix(".csv").read_text())


def test_every_zone_has_mfrr_and_fcr_exists_where_the_nordic_area_is() -> None:
    cat = default_catalogue()
    for zone in BIDDING_ZONES:
        assert cat.product(ProductType.MFRR_ENERGY, zone).mtu_minutes.value == 15
        assert cat.product(ProductType.MFRR_CAPACITY, zone)
        assert cat.product(ProductType.LOCAL_FLEX, zone)
    for pt in (ProductType.FCR_D_UP, ProductType.FCR_D_DOWN, ProductType.FCR_N):
        for zone in BIDDING_ZONES - {"DK1"}:
            assert cat.product(pt, zone).product_type == pt
        with pytest.raises(KeyError, match="DK1"):  # DK1 is in the Continental area
            cat.product(pt, "DK1")


def test_every_value_is_sourced_dated_and_unverified_ones_say_why() -> None:
    cat = default_catalogue()
    for p in cat.products:
        assert p.sources_used() <= set(cat.sources)
        for name in type(p).model_fields:
            v = getattr(p, name)
            if hasattr(v, "verified"):
                assert v.checked == dt.date(2026, 11, 23)
                assert v.verified or v.note
    for s in cat.sources.values():
        assert s.url.startswith("http")


def test_key_values_against_the_tso_texts() -> None:
    cat = default_catalogue()
    up = cat.product("FCR-D-up", "SE3")
    assert up.min_bid_mw.value == Decimal("0.1") and up.indivisible.value is True
    assert up.pricing.value.capacity == "marginal" and up.pricing.value.energy is None
    assert up.endurance.value is not None
    assert up.endurance.value.min_full_activation_minutes == 20
    assert up.endurance.value.opposite_direction_share == Decimal("0.2")
    fcrn = cat.product("FCR-N", "SE3")
    assert fcrn.endurance.value is not None
    assert fcrn.endurance.value.min_full_activation_minutes == 60
    assert fcrn.endurance.value.power_reserve_factor == Decimal("1.34")
    assert cat.product("mFRR-energy", "SE3").min_bid_mw.value == 1
    assert all(p.confidence_quantile.value == Decimal("0.9") for p in cat.products)


def test_unknown_key_names_product_and_field() -> None:
    with pytest.raises(CatalogueError, match=r"product FCR-N/FI: field min_bid_mv"):
        parse_catalogue(_raw_with("FCR-N/FI", min_bid_mv={"value": "0.1"}))


@pytest.mark.parametrize(
    ("field", "bad"),
    [("min_bid_mw", "ten"), ("indivisible", "yes"), ("mtu_minutes", "60"), ("checked", "23/11/2026")],
)
def test_wrong_type_names_product_and_field(field: str, bad: str) -> None:
    raw = copy.deepcopy(RAW)
    prod = next(p for p in raw["products"] if p["id"] == "FCR-D-down/NO")
    target = "min_bid_mw" if field == "checked" else field
    prod[target] = {**prod[target], ("checked" if field == "checked" else "value"): bad}
    with pytest.raises(CatalogueError, match=rf"product FCR-D-down/NO: field {target}"):
        parse_catalogue(raw)


def test_unverified_without_reason_and_unknown_source_fail() -> None:
    raw = copy.deepcopy(RAW)
    prod = raw["products"][0]
    prod["min_bid_mw"] = {k: v for k, v in prod["min_bid_mw"].items() if k != "note"} | {"verified": False}
    with pytest.raises(CatalogueError, match="min_bid_mw.*note"):
        parse_catalogue(raw)
    raw = copy.deepcopy(RAW)
    raw["products"][0]["penalties"]["source"] = "no_such_doc"
    with pytest.raises(CatalogueError, match="no_such_doc"):
        parse_catalogue(raw)


def test_bad_zone_timezone_and_duplicate_zone_fail() -> None:
    with pytest.raises(CatalogueError, match="zones"):
        parse_catalogue(_raw_with("FCR-N/FI", zones={**RAW["products"][5]["zones"], "value": ["FI", "SE5"]}))
    raw = copy.deepcopy(RAW)
    raw["products"][0]["auctions"][0]["gate_closure"]["value"]["timezone"] = "Europe/Stokholm"
    with pytest.raises(CatalogueError, match="auctions.0.gate_closure"):
        parse_catalogue(raw)
    raw = copy.deepcopy(RAW)
    raw["products"].append({**copy.deepcopy(raw["products"][0]), "id": "FCR-D-up/copy"})
    with pytest.raises(CatalogueError, match="already served"):
        parse_catalogue(raw)


def test_toml_parsed_dict_loads_too() -> None:
    lines = ["catalogue_version = 't'"]
    for key, src in RAW["sources"].items():
        lines.append(f"[sources.{key}]")
        lines += [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in src.items()]
    cat = parse_catalogue(tomllib.loads("\n".join(lines)) | {"products": [RAW["products"][0]]})
    assert cat.products[0].id == RAW["products"][0]["id"]


def test_check_bid_minimum_step_indivisible_zone() -> None:
    p = default_catalogue().product("FCR-D-up", "SE4")
    assert check_bid(p, "0.3", zone="SE4") == []
    assert [v.rule for v in check_bid(p, "0.05")] == ["minimum", "step"]
    assert [v.rule for v in check_bid(p, Decimal("1.25"))] == ["step"]
    assert [v.rule for v in check_bid(p, 1, divisible=True)] == ["indivisible"]
    assert [v.rule for v in check_bid(p, 1, zone="FI")] == ["zone"]
    assert [v.rule for v in check_bid(p, 0)] == ["non_positive"]
    assert check_bid(p, 0.3) == []  # a float literal is read as written, not as its binary value
    mfrr = default_catalogue().product("mFRR-energy", "SE4")
    assert [v.rule for v in check_bid(mfrr, "0.5")] == ["minimum", "step"]
    assert check_bid(mfrr, 3, divisible=True) == []


@settings(max_examples=200, deadline=None)
@given(
    v=st.decimals(min_value=Decimal("0"), max_value=Decimal("500"), places=4),
    pid=st.sampled_from([p["id"] for p in RAW["products"]]),
)
def test_round_to_step_properties(v: Decimal, pid: str) -> None:
    p = default_catalogue().by_id(pid)
    down, up = round_to_step(p, v), round_to_step(p, v, "up")
    step = p.bid_step_mw.value
    assert down <= v <= up and up - down in (0, step)
    assert down % step == 0 and up % step == 0
    if down >= p.min_bid_mw.value:
        assert check_bid(p, down) == []


def test_gate_closure_local_time_across_dst() -> None:
    p = default_catalogue().product("FCR-N", "SE1")
    summer = gate_closure(p, "D-1 first", dt.date(2026, 7, 2))
    assert summer == dt.datetime(2026, 6, 30, 22, 30, tzinfo=UTC)  # 00:30 CEST on 1 July
    assert gate_closure(p, "D-1 second", dt.date(2026, 7, 2)) == dt.datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
    winter = gate_closure(p, "D-1 second", dt.date(2026, 1, 15))
    assert winter == dt.datetime(2026, 1, 14, 17, 0, tzinfo=UTC)
    # Clocks go forward on 29 March 2026 at 02:00 local: 00:30 that day is still CET.
    assert gate_closure(p, "D-1 first", dt.date(2026, 3, 30)) == dt.datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    fi = default_catalogue().product("FCR-D-down", "FI")
    assert gate_closure(fi, "hourly market D-1", dt.date(2026, 1, 15)) == dt.datetime(2026, 1, 14, 16, 30, tzinfo=UTC)
    with pytest.raises(KeyError, match="no auction"):
        gate_closure(p, "D-2", dt.date(2026, 1, 15))


def test_relative_gate_closure_and_is_open() -> None:
    e = default_catalogue().product("mFRR-energy", "NO2")
    mtu = dt.datetime(2026, 7, 2, 10, 15, tzinfo=UTC)
    gc = gate_closure(e, "per MTU", mtu.date(), mtu)
    assert gc == dt.datetime(2026, 7, 2, 9, 30, tzinfo=UTC)
    assert is_open(e, "per MTU", mtu.date(), gc - dt.timedelta(seconds=1), mtu)
    assert not is_open(e, "per MTU", mtu.date(), gc, mtu)
    # Without an MTU: the day's first MTU, 00:00 Oslo time.
    assert gate_closure(e, "per MTU", dt.date(2026, 7, 2)) == dt.datetime(2026, 7, 1, 21, 15, tzinfo=UTC)
    with pytest.raises(ValueError, match="aware"):
        is_open(e, "per MTU", mtu.date(), dt.datetime(2026, 7, 2, 9, 0), mtu)
    nodes = default_catalogue().product("local-flex", "SE3")
    assert gate_closure(nodes, "continuous", mtu.date(), mtu) == mtu - dt.timedelta(hours=2)


def test_frequency_activation_curves() -> None:
    cat = default_catalogue()
    up = cat.product("FCR-D-up", "SE3").activation.value
    down = cat.product("FCR-D-down", "NO1").activation.value
    n = cat.product("FCR-N", "FI").activation.value
    assert isinstance(up, FrequencyActivation) and isinstance(down, FrequencyActivation)
    assert isinstance(n, FrequencyActivation)
    assert up.share_at(Decimal("49.95")) == 0 and up.share_at(Decimal("49.7")) == Decimal("0.5")
    assert up.share_at(Decimal("49.0")) == 1
    assert down.share_at(Decimal("50.3")) == Decimal("0.5") and down.share_at(Decimal("50.05")) == 0
    assert n.share_at(Decimal("50.0")) == 0 and n.share_at(Decimal("49.95")) == Decimal("0.5")
    assert n.share_at(Decimal("50.2")) == -1
