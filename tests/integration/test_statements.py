"""Owner statements end to end: a hand-computed owner month settled, rendered as HTML in five
languages and printed to PDF by headless Chromium, byte-identical on a rerun.

June 2026, SE3 (CEST, UTC+2; 30 days). Car car-1 of Anna Berg on contract c-1 in SEK, two terms:

| rate                        | t1 (from 1 June) | t2 (from 16 June 00:00 local) |
|-----------------------------|------------------|-------------------------------|
| availability per hour       | 1.00             | 1.25                          |
| revenue share               | 50 %             | 50 %                          |
| energy per kWh discharged   | 2.00             | 2.00                          |
| wear                        | pass-through x 1 of 1000.00 SEK per kWh of capacity (60 kWh NMC) |
| credit per broken departure | 50.00            | 50.00                         |

Plugged in and controllable 00:00-06:00 every day (6 h), except 10 June 00:00-02:00 plugged in
but not controllable (owner override), plus 18 June 19:00-20:00 for an obligation:
t1 15 x 6 - 2 = 88 h, t2 15 x 6 + 1 = 91 h.
Obligation obl-1 on FCR-D-up/SE3 (SEK), 18 June 19-20: 0.01 MW x 400.00 SEK/MW/h x 1 h = 4.00 SEK,
car-1 holds all 10 kW: 4.00 x 10/10 x 50 % = 2.00.
Discharged 1.2 kWh on 5 June (t1) and 2.5 kWh on 18 June (t2); charged 3.0 kWh on 5 June (no refund).
Wear: the SoC trace of tests/unit/test_settlement_owner_month.py (the same cycle every day), whose
cycling loss on the battery model's curve is 0.047 kWh; each term carries 15/30 of the throughput:
0.0235 kWh x 1000.00.
One departure promise broken on 20 June 06:00 (t2): 1 x 50.00.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal as D
from html.parser import HTMLParser
from pathlib import Path

import pytest

from flexfleet.domain.model import Currency, Owner
from flexfleet.settlement import (CapUsage, ChargingRefund, Commitment, Contract, ContractTerm, Month, ObligationMtu,
                                  SocTrace, Source, VehicleMtu, settle_month)
from flexfleet.settlement.labels import LANGUAGES, WORDS
from flexfleet.settlement.statement import Promise, PromiseKind, statement_of
from services.settlement.statements.pdf import (CHROMIUM, ChromiumMissing, StatementPrinter, file_stem,
                                                write_statements)
from services.settlement.statements.render import line_rows, render_html

pytestmark = pytest.mark.integration

JUNE = Month(date(2026, 6, 1), "SE3")
Q = timedelta(minutes=15)

# source, term, quantity, rate, amount (öre): the hand computation above
EXPECTED = [
    (Source.AVAILABILITY, "t1", D("88"), D("1.00"), 8800),
    (Source.AVAILABILITY, "t2", D("91"), D("1.25"), 11375),
    (Source.CAPACITY_SHARE, "t2", D("10"), D("50"), 200),
    (Source.ENERGY, "t1", D("1.2"), D("2.00"), 240),
    (Source.ENERGY, "t2", D("2.5"), D("2.00"), 500),
    (Source.WEAR, "t1", D("0.0235"), D("1000"), 2350),
    (Source.WEAR, "t2", D("0.0235"), D("1000"), 2350),
    (Source.CREDIT_DEPARTURE, "t2", D("1"), D("50.00"), 5000),
]
TOTAL = 30815

# The same lines as the page shows them: source, car, what and when, quantity, rate, amount
# (no-break spaces written as plain spaces here).
SHOWN = {
    "sv": [
        ("Tillgänglighet", "car-1", "1 juni – 15 juni", "88 h", "× 1,00 kr/h", "88,00 kr"),
        ("Tillgänglighet", "car-1", "16 juni – 30 juni", "91 h", "× 1,25 kr/h", "113,75 kr"),
        ("Andel av kapacitetsintäkter", "car-1", "FCR-D-up/SE3, 18 juni 19:00–20:00", "10 kW", "50 % av netto",
         "2,00 kr"),
        ("Levererad energi", "car-1", "5 juni", "1,2 kWh", "× 2,00 kr/kWh", "2,40 kr"),
        ("Levererad energi", "car-1", "18 juni", "2,5 kWh", "× 2,00 kr/kWh", "5,00 kr"),
        ("Batterislitage", "car-1", "1 juni – 15 juni", "0,0235 kWh kapacitet", "× 1 000,00 kr/kWh", "23,50 kr"),
        ("Batterislitage", "car-1", "16 juni – 30 juni", "0,0235 kWh kapacitet", "× 1 000,00 kr/kWh", "23,50 kr"),
        ("Kreditering: avreselöfte", "car-1", "20 juni", "1", "× 50,00 kr", "50,00 kr"),
    ],
    "en": [
        ("Availability", "car-1", "1 June – 15 June", "88 h", "× SEK 1.00/h", "SEK 88.00"),
        ("Availability", "car-1", "16 June – 30 June", "91 h", "× SEK 1.25/h", "SEK 113.75"),
        ("Capacity revenue share", "car-1", "FCR-D-up/SE3, 18 June 19:00–20:00", "10 kW", "50% of the net",
         "SEK 2.00"),
        ("Energy delivered", "car-1", "5 June", "1.2 kWh", "× SEK 2.00/kWh", "SEK 2.40"),
        ("Energy delivered", "car-1", "18 June", "2.5 kWh", "× SEK 2.00/kWh", "SEK 5.00"),
        ("Battery wear", "car-1", "1 June – 15 June", "0.0235 kWh of capacity", "× SEK 1,000.00/kWh", "SEK 23.50"),
        ("Battery wear", "car-1", "16 June – 30 June", "0.0235 kWh of capacity", "× SEK 1,000.00/kWh", "SEK 23.50"),
        ("Credit: departure promise", "car-1", "20 June", "1", "× SEK 50.00", "SEK 50.00"),
    ],
    "nl": [
        ("Beschikbaarheid", "car-1", "1 juni – 15 juni", "88 u", "× SEK 1,00/u", "SEK 88,00"),
        ("Beschikbaarheid", "car-1", "16 juni – 30 juni", "91 u", "× SEK 1,25/u", "SEK 113,75"),
        ("Aandeel in capaciteitsopbrengst", "car-1", "FCR-D-up/SE3, 18 juni 19:00–20:00", "10 kW",
         "50 % van netto", "SEK 2,00"),
        ("Geleverde energie", "car-1", "5 juni", "1,2 kWh", "× SEK 2,00/kWh", "SEK 2,40"),
        ("Geleverde energie", "car-1", "18 juni", "2,5 kWh", "× SEK 2,00/kWh", "SEK 5,00"),
        ("Accuslijtage", "car-1", "1 juni – 15 juni", "0,0235 kWh capaciteit", "× SEK 1.000,00/kWh", "SEK 23,50"),
        ("Accuslijtage", "car-1", "16 juni – 30 juni", "0,0235 kWh capaciteit", "× SEK 1.000,00/kWh", "SEK 23,50"),
        ("Vergoeding: vertrekbelofte", "car-1", "20 juni", "1", "× SEK 50,00", "SEK 50,00"),
    ],
}
SHOWN_TOTAL = {"sv": "308,15 kr", "en": "SEK 308.15", "nl": "SEK 308,15", "nb": "308,15 SEK", "da": "308,15 SEK"}


def local(day: int, hour: int, minute: int = 0):
    return JUNE.start + timedelta(days=day - 1, hours=hour, minutes=minute)


def _terms() -> tuple[ContractTerm, ContractTerm]:
    common = dict(revenue_share_pct=D(50), energy_per_kwh=D("2.00"), wear_factor=D(1),
                  credit_per_broken_departure=D("50.00"))
    return (ContractTerm("t1", local(1, 0), availability_per_hour=D("1.00"), **common),
            ContractTerm("t2", local(16, 0), availability_per_hour=D("1.25"), **common))


def _vehicle_mtus() -> list[VehicleMtu]:
    special = {local(5, 5): dict(discharged_kwh=D("1.2")), local(5, 2): dict(charged_kwh=D("3.0")),
               local(18, 19, 15): dict(discharged_kwh=D("2.5")), local(20, 5, 45): dict(broken_departures=1)}
    out = []
    for i in range(JUNE.n_mtus):
        mtu = JUNE.start + i * Q
        hour, day = (i // 4) % 24, i // 96 + 1
        if hour < 6 or (day == 18 and hour == 19):
            out.append(VehicleMtu("car-1", mtu, True, not (day == 10 and hour < 2), **special.get(mtu, {})))
    return out


def _trace() -> SocTrace:
    day = [0.8 if h < 17 else (round(0.8 - 0.1 * (h - 17), 10) if h <= 20 else 0.5) for h in range(24)]
    return SocTrace("car-1", JUNE.start, 3600.0, tuple(day * 30 + [0.8]), "NMC", D(60), D("1000.00"), "SEK")


def _promises() -> list[Promise]:
    out = [Promise("car-1", PromiseKind.DEPARTURE, local(d, 6), 80.0, 62.0 if d == 20 else 80.0, d != 20)
           for d in (3, 12, 20, 27)]
    return out + [Promise("car-1", PromiseKind.MIN_SOC, local(18, 20), 30.0, 41.0, True)]


@pytest.fixture(scope="module")
def settled():
    contract = Contract("c-1", "owner-1", ("car-1",), "SEK", _terms(), language="sv")
    obligation = ObligationMtu("obl-1", "FCR-D-up/SE3", local(18, 19), local(18, 20), "SEK", D("0.01"),
                               D("400.00"), (Commitment("car-1", D(10)),))
    return settle_month(JUNE, [contract], [obligation], _vehicle_mtus(), [_trace()])


def _statement(settled, lang: str, version: int = 1, previous=None):
    return statement_of(settled, Owner("owner-1", "Anna Berg", lang, "SEK"), _vehicle_mtus(), _promises(),
                        version=version, previous_totals=previous)


class _Rows(HTMLParser):
    """The cells of the detailed lines (<tr class="line">) of a rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_row = self._in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._in_row = ("class", "line") in attrs
            if self._in_row:
                self.rows.append([])
        elif tag == "td" and self._in_row:
            self._in_cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_cell = False
        elif tag == "tr":
            self._in_row = False

    def handle_data(self, data):
        if self._in_cell:
            self.rows[-1][-1] += data


def _shown_rows(html: str) -> list[tuple[str, ...]]:
    parser = _Rows()
    parser.feed(html)
    return [tuple(c.replace("\u00a0", " ").strip() for c in r) for r in parser.rows]


def _need_chromium() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium fonts-dejavu-core")


@pytest.fixture
def printer():
    """One browser per test: Playwright's sync API allows one at a time per thread."""
    _need_chromium()
    with StatementPrinter() as p:
        yield p


# ---------------------------------------------------------------------------- the owner month


def test_hand_computed_month_is_what_settlement_pays(settled) -> None:
    lines = settled.owner_lines("owner-1")
    got = [(x.source, x.term_id, x.quantity, x.rate, x.amount) for x in lines]
    assert got == EXPECTED
    assert sum(x.amount for x in lines) == TOTAL
    assert _statement(settled, "sv").totals == {Currency.SEK: TOTAL}


@pytest.mark.parametrize("lang", ["sv", "en", "nl"])
def test_page_shows_exactly_the_hand_computed_lines(settled, lang) -> None:
    html = render_html(_statement(settled, lang))
    assert _shown_rows(html) == SHOWN[lang]
    assert html.count(SHOWN_TOTAL[lang].replace(" ", "\u00a0")) >= 3     # the top, the sources, the detail
    assert f'<html lang="{lang}">' in html


def test_page_reads_top_down_for_an_owner(settled) -> None:
    html = render_html(_statement(settled, "sv"))
    order = [html.index(x) for x in ("Utbetalt till dig för juni 2026", "<h2>Var pengarna kommer ifrån</h2>",
                                     "<h2>Din månad i diagram</h2>", "<h2>Batterislitage</h2>",
                                     "<h2>Dina avresetider och laddnivåer</h2>",
                                     "<h2>Alla rader, att kontrollera själv</h2>")]
    assert order == sorted(order)
    for text in ("Betalt för varje timme din bil var ansluten", "47,00\u00a0kr", "4 / 5",
                 "brutet, krediterat 50,00\u00a0kr", "0,047 kWh kapacitet förlorad"):
        assert text in html, text
    assert html.count("<svg") == 5          # hours, energy, earnings, wear, promises
    assert not re.search(r"(src|href)=\"(?!#)|<link|url\((?!#)", html)         # self-contained: nothing to fetch
    assert "<script" not in html


def test_version_two_shows_the_adjustment(settled) -> None:
    html = render_html(_statement(settled, "nl", version=2, previous={"SEK": TOTAL - 1500}))
    assert "Wijziging ten opzichte van de vorige afrekening" in html and "Betaald in versie 1" in html
    assert "SEK\u00a0293,15" in html and "SEK\u00a0+15,00" in html
    assert "Wijziging" not in render_html(_statement(settled, "nl"))


@pytest.mark.parametrize("lang", [x.value for x in LANGUAGES] + ["fi"])
def test_every_language_renders_with_its_own_words(settled, lang) -> None:
    html = render_html(_statement(settled, lang))
    words = WORDS.get(lang, WORDS["en"])
    for key in ("title", "by_source", "details", "promises", "src_availability", "explain_wear"):
        assert words[key].replace("&", "&amp;") in html, (lang, key)
    assert not re.search(r"\{[a-z_]+\}", html)           # no placeholder left unfilled
    assert SHOWN_TOTAL.get(lang, "SEK 308.15").replace(" ", "\u00a0") in html
    assert len(line_rows(_statement(settled, lang))) == len(EXPECTED)


def _capped_statement():
    term = ContractTerm("t", JUNE.start, availability_per_hour=D("0.10"), energy_per_kwh=D("0.20"),
                        fixed_monthly=D("10.00"), annual_cap=D("100.00"), min_plugged_in_hours=D(100),
                        charging_refund=ChargingRefund())
    contract = Contract("c-9", "owner-9", ("car-9",), "EUR", (term,), language="nl")
    records = [VehicleMtu("car-9", JUNE.start + i * Q, True, discharged_kwh=D("5") if i < 2 else D(0),
                          charged_kwh=D("2") if i >= 6 else D(0), platform_charged_kwh=D("2") if i >= 6 else D(0),
                          charging_price_per_kwh=D("0.25")) for i in range(8)]
    s = settle_month(JUNE, [contract], [], records, cap_usage=[CapUsage("c-9", 2026, 9900)])
    return statement_of(s, Owner("owner-9", "Sanne de Vries", "nl", "EUR"), records, [])


def test_forfeited_pay_refunds_and_the_annual_cap_are_explained() -> None:
    """An EUR contract in Dutch: 2 h plugged in against a 100 h minimum forfeits availability
    (0.20) and fixed pay (10.00); 10 kWh x 0.20 energy is capped (99.00 of the 100.00 cap counted
    before June leaves 1.00: cut 1.00); 4 kWh refunded at the 0.25 paid. Total 2.00 + 1.00 - 1.00."""
    st_ = _capped_statement()
    html = render_html(st_)
    assert _shown_rows(html) == [
        ("Beschikbaarheid", "car-9", "1 juni", "2 u", "× € 0,10/u", "€ 0,00"),
        ("Geleverde energie", "car-9", "1 juni", "10 kWh", "× € 0,20/kWh", "€ 2,00"),
        ("Terugbetaald laden", "car-9", "1 juni", "4 kWh", "de prijs die u betaalde", "€ 1,00"),
        ("Vast maandbedrag", "car-9", "1 juni – 30 juni", "1 van de maand", "× € 10,00/maand", "€ 0,00"),
        ("Jaarplafond", "alle", "Verdiend deze maand € 2,00; het jaarplafond € 100,00 liet ruimte voor € 1,00",
         "€ 2,00", "€ 100,00/jaar", "€ \u22121,00"),
    ]
    for note in ("Deze maand niet betaald (€\u00a00,20)", "Deze maand niet betaald (€\u00a010,00)"):
        assert note in html
    assert st_.totals == {Currency.EUR: 200} and "€\u00a02,00" in html
    assert "Er zijn deze maand geen beloften" in html and "Deze maand is geen accuslijtage berekend." in html


def test_html_is_byte_identical_on_a_rerun(settled) -> None:
    a = render_html(_statement(settled, "da"))
    b = render_html(_statement(settled, "da"))
    assert hashlib.sha256(a.encode()).hexdigest() == hashlib.sha256(b.encode()).hexdigest()


def test_html_is_byte_identical_in_a_new_process() -> None:
    """A rerun is a new process: another hash seed must not reorder anything on the page."""
    here = hashlib.sha256(render_html(_capped_statement()).encode()).hexdigest()
    code = ("import hashlib, tests.integration.test_statements as t; from services.settlement.statements.render "
            "import render_html; print(hashlib.sha256(render_html(t._capped_statement()).encode()).hexdigest())")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, cwd=Path(__file__).parents[2])
        assert out.stdout.strip() == here


# --------------------------------------------------------------------------------------- PDFs


def test_pdf_renders_in_every_language(settled, printer, tmp_path_factory) -> None:
    import numpy as np
    import pypdfium2 as pdfium

    out = tmp_path_factory.mktemp("statement-png")
    for lang in [x.value for x in LANGUAGES]:
        pdf = printer.statement_pdf(_statement(settled, lang))
        assert pdf.startswith(b"%PDF-")
        doc = pdfium.PdfDocument(pdf)
        assert len(doc) >= 2
        text = "".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
        assert SHOWN_TOTAL[lang].replace(" ", "") in text.replace("\u00a0", "").replace(" ", "").replace("\r\n", "")
        image = doc[0].render(scale=1.25).to_pil()
        image.save(out / f"statement-{lang}-p1.png")
        pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.std() > 20 and (pixels < 200).mean() > 0.03, lang     # not blank: text, bars, colour
        doc.close()


def test_pdf_is_byte_identical_on_a_rerun_and_in_a_new_browser(settled) -> None:
    _need_chromium()
    s = _statement(settled, "nb")
    with StatementPrinter() as printer:
        first = printer.statement_pdf(s)
        time.sleep(1.1)                               # the wall clock moves on; the dates must not
        assert hashlib.sha256(printer.statement_pdf(s)).digest() == hashlib.sha256(first).digest()
    with StatementPrinter() as other:
        assert other.statement_pdf(_statement(settled, "nb")) == first
    assert b"/CreationDate (D:20260630220000+00'00')" in first        # the month's end, 1 July 00:00 CEST


def test_killed_run_reruns_to_identical_files(settled, tmp_path) -> None:
    _need_chromium()
    statements = [replace(s, owner=replace(s.owner, owner_id=f"owner-{s.owner.language.value}"))
                  for s in (_statement(settled, lang.value) for lang in LANGUAGES[:3])]

    def hashes(d):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}

    first = list(write_statements(statements, tmp_path / "a"))
    assert [f.pdf.name for f in first] == [f"{file_stem(s)}.pdf" for s in statements]
    # a run killed after the first statement: its PDF lost, its HTML cut short, a temporary file left
    run = write_statements(statements, tmp_path / "b")
    done = next(run)
    run.close()
    done.pdf.unlink()
    done.html.write_bytes(done.html.read_bytes()[:100])
    stale = tmp_path / "b" / f".{done.pdf.name}.tmp"
    stale.write_bytes(b"%PDF-partial")
    list(write_statements(statements, tmp_path / "b"))
    assert not stale.exists()
    assert hashes(tmp_path / "a") == hashes(tmp_path / "b") and len(hashes(tmp_path / "b")) == 6


def test_statements_shared_out_among_processes_are_the_same_files(settled, tmp_path) -> None:
    _need_chromium()
    statements = [replace(s, owner=replace(s.owner, owner_id=f"owner-{i:02d}"))
                  for i, s in enumerate(_statement(settled, lang.value) for lang in LANGUAGES * 4)]
    alone = list(write_statements(statements, tmp_path / "one", workers=1))
    shared = list(write_statements(statements, tmp_path / "two", workers=2))
    assert [f.pdf.name for f in shared] == [f.pdf.name for f in alone]      # in the statements' order
    assert {f.name: f.read_bytes() for f in (tmp_path / "one").iterdir()} == {
        f.name: f.read_bytes() for f in (tmp_path / "two").iterdir()}


def test_one_browser_prints_a_batch(settled, printer) -> None:
    statements = [_statement(settled, lang.value) for lang in LANGUAGES] * 2
    t0 = time.perf_counter()
    pdfs = [printer.statement_pdf(s) for s in statements]
    per_statement = (time.perf_counter() - t0) / len(statements)
    print(f"\n{per_statement:.2f} s per statement (HTML + PDF) with one browser")
    assert pdfs[:5] == pdfs[5:] and len(set(pdfs[:5])) == 5
    assert per_statement < 10


def test_missing_chromium_fails_loudly() -> None:
    with pytest.raises(ChromiumMissing, match="apt-get install"):
        StatementPrinter("/nonexistent/chromium")
