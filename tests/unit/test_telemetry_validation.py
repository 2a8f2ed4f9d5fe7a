"""The hand-written telemetry validator against the published schema and the registry rules."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexfleet.telemetry import FleetLimits, Limits, Reading, Rejection, parse_reading

SCHEMA = json.loads((Path(__file__).parents[2] / "docs/schemas/telemetry.v1.json").read_text())
NOW = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)
LIMITS = FleetLimits(
    vehicles={"v1": Limits(11.0, 10.0), "v2": Limits(7.4, 0.0)},
    chargers={"c1": Limits(22.0, 10.0), "c2": Limits(11.0, 0.0)},
)
GOOD = {"vehicle_id": "v1", "ts": "2026-11-02T17:45:00Z", "plugged_in": True, "charger_id": "c1",
        "power_kw": 7.2, "soc_pct": 41.5, "soc_source": "vehicle_api", "energy_import_kwh": 1834.2,
        "energy_export_kwh": 112.4, "battery_temp_c": 14.0, "odometer_km": 23456.0,
        "departure_at": "2026-11-03T07:30:00+01:00", "min_soc_pct": 80, "target_soc_pct": 90}


def parse(doc: dict) -> Reading | Rejection:
    return parse_reading(json.dumps(doc).encode(), LIMITS, NOW)


def test_good_reading_keeps_every_value():
    reading = parse(GOOD)
    assert isinstance(reading, Reading)
    assert reading.ts == datetime(2026, 11, 2, 17, 45, tzinfo=UTC)
    assert reading.departure_at == datetime(2026, 11, 3, 6, 30, tzinfo=UTC)
    assert (reading.power_kw, reading.soc_pct, reading.min_soc_pct, reading.target_soc_pct) == (7.2, 41.5, 80.0, 90.0)


def test_the_departure_target_is_optional_and_may_come_without_a_minimum():
    without = parse({k: v for k, v in GOOD.items() if k != "target_soc_pct"})
    assert isinstance(without, Reading) and without.target_soc_pct is None
    alone = parse({k: v for k, v in GOOD.items() if k != "min_soc_pct"} | {"target_soc_pct": 35})
    assert isinstance(alone, Reading) and (alone.min_soc_pct, alone.target_soc_pct) == (None, 35.0)
    assert parse(GOOD | {"target_soc_pct": None}).target_soc_pct is None
    assert parse(GOOD | {"target_soc_pct": 80}).target_soc_pct == 80.0       # equal to the minimum: fine


def test_a_target_below_the_minimum_is_refused_naming_both():
    result = parse(GOOD | {"target_soc_pct": 70.5})
    assert result == Rejection("target_soc_pct", "below_min_soc", "must be at least min_soc_pct (80), got 70.5")


def test_schema_examples_are_accepted():
    limits = FleetLimits({"v000042": Limits(11, 11), "v000043": Limits(11, 0)}, {"c000042": Limits(11, 11)})
    for example in SCHEMA["examples"]:
        jsonschema.validate(example, SCHEMA)
        assert isinstance(parse_reading(orjson.dumps(example), limits, NOW), Reading)


@pytest.mark.parametrize(("change", "field", "code"), [
    ({"soc_pct": 104.2}, "soc_pct", "out_of_range"),
    ({"soc_pct": -0.1}, "soc_pct", "out_of_range"),
    ({"soc_pct": "55"}, "soc_pct", "wrong_type"),
    ({"plugged_in": 1}, "plugged_in", "wrong_type"),
    ({"power_kw": True}, "power_kw", "wrong_type"),
    ({"vehicle_id": "v 1"}, "vehicle_id", "bad_format"),
    ({"vehicle_id": "v9"}, "vehicle_id", "unknown_vehicle"),
    ({"charger_id": "c9"}, "charger_id", "unknown_charger"),
    ({"charger_id": None}, "charger_id", "missing"),
    ({"power_kw": 11.7}, "power_kw", "over_rating"),      # car's 11 kW + 5 % + 0.1 kW noise
    ({"power_kw": -10.7}, "power_kw", "over_rating"),     # discharge rating 10 kW
    ({"plugged_in": False, "power_kw": 3.0}, "power_kw", "over_rating"),
    ({"ts": "2026-11-02T18:06:00Z"}, "ts", "in_future"),
    ({"ts": "2026-11-02 17:45:00"}, "ts", "bad_format"),
    ({"ts": "yesterday"}, "ts", "bad_format"),
    ({"departure_at": "2026-11-03T07:30:00"}, "departure_at", "bad_format"),
    ({"soc_source": "guess"}, "soc_source", "bad_value"),
    ({"colour": "red"}, "colour", "unknown_field"),
    ({"battery_temp_c": 120}, "battery_temp_c", "out_of_range"),
    ({"target_soc_pct": 100.5}, "target_soc_pct", "out_of_range"),
    ({"target_soc_pct": -1}, "target_soc_pct", "out_of_range"),
    ({"target_soc_pct": "90"}, "target_soc_pct", "wrong_type"),
    ({"target_soc_pct": False}, "target_soc_pct", "wrong_type"),
    ({"target_soc_pct": 79.9}, "target_soc_pct", "below_min_soc"),
    ({"min_soc_pct": 101, "target_soc_pct": 50}, "min_soc_pct", "out_of_range"),   # the minimum's own fault first
])
def test_each_rule_names_field_and_reason(change, field, code):
    result = parse(GOOD | change)
    assert isinstance(result, Rejection)
    assert (result.field, result.code) == (field, code)
    assert result.reason


def test_v1g_pair_cannot_discharge():
    result = parse(GOOD | {"vehicle_id": "v2", "charger_id": "c1", "power_kw": -1.0})
    assert isinstance(result, Rejection) and result.code == "over_rating"
    assert "-0.0 to 7.8 kW" in result.reason


def test_missing_required_field_and_garbage():
    for name in ("vehicle_id", "ts", "plugged_in", "power_kw"):
        doc = {k: v for k, v in GOOD.items() if k != name}
        assert parse(doc) == Rejection(name, "missing", "is required")
    assert parse_reading(b'{"vehicle_id": "v1", ', LIMITS, NOW).code == "malformed_json"
    assert parse_reading(b"[1, 2]", LIMITS, NOW).code == "wrong_type"
    assert parse_reading(None, LIMITS, NOW).code == "empty"


def test_future_tolerance_is_a_parameter():
    late = orjson.dumps(GOOD | {"ts": "2026-11-02T18:04:00Z"})
    assert isinstance(parse_reading(late, LIMITS, NOW), Reading)
    assert parse_reading(late, LIMITS, NOW, timedelta(seconds=60)).code == "in_future"


# --- the validator agrees with the JSON schema ------------------------------------------------
# Codes that only the registry or the clock can produce; the schema cannot know them.
REGISTRY_CODES = {"unknown_vehicle", "unknown_charger", "over_rating", "in_future"}
# Rules that tie two fields together, which a JSON schema cannot compare (the schema says them in words).
CROSS_FIELD = {("charger_id", "missing"), ("target_soc_pct", "below_min_soc")}

timestamps = st.one_of(
    st.datetimes(min_value=datetime(2026, 10, 1), max_value=datetime(2026, 11, 3),
                 timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.sampled_from(["2026-11-02T17:00:00+01:00", "2026-11-02", "noon", "2026-11-02T17:00:00", ""]),
    st.integers(), st.none())
numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e4, max_value=1e4),
                    st.integers(-500, 500), st.none(), st.booleans(), st.text(max_size=3))
field_values = {
    "vehicle_id": st.one_of(st.sampled_from(["v1", "v2", "v9", "bad id", ""]), st.none(), st.integers()),
    "ts": timestamps,
    "plugged_in": st.one_of(st.booleans(), st.none(), st.integers(0, 1)),
    "charger_id": st.one_of(st.sampled_from(["c1", "c2", "c9", "x" * 65]), st.none()),
    "power_kw": numbers, "soc_pct": numbers, "energy_import_kwh": numbers,
    "energy_export_kwh": numbers, "battery_temp_c": numbers, "odometer_km": numbers,
    "min_soc_pct": numbers, "target_soc_pct": numbers, "departure_at": timestamps,
    "soc_source": st.sampled_from(["vehicle_api", "iso15118", "estimated", None, "other", 3]),
    "extra": st.integers(),
}
documents = st.fixed_dictionaries({}, optional=field_values)


@settings(max_examples=600, deadline=None)
@given(documents)
def test_validator_agrees_with_json_schema(doc):
    schema_ok = jsonschema.Draft202012Validator(SCHEMA).is_valid(doc)
    result = parse(doc)
    if not schema_ok:
        assert isinstance(result, Rejection), doc
        assert result.code not in REGISTRY_CODES, (doc, result)
    elif isinstance(result, Rejection):
        assert result.code in REGISTRY_CODES or (result.field, result.code) in CROSS_FIELD, (doc, result)
