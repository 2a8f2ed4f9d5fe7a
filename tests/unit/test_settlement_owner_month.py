"""A hand-computed owner month, line by line (June 2026, SE3: 30 days, 2880 MTUs, CEST = UTC+2).

Car car-1 on contract c-1 (EUR). Term "june-a" from 1 June, "june-b" from 15 June 00:00 local:

| rate                         | june-a | june-b |
|------------------------------|--------|--------|
| availability per hour        | 0.10   | 0.12   |
| revenue share                | 50 %   | 50 %   |
| energy per kWh discharged    | 0.15   | 0.15   |
| charging refund              | platform-caused kWh at the price the owner paid |
| wear                         | pass-through x 1 (pack 100.00 EUR per kWh of capacity, 60 kWh NMC) |
| fixed per month              | 10.00  | 12.00  |
| annual cap                   | 150.00 (120.00 counted in January-May) |
| minimum plugged in per month | 200 h  | 200 h  |
| credit per broken departure  | 5.00   | 5.00   |

Plugged in and controllable 00:00-08:00 and 20:00-24:00 every day, plus 17:00-18:00 on 18 June
(an obligation); on 20 June 00:00-08:00 plugged in but not controllable (owner override).
So 361 h plugged in (eligible: >= 200), controllable 14 x 12 = 168 h in june-a and
16 x 12 - 8 + 1 = 185 h in june-b.

Obligations on FCR-D-up/SE_DK2 (EUR), car-1 10 kW and car-2 (owner-2, 40 % share) 90 kW:
  obl-A 3 June 21-22: 0.1 MW x 40.00 x 1 h = 4.00; net 400 cents; car-1 400 x 10/100 x 50 % = 20,
        car-2 144, aggregator 236 (exact, no remainder).
  obl-B 18 June 17-18: 0.1 MW x 33.33 = 3.333 -> 333; 0.02 MWh short: withheld 0.02 x 33.33 =
        0.6666 -> 67, surcharge 0.02 x 10.00 = 0.20 -> 20; net 333 - 87 = 246.
        Exact shares: car-1 246 x 0.1 x 0.5 = 12.3, car-2 246 x 0.9 x 0.4 = 88.56, aggregator
        145.14; floors 12 + 88 + 145 = 245, the missing cent goes to the largest remainder (.56):
        car-1 12, car-2 89, aggregator 145.

Wear: hourly SoC, each day 0.8 until 17:00, down 0.1 an hour to 0.5 at 20:00, 0.5 until midnight,
back to 0.8 at midnight (9 equivalent full cycles; no reference trace, so all of it is paid).
Rainflow counts 30 cycles of depth 0.3. The battery model's cycle-depth curve for NMC at 20 degC
(fitted from BLAST-Lite) gives Phi(0.3) = 2.59965e-5 of capacity a cycle: 30 x Phi(0.3) x 60 kWh
= 0.0468 kWh -> 0.047 kWh (to the Wh). Every day moves the same SoC, so june-a carries 14/30 and
june-b 16/30 of it: 0.047 x 14/30 x 100.00 = 2.1933 -> 2.19, 0.047 x 16/30 x 100.00 = 2.5067 -> 2.51.

Fixed: 10.00 x 1344/2880 = 4.6667 -> 4.67; 12.00 x 1536/2880 = 6.40.
Cap: capped pay this month 39.00 + 0.32 + 0.53 + 11.07 = 50.92; the cap leaves 30.00: cut 20.92.
"""

from datetime import date, timedelta
from decimal import Decimal as D

import pytest

from flexfleet.settlement import (CapUsage, ChargingRefund, Commitment, Contract, ContractTerm, Month, ObligationMtu,
                                  Penalty, SocTrace, Source, VehicleMtu, month_report, settle_month)

JUNE = Month(date(2026, 6, 1), "SE3")
Q = timedelta(minutes=15)


def local(day: int, hour: int, minute: int = 0):
    return JUNE.start + timedelta(days=day - 1, hours=hour, minutes=minute)


# source, term, quantity, unit, rate, amount (cents), obligation
EXPECTED = [
    (Source.AVAILABILITY, "june-a", D("168"), "h", D("0.10"), 1680, None),
    (Source.AVAILABILITY, "june-b", D("185"), "h", D("0.12"), 2220, None),
    (Source.CAPACITY_SHARE, "june-a", D("10"), "kW", D("50"), 20, "obl-A"),
    (Source.CAPACITY_SHARE, "june-b", D("10"), "kW", D("50"), 12, "obl-B"),
    (Source.ENERGY, "june-a", D("2"), "kWh", D("0.15"), 30, None),
    (Source.ENERGY, "june-b", D("1.5"), "kWh", D("0.15"), 23, None),
    (Source.CHARGING_REFUND, "june-a", D("3"), "kWh", None, 24, None),        # 3.0 x 0.0812 = 0.2436
    (Source.CHARGING_REFUND, "june-b", D("1.2"), "kWh", None, 13, None),      # 1.2 x 0.1050 = 0.126
    (Source.WEAR, "june-a", D("0.0219"), "kWh of capacity", D("100"), 219, None),
    (Source.WEAR, "june-b", D("0.0251"), "kWh of capacity", D("100"), 251, None),
    (Source.FIXED, "june-a", D("0.466667"), "month", D("10"), 467, None),
    (Source.FIXED, "june-b", D("0.533333"), "month", D("12"), 640, None),
    (Source.CREDIT_DEPARTURE, "june-b", D("1"), "event", D("5"), 500, None),
    (Source.CAP, "june-b", D("50.92"), "EUR", D("150"), -2092, None),
]
TOTAL = 4007  # 40.07 EUR


def _terms() -> tuple[ContractTerm, ContractTerm]:
    common = dict(revenue_share_pct=D(50), energy_per_kwh=D("0.15"), charging_refund=ChargingRefund(),
                  wear_factor=D(1), annual_cap=D("150.00"), min_plugged_in_hours=D(200),
                  credit_per_broken_departure=D("5.00"), credit_per_broken_min_soc=D("3.00"))
    return (ContractTerm("june-a", local(1, 0), availability_per_hour=D("0.10"), fixed_monthly=D("10.00"), **common),
            ContractTerm("june-b", local(15, 0), availability_per_hour=D("0.12"), fixed_monthly=D("12.00"), **common))


def _vehicle_mtus() -> list[VehicleMtu]:
    special = {
        local(3, 21): dict(discharged_kwh=D("2.0")),
        local(18, 17, 15): dict(discharged_kwh=D("1.5")),
        local(4, 2): dict(charged_kwh=D("3.0"), platform_charged_kwh=D("3.0"), charging_price_per_kwh=D("0.0812")),
        local(19, 3): dict(charged_kwh=D("1.5"), platform_charged_kwh=D("1.2"), charging_price_per_kwh=D("0.1050")),
        local(22, 7, 45): dict(broken_departures=1),
    }
    out = []
    for i in range(JUNE.n_mtus):
        mtu = JUNE.start + i * Q
        hour, day = (i // 4) % 24, i // 96 + 1
        plugged = hour < 8 or hour >= 20 or (day == 18 and hour == 17)
        controllable = plugged and not (day == 20 and hour < 8)
        out.append(VehicleMtu("car-1", mtu, plugged, controllable, **special.get(mtu, {})))
    return out


def _soc_trace() -> SocTrace:
    day = [0.8 if h < 17 else (round(0.8 - 0.1 * (h - 17), 10) if h <= 20 else 0.5) for h in range(24)]
    return SocTrace("car-1", JUNE.start, 3600.0, tuple(day * 30 + [0.8]), "NMC", D(60), D("100.00"), "EUR",
                    temps_c=20.0)


def _obligations() -> list[ObligationMtu]:
    commit = (Commitment("car-1", D(10)), Commitment("car-2", D(90)))
    a = ObligationMtu("obl-A", "FCR-D-up/SE_DK2", local(3, 21), local(3, 22), "EUR", D("0.1"), D("40.00"), commit)
    b = ObligationMtu("obl-B", "FCR-D-up/SE_DK2", local(18, 17), local(18, 18), "EUR", D("0.1"), D("33.33"), commit,
                      (Penalty("capacity_not_held", "withheld", D("0.02"), D("33.33")),
                       Penalty("capacity_not_held", "surcharge", D("0.02"), D("10.00"))))
    return [a, b]


@pytest.fixture(scope="module")
def settled():
    car1 = Contract("c-1", "owner-1", ("car-1",), "EUR", _terms())
    car2 = Contract("c-2", "owner-2", ("car-2",), "EUR", (ContractTerm("c2", local(1, 0), revenue_share_pct=D(40)),))
    return settle_month(JUNE, [car1, car2], _obligations(), _vehicle_mtus(), [_soc_trace()],
                        [CapUsage("c-1", 2026, 12000)])


def test_owner_month_matches_the_hand_computed_table_line_by_line(settled) -> None:
    lines = settled.owner_lines("owner-1")
    got = [(x.source, x.term_id, x.quantity, x.unit, x.rate, x.amount, x.obligation_id) for x in lines]
    assert got == EXPECTED
    assert sum(x.amount for x in lines) == TOTAL
    assert all(x.currency.value == "EUR" and x.contract_id == "c-1" for x in lines)


def test_owner_month_wear_comes_from_the_battery_model(settled) -> None:
    (wear,) = settled.wear
    assert wear.cycling_loss == pytest.approx(30 * 2.59965e-5, rel=1e-5)   # 30 cycles of depth 0.3 on the curve
    assert wear.lost_kwh == D("0.047") and wear.efc == pytest.approx(9.0)


def test_owner_month_eligibility_cap_and_periods(settled) -> None:
    (check,) = [e for e in settled.eligibility if e.vehicle_id == "car-1"]
    assert (check.plugged_in_hours, check.required_hours, check.eligible) == (D(361), D("200.00"), True)
    assert [u for u in settled.cap_usage if u.contract_id == "c-1"] == [CapUsage("c-1", 2026, 15000)]
    avail_a, avail_b = settled.owner_lines("owner-1")[:2]
    assert (avail_a.period_start, avail_a.period_end) == (local(1, 0), local(14, 24))
    assert (avail_b.period_start, avail_b.period_end) == (local(15, 0), local(30, 24))


def test_owner_month_obligations_and_reconciliation(settled) -> None:
    a, b = settled.obligations
    assert (a.revenue, a.net, a.owner_share, a.kept) == (400, 400, 164, 236)
    assert (b.revenue, [p.amount for p in b.penalties], b.net, b.owner_share, b.kept) == (333, [20, 67], 246, 101, 145)
    car2 = [(x.obligation_id, x.amount) for x in settled.owner_lines("owner-2")]
    assert car2 == [("obl-A", 144), ("obl-B", 89)]
    (row,) = settled.reconciliation
    assert (row.market, row.revenue, row.penalties, row.owner_pay, row.wear_pay) == (
        "FCR-D-up/SE_DK2", 733, 87, 4007 - 470 + 233, 470)
    assert row.margin == 733 - 87 - 3770 - 470 == -3594
    assert month_report(settled).reconciled


def test_owner_month_postings_trace_to_their_causes(settled) -> None:
    pay = {e.entry_id: e for e in settled.entries if e.kind.value == "pay"}
    share = pay["pay|c-1|car-1|capacity_share|june-b|obl-B|2026-06-18T15:00:00+00:00"]
    debit = next(p for p in share.postings if p.amount > 0)
    assert (str(debit.account), debit.amount, debit.obligation_id, debit.vehicle_id, debit.contract_id,
            debit.term_id, debit.mtu) == ("owner_pay:FCR-D-up/SE_DK2:capacity_share", 12, "obl-B", "car-1", "c-1",
                                          "june-b", local(18, 17))
    wear = pay["pay|c-1|car-1|wear|june-a|-|-"]
    assert [(str(p.account), p.amount) for p in wear.postings] == [
        ("wear_pay:FCR-D-up/SE_DK2", 219), ("owner_payable:owner-1", -219)]


def test_owner_month_operations_report(settled) -> None:
    report = month_report(settled)
    assert [(r.market, r.obligation_mtus, r.revenue) for r in report.revenue] == [("FCR-D-up/SE_DK2", 2, 733)]
    assert [(p.cause, p.kind, p.amount) for p in report.penalties] == [
        ("capacity_not_held", "surcharge", 20), ("capacity_not_held", "withheld", 67)]
    assert [(p.source, p.amount) for p in report.payouts] == [
        ("availability", 3900), ("capacity_share", 32 + 233), ("energy", 53), ("charging_refund", 37), ("wear", 470),
        ("fixed", 1107), ("credit_departure", 500), ("cap", -2092)]
    assert sum(p.amount for p in report.payouts) == 4007 + 233
    assert (report.owners, report.vehicles, report.ineligible_vehicles) == (2, 2, 0)
    assert report.ledger_sums == ((report.reconciliation[0].currency, 0),) and report.reconciled


def test_wear_against_a_reference_trace_pays_only_the_difference() -> None:
    trace = _soc_trace()
    same = SocTrace(**{**trace.__dict__, "reference_soc": trace.soc})
    car1 = Contract("c-1", "owner-1", ("car-1",), "EUR", _terms())
    s = settle_month(JUNE, [car1], [], [], [same])
    (wear,) = s.wear
    assert wear.reference_cycling_loss == pytest.approx(wear.cycling_loss) and wear.platform_loss == 0
    assert [x.source for x in s.lines] == [Source.FIXED, Source.FIXED]     # no wear line, nothing else happened
    flat = SocTrace(**{**trace.__dict__, "reference_soc": tuple(0.8 for _ in trace.soc)})
    (wear,) = settle_month(JUNE, [car1], [], [], [flat]).wear
    assert wear.platform_loss == pytest.approx(wear.cycling_loss)          # a car that never cycles on its own
