"""The statement's words and formats (flexfleet.settlement.labels) and the statement's data
(flexfleet.settlement.statement.statement_of)."""

from datetime import date, timedelta
from decimal import Decimal as D
from string import Formatter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency, Language, Owner
from flexfleet.settlement import Contract, ContractTerm, Month, VehicleMtu, settle_month
from flexfleet.settlement import labels as L
from flexfleet.settlement.statement import Promise, PromiseKind, statement_of

NB, MINUS = "\u00a0", "\u2212"


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def test_every_label_exists_in_every_language_with_the_same_placeholders() -> None:
    keys = set(L.WORDS[Language.EN])
    assert set(L.WORDS) == set(L.LANGUAGES)
    for lang in L.LANGUAGES:
        assert set(L.WORDS[lang]) == keys, lang
        for key in keys:
            assert L.WORDS[lang][key].strip(), (lang, key)
            assert _fields(L.WORDS[lang][key]) == _fields(L.WORDS[Language.EN][key]), (lang, key)
        assert len(set(L.MONTHS[lang])) == 12 and lang in L.FORMATS


def _words_only(template: str) -> str:
    return "".join(literal for literal, _, _, _ in Formatter().parse(template))


def test_languages_are_translated_not_copied() -> None:
    for lang in L.LANGUAGES[1:]:
        same = [k for k, v in L.WORDS[lang].items()
                if v == L.WORDS[Language.EN][k] and sum(ch.isalpha() for ch in _words_only(v)) > 8]
        assert same == [], (lang, same)


def test_every_source_has_a_name_and_a_plain_explanation() -> None:
    from flexfleet.settlement.lines import Source
    for source in Source:
        for lang in L.LANGUAGES:
            assert L.text(lang, f"src_{source.value}") and L.text(lang, f"explain_{source.value}").endswith(".")


@pytest.mark.parametrize("lang, cur, minor, text", [
    ("en", "EUR", 123450, "EUR 1,234.50"),
    ("en", "SEK", -2092, f"{MINUS}SEK 20.92"),
    ("sv", "SEK", 123450, f"1{NB}234,50{NB}kr"),
    ("sv", "EUR", 5, f"0,05{NB}€"),
    ("nb", "NOK", 123456789, f"1{NB}234{NB}567,89{NB}kr"),
    ("nb", "SEK", 100, f"1,00{NB}SEK"),
    ("da", "DKK", 123450, f"1.234,50{NB}kr."),
    ("nl", "EUR", 123450, f"€{NB}1.234,50"),
    ("nl", "EUR", -99, f"€{NB}{MINUS}0,99"),
    ("nl", "SEK", 0, f"SEK{NB}0,00"),
    ("fi", "EUR", 123450, "EUR 1,234.50".replace(" ", NB)),   # Finnish falls back to English, formats too
])
def test_money_per_language(lang, cur, minor, text) -> None:
    assert L.money(minor, cur, lang) == text.replace("EUR ", f"EUR{NB}").replace("SEK ", f"SEK{NB}")


def test_signed_money_and_rates() -> None:
    assert L.money(1234, "EUR", "en", signed=True) == f"+EUR{NB}12.34"
    assert L.money(1234, "EUR", "nl", signed=True) == f"€{NB}+12,34"
    assert L.money(-1234, "SEK", "sv", signed=True) == f"{MINUS}12,34{NB}kr"
    assert L.rate(D("0.0812"), "SEK", "sv") == f"0,0812{NB}kr"       # the contract's decimals are kept
    assert L.rate(D("5"), "EUR", "nl") == f"€{NB}5,00"                 # at least the currency's two
    assert L.rate(D("1000.0000"), "DKK", "da") == f"1.000,00{NB}kr."
    assert L.percent(D("50"), "en") == "50%" and L.percent(D("12.5"), "sv") == f"12,5{NB}%"


def test_numbers_dates_and_months() -> None:
    assert L.number(D("1234567.891"), "en") == "1,234,567.891"
    assert L.number(D("1234.5"), "nl", 2) == "1.234,50"
    assert L.number(D("0.466667"), "sv") == "0,466667"
    assert L.number(D("2.25"), "da", 1) == "2,3"                      # half up, not to even
    assert L.month_name(date(2026, 6, 1), "en") == "June 2026"
    assert [L.month_name(date(2026, 3, 1), x) for x in ("nb", "sv", "da", "nl")] == [
        "mars 2026", "mars 2026", "marts 2026", "maart 2026"]
    assert [L.day_text(date(2026, 6, 3), x) for x in ("en", "nb", "sv", "da", "nl")] == [
        "3 June", "3. juni", "3 juni", "3. juni", "3 juni"]


def test_bad_input_names_the_field() -> None:
    with pytest.raises(DomainError) as e:
        L.language("de")
    assert e.value.field == "language"
    with pytest.raises(DomainError) as e:
        L.money(D("1.5"), "EUR", "en")  # type: ignore[arg-type]
    assert e.value.field == "amount"
    with pytest.raises(DomainError):
        L.text("en", "no_such_label")


def _digits(text: str, lang: str) -> int:
    fmt = L.FORMATS[L.language(lang)]
    core = "".join(ch for ch in text if ch.isdigit() or ch in (fmt.decimal, MINUS))
    whole, _, frac = core.replace(MINUS, "").partition(fmt.decimal)
    n = int(whole) * 100 + int(frac)
    return -n if MINUS in core else n


@given(st.integers(-10**12, 10**12), st.sampled_from(list(Currency)), st.sampled_from([x.value for x in Language]))
def test_money_reads_back_as_the_same_minor_units(minor, cur, lang) -> None:
    text = L.money(minor, cur, lang)
    assert _digits(text, lang) == minor
    assert " " not in text                     # no-break spaces only: an amount never wraps


# ------------------------------------------------------------------------------- statement_of

JUNE = Month(date(2026, 6, 1), "SE3")         # CEST: local midnight is 22:00 UTC the day before
Q = timedelta(minutes=15)


def _settled():
    term = ContractTerm("t", JUNE.start, availability_per_hour=D("1.00"), energy_per_kwh=D("2.00"))
    mine = Contract("c-1", "owner-1", ("car-1",), "SEK", (term,), language="sv")
    other = Contract("c-2", "owner-2", ("car-2",), "EUR", (ContractTerm("u", JUNE.start, availability_per_hour=D(1)),))
    records = [VehicleMtu("car-1", JUNE.start + i * Q, True, i != 0) for i in range(8)]     # 00:00-02:00 on 1 June
    records += [VehicleMtu("car-1", JUNE.start + timedelta(days=29, hours=23) + i * Q, True, discharged_kwh=D("0.5"),
                           charged_kwh=D("1.25")) for i in range(4)]                        # 30 June 23:00-24:00
    records += [VehicleMtu("car-2", JUNE.start + i * Q, True) for i in range(4)]
    return settle_month(JUNE, [mine, other], [], records), records


def test_statement_days_are_local_days_with_controllable_hours() -> None:
    s, records = _settled()
    owner = Owner("owner-1", "Anna", "sv", "SEK")
    st_ = statement_of(s, owner, [r for r in records if r.vehicle_id == "car-1"], [])
    assert len(st_.days) == 30 and st_.days[0].day == date(2026, 6, 1) and st_.days[-1].day == date(2026, 6, 30)
    assert st_.days[0].available_hours == D("1.75")             # 7 of 8 quarters controllable
    last = st_.days[-1]
    assert (last.available_hours, last.charged_kwh, last.discharged_kwh) == (D(1), D(5), D(2))
    assert sum(d.available_hours for d in st_.days) == D("2.75")
    assert st_.totals == {Currency.SEK: 275 + 400} and st_.adjustments == {}
    assert all(x.owner_id == "owner-1" for x in st_.lines)


def test_statement_zone_decides_the_day() -> None:
    s, records = _settled()
    st_ = statement_of(s, Owner("owner-1", "Anna"), [r for r in records if r.vehicle_id == "car-1"], [], zone="UTC")
    assert st_.days[0].day == date(2026, 5, 31) and st_.days[0].available_hours == D("1.75")


def test_statement_version_two_shows_the_adjustment() -> None:
    s, records = _settled()
    mine = [r for r in records if r.vehicle_id == "car-1"]
    st_ = statement_of(s, Owner("owner-1", "Anna"), mine, [], version=2, previous_totals={"SEK": 700, "EUR": 10})
    assert st_.adjustments == {Currency.EUR: -10, Currency.SEK: -25}
    with pytest.raises(DomainError) as e:
        statement_of(s, Owner("owner-1", "Anna"), mine, [], previous_totals={"SEK": 700})
    assert e.value.field == "previous_totals"


def test_statement_refuses_another_owners_records() -> None:
    s, records = _settled()
    with pytest.raises(DomainError) as e:
        statement_of(s, Owner("owner-1", "Anna"), records, [])
    assert e.value.field.startswith("vehicle_mtus[") and "car-2" in e.value.reason
    promise = Promise("car-2", PromiseKind.DEPARTURE, JUNE.start + timedelta(hours=7), 80.0, 80.0, True)
    with pytest.raises(DomainError) as e:
        statement_of(s, Owner("owner-1", "Anna"), [], [promise])
    assert e.value.field == "promises[0].vehicle_id"
    with pytest.raises(DomainError) as e:
        statement_of(s, Owner("owner-1", "Anna"), [], [], version=0)
    assert e.value.field == "version"
    late = Promise("car-1", "late", JUNE.start, 80.0, 80.0, True)  # type: ignore[arg-type]
    with pytest.raises(DomainError) as e:
        statement_of(s, Owner("owner-1", "Anna"), [], [late])
    assert e.value.field == "promises[0].kind"


def test_a_car_that_changed_hands_is_on_both_statements() -> None:
    sold = JUNE.start + timedelta(days=15)
    first = Contract("c-1", "owner-1", ("car-1",), "SEK", (ContractTerm("a", JUNE.start, availability_per_hour=D(1)),),
                     ends=sold)
    second = Contract("c-2", "owner-2", ("car-1",), "SEK", (ContractTerm("b", sold, availability_per_hour=D(2)),))
    records = [VehicleMtu("car-1", JUNE.start + i * Q, True) for i in range(4)]
    records += [VehicleMtu("car-1", sold + i * Q, True) for i in range(4)]
    s = settle_month(JUNE, [first, second], [], records)
    one = statement_of(s, Owner("owner-1", "A"), [r for r in records if r.mtu < sold], [])
    two = statement_of(s, Owner("owner-2", "B"), [r for r in records if r.mtu >= sold], [])
    assert (one.totals, two.totals) == ({Currency.SEK: 100}, {Currency.SEK: 200})
    assert sum(d.available_hours for d in one.days) == 1 == sum(d.available_hours for d in two.days)


def test_statement_is_the_same_value_on_a_rerun() -> None:
    s, records = _settled()
    mine = [r for r in records if r.vehicle_id == "car-1"]
    promises = [Promise("car-1", "min_soc", JUNE.start + timedelta(hours=2), 20.0, 35.0, True),  # type: ignore[arg-type]
                Promise("car-1", PromiseKind.DEPARTURE, JUNE.start + timedelta(hours=1), 80.0, 70.0, False)]
    a = statement_of(s, Owner("owner-1", "Anna"), mine, promises)
    b = statement_of(s, Owner("owner-1", "Anna"), mine[::-1], promises[::-1])
    assert a == b and [p.kind for p in a.promises] == [PromiseKind.DEPARTURE, PromiseKind.MIN_SOC]
    assert all(type(p.kind) is PromiseKind for p in a.promises)
