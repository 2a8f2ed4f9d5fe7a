"""A `Statement` as one self-contained HTML page: CSS inline, charts as inline SVG, no external
resource, so the page opens offline and prints to the same PDF anywhere.

The page is written for an EV owner, not an accountant: the month's total first, then where the
money comes from (one plain sentence per source), the charts, battery wear, the departure and
charge-level promises, and last every line as quantity x rate = amount to check by hand.
Deterministic: the same Statement gives the same bytes (sorted inputs, no clock, fixed SVG ids).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import jinja2
from markupsafe import Markup

from flexfleet.domain.model import Currency, Language
from flexfleet.domain.time import to_local
from flexfleet.settlement import labels as L
from flexfleet.settlement.lines import SOURCE_ORDER, OwnerLine, Source
from flexfleet.settlement.money import major, minor_units
from flexfleet.settlement.statement import Promise, PromiseKind, Statement
from services.settlement.statements import charts
from services.settlement.statements.template import PAGE

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_PAGE = _ENV.from_string(PAGE)
_CREDIT = {PromiseKind.DEPARTURE: Source.CREDIT_DEPARTURE, PromiseKind.MIN_SOC: Source.CREDIT_MIN_SOC}


@dataclass(frozen=True)
class LineRow:
    """One detailed line as the page shows it (what the tests read back)."""

    source: str
    name: str
    vehicle: str
    what: str
    quantity: str
    rate: str
    amount: str
    negative: bool
    note: str


def render_html(statement: Statement) -> str:
    """The statement page in the owner's language (English where we have no words for it)."""
    lang = L.language(statement.owner.language)
    w = L.words(lang)
    month = L.month_name(statement.month.first_day, lang)
    totals = [dict(text=L.money(v, c, lang), negative=v < 0) for c, v in statement.totals.items()] or \
        [dict(text=L.money(0, statement.owner.currency, lang), negative=False)]
    page = _PAGE.render(
        lang=lang.value, title=w["title"], month=month, owner=statement.owner.name,
        owner_line=L.text(lang, "owner", name=statement.owner.name),
        version_text=L.text(lang, "version", n=statement.version),
        total_heading=L.text(lang, "total_heading", month=month), total_note=w["total_note"], totals=totals,
        adjustment=_adjustment(statement, lang), facts=_facts(statement, lang), by_source=w["by_source"],
        sources=_sources(statement, lang), total_label=w["total"], charts_heading=w["charts"],
        charts=[Markup(c) for c in _charts(statement, lang)], wear_heading=w["wear"], wear=_wear(statement, lang),
        wear_none=w["wear_none"], promises_heading=w["promises"], promises_note=w["promises_note"],
        promises=_promises(statement, lang), promises_none=w["promises_none"], details=w["details"],
        details_note=w["details_note"], lines=line_rows(statement), footer=_footer(statement, lang),
        col={k[4:]: v for k, v in w.items() if k.startswith("col_")},
    )
    return page


# ------------------------------------------------------------------------------------ the top


def _adjustment(s: Statement, lang: Language) -> dict | None:
    if not s.previous_totals:
        return None
    rows = [dict(previous=L.money(s.previous_totals.get(c, 0), c, lang), now=L.money(s.totals.get(c, 0), c, lang),
                 difference=L.money(d, c, lang, signed=True)) for c, d in s.adjustments.items()]
    return dict(heading=L.text(lang, "adjustment"), note=L.text(lang, "adjustment_note"),
                previous_label=L.text(lang, "adj_previous", n=s.version - 1), now_label=L.text(lang, "adj_now"),
                difference_label=L.text(lang, "adj_difference"), rows=rows)


def _facts(s: Statement, lang: Language) -> list[dict]:
    hours = sum((d.available_hours for d in s.days), Decimal(0))
    discharged = sum((d.discharged_kwh for d in s.days), Decimal(0))
    wear = _by_currency(x for x in s.lines if x.source is Source.WEAR)
    wear_text = " + ".join(L.money(v, c, lang) for c, v in wear.items()) or L.money(0, _currency(s), lang)
    kept = sum(1 for p in s.promises if p.kept)
    return [dict(value=L.number(hours, lang, 2 if hours % 1 else 0), label=L.text(lang, "facts_hours")),
            dict(value=L.number(discharged, lang, 1), label=L.text(lang, "facts_discharged")),
            dict(value=wear_text, label=L.text(lang, "facts_wear")),
            dict(value=f"{kept} / {len(s.promises)}", label=L.text(lang, "facts_promises"))]


def _sources(s: Statement, lang: Language) -> list[dict]:
    out = []
    for (cur, src), amount in _per_source(s).items():
        out.append(dict(name=L.text(lang, f"src_{src.value}"), explain=L.text(lang, f"explain_{src.value}"),
                        amount=L.money(amount, cur, lang), negative=amount < 0))
    return out


def _per_source(s: Statement) -> dict[tuple[Currency, Source], int]:
    out: dict[tuple[Currency, Source], int] = defaultdict(int)
    for x in s.lines:
        out[(x.currency, x.source)] += x.amount
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0].value, SOURCE_ORDER[kv[0][1]])))


def _by_currency(lines) -> dict[Currency, int]:
    out: dict[Currency, int] = defaultdict(int)
    for x in lines:
        out[x.currency] += x.amount
    return dict(sorted(out.items()))


def _currency(s: Statement) -> Currency:
    return next(iter(s.totals), s.owner.currency)


# ------------------------------------------------------------------------------------- charts


def _charts(s: Statement, lang: Language) -> list[str]:
    w = L.words(lang)

    def num(v: float) -> str:
        return L.number(Decimal(repr(round(float(v), 2))).normalize(), lang)

    out = [charts.hours_chart(s.days, w["chart_hours"], w["axis_day"], w["axis_hours"], num),
           charts.energy_chart(s.days, w["chart_energy"], w["axis_day"], w["axis_kwh"], w["legend_charged"],
                               w["legend_discharged"], num)]
    per_currency: dict[Currency, list[charts.Bar]] = defaultdict(list)
    for (cur, src), amount in _per_source(s).items():
        per_currency[cur].append(charts.Bar(w[f"src_{src.value}"], float(major(amount, cur)),
                                            L.money(amount, cur, lang)))
    for cur, bars in per_currency.items():
        out.append(charts.bar_chart(bars, w["chart_earnings"], f"earnings-{cur.value}"))
    wear_pay = _wear_pay(s)
    bars = [charts.Bar(wa.vehicle_id, float(wa.lost_kwh),
                       f"{L.number(wa.lost_kwh, lang)} {w['unit_kwh_capacity']} · "
                       + L.text(lang, "wear_paid_label", amount=" + ".join(
                           L.money(v, c, lang) for c, v in wear_pay.get(wa.vehicle_id, {}).items()) or "0"))
            for wa in s.wear]
    if bars:
        out.append(charts.bar_chart(bars, w["chart_wear"], "wear"))
    if s.promises:
        rows = [PromiseKind.DEPARTURE, PromiseKind.MIN_SOC]
        zone = s.month.zone
        points = [(to_local(p.due, zone).day, rows.index(PromiseKind(p.kind)), p.kept) for p in s.promises]
        out.append(charts.promises_chart(points, [w["kind_departure"], w["kind_min_soc"]], len(s.days),
                                         w["chart_promises"], w["axis_day"], w["legend_kept"], w["legend_broken"]))
    return out


def _wear_pay(s: Statement) -> dict[str, dict[Currency, int]]:
    out: dict[str, dict[Currency, int]] = defaultdict(lambda: defaultdict(int))
    for x in s.lines:
        if x.source is Source.WEAR and x.vehicle_id:
            out[x.vehicle_id][x.currency] += x.amount
    return out


# ------------------------------------------------------------------------- wear and promises


def _wear(s: Statement, lang: Language) -> list[str]:
    pay = _wear_pay(s)
    out = []
    for wa in s.wear:
        paid = " + ".join(L.money(v, c, lang) for c, v in pay.get(wa.vehicle_id, {}).items())
        line = L.text(lang, "wear_line", vehicle=wa.vehicle_id, kwh=L.number(wa.lost_kwh, lang),
                      cycles=L.number(Decimal(repr(round(wa.efc, 1))), lang))
        out.append(f"{line}; {L.text(lang, 'wear_paid_label', amount=paid)}." if paid else f"{line}.")
    return out


def _promises(s: Statement, lang: Language) -> list[dict]:
    zone = s.month.zone
    out = []
    for p in s.promises:
        due = to_local(p.due, zone)
        kind = PromiseKind(p.kind)
        if p.kept:
            outcome = L.text(lang, "outcome_kept")
        else:
            credit = _credit(s.lines, p, kind)
            outcome = (L.text(lang, "outcome_credited", amount=L.money(credit[0], credit[1], lang))
                       if credit else L.text(lang, "outcome_broken"))
        out.append(dict(due=f"{L.day_text(due.date(), lang)} {L.time_text(due)}", vehicle=p.vehicle_id,
                        kind=L.text(lang, f"kind_{kind.value}"), kept=p.kept, outcome=outcome,
                        promised=L.percent(Decimal(repr(p.promised_soc_pct)), lang),
                        reached=L.percent(Decimal(repr(p.reached_soc_pct)), lang)))
    return out


def _credit(lines: tuple[OwnerLine, ...], p: Promise, kind: PromiseKind) -> tuple[int, Currency] | None:
    """The credit the contract pays for one broken promise: the rate of the credit line of the
    term in force when it broke (the last such line starting at or before it)."""
    mine = [x for x in lines if x.source is _CREDIT[kind] and x.vehicle_id == p.vehicle_id and x.rate is not None]
    if not mine:
        return None
    before = [x for x in mine if x.period_start <= p.due + timedelta(minutes=15)]
    x = (before or mine)[-1]
    return minor_units(x.rate, x.currency), x.currency  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- the detail


def line_rows(s: Statement) -> list[LineRow]:
    """Every owner line as quantity x rate = amount, in the settlement's order."""
    lang = L.language(s.owner.language)
    return [_row(x, s, lang) for x in s.lines]


def _row(x: OwnerLine, s: Statement, lang: Language) -> LineRow:
    w, cur = L.words(lang), x.currency
    quantity, rate = _quantity(x, lang), _rate(x, lang)
    what = _period(x.period_start, x.period_end, s.month.zone, lang)
    note = ""
    if x.source is Source.CAPACITY_SHARE:
        start = to_local(x.mtu or x.period_start, s.month.zone)
        end = to_local(x.period_end, s.month.zone)
        what = L.text(lang, "what_capacity", market=x.market or "",
                      when=f"{L.day_text(start.date(), lang)} {L.time_text(start)}–{L.time_text(end)}")
    elif x.source is Source.CAP:
        cap = minor_units(x.rate or 0, cur)
        earned = minor_units(x.quantity, cur)
        what = L.text(lang, "cap_what", earned=L.money(earned, cur, lang), cap=L.money(cap, cur, lang),
                      room=L.money(earned + x.amount, cur, lang))
        quantity, rate = L.money(earned, cur, lang), f"{L.money(cap, cur, lang)}/{w['unit_year']}"
    if x.forfeited:
        note = L.text(lang, "forfeited", amount=L.money(x.forfeited, cur, lang))
    return LineRow(x.source.value, L.text(lang, f"src_{x.source.value}"), x.vehicle_id or w["all_cars"], what,
                   quantity, rate, L.money(x.amount, cur, lang), x.amount < 0, note)


_UNITS = {"h": "unit_h", "kWh": "unit_kwh", "kW": "unit_kw", "month": "unit_month",
          "kWh of capacity": "unit_kwh_capacity"}
_PER = {Source.AVAILABILITY: "unit_h", Source.ENERGY: "unit_kwh", Source.CHARGING_REFUND: "unit_kwh",
        Source.WEAR: "unit_kwh", Source.FIXED: "per_month"}


def _quantity(x: OwnerLine, lang: Language) -> str:
    unit = _UNITS.get(x.unit)
    q = L.number(x.quantity, lang)
    return f"{q}{L.NBSP}{L.text(lang, unit)}" if unit else q


def _rate(x: OwnerLine, lang: Language) -> str:
    if x.source is Source.CAPACITY_SHARE:
        return L.text(lang, "rate_share", pct=L.percent(x.rate or Decimal(0), lang))
    if x.rate is None:
        return L.text(lang, "rate_price_paid")
    per = _PER.get(x.source)
    price = L.rate(x.rate, x.currency, lang)
    return f"× {price}/{L.text(lang, per)}" if per else f"× {price}"


def _period(start: datetime, end: datetime, zone: str, lang: Language) -> str:
    a = to_local(start, zone).date()
    b = to_local(end - timedelta(microseconds=1), zone).date()
    if a == b:
        return L.day_text(a, lang)
    return L.text(lang, "what_period", start=L.day_text(a, lang), end=L.day_text(b, lang))


def _footer(s: Statement, lang: Language) -> str:
    currencies = ", ".join(c.value for c in s.totals) or s.owner.currency.value
    return L.text(lang, "footer", currencies=currencies)
