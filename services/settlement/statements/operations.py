"""The monthly operations settlement report: one self-contained HTML page for the aggregator's
operations and finance staff (`render_operations_report`), and its tables as CSV
(`operations_csv`).

The page answers, in this order, what finance asks of a closed month: does it reconcile (and if
not, what does not); where the money came from and went, market by market; which markets lost
money; the largest penalties; owner pay by source and currency, tied to what the ledger owes
owners; the exchange rates used; and for a version > 1, every amount that changed. Amounts are
never added across currencies: each currency has its own totals and its own charts.

Everything shown is read from the `MonthReport` (itself read from the settled ledger), so the
page cannot disagree with the ledger. Deterministic: the same report gives the same bytes (no
clock, sorted inputs, fixed SVG ids), like the owner statements whose chart helpers it reuses.

The service writes it with `write_operations_report`, which reads the version and the one before
it back from PostgreSQL (`stored_report`): the version before is settled from inputs no longer
at hand, and reading both from storage makes an unchanged rerun write the same bytes.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from functools import cache
from pathlib import Path

import jinja2
import matplotlib
import psycopg
from matplotlib.figure import Figure
from markupsafe import Markup

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency, Language
from flexfleet.domain.time import to_local
from flexfleet.markets.exchange_rates import ExchangeRate
from flexfleet.settlement import labels as L
from flexfleet.settlement.inputs import Month
from flexfleet.settlement.ledger import Account, AccountKind, EntryKind, JournalEntry, Posting
from flexfleet.settlement.lines import MarketPart, OwnerLine, ReconciliationRow, Source
from flexfleet.settlement.money import MINOR_DIGITS, FxRate, major, round_half_up
from flexfleet.settlement.report import MonthReport, PenaltyDetail, ReportChange, report_changes, report_of
from services.settlement import store
from services.settlement.inputs import Awaiting, settlement_obligation_id
from services.settlement.statements import charts

EN = Language.EN
TOP_PENALTIES = 10
_SECTION = {"reconciliation": "Markets", "penalty": "Penalties", "owner_pay": "Owner pay by source",
            "owner_payable": "Owed to owners"}


def render_operations_report(report: MonthReport, *, version: int = 1, previous: MonthReport | None = None,
                             top_penalties: int = TOP_PENALTIES, awaiting: Sequence[Awaiting] = ()) -> str:
    """The month's operations report as one HTML page; `previous` is version - 1's report, whose
    differences the page lists as adjustments; `awaiting`, the obligations it did not settle."""
    _check(report, version, previous, top_penalties)
    month = L.month_name(_first_day(report), EN)
    currencies = _currencies(report)
    return _page().render(
        zone=report.zone, month=month, version=version, status=_status(report),
        totals=[_totals(report, c) for c in currencies], facts=_facts(report),
        changes=_changes(report, previous, version) if previous is not None else None,
        markets=_market_rows(report), losses=_losses(report),
        market_charts=[Markup(_market_chart(report, c)) for c in currencies if _recon(report, c)],
        penalties_by_cause=_penalties_by_cause(report), largest=_largest(report, top_penalties),
        top_penalties=top_penalties, n_penalties=len(report.penalty_details),
        owner_pay=_owner_pay(report), owner_charts=[Markup(c) for c in _owner_charts(report)],
        payouts=_payouts(report), fx=_fx(report), fx_position=_amounts(report.fx_position),
        ledger=_amounts(report.ledger_sums), awaiting=_awaiting(awaiting, report.zone),
    )


def _awaiting(awaiting: Sequence[Awaiting], zone: str) -> dict | None:
    """Obligations not settled for want of a verified delivery, per market, with what they would
    earn if delivered in full (capacity x price x hours, EUR)."""
    if not awaiting:
        return None
    by_market: dict[str, list[Awaiting]] = defaultdict(list)
    for a in awaiting:
        by_market[a.product_id].append(a)
    rows = []
    for market, items in sorted(by_market.items()):
        cents = sum(round_half_up(Fraction(a.volume_mw) * Fraction(a.price_eur_per_mw_h) * 100
                                  * Fraction(int((a.mtu_end - a.mtu_start).total_seconds()), 3600)) for a in items)
        first, last = min(a.mtu_start for a in items), max(a.mtu_end for a in items)
        rows.append({"market": market, "count": len(items), "amount": _cell(cents, Currency.EUR),
                     "span": f"{_local(first, zone)} – {_local(last, zone)}"})
    return {"count": len(awaiting), "rows": rows}


def operations_csv(report: MonthReport) -> dict[str, bytes]:
    """The report's tables for a spreadsheet: amounts in major units with the currency's decimals
    (exact, "-" for minus), MTUs in UTC. Each file sums to the page's totals."""
    mtus = _mtu_counts(report)
    return {
        "revenue_by_market.csv": _csv(("market", "currency", "obligation_mtus", "revenue"), (
            (r.market, r.currency.value, mtus.get(r.market, 0), _plain(r.revenue, r.currency))
            for r in report.reconciliation)),
        "penalties.csv": _csv(("market", "currency", "obligation_id", "mtu_start", "cause", "kind", "amount"), (
            (p.market, p.currency.value, p.obligation_id, _utc(p.mtu_start), p.cause, p.kind,
             _plain(p.amount, p.currency)) for p in report.penalty_details)),
        "payouts.csv": _csv(("market", "currency", "source", "amount"), (
            (p.market, p.currency.value, p.source, _plain(p.amount, p.currency)) for p in report.payouts)),
        "owner_pay.csv": _csv(("currency", "source", "lines", "amount", "forfeited"), (
            (o.currency.value, o.source.value, o.lines, _plain(o.amount, o.currency),
             _plain(o.forfeited, o.currency)) for o in report.owner_pay)),
        "reconciliation.csv": _csv(("market", "currency", "revenue", "owner_pay", "wear_pay", "penalties", "margin",
                                    "balanced"), (
            (r.market, r.currency.value, *(_plain(v, r.currency) for v in
                                           (r.revenue, r.owner_pay, r.wear_pay, r.penalties, r.margin)),
             "yes" if r.balanced else "no") for r in report.reconciliation)),
    }


def operations_files(report: MonthReport, *, version: int = 1, previous: MonthReport | None = None,
                     awaiting: Sequence[Awaiting] = ()) -> dict[str, bytes]:
    """The page (operations_report.html) and the CSVs, for `store.write_files`."""
    html = render_operations_report(report, version=version, previous=previous, awaiting=awaiting)
    return {"operations_report.html": html.encode("utf-8"), **operations_csv(report),
            "awaiting_verification.csv": _csv(
                ("obligation_id", "market", "mtu_start", "mtu_end", "volume_mw", "price_eur_per_mw_h"),
                ((a.obligation_id, a.product_id, _utc(a.mtu_start), _utc(a.mtu_end), a.volume_mw,
                  a.price_eur_per_mw_h) for a in awaiting))}


# ------------------------------------------------------------------------------ from storage


def stored_report(conn: psycopg.Connection, zone: str, month: Month | str, version: int) -> MonthReport:
    """A posted version's report read back from PostgreSQL: its ledger is every posting of the
    versions up to it (adjustments summed into the entries they correct), its lines, its
    reconciliation and its rates. So version n - 1's report is at hand when version n is written,
    and a rerun renders the same bytes as the first run.

    Two counts come from what is stored rather than from the settlement's inputs: obligation MTUs
    are those with revenue in the ledger (an MTU that earned nothing posts nothing), and
    ineligible vehicles are those that forfeited pay (eligibility checks are not stored).
    """
    m = month if isinstance(month, Month) else Month.parse(month, zone)
    if conn.execute("SELECT 1 FROM settlement_runs WHERE zone = %s AND month = %s AND version = %s "
                    "AND status = 'posted'", (zone, m.first_day, version)).fetchone() is None:
        raise DomainError("version", f"{zone} {m.label} has no posted version {version!r}")
    entries = _stored_entries(store.posted_postings(conn, zone, m.first_day, below_version=version + 1))
    lines = _stored_lines(conn, zone, m.first_day, version)
    recon = store.reconciliation(conn, zone, m.first_day, version)
    mtus: dict[str, set] = defaultdict(set)
    for e in entries:
        if e.kind is EntryKind.REVENUE:
            for x in e.postings:
                if x.account.kind is AccountKind.MARKET_REVENUE:
                    mtus[x.account.key].add((x.obligation_id, x.mtu))
    ineligible = len({(x.contract_id, x.vehicle_id) for x in lines if x.forfeited})
    return report_of(m, entries, lines, recon, _stored_rates(conn, zone, m.first_day, version),
                     {k: len(v) for k, v in mtus.items()}, ineligible)


def _stored_entries(rows: Sequence[tuple[int, store.PostingRow, str | None]]) -> tuple[JournalEntry, ...]:
    """Each original entry with its adjustments summed in, in ledger order (zeros left out)."""
    amounts: dict[str, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    first: dict[tuple[str, tuple], store.PostingRow] = {}
    for _, row, adjusts in rows:
        base = adjusts or row.entry_id
        amounts[base][row.key] += row.amount
        first.setdefault((base, row.key), row)
    out = []
    for base, by_key in amounts.items():
        postings = [_posting(first[(base, key)], amount) for key, amount in by_key.items() if amount]
        if postings:
            out.append(JournalEntry(base, EntryKind(base.split("|", 1)[0]), tuple(postings)))
    return tuple(out)


def _posting(r: store.PostingRow, amount: int) -> Posting:
    market, obligation, mtu, vehicle, owner, contract, term, line = r.trace
    return Posting(Account(AccountKind(r.account_kind), r.account_key, r.account_sub), Currency(r.currency), amount,
                   market, settlement_obligation_id(obligation) if obligation else None,
                   datetime.fromisoformat(mtu) if mtu else None, vehicle, owner, contract, term, line)


def _stored_lines(conn: psycopg.Connection, zone: str, month: date, version: int) -> tuple[OwnerLine, ...]:
    rows = conn.execute(
        "SELECT line_id, owner_id, contract_id, vehicle_id, source, term_id, currency, amount, quantity, unit, rate, "
        "rate_unit, period_start, period_end, obligation_id, market, mtu, forfeited, note, parts "
        "FROM settlement_lines WHERE zone = %s AND month = %s AND version = %s ORDER BY seq",
        (zone, month, version)).fetchall()
    return tuple(OwnerLine(
        r[0], r[1], r[2], r[3], Source(r[4]), r[5], Currency(r[6]), r[7], r[8], r[9], r[10], r[11], r[12], r[13],
        settlement_obligation_id(r[14]) if r[14] else None, r[15], r[16], r[17], r[18],
        tuple(MarketPart(p["market"], Currency(p["market_currency"]), p["amount"], p["market_amount"])
              for p in r[19])) for r in rows)


def _stored_rates(conn: psycopg.Connection, zone: str, month: date, version: int) -> tuple[FxRate, ...]:
    """The stored rates; the source column names both legs' sources, and a euro leg is "identity"."""
    out = []
    for frm, to, day, from_eur, from_day, to_eur, to_day, source in conn.execute(
            "SELECT from_currency, to_currency, rate_day, from_per_eur, from_rate_day, to_per_eur, to_rate_day, "
            "source FROM settlement_fx_rates WHERE zone = %s AND month = %s AND version = %s "
            "ORDER BY from_currency, to_currency", (zone, month, version)):
        published = [x for x in source.split(" / ") if x != "identity"] or ["identity"]

        def leg(cur: str, per_eur: Decimal, on: date) -> ExchangeRate:
            return ExchangeRate(cur, on, per_eur, "identity" if cur == Currency.EUR.value else published[0])

        out.append(FxRate(Currency(frm), Currency(to), day, leg(frm, from_eur, from_day), leg(to, to_eur, to_day)))
    return tuple(out)


def write_operations_report(conn: psycopg.Connection, zone: str, month: Month | str, version: int,
                            directory: Path) -> Path:
    """The version's operations page and CSVs into `directory`, against version - 1 when there
    is one; each file replaced whole (`store.write_files`), the same bytes on a rerun."""
    report = stored_report(conn, zone, month, version)
    previous = stored_report(conn, zone, month, version - 1) if version > 1 else None
    return store.write_files(directory, operations_files(report, version=version, previous=previous,
                                                         awaiting=store.awaiting(conn, zone, _first_day(report), version)))


# ---------------------------------------------------------------------------------- checks


def _check(report: MonthReport, version: int, previous: MonthReport | None, top: int) -> None:
    if not isinstance(report, MonthReport):
        raise DomainError("report", f"must be a MonthReport; got {type(report).__name__}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DomainError("version", f"must be an int >= 1; got {version!r}")
    if previous is not None:
        if version == 1:
            raise DomainError("previous", "version 1 has no previous version to compare with")
        if not isinstance(previous, MonthReport):
            raise DomainError("previous", f"must be a MonthReport; got {type(previous).__name__}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise DomainError("top_penalties", f"must be an int >= 1; got {top!r}")


def _first_day(report: MonthReport) -> date:
    return datetime.strptime(report.month, "%Y-%m").date()


def _currencies(report: MonthReport) -> list[Currency]:
    seen = {r.currency for r in report.reconciliation} | {o.currency for o in report.owner_pay}
    return sorted(seen, key=lambda c: c.value)


def _recon(report: MonthReport, cur: Currency) -> list[ReconciliationRow]:
    return [r for r in report.reconciliation if r.currency is cur]


# ------------------------------------------------------------------------------ formatting


def _num(minor: int, cur: Currency) -> str:
    """An amount without its currency, for tables with a currency column: 1,234.50 / −12.00."""
    return L.number(major(minor, cur), EN, MINOR_DIGITS[cur])


def _cell(minor: int, cur: Currency) -> dict:
    return dict(text=_num(minor, cur), minor=minor, negative=minor < 0)


def _money(minor: int, cur: Currency) -> str:
    return L.money(minor, cur, EN)


def _plain(minor: int, cur: Currency) -> str:
    return f"{major(minor, cur):.{MINOR_DIGITS[cur]}f}"


def _utc(ts: datetime | None) -> str:
    return "" if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _local(ts: datetime | None, zone: str) -> str:
    return "" if ts is None else f"{to_local(ts, zone):%Y-%m-%d %H:%M}"


def _pct(part: int, whole: int) -> str:
    if not whole:
        return ""
    return L.percent((Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1")), EN)


def _amounts(pairs: Iterable[tuple[Currency, int]]) -> list[dict]:
    return [dict(currency=c.value, **_cell(v, c)) for c, v in pairs]


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


# ------------------------------------------------------------------------------- the top


def _status(report: MonthReport) -> dict:
    """Reconciled, or every reason it is not: a row that does not add up, a currency whose
    postings do not sum to zero, owner lines that do not add up to what the ledger owes."""
    problems = []
    for r in report.reconciliation:
        if not r.balanced:
            off = r.revenue - r.payouts - r.penalties - r.margin
            problems.append(f"{r.market} ({r.currency.value}): revenue differs from owner pay + wear pay + "
                            f"penalties + margin by {_money(off, r.currency)}")
    for cur, total in report.ledger_sums:
        if total:
            problems.append(f"ledger postings in {cur.value} sum to {_money(total, cur)}, not zero")
    if not report.owner_pay_ties:
        lines, owed = dict(report.owner_pay_totals), dict(report.owner_payable)
        for cur in sorted(set(lines) | set(owed), key=lambda c: c.value):
            if lines.get(cur, 0) != owed.get(cur, 0):
                problems.append(f"owner lines in {cur.value} total {_money(lines.get(cur, 0), cur)} but the ledger "
                                f"owes owners {_money(owed.get(cur, 0), cur)}")
    if not report.reconciliation:
        problems.append("no market settled this month: nothing to reconcile")
    return dict(ok=report.reconciled and not problems, problems=problems,
                markets=len(report.reconciliation), currencies=len(report.ledger_sums))


def _totals(report: MonthReport, cur: Currency) -> dict:
    rows = _recon(report, cur)
    revenue, penalties = sum(r.revenue for r in rows), sum(r.penalties for r in rows)
    payouts, margin = sum(r.payouts for r in rows), sum(r.margin for r in rows)
    owed = dict(report.owner_payable).get(cur, 0)
    return dict(currency=cur.value, markets=len(rows), revenue=_money(revenue, cur), penalties=_money(penalties, cur),
                payouts=_money(payouts, cur), margin=_money(margin, cur), margin_negative=margin < 0,
                margin_pct=_pct(margin, revenue), owed=_money(owed, cur))


def _facts(report: MonthReport) -> list[dict]:
    def fact(n: int, one: str, many: str) -> dict:
        return dict(value=n, label=one if n == 1 else many)

    return [fact(len({r.market for r in report.reconciliation}), "market", "markets"),
            fact(sum(r.obligation_mtus for r in report.revenue), "obligation MTU", "obligation MTUs"),
            fact(report.owners, "owner paid", "owners paid"), fact(report.vehicles, "vehicle", "vehicles"),
            fact(report.ineligible_vehicles, "vehicle below its monthly minimum",
                 "vehicles below their monthly minimum")]


def _changes(report: MonthReport, previous: MonthReport, version: int) -> dict:
    rows = [_change_row(c) for c in report_changes(previous, report)]
    before = {(r.from_currency, r.to_currency): r for r in previous.fx_rates}
    fx = []
    for r in report.fx_rates:
        old = before.get((r.from_currency, r.to_currency))
        if old is not None and old.factor != r.factor:
            fx.append(f"{r.from_currency.value} → {r.to_currency.value}: {_factor(old.factor)} in version "
                      f"{version - 1}, {_factor(r.factor)} now")
    return dict(previous=version - 1, rows=rows, fx=fx)


def _change_row(c: ReportChange) -> dict:
    return dict(section=_SECTION.get(c.section, c.section), item=_item(c), currency=c.currency.value,
                previous=_cell(c.previous, c.currency), now=_cell(c.now, c.currency),
                difference=dict(text=_signed(c.difference, c.currency), minor=c.difference,
                                negative=c.difference < 0))


def _signed(minor: int, cur: Currency) -> str:
    return ("+" if minor > 0 else "") + _num(minor, cur)


def _item(c: ReportChange) -> str:
    if c.section == "owner_pay":
        return L.text(EN, f"src_{c.item}")
    return "all owners" if c.section == "owner_payable" else c.item


# ---------------------------------------------------------------------------------- markets


def _mtu_counts(report: MonthReport) -> dict[str, int]:
    return {r.market: r.obligation_mtus for r in report.revenue}


def _market_rows(report: MonthReport) -> list[dict]:
    """Per market and currency, then a total per currency (only when it has two or more markets)."""
    mtus = _mtu_counts(report)
    out = []
    for cur in _currencies(report):
        rows = _recon(report, cur)
        for r in rows:
            out.append(_recon_row(r.market, cur, mtus.get(r.market, 0), r, total=False))
        if len(rows) > 1:
            total = ReconciliationRow("total", cur, *(sum(getattr(r, f) for r in rows) for f in
                                                      ("revenue", "penalties", "owner_pay", "wear_pay", "margin")))
            out.append(_recon_row(f"Total {cur.value}", cur, sum(mtus.get(r.market, 0) for r in rows), total,
                                  total=True))
    return out


def _recon_row(name: str, cur: Currency, mtus: int, r: ReconciliationRow, total: bool) -> dict:
    off = r.revenue - r.payouts - r.penalties - r.margin
    return dict(market=name, currency=cur.value, mtus=mtus, total=total, balanced=r.balanced,
                revenue=_cell(r.revenue, cur), owner_pay=_cell(r.owner_pay, cur), wear_pay=_cell(r.wear_pay, cur),
                penalties=_cell(r.penalties, cur), margin=_cell(r.margin, cur), margin_pct=_pct(r.margin, r.revenue),
                check="0.00 ✓" if not off else f"{_num(off, cur)} ✗")


def _losses(report: MonthReport) -> list[str]:
    return [f"{r.market} lost {_money(-r.margin, r.currency)}" for r in
            sorted(report.reconciliation, key=lambda r: (r.currency.value, r.margin, r.market)) if r.margin < 0]


def _market_chart(report: MonthReport, cur: Currency) -> str:
    """Per market: revenue, then where it went (owner and wear pay, penalties, margin)."""
    rows = _recon(report, cur)
    series = [("Revenue", charts.BLUE, [r.revenue for r in rows]),
              ("Owner + wear pay", charts.ORANGE, [r.payouts for r in rows]),
              ("Penalties", charts.RED, [r.penalties for r in rows]),
              ("Margin", charts.GREEN, [r.margin for r in rows])]
    height = 1.15 + 0.95 * len(rows)
    with matplotlib.rc_context(charts.STYLE):
        fig = Figure(figsize=(7.0, height), dpi=72)
        fig.subplots_adjust(left=0.25, right=0.85, top=1 - 0.35 / height, bottom=0.5 / height)
        ax = fig.add_subplot()
        ax.set_title(f"Where each market's money went ({cur.value})")
        values = [float(major(v, cur)) for _, _, vs in series for v in vs]
        lo, hi = min(values + [0.0]), max(values + [0.0])
        span = (hi - lo) or 1.0
        bar = 0.2
        for i, (label, color, amounts) in enumerate(series):
            ys = [len(rows) - 1 - j + (1.5 - i) * bar for j in range(len(rows))]
            xs = [float(major(v, cur)) for v in amounts]
            ax.barh(ys, xs, height=bar * 0.9, color=color, label=label)
            for y, x, v in zip(ys, xs, amounts):
                ax.text(max(x, 0.0) + 0.015 * span, y, _num(v, cur), va="center", ha="left", fontsize=7,
                        color=charts.INK, clip_on=False)
        ax.set_yticks(list(range(len(rows)))[::-1], [_short(r.market) for r in rows])
        ax.set_ylim(-0.55, len(rows) - 0.45)
        ax.set_xlim(lo - 0.02 * span, hi + 0.02 * span)
        ax.set_xticks([])
        ax.spines["bottom"].set_visible(False)
        ax.axvline(0, color=charts.MUTED, linewidth=0.6)
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.08 / height), frameon=False, ncols=4, fontsize=8,
                  borderaxespad=0.0)
    return charts.svg(fig, f"markets-{cur.value}")


def _short(market: str, width: int = 26) -> str:
    return market if len(market) <= width else market[:width - 1] + "…"


# -------------------------------------------------------------------------------- penalties


def _penalties_by_cause(report: MonthReport) -> list[dict]:
    whole: dict[Currency, int] = defaultdict(int)
    for p in report.penalties:
        whole[p.currency] += p.amount
    rows = sorted(report.penalties, key=lambda p: (p.currency.value, -p.amount, p.market, p.cause, p.kind))
    return [dict(market=p.market, currency=p.currency.value, cause=p.cause.replace("_", " "), kind=p.kind,
                 amount=_cell(p.amount, p.currency), share=_pct(p.amount, whole[p.currency])) for p in rows]


def _largest(report: MonthReport, top: int) -> list[dict]:
    """The largest penalties by obligation MTU (ties in time and obligation order), within each
    currency: amounts of different currencies are not compared."""
    rows: list[PenaltyDetail] = sorted(report.penalty_details,
                                       key=lambda p: (p.currency.value, -p.amount, _utc(p.mtu_start), p.obligation_id,
                                                      p.cause, p.kind))
    out = []
    count: dict[Currency, int] = defaultdict(int)
    for p in rows:
        count[p.currency] += 1
        if count[p.currency] <= top:
            out.append(dict(market=p.market, currency=p.currency.value, obligation=p.obligation_id,
                            when=_local(p.mtu_start, report.zone), cause=p.cause.replace("_", " "),
                            kind=p.kind, amount=_cell(p.amount, p.currency)))
    return out


# --------------------------------------------------------------------------------- payouts


def _owner_pay(report: MonthReport) -> list[dict]:
    """Owner pay by source in the owners' currencies, a total per currency, and the ledger's
    owner_payable beside it (the two must be equal)."""
    out = []
    owed = dict(report.owner_payable)
    for cur in sorted({o.currency for o in report.owner_pay} | set(owed), key=lambda c: c.value):
        rows = [o for o in report.owner_pay if o.currency is cur]
        total = sum(o.amount for o in rows)
        out.append(dict(currency=cur.value, total=_cell(total, cur), owed=_cell(owed.get(cur, 0), cur),
                        ties=total == owed.get(cur, 0), forfeited=_cell(sum(o.forfeited for o in rows), cur),
                        lines=sum(o.lines for o in rows),
                        rows=[dict(source=L.text(EN, f"src_{o.source.value}"), lines=o.lines,
                                   amount=_cell(o.amount, cur), forfeited=_cell(o.forfeited, cur) if o.forfeited
                                   else None) for o in rows]))
    return out


def _owner_charts(report: MonthReport) -> list[str]:
    out = []
    for cur in sorted({o.currency for o in report.owner_pay}, key=lambda c: c.value):
        bars = [charts.Bar(L.text(EN, f"src_{o.source.value}"), float(major(o.amount, cur)), _money(o.amount, cur))
                for o in report.owner_pay if o.currency is cur and (o.amount or o.source is not Source.CAP)]
        out.append(charts.bar_chart(bars, f"Owner pay by source ({cur.value})", f"owner-pay-{cur.value}"))
    return out


def _payouts(report: MonthReport) -> list[dict]:
    return [dict(market=p.market, currency=p.currency.value,
                 source=L.text(EN, f"src_{p.source}"), amount=_cell(p.amount, p.currency)) for p in report.payouts]


# ----------------------------------------------------------------------------------- rates


def _factor(f: Fraction) -> str:
    """A cross rate to six decimals (rounded half up for display only; conversion used it exactly)."""
    return L.number(Decimal(f.numerator) / Decimal(f.denominator), EN, 6)


# The ECB publishes every TARGET business day, so a month's rate is at most 4 days older than its
# last day (Easter); older than this, the packaged rates lack days (not updated since, or a gap).
STALE_DAYS = 7


def _stale(r: FxRate) -> str:
    published = [x.day for x in (r.from_per_eur, r.to_per_eur) if x.source != "identity"]
    age = (r.day - min(published)).days if published else 0
    return f"rate of {min(published)}, {age}\u00a0days before the month's end" if age > STALE_DAYS else ""


def _per_eur(x: ExchangeRate) -> str:
    if x.source == "identity":
        return "EUR (the base)"
    return f"{x.per_eur} {x.currency}/EUR, {x.day} ({x.source})"


def _fx(report: MonthReport) -> list[dict]:
    return [dict(pair=f"{r.from_currency.value} → {r.to_currency.value}", rate=_factor(r.factor), day=str(r.day),
                 stale=_stale(r), from_eur=_per_eur(r.from_per_eur), to_eur=_per_eur(r.to_per_eur))
            for r in sorted(report.fx_rates, key=lambda r: (r.from_currency.value, r.to_currency.value))]


# ------------------------------------------------------------------------------------ the page


@cache
def _page() -> jinja2.Template:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(PAGE)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Operations settlement report {{ zone }} {{ month }} · version {{ version }}</title>
<style>
@page { size: A4; margin: 12mm 11mm 12mm 11mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", Verdana, sans-serif; color: #1f2933; font-size: 9pt; line-height: 1.35;
       margin: 0 auto; max-width: 190mm; }
header { display: flex; justify-content: space-between; align-items: baseline; border-bottom: 2px solid #1c7ed6;
         padding-bottom: 4px; margin-bottom: 8px; }
header .brand { font-weight: bold; color: #1c7ed6; font-size: 11pt; }
header h1 { font-size: 12pt; margin: 0; font-weight: normal; color: #616e7c; }
header .meta { color: #616e7c; text-align: right; }
h2 { font-size: 11pt; margin: 16px 0 5px 0; border-bottom: 1px solid #e4e7eb; padding-bottom: 2px; }
.status { border-radius: 6px; padding: 8px 12px; margin-bottom: 8px; }
.status.ok { background: #ebfbee; border: 1px solid #2f9e44; }
.status.bad { background: #fff5f5; border: 1px solid #e03131; }
.status b { font-size: 13pt; }
.status.ok b { color: #2b8a3e; }
.status.bad b { color: #c92a2a; }
.status p, .status ul { margin: 3px 0 0 0; }
.cards { display: flex; gap: 8px; margin: 6px 0; }
.card { flex: 1; border: 1px solid #e4e7eb; border-radius: 6px; padding: 6px 8px; }
.card .cur { font-weight: bold; color: #616e7c; }
.card table td { border: none; padding: 1px 2px; }
.facts { color: #616e7c; margin: 4px 0 0 0; }
.facts b { color: #1f2933; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-size: 8pt; color: #616e7c; font-weight: normal; border-bottom: 1px solid #cbd2d9;
     padding: 2px 4px; }
td { padding: 2px 4px; border-bottom: 1px solid #f0f2f4; vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr { page-break-inside: avoid; }
tr.total td { font-weight: bold; border-top: 1px solid #cbd2d9; }
.neg { color: #c92a2a; }
.okmark { color: #2b8a3e; }
.badmark { color: #c92a2a; font-weight: bold; }
.muted { color: #616e7c; font-size: 8pt; margin: 2px 0 5px 0; }
.chart { display: block; width: 100%; height: auto; margin: 4px 0 6px 0; page-break-inside: avoid; }
.changes { border: 1px solid #f08c00; border-radius: 6px; padding: 6px 10px; margin: 8px 0; }
.losses { color: #c92a2a; margin: 4px 0; }
td.id { font-size: 7.5pt; word-break: break-all; max-width: 45mm; }
footer { margin-top: 14px; color: #616e7c; font-size: 7.5pt; border-top: 1px solid #e4e7eb; padding-top: 4px; }
</style>
</head>
<body>
<header>
  <div><div class="brand">flexfleet</div><h1>Operations settlement report</h1></div>
  <div class="meta">{{ zone }} · {{ month }}<br>version {{ version }}</div>
</header>

{% if status.ok %}
<div class="status ok" id="status" data-reconciled="yes">
  <b>Reconciled to the cent</b>
  <p>Revenue = owner pay + wear pay + penalties + margin to the minor unit in every market row ({{ status.markets }});
  the ledger's postings sum to zero in every currency ({{ status.currencies }}); owner pay by source equals what
  the ledger owes owners.</p>
</div>
{% else %}
<div class="status bad" id="status" data-reconciled="no">
  <b>NOT reconciled</b>
  <ul>{% for p in status.problems %}<li>{{ p }}</li>{% endfor %}</ul>
</div>
{% endif %}

<div class="cards">
{% for t in totals %}<div class="card">
  <span class="cur">{{ t.currency }}</span>
  <table>
    {% if t.markets %}<tr><td>Market revenue</td><td class="num">{{ t.revenue }}</td></tr>
    <tr><td>Owner and wear pay</td><td class="num">{{ t.payouts }}</td></tr>
    <tr><td>Penalties</td><td class="num">{{ t.penalties }}</td></tr>
    <tr class="total"><td>Margin{% if t.margin_pct %} ({{ t.margin_pct }} of revenue){% endif %}</td><td class="num{% if t.margin_negative %} neg{% endif %}">{{ t.margin }}</td></tr>
    {% else %}<tr><td colspan="2" class="muted">No market pays in {{ t.currency }}: owners' pay is converted from the markets' currencies.</td></tr>{% endif %}
    <tr><td>Owed to owners in {{ t.currency }}</td><td class="num">{{ t.owed }}</td></tr>
  </table>
</div>{% endfor %}
</div>
<p class="facts">{% for f in facts %}<b>{{ f.value }}</b> {{ f.label }}{% if not loop.last %} · {% endif %}{% endfor %}</p>
{% if changes %}
<div class="changes" id="changes">
  <b>Changes against version {{ changes.previous }}</b>
  <p class="muted">This version replaces version {{ changes.previous }}; the ledger posts only these differences, as adjustment entries.</p>
  {% if changes.rows %}
  <table>
    <tr><th>Section</th><th>Item</th><th>Currency</th><th class="num">Version {{ changes.previous }}</th><th class="num">Version {{ version }}</th><th class="num">Difference</th></tr>
    {% for c in changes.rows %}<tr class="change"><td>{{ c.section }}</td><td>{{ c.item }}</td><td>{{ c.currency }}</td><td class="num" data-minor="{{ c.previous.minor }}">{{ c.previous.text }}</td><td class="num" data-minor="{{ c.now.minor }}">{{ c.now.text }}</td><td class="num{% if c.difference.negative %} neg{% endif %}" data-minor="{{ c.difference.minor }}"><b>{{ c.difference.text }}</b></td></tr>
    {% endfor %}
  </table>
  {% else %}<p>No amount changed.</p>{% endif %}
  {% for f in changes.fx %}<p>Exchange rate changed: {{ f }}</p>{% endfor %}
</div>
{% endif %}

<h2>Markets: revenue and where it went</h2>
<p class="muted">Per market and currency, from the ledger. Check = revenue − (owner pay + wear pay + penalties + margin), which must be 0.00.</p>
<table id="markets">
  <tr><th>Market</th><th>Cur.</th><th class="num">MTUs</th><th class="num">Revenue</th><th class="num">Owner pay</th><th class="num">Wear pay</th><th class="num">Penalties</th><th class="num">Margin</th><th class="num">Margin %</th><th class="num">Check</th></tr>
  {% for r in markets %}<tr class="{{ 'total' if r.total else 'market' }}" data-market="{{ r.market }}" data-currency="{{ r.currency }}">
    <td>{{ r.market }}</td><td>{{ r.currency }}</td><td class="num">{{ r.mtus }}</td>
    {% for k in ['revenue', 'owner_pay', 'wear_pay', 'penalties', 'margin'] %}<td class="num{% if r[k].negative %} neg{% endif %}" data-field="{{ k }}" data-minor="{{ r[k].minor }}">{{ r[k].text }}</td>{% endfor %}
    <td class="num{% if r.margin.negative %} neg{% endif %}">{{ r.margin_pct }}</td><td class="num {{ 'okmark' if r.balanced else 'badmark' }}">{{ r.check }}</td></tr>
  {% endfor %}
</table>
{% if losses %}<p class="losses">Markets that lost money: {{ losses | join('; ') }}.</p>{% else %}<p class="muted">No market lost money.</p>{% endif %}
{% for c in market_charts %}{{ c }}{% endfor %}

<h2>Penalties</h2>
{% if penalties_by_cause %}
<table id="penalties">
  <tr><th>Market</th><th>Cur.</th><th>Cause</th><th>Kind</th><th class="num">Amount</th><th class="num">Share</th></tr>
  {% for p in penalties_by_cause %}<tr class="penalty"><td>{{ p.market }}</td><td>{{ p.currency }}</td><td>{{ p.cause }}</td><td>{{ p.kind }}</td><td class="num" data-minor="{{ p.amount.minor }}">{{ p.amount.text }}</td><td class="num">{{ p.share }}</td></tr>
  {% endfor %}
</table>
<p class="muted">Largest penalties by obligation MTU{% if n_penalties > top_penalties %} (the {{ top_penalties }} largest of {{ n_penalties }} per currency; all are in penalties.csv){% endif %}; times are local ({{ zone }}).</p>
<table id="largest">
  <tr><th>Obligation</th><th>Market</th><th>MTU from</th><th>Cause</th><th>Kind</th><th>Cur.</th><th class="num">Amount</th></tr>
  {% for p in largest %}<tr class="largest"><td class="id">{{ p.obligation }}</td><td>{{ p.market }}</td><td>{{ p.when }}</td><td>{{ p.cause }}</td><td>{{ p.kind }}</td><td>{{ p.currency }}</td><td class="num" data-minor="{{ p.amount.minor }}">{{ p.amount.text }}</td></tr>
  {% endfor %}
</table>
{% else %}<p>No penalties this month.</p>{% endif %}

<h2>Awaiting verification</h2>
{% if awaiting %}
<p id="awaiting">{{ awaiting.count }} obligation MTUs are not settled in this version: no delivery has been verified for them yet, and the market pays only what was proven. A later version settles them, as adjustments, once they are verified (awaiting_verification.csv lists them).</p>
<table id="awaiting-markets">
  <tr><th>Market</th><th class="num">Obligations</th><th>From – to ({{ zone }})</th><th class="num">If delivered in full (EUR)</th></tr>
  {% for r in awaiting.rows %}<tr class="awaiting"><td>{{ r.market }}</td><td class="num">{{ r.count }}</td><td>{{ r.span }}</td><td class="num" data-minor="{{ r.amount.minor }}">{{ r.amount.text }}</td></tr>
  {% endfor %}
</table>
{% else %}<p class="muted">Every obligation of the month has a verified delivery.</p>{% endif %}

<h2>Owner payouts</h2>
<p class="muted">By source in the owners' contract currencies, as the statements show them. The total must equal what the ledger owes owners (owner_payable).</p>
<table id="owner-pay">
  <tr><th>Source</th><th>Cur.</th><th class="num">Lines</th><th class="num">Forfeited</th><th class="num">Amount</th></tr>
  {% for g in owner_pay %}{% for o in g.rows %}<tr class="owner-pay"><td>{{ o.source }}</td><td>{{ g.currency }}</td><td class="num">{{ o.lines }}</td><td class="num">{% if o.forfeited %}{{ o.forfeited.text }}{% endif %}</td><td class="num{% if o.amount.negative %} neg{% endif %}" data-minor="{{ o.amount.minor }}">{{ o.amount.text }}</td></tr>
  {% endfor %}<tr class="total" data-currency="{{ g.currency }}"><td>Total {{ g.currency }}</td><td>{{ g.currency }}</td><td class="num">{{ g.lines }}</td><td class="num">{{ g.forfeited.text }}</td><td class="num" data-minor="{{ g.total.minor }}">{{ g.total.text }}</td></tr>
  <tr><td colspan="4">Owed to owners in the ledger {% if g.ties %}<span class="okmark">= total ✓</span>{% else %}<span class="badmark">≠ total ✗</span>{% endif %}</td><td class="num" data-minor="{{ g.owed.minor }}">{{ g.owed.text }}</td></tr>
  {% endfor %}
</table>
{% for c in owner_charts %}{{ c }}{% endfor %}
<p class="muted">Pay charged to each market, in the market's currency (converted at the month's rate): what the market rows above call owner pay and wear pay.</p>
<table id="payouts">
  <tr><th>Market</th><th>Cur.</th><th>Source</th><th class="num">Amount</th></tr>
  {% for p in payouts %}<tr class="payout"><td>{{ p.market }}</td><td>{{ p.currency }}</td><td>{{ p.source }}</td><td class="num{% if p.amount.negative %} neg{% endif %}" data-minor="{{ p.amount.minor }}">{{ p.amount.text }}</td></tr>
  {% endfor %}
</table>

<h2>Exchange rates</h2>
{% if fx %}
<p class="muted">One rate per pair for the month: the latest ECB reference rates published on or before its last day, crossed through the euro.</p>
<table id="fx">
  <tr><th>Pair</th><th class="num">Rate</th><th>For</th><th>From (per euro)</th><th>To (per euro)</th><th></th></tr>
  {% for r in fx %}<tr class="fx"><td class="num">{{ r.pair }}</td><td class="num">{{ r.rate }}</td><td class="num">{{ r.day }}</td><td>{{ r.from_eur }}</td><td>{{ r.to_eur }}</td><td class="{{ 'badmark' if r.stale else '' }}">{{ r.stale }}</td></tr>
  {% endfor %}
</table>
<p class="muted">Currency position from conversions (fx_conversion; debit +): {% for p in fx_position %}<span class="{{ 'neg' if p.negative else '' }}">{{ p.currency }} {{ p.text }}</span>{% if not loop.last %} · {% endif %}{% endfor %}</p>
{% else %}<p>No conversion this month: every owner is paid in the currency of the markets their pay is charged to.</p>{% endif %}

<h2>Ledger</h2>
<p>Every posting of the month summed per currency (must be zero): {% for p in ledger %}<span class="{{ 'okmark' if p.minor == 0 else 'badmark' }}" data-currency="{{ p.currency }}" data-minor="{{ p.minor }}">{{ p.currency }} {{ p.text }}</span>{% if not loop.last %} · {% endif %}{% endfor %}</p>

<footer>flexfleet settlement {{ zone }} {{ month }}, version {{ version }}. Amounts are exact minor units from the ledger; prices are rounded half up once per line and every split (revenue shares, markets, conversions) by the largest-remainder rule, so no rounding creates or loses money. Margin may be negative: fixed pay, availability, wear and credits are owed whatever the markets paid.</footer>
</body>
</html>
"""
