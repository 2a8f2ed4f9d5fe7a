"""The operations report of a month stored in PostgreSQL: each version's report read back from
the ledger (version 2 = version 1 + adjustment entries) equals the report of the settlement it
was written from, and the files written beside a version show what changed against the last one.

The month (June 2026, SE3) is written through the service's own version writer, so the rows are
exactly the ones `flexfleet settle` stores; version 2 is the month after late data: a bigger
penalty on the SEK market, and an FCR-D obligation hour that version 1 did not know about.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from decimal import Decimal as D
from pathlib import Path

import psycopg
import pytest

from flexfleet.domain.errors import DomainError
from flexfleet.settlement import (Commitment, Contract, ContractTerm, Month, ObligationMtu, Penalty, VehicleMtu,
                                  month_report, settle_month)
from services.settlement import service
from services.settlement.store import Run
from services.settlement.statements.operations import operations_files, stored_report, write_operations_report

pytestmark = pytest.mark.integration

JUNE = Month(date(2026, 6, 1), "SE3")
Q = timedelta(minutes=15)


def at(day: int, hour: int):
    return JUNE.start + timedelta(days=day - 1, hours=hour)


def settle(late: bool):
    """car-1 (EUR) and car-2 (SEK) back every obligation; car-3 (SEK) is plugged in too little
    for its 100 h minimum and forfeits its availability pay."""
    contracts = [
        Contract("c-1", "owner-1", ("car-1",), "EUR", (ContractTerm(
            "t1", JUNE.start, availability_per_hour=D("0.05"), revenue_share_pct=D(50)),)),
        Contract("c-2", "owner-2", ("car-2",), "SEK", (ContractTerm(
            "t2", JUNE.start, availability_per_hour=D("0.50"), revenue_share_pct=D(40), fixed_monthly=D("20")),)),
        Contract("c-3", "owner-3", ("car-3",), "SEK", (ContractTerm(
            "t3", JUNE.start, availability_per_hour=D("0.50"), min_plugged_in_hours=D(100)),))]
    commit = (Commitment("car-1", D(40)), Commitment("car-2", D(60)))
    obligations = [
        ObligationMtu("obl-A", "FCR-D-up/SE_DK2", at(3, 19), at(3, 20), "EUR", D(1), D("38.20"), commit,
                      (Penalty("capacity_not_held", "withheld", D("0.1"), D("38.20")),)),
        ObligationMtu("obl-C", "local-flex/NODES", at(10, 17), at(10, 18), "SEK", D("0.5"), D("410.00"), commit,
                      (Penalty("late_activation", "withheld", D("0.05"), D("410.00") if late else D("100.00")),))]
    if late:
        obligations.append(ObligationMtu("obl-D", "FCR-D-up/SE_DK2", at(21, 18), at(21, 19), "EUR", D("0.5"),
                                         D("44.10"), commit))
    mtus = []
    for car, days in (("car-1", range(1, 31)), ("car-2", range(1, 31)), ("car-3", range(1, 4))):
        for day in days:
            for hour in list(range(0, 6)) + ([17, 18, 19] if day in (3, 10, 21) and car != "car-3" else []):
                mtus += [VehicleMtu(car, at(day, hour) + q * Q, True, True) for q in range(4)]
    return settle_month(JUNE, contracts, obligations, mtus)


def test_each_version_reads_back_as_the_report_it_was_settled_as_and_v2_shows_the_changes(
        db_url: str, tmp_path: Path) -> None:
    s1, s2 = settle(late=False), settle(late=True)
    r1, r2 = month_report(s1), month_report(s2)
    assert r1.ineligible_vehicles == 1 and r1.reconciled and r2.reconciled
    with psycopg.connect(db_url) as conn:
        run1 = Run("SE3", JUNE.first_day, 1, "digest-1")
        run2 = Run("SE3", JUNE.first_day, 2, "digest-2")
        with conn.transaction():
            service._write_version(conn, run1, s1, None, lambda step: None)
        with conn.transaction():
            service._write_version(conn, run2, s2, run1, lambda step: None)
        kinds = {k for (k,) in conn.execute("SELECT DISTINCT kind FROM ledger_entries WHERE version = 2")}
        assert kinds == {"adjustment"}                              # version 2 posted only differences

        started = time.perf_counter()
        assert stored_report(conn, "SE3", "2026-06", 1) == r1
        assert stored_report(conn, "SE3", JUNE, 2) == r2
        read_back = time.perf_counter() - started

        out = write_operations_report(conn, "SE3", "2026-06", 2, tmp_path / "v2" / "operations")
        again = write_operations_report(conn, "SE3", "2026-06", 2, tmp_path / "again")
        with pytest.raises(DomainError) as err:
            stored_report(conn, "SE3", "2026-06", 3)
        assert err.value.field == "version"

    files = operations_files(r2, version=2, previous=r1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files == {p.name: p.read_bytes()
                                                                        for p in again.iterdir()}
    html = files["operations_report.html"].decode()
    assert "Changes against version 1" in html and "Reconciled to the cent" in html
    assert "local-flex/NODES late_activation:withheld" in html and "obl-D" not in html   # obl-D has no penalty
    fcr = next(r for r in r2.reconciliation if r.market == "FCR-D-up/SE_DK2")
    assert next(r.obligation_mtus for r in r2.revenue if r.market == fcr.market) == 2
    assert f'data-field="revenue" data-minor="{fcr.revenue}"' in html
    assert read_back < 5, read_back


def test_the_service_month_writes_an_operations_report_the_same_on_a_rerun(db_url: str, tmp_path: Path) -> None:
    """`flexfleet settle`'s own month (the service test's seeded October: simulated cars, a
    verified FCR-D delivery with a shortfall, obligation ids of the bidder's form "<plan>/0"),
    with the call the service makes after writing a version's files."""
    from test_settlement_service import MONTH, ZONE, _seed_month

    _seed_month(db_url)
    with psycopg.connect(db_url) as conn:
        first = service.settle(conn, MONTH, ZONE, out_dir=tmp_path)
        assert first.files is not None and first.settlement is not None
        written = write_operations_report(conn, ZONE, MONTH, first.version, first.files / "operations")
        assert stored_report(conn, ZONE, MONTH, 1) == month_report(first.settlement)
        rerun = service.settle(conn, MONTH, ZONE, out_dir=tmp_path / "rerun")
        assert rerun.status == "unchanged" and rerun.files is not None
        again = write_operations_report(conn, ZONE, MONTH, rerun.version, rerun.files / "operations")
    files = {p.name: p.read_bytes() for p in written.iterdir()}
    assert files == {p.name: p.read_bytes() for p in again.iterdir()}
    report = month_report(first.settlement)
    assert files["operations_report.html"] == operations_files(report).get("operations_report.html")
    html = files["operations_report.html"].decode()
    assert "Reconciled to the cent" in html and report.penalty_details
    assert all(p.obligation_id in html for p in report.penalty_details)
