"""The monthly operations settlement report: its data (`month_report`, `report_changes`), its page
and its CSVs, for a small June 2026 in SE3 with two markets in two currencies and penalties.

FCR-D-up/SE_DK2 pays in EUR (two obligation MTUs of 1 MW, one with a capacity shortfall),
local-flex/NODES in SEK (one MTU with a late activation). Owner 1 is paid in EUR, owner 2 in
SEK, so each owner's pay is charged to both markets and converted at the month's rate. Version 2
of the month is the same with the late activation's penalty price raised (late meter data).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal as D
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency
from flexfleet.settlement import (Commitment, Contract, ContractTerm, Month, ObligationMtu, Penalty, VehicleMtu,
                                  month_report, settle_month)
from flexfleet.settlement.report import MonthReport, report_changes
from services.settlement.statements.operations import operations_csv, operations_files, render_operations_report

JUNE = Month(date(2026, 6, 1), "SE3")
Q = timedelta(minutes=15)
ROOT = Path(__file__).resolve().parents[2]


def at(day: int, hour: int):
    return JUNE.start + timedelta(days=day - 1, hours=hour)


def settle(late_price: D = D("100"), fcr_price: D = D("40.00"), availability_sek: D = D("1.05")):
    eur = Contract("c-1", "owner-1", ("car-1",), "EUR", (ContractTerm(
        "t1", JUNE.start, availability_per_hour=D("0.10"), revenue_share_pct=D(50), energy_per_kwh=D("0.15")),))
    sek = Contract("c-2", "owner-2", ("car-2",), "SEK", (ContractTerm(
        "t2", JUNE.start, availability_per_hour=availability_sek, revenue_share_pct=D(40),
        fixed_monthly=D("25.00")),))
    commit = (Commitment("car-1", D(30)), Commitment("car-2", D(70)))
    short = (Penalty("capacity_not_held", "withheld", D("0.2"), D("33.33")),
             Penalty("capacity_not_held", "surcharge", D("0.2"), D("10.00")))
    obligations = [
        ObligationMtu("obl-A", "FCR-D-up/SE_DK2", at(3, 19), at(3, 20), "EUR", D(1), fcr_price, commit),
        ObligationMtu("obl-B", "FCR-D-up/SE_DK2", at(18, 15), at(18, 16), "EUR", D(1), D("33.33"), commit, short),
        ObligationMtu("obl-C", "local-flex/NODES", at(10, 17), at(10, 18), "SEK", D("0.1"), D("412.50"), commit,
                      (Penalty("late_activation", "withheld", D("0.03"), late_price),))]
    mtus = []
    for car in ("car-1", "car-2"):
        for day in range(1, 31):
            for hour in list(range(0, 7)) + ([15, 17, 19] if day in (3, 10, 18) else []):
                for q in range(4):
                    mtu = at(day, hour) + q * Q
                    mtus.append(VehicleMtu(car, mtu, True, True,
                                           discharged_kwh=D("0.5") if (day, hour) == (3, 19) else D(0)))
    return settle_month(JUNE, [eur, sek], obligations, mtus)


@pytest.fixture(scope="module")
def v1() -> MonthReport:
    return month_report(settle())


@pytest.fixture(scope="module")
def v2() -> MonthReport:
    return month_report(settle(late_price=D("412")))


# ------------------------------------------------------------------------------ reading the page


class Rows(HTMLParser):
    """Every table row of a page: (table id, row attrs, [(cell attrs, text)])."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[tuple[str, dict, list[tuple[dict, str]]]] = []
        self._table = ""
        self._cell: list | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id", "")
        elif tag == "tr":
            self.rows.append((self._table, a, []))
        elif tag in ("td", "th"):
            self._cell = [a, ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][2].append((self._cell[0], self._cell[1].strip()))
            self._cell = None

    def table(self, table: str, cls: str) -> list[tuple[dict, list[tuple[dict, str]]]]:
        return [(a, cells) for t, a, cells in self.rows if t == table and a.get("class") == cls]


def shown(minor: int) -> str:
    """How the page writes an amount in a table: 1,234.50 / −12.00."""
    sign = "\u2212" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100:,}.{abs(minor) % 100:02d}"


def csv_rows(data: bytes) -> list[dict[str, str]]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


# ----------------------------------------------------------------------------------- the report


def test_the_report_lists_penalties_per_obligation_and_ties_owner_pay_to_the_ledger(v1: MonthReport) -> None:
    by_cause: dict[tuple, int] = defaultdict(int)
    for p in v1.penalty_details:
        by_cause[(p.market, p.currency, p.cause, p.kind)] += p.amount
    assert by_cause == {(p.market, p.currency, p.cause, p.kind): p.amount for p in v1.penalties}
    assert [(p.obligation_id, p.kind, p.amount) for p in v1.penalty_details] == [
        ("obl-C", "withheld", 300), ("obl-B", "surcharge", 200), ("obl-B", "withheld", 667)]
    assert v1.owner_payable == v1.owner_pay_totals and {c for c, _ in v1.owner_payable} == {Currency.EUR,
                                                                                           Currency.SEK}
    assert v1.reconciled
    assert not dataclasses.replace(v1, owner_payable=((Currency.EUR, 1), (Currency.SEK, 0))).reconciled


def test_report_changes_list_only_the_amounts_that_changed(v1: MonthReport, v2: MonthReport) -> None:
    changes = report_changes(v1, v2)
    assert report_changes(v1, v1) == ()
    assert all(c.difference and c.now - c.previous == c.difference for c in changes)
    found = {(c.section, c.item, c.currency): (c.previous, c.now) for c in changes}
    assert found[("penalty", "local-flex/NODES late_activation:withheld", Currency.SEK)] == (300, 1236)
    assert found[("reconciliation", "local-flex/NODES penalties", Currency.SEK)] == (300, 1236)
    assert not any(c.item.startswith("FCR-D-up/SE_DK2 revenue") for c in changes)   # that market's revenue stands
    with pytest.raises(DomainError) as err:
        report_changes(dataclasses.replace(v1, month="2026-05"), v2)
    assert err.value.field == "previous"


# ------------------------------------------------------------------------------------- the page


def test_the_page_shows_every_market_to_the_cent_and_says_reconciled(v1: MonthReport) -> None:
    html = render_operations_report(v1)
    rows = Rows(html)
    markets = rows.table("markets", "market")
    assert [(a["data-market"], a["data-currency"]) for a, _ in markets] == [
        (r.market, r.currency.value) for r in v1.reconciliation]
    assert {r.margin > 0 for r in v1.reconciliation} == {True, False}    # one market makes money, one loses it
    for (_, cells), r in zip(markets, v1.reconciliation):
        amounts = {a["data-field"]: (int(a["data-minor"]), text) for a, text in cells if "data-field" in a}
        expected = {f: getattr(r, f) for f in ("revenue", "owner_pay", "wear_pay", "penalties", "margin")}
        assert {f: m for f, (m, _) in amounts.items()} == expected
        assert {f: t for f, (_, t) in amounts.items()} == {f: shown(v) for f, v in expected.items()}
        assert cells[-1][1] == "0.00 ✓"
    assert 'data-reconciled="yes"' in html and "Reconciled to the cent" in html and "NOT reconciled" not in html
    loser = next(r for r in v1.reconciliation if r.margin < 0)
    assert f"{loser.market} lost SEK\u00a0{shown(-loser.margin)}" in html
    largest = rows.table("largest", "largest")
    assert [cells[0][1] for _, cells in largest] == ["obl-B", "obl-B", "obl-C"]     # EUR first, largest first
    assert [int(cells[-1][0]["data-minor"]) for _, cells in largest] == [667, 200, 300]
    assert [cells[2][1] for _, cells in largest][:1] == ["2026-06-18 15:00"]        # local time, SE3 in summer
    assert {c[1][1][1] for c in rows.table("fx", "fx")} == {"11.093500", "0.090143"}
    assert html.count("<svg") == 4                                 # markets and owner pay, one chart per currency


@pytest.mark.parametrize("break_it, says", [
    (lambda r: dataclasses.replace(r, reconciliation=(dataclasses.replace(r.reconciliation[0],
                                                                          margin=r.reconciliation[0].margin + 1),
                                                      *r.reconciliation[1:])),
     "FCR-D-up/SE_DK2 (EUR): revenue differs from owner pay + wear pay + penalties + margin by −EUR\u00a00.01"),
    (lambda r: dataclasses.replace(r, ledger_sums=((Currency.EUR, 0), (Currency.SEK, 5))),
     "ledger postings in SEK sum to SEK\u00a00.05, not zero"),
    (lambda r: dataclasses.replace(r, owner_payable=((Currency.EUR, r.owner_payable[0][1] + 2),
                                                     r.owner_payable[1])),
     "but the ledger owes owners EUR"),
])
def test_the_page_says_not_reconciled_and_why_when_it_is_not(v1: MonthReport, break_it, says: str) -> None:
    broken = break_it(v1)
    assert not broken.reconciled
    html = render_operations_report(broken)
    assert 'data-reconciled="no"' in html and "NOT reconciled" in html and says in html
    assert "Reconciled to the cent" not in html


def test_version_2_shows_what_changed_against_version_1(v1: MonthReport, v2: MonthReport) -> None:
    html = render_operations_report(v2, version=2, previous=v1)
    changes = Rows(html).table("", "change")
    assert len(changes) == len(report_changes(v1, v2)) > 0
    penalty = next(cells for _, cells in changes if cells[1][1] == "local-flex/NODES late_activation:withheld")
    assert [c[1] for c in penalty] == ["Penalties", "local-flex/NODES late_activation:withheld", "SEK", "3.00",
                                       "12.36", "+9.36"]
    assert "Changes against version 1" in html and "version 2" in html
    assert "Changes against" not in render_operations_report(v2, version=2)
    same = render_operations_report(v1, version=2, previous=v1)
    assert "No amount changed." in same
    with pytest.raises(DomainError) as err:
        render_operations_report(v2, previous=v1)
    assert err.value.field == "previous"
    with pytest.raises(DomainError) as err:
        render_operations_report(v2, version=0)
    assert err.value.field == "version"


# -------------------------------------------------------------------------------------- the CSVs


def test_the_csvs_sum_to_the_reconciliation(v1: MonthReport) -> None:
    files = operations_csv(v1)
    assert sorted(files) == ["owner_pay.csv", "payouts.csv", "penalties.csv", "reconciliation.csv",
                             "revenue_by_market.csv"]
    recon = {(r.market, r.currency.value): r for r in v1.reconciliation}

    def sums(name: str, field: str = "amount") -> dict[tuple[str, str], D]:
        out: dict[tuple[str, str], D] = defaultdict(D)
        for row in csv_rows(files[name]):
            out[(row["market"], row["currency"])] += D(row[field])
        return dict(out)

    def cents(x: int) -> D:
        return D(x) / 100

    assert sums("revenue_by_market.csv", "revenue") == {k: cents(r.revenue) for k, r in recon.items()}
    assert sums("penalties.csv") == {k: cents(r.penalties) for k, r in recon.items()}
    assert sums("payouts.csv") == {k: cents(r.payouts) for k, r in recon.items()}
    for row in csv_rows(files["reconciliation.csv"]):
        r = recon[(row["market"], row["currency"])]
        assert (D(row["revenue"]), D(row["margin"]), row["balanced"]) == (cents(r.revenue), cents(r.margin), "yes")
        assert D(row["revenue"]) == sum(D(row[f]) for f in ("owner_pay", "wear_pay", "penalties", "margin"))
    owner: dict[str, D] = defaultdict(D)
    for row in csv_rows(files["owner_pay.csv"]):
        owner[row["currency"]] += D(row["amount"])
    assert dict(owner) == {c.value: cents(v) for c, v in v1.owner_payable}


def test_rendering_twice_gives_the_same_bytes_in_another_process(v1: MonthReport, v2: MonthReport) -> None:
    files = operations_files(v2, version=2, previous=v1)
    assert files == operations_files(v2, version=2, previous=v1)
    code = ("import sys, hashlib; sys.path.insert(0, 'tests/unit'); from decimal import Decimal; "
            "from test_settlement_operations_report import settle, month_report, operations_files; "
            "f = operations_files(month_report(settle(Decimal('412'))), version=2, previous=month_report(settle())); "
            "print(hashlib.sha256(b''.join(k.encode() + v for k, v in sorted(f.items()))).hexdigest())")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    import hashlib

    assert out == hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()


@settings(max_examples=12, deadline=None)
@given(late=st.decimals(0, 2000, places=2), fcr=st.decimals(0, 90, places=2), avail=st.decimals(0, 3, places=2))
def test_any_month_shows_its_reconciliation_exactly_and_its_csvs_add_up(late: D, fcr: D, avail: D) -> None:
    report = month_report(settle(late_price=late, fcr_price=fcr, availability_sek=avail))
    rows = Rows(render_operations_report(report))
    shown_minor = [{a["data-field"]: int(a["data-minor"]) for a, _ in cells if "data-field" in a}
                   for _, cells in rows.table("markets", "market")]
    assert shown_minor == [{f: getattr(r, f) for f in ("revenue", "owner_pay", "wear_pay", "penalties", "margin")}
                           for r in report.reconciliation]
    files = operations_csv(report)
    per_currency: dict[str, D] = defaultdict(D)
    for row in csv_rows(files["penalties.csv"]):
        per_currency[row["currency"]] += D(row["amount"]) * 100
    assert {c: v for c, v in per_currency.items()} == {r.currency.value: D(r.penalties)
                                                       for r in report.reconciliation if r.penalties}
    assert report.reconciled
