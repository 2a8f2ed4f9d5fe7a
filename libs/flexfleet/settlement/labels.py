"""The owner statement's words and number formats in English, Norwegian (bokmål), Swedish, Danish
and Dutch. Pure: no locale module (the process locale would make rendering depend on the machine).

Why hand-written formats rather than CLDR through a library: five languages, four currencies and
one rule each; byte-identical statements on every machine matter more than coverage. Finnish
(and any language without words here) falls back to English, words and formats together, so a
page never mixes English words with Finnish numbers.

Formats (grouping and amount-currency gaps are no-break spaces, minus is U+2212):
    en  EUR 1,234.50   −SEK 1,234.50      nb  1 234,50 kr (NOK)  1 234,50 €
    sv  1 234,50 kr (SEK)  1 234,50 €     da  1.234,50 kr. (DKK)  1.234,50 €
    nl  € 1.234,50   SEK 1.234,50
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from flexfleet.domain.errors import DomainError
from flexfleet.domain.model import Currency, Language
from flexfleet.settlement.money import MINOR_DIGITS, major

NBSP = "\u00a0"
MINUS = "\u2212"
LANGUAGES: tuple[Language, ...] = (Language.EN, Language.NB, Language.SV, Language.DA, Language.NL)


@dataclass(frozen=True)
class NumberFormat:
    decimal: str
    group: str
    symbols: dict[Currency, str]        # currency -> symbol; the ISO code otherwise
    symbol_first: bool                  # "€ 1,00" (nl, en) or "1,00 kr" (nordic)
    sign_first: bool = False            # "−EUR 1.00" (en) or "€ −1,00" (nl)


def _fmt(decimal: str, group: str, symbols: dict[Currency, str], first: bool, sign_first: bool = False) -> NumberFormat:
    return NumberFormat(decimal, group, symbols, first, sign_first)


FORMATS: dict[Language, NumberFormat] = {
    Language.EN: _fmt(".", ",", {}, True, sign_first=True),
    Language.NB: _fmt(",", NBSP, {Currency.NOK: "kr", Currency.EUR: "€"}, False),
    Language.SV: _fmt(",", NBSP, {Currency.SEK: "kr", Currency.EUR: "€"}, False),
    Language.DA: _fmt(",", ".", {Currency.DKK: "kr.", Currency.EUR: "€"}, False),
    Language.NL: _fmt(",", ".", {Currency.EUR: "€"}, True),
}

MONTHS: dict[Language, tuple[str, ...]] = {
    Language.EN: ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                  "October", "November", "December"),
    Language.NB: ("januar", "februar", "mars", "april", "mai", "juni", "juli", "august", "september", "oktober",
                  "november", "desember"),
    Language.SV: ("januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti", "september",
                  "oktober", "november", "december"),
    Language.DA: ("januar", "februar", "marts", "april", "maj", "juni", "juli", "august", "september", "oktober",
                  "november", "december"),
    Language.NL: ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september",
                  "oktober", "november", "december"),
}

# The statement's words. {placeholders} are filled by str.format; every language has every key
# (a test checks), and the placeholders of a key are the same in every language.
WORDS: dict[Language, dict[str, str]] = {
    Language.EN: {
        "title": "Your flexfleet statement",
        "for_month": "{month}",
        "owner": "For {name}",
        "version": "Version {n}",
        "total_heading": "Paid to you for {month}",
        "total_note": "The money we pay for letting your car help the power grid, after every rule of your contract.",
        "facts_hours": "hours available",
        "facts_discharged": "kWh delivered from your battery",
        "facts_wear": "paid for battery wear",
        "facts_promises": "departure and charge-level promises kept",
        "by_source": "Where the money comes from",
        "total": "Total",
        "charts": "Your month in charts",
        "chart_hours": "Hours available per day (plugged in and ready)",
        "chart_energy": "Energy per day",
        "chart_earnings": "Earnings by source",
        "chart_wear": "Battery wear and what we paid for it",
        "chart_promises": "Promises per day",
        "axis_day": "Day of the month",
        "axis_hours": "hours",
        "axis_kwh": "kWh",
        "axis_kwh_capacity": "kWh of capacity lost",
        "legend_charged": "charged",
        "legend_discharged": "discharged",
        "legend_kept": "kept",
        "legend_broken": "broken",
        "wear_paid_label": "paid {amount}",
        "details": "Every line, to check by hand",
        "details_note": "Each amount is quantity × rate, rounded once to the nearest cent (halves up).",
        "col_source": "Source",
        "col_vehicle": "Car",
        "col_what": "What and when",
        "col_quantity": "Quantity",
        "col_rate": "Rate",
        "col_amount": "Amount",
        "promises": "Your departure times and charge levels",
        "promises_note": "Driving comes first: every broken promise is credited as your contract says.",
        "promises_none": "No departure or minimum charge promises were recorded this month.",
        "col_due": "When",
        "col_promise": "Promise",
        "col_promised": "Promised",
        "col_reached": "Reached",
        "col_outcome": "Outcome",
        "outcome_kept": "kept",
        "outcome_credited": "broken, credited {amount}",
        "outcome_broken": "broken (your contract has no credit for it)",
        "kind_departure": "charged for departure",
        "kind_min_soc": "never below your minimum",
        "wear": "Battery wear",
        "wear_line": "{vehicle}: {kwh} kWh of capacity lost to our use ({cycles} full cycles we added this month)",
        "wear_none": "No battery wear was assessed this month.",
        "adjustment": "Change from the previous statement",
        "adjustment_note": "This month was settled again (for example after late meter data). "
                           "You are paid the difference; nothing is taken back silently.",
        "adj_previous": "Paid in version {n}",
        "adj_now": "This version",
        "adj_difference": "Adjustment",
        "src_availability": "Availability",
        "src_capacity_share": "Capacity revenue share",
        "src_energy": "Energy delivered",
        "src_charging_refund": "Charging refund",
        "src_wear": "Battery wear",
        "src_fixed": "Fixed monthly pay",
        "src_credit_departure": "Credit: departure promise",
        "src_credit_min_soc": "Credit: minimum charge promise",
        "src_cap": "Annual cap",
        "explain_availability": "Paid for every hour your car was plugged in and ready for us to use.",
        "explain_capacity_share": "Your share of what grid markets paid for the capacity your car held ready.",
        "explain_energy": "Paid for every kWh your battery gave back to the grid.",
        "explain_charging_refund": "We refund the charging we caused, so it costs you nothing.",
        "explain_wear": "What the battery wear from our use is worth, paid to you.",
        "explain_fixed": "The fixed amount your contract pays each month.",
        "explain_credit_departure": "Paid when your car was not charged as promised by your departure time.",
        "explain_credit_min_soc": "Paid when your battery went below the minimum you set.",
        "explain_cap": "Your contract caps some pay per year; this is what goes over the cap.",
        "what_period": "{start} – {end}",
        "what_capacity": "{market}, {when}",
        "rate_price_paid": "the price you paid",
        "rate_share": "{pct} of the net",
        "unit_h": "h",
        "unit_kwh": "kWh",
        "unit_kw": "kW",
        "unit_month": "of the month",
        "unit_kwh_capacity": "kWh of capacity",
        "unit_year": "year",
        "per_month": "month",
        "cap_what": "Earned this month {earned}; the annual cap {cap} left room for {room}",
        "forfeited": "Not paid this month ({amount}): the car was plugged in less than your contract's minimum.",
        "all_cars": "all",
        "footer": "Amounts in {currencies}. Questions about a line? Quote its source, car and dates.",
    },
    Language.NB: {
        "title": "Din flexfleet-oppgjørsoversikt",
        "for_month": "{month}",
        "owner": "Til {name}",
        "version": "Versjon {n}",
        "total_heading": "Utbetalt til deg for {month}",
        "total_note": "Pengene vi betaler for at bilen din hjelper strømnettet, etter alle reglene i avtalen din.",
        "facts_hours": "timer tilgjengelig",
        "facts_discharged": "kWh levert fra batteriet ditt",
        "facts_wear": "betalt for batterislitasje",
        "facts_promises": "løfter om avreise og ladenivå holdt",
        "by_source": "Hvor pengene kommer fra",
        "total": "Totalt",
        "charts": "Måneden din i grafer",
        "chart_hours": "Timer tilgjengelig per dag (tilkoblet og klar)",
        "chart_energy": "Energi per dag",
        "chart_earnings": "Inntekt per kilde",
        "chart_wear": "Batterislitasje og hva vi betalte for den",
        "chart_promises": "Løfter per dag",
        "axis_day": "Dag i måneden",
        "axis_hours": "timer",
        "axis_kwh": "kWh",
        "axis_kwh_capacity": "kWh kapasitet tapt",
        "legend_charged": "ladet",
        "legend_discharged": "utladet",
        "legend_kept": "holdt",
        "legend_broken": "brutt",
        "wear_paid_label": "betalt {amount}",
        "details": "Alle linjene, til å kontrollere selv",
        "details_note": "Hvert beløp er mengde × sats, avrundet én gang til nærmeste øre (halve opp).",
        "col_source": "Kilde",
        "col_vehicle": "Bil",
        "col_what": "Hva og når",
        "col_quantity": "Mengde",
        "col_rate": "Sats",
        "col_amount": "Beløp",
        "promises": "Avreisetider og ladenivå",
        "promises_note": "Kjøringen kommer først: hvert brutte løfte godskrives slik avtalen din sier.",
        "promises_none": "Ingen løfter om avreise eller minste ladenivå ble registrert denne måneden.",
        "col_due": "Når",
        "col_promise": "Løfte",
        "col_promised": "Lovet",
        "col_reached": "Nådd",
        "col_outcome": "Resultat",
        "outcome_kept": "holdt",
        "outcome_credited": "brutt, godskrevet {amount}",
        "outcome_broken": "brutt (avtalen din gir ingen godskriving for dette)",
        "kind_departure": "ladet til avreise",
        "kind_min_soc": "aldri under minimumet ditt",
        "wear": "Batterislitasje",
        "wear_line": "{vehicle}: {kwh} kWh kapasitet tapt på grunn av vår bruk "
                     "({cycles} fulle sykluser vi la til denne måneden)",
        "wear_none": "Ingen batterislitasje ble beregnet denne måneden.",
        "adjustment": "Endring fra forrige oppgjør",
        "adjustment_note": "Denne måneden er gjort opp på nytt (for eksempel etter sene måledata). "
                           "Du får differansen utbetalt; ingenting trekkes tilbake i det stille.",
        "adj_previous": "Utbetalt i versjon {n}",
        "adj_now": "Denne versjonen",
        "adj_difference": "Justering",
        "src_availability": "Tilgjengelighet",
        "src_capacity_share": "Andel av kapasitetsinntekt",
        "src_energy": "Levert energi",
        "src_charging_refund": "Refusjon av lading",
        "src_wear": "Batterislitasje",
        "src_fixed": "Fast månedsbeløp",
        "src_credit_departure": "Godskriving: avreiseløfte",
        "src_credit_min_soc": "Godskriving: løfte om minste ladenivå",
        "src_cap": "Årlig tak",
        "explain_availability": "Betalt for hver time bilen din var tilkoblet og klar til bruk for oss.",
        "explain_capacity_share": "Din andel av det strømmarkedene betalte for kapasiteten bilen din holdt klar.",
        "explain_energy": "Betalt for hver kWh batteriet ditt ga tilbake til strømnettet.",
        "explain_charging_refund": "Vi refunderer ladingen vi forårsaket, så den koster deg ingenting.",
        "explain_wear": "Verdien av batterislitasjen fra vår bruk, betalt til deg.",
        "explain_fixed": "Det faste beløpet avtalen din betaler hver måned.",
        "explain_credit_departure": "Betalt når bilen ikke var ladet som lovet til avreisetiden din.",
        "explain_credit_min_soc": "Betalt når batteriet gikk under minimumet du har satt.",
        "explain_cap": "Avtalen din har et tak på noe av betalingen per år; dette er det som går over taket.",
        "what_period": "{start} – {end}",
        "what_capacity": "{market}, {when}",
        "rate_price_paid": "prisen du betalte",
        "rate_share": "{pct} av netto",
        "unit_h": "t",
        "unit_kwh": "kWh",
        "unit_kw": "kW",
        "unit_month": "av måneden",
        "unit_kwh_capacity": "kWh kapasitet",
        "unit_year": "år",
        "per_month": "måned",
        "cap_what": "Opptjent denne måneden {earned}; årstaket {cap} ga plass til {room}",
        "forfeited": "Ikke utbetalt denne måneden ({amount}): bilen var tilkoblet kortere enn avtalens minimum.",
        "all_cars": "alle",
        "footer": "Beløp i {currencies}. Spørsmål om en linje? Oppgi kilde, bil og datoer.",
    },
    Language.SV: {
        "title": "Din flexfleet-avräkning",
        "for_month": "{month}",
        "owner": "Till {name}",
        "version": "Version {n}",
        "total_heading": "Utbetalt till dig för {month}",
        "total_note": "Pengarna vi betalar för att din bil hjälper elnätet, efter alla regler i ditt avtal.",
        "facts_hours": "timmar tillgänglig",
        "facts_discharged": "kWh levererat från ditt batteri",
        "facts_wear": "betalt för batterislitage",
        "facts_promises": "löften om avresa och laddnivå hållna",
        "by_source": "Var pengarna kommer ifrån",
        "total": "Totalt",
        "charts": "Din månad i diagram",
        "chart_hours": "Timmar tillgänglig per dag (ansluten och redo)",
        "chart_energy": "Energi per dag",
        "chart_earnings": "Intäkter per källa",
        "chart_wear": "Batterislitage och vad vi betalade för det",
        "chart_promises": "Löften per dag",
        "axis_day": "Dag i månaden",
        "axis_hours": "timmar",
        "axis_kwh": "kWh",
        "axis_kwh_capacity": "kWh förlorad kapacitet",
        "legend_charged": "laddat",
        "legend_discharged": "urladdat",
        "legend_kept": "hållet",
        "legend_broken": "brutet",
        "wear_paid_label": "betalt {amount}",
        "details": "Alla rader, att kontrollera själv",
        "details_note": "Varje belopp är mängd × pris, avrundat en gång till närmaste öre (halva uppåt).",
        "col_source": "Källa",
        "col_vehicle": "Bil",
        "col_what": "Vad och när",
        "col_quantity": "Mängd",
        "col_rate": "Pris",
        "col_amount": "Belopp",
        "promises": "Dina avresetider och laddnivåer",
        "promises_note": "Körningen går först: varje brutet löfte krediteras enligt ditt avtal.",
        "promises_none": "Inga löften om avresa eller lägsta laddnivå registrerades denna månad.",
        "col_due": "När",
        "col_promise": "Löfte",
        "col_promised": "Utlovat",
        "col_reached": "Uppnått",
        "col_outcome": "Utfall",
        "outcome_kept": "hållet",
        "outcome_credited": "brutet, krediterat {amount}",
        "outcome_broken": "brutet (ditt avtal ger ingen kreditering för det)",
        "kind_departure": "laddad till avresan",
        "kind_min_soc": "aldrig under ditt minimum",
        "wear": "Batterislitage",
        "wear_line": "{vehicle}: {kwh} kWh kapacitet förlorad genom vår användning "
                     "({cycles} fulla cykler som vi lade till denna månad)",
        "wear_none": "Inget batterislitage beräknades denna månad.",
        "adjustment": "Ändring mot föregående avräkning",
        "adjustment_note": "Månaden har räknats om (till exempel efter sena mätvärden). "
                           "Du får mellanskillnaden; inget dras tillbaka i det tysta.",
        "adj_previous": "Utbetalt i version {n}",
        "adj_now": "Denna version",
        "adj_difference": "Justering",
        "src_availability": "Tillgänglighet",
        "src_capacity_share": "Andel av kapacitetsintäkter",
        "src_energy": "Levererad energi",
        "src_charging_refund": "Återbetald laddning",
        "src_wear": "Batterislitage",
        "src_fixed": "Fast månadsersättning",
        "src_credit_departure": "Kreditering: avreselöfte",
        "src_credit_min_soc": "Kreditering: löfte om lägsta laddnivå",
        "src_cap": "Årstak",
        "explain_availability": "Betalt för varje timme din bil var ansluten och redo för oss att använda.",
        "explain_capacity_share": "Din andel av vad elmarknaderna betalade för kapaciteten din bil höll redo.",
        "explain_energy": "Betalt för varje kWh ditt batteri gav tillbaka till elnätet.",
        "explain_charging_refund": "Vi betalar tillbaka laddningen vi orsakade, så den kostar dig inget.",
        "explain_wear": "Värdet av batterislitaget från vår användning, betalt till dig.",
        "explain_fixed": "Det fasta belopp ditt avtal betalar varje månad.",
        "explain_credit_departure": "Betalt när bilen inte var laddad som utlovat till din avresetid.",
        "explain_credit_min_soc": "Betalt när batteriet gick under det minimum du har valt.",
        "explain_cap": "Ditt avtal har ett tak för viss ersättning per år; detta är det som går över taket.",
        "what_period": "{start} – {end}",
        "what_capacity": "{market}, {when}",
        "rate_price_paid": "priset du betalade",
        "rate_share": "{pct} av netto",
        "unit_h": "h",
        "unit_kwh": "kWh",
        "unit_kw": "kW",
        "unit_month": "av månaden",
        "unit_kwh_capacity": "kWh kapacitet",
        "unit_year": "år",
        "per_month": "månad",
        "cap_what": "Intjänat denna månad {earned}; årstaket {cap} gav utrymme för {room}",
        "forfeited": "Ej utbetalt denna månad ({amount}): bilen var ansluten kortare än avtalets minimum.",
        "all_cars": "alla",
        "footer": "Belopp i {currencies}. Frågor om en rad? Ange källa, bil och datum.",
    },
    Language.DA: {
        "title": "Din flexfleet-opgørelse",
        "for_month": "{month}",
        "owner": "Til {name}",
        "version": "Version {n}",
        "total_heading": "Udbetalt til dig for {month}",
        "total_note": "Pengene vi betaler for, at din bil hjælper elnettet, efter alle reglerne i din aftale.",
        "facts_hours": "timer tilgængelig",
        "facts_discharged": "kWh leveret fra dit batteri",
        "facts_wear": "betalt for batterislid",
        "facts_promises": "løfter om afgang og ladeniveau holdt",
        "by_source": "Hvor pengene kommer fra",
        "total": "I alt",
        "charts": "Din måned i grafer",
        "chart_hours": "Timer tilgængelig pr. dag (tilsluttet og klar)",
        "chart_energy": "Energi pr. dag",
        "chart_earnings": "Indtægt pr. kilde",
        "chart_wear": "Batterislid og hvad vi betalte for det",
        "chart_promises": "Løfter pr. dag",
        "axis_day": "Dag i måneden",
        "axis_hours": "timer",
        "axis_kwh": "kWh",
        "axis_kwh_capacity": "kWh tabt kapacitet",
        "legend_charged": "opladet",
        "legend_discharged": "afladet",
        "legend_kept": "holdt",
        "legend_broken": "brudt",
        "wear_paid_label": "betalt {amount}",
        "details": "Alle linjer, så du selv kan regne efter",
        "details_note": "Hvert beløb er mængde × sats, afrundet én gang til nærmeste øre (halve op).",
        "col_source": "Kilde",
        "col_vehicle": "Bil",
        "col_what": "Hvad og hvornår",
        "col_quantity": "Mængde",
        "col_rate": "Sats",
        "col_amount": "Beløb",
        "promises": "Dine afgangstider og ladeniveauer",
        "promises_note": "Kørslen kommer først: hvert brudt løfte godskrives, som din aftale siger.",
        "promises_none": "Ingen løfter om afgang eller mindste ladeniveau blev registreret denne måned.",
        "col_due": "Hvornår",
        "col_promise": "Løfte",
        "col_promised": "Lovet",
        "col_reached": "Nået",
        "col_outcome": "Resultat",
        "outcome_kept": "holdt",
        "outcome_credited": "brudt, godskrevet {amount}",
        "outcome_broken": "brudt (din aftale giver ingen godskrivning for det)",
        "kind_departure": "opladet til afgang",
        "kind_min_soc": "aldrig under dit minimum",
        "wear": "Batterislid",
        "wear_line": "{vehicle}: {kwh} kWh kapacitet tabt ved vores brug ({cycles} fulde cyklusser, vi tilføjede denne måned)",
        "wear_none": "Der blev ikke beregnet batterislid denne måned.",
        "adjustment": "Ændring i forhold til forrige opgørelse",
        "adjustment_note": "Måneden er gjort op igen (for eksempel efter sene måledata). "
                           "Du får forskellen udbetalt; intet trækkes tilbage i stilhed.",
        "adj_previous": "Udbetalt i version {n}",
        "adj_now": "Denne version",
        "adj_difference": "Regulering",
        "src_availability": "Tilgængelighed",
        "src_capacity_share": "Andel af kapacitetsindtægt",
        "src_energy": "Leveret energi",
        "src_charging_refund": "Refusion af opladning",
        "src_wear": "Batterislid",
        "src_fixed": "Fast månedligt beløb",
        "src_credit_departure": "Godskrivning: afgangsløfte",
        "src_credit_min_soc": "Godskrivning: løfte om mindste ladeniveau",
        "src_cap": "Årligt loft",
        "explain_availability": "Betalt for hver time din bil var tilsluttet og klar til, at vi kunne bruge den.",
        "explain_capacity_share": "Din andel af det, elmarkederne betalte for den kapacitet, din bil holdt klar.",
        "explain_energy": "Betalt for hver kWh, dit batteri gav tilbage til elnettet.",
        "explain_charging_refund": "Vi refunderer den opladning, vi forårsagede, så den koster dig intet.",
        "explain_wear": "Værdien af batterisliddet fra vores brug, betalt til dig.",
        "explain_fixed": "Det faste beløb, din aftale betaler hver måned.",
        "explain_credit_departure": "Betalt når bilen ikke var opladet som lovet til dit afgangstidspunkt.",
        "explain_credit_min_soc": "Betalt når batteriet kom under det minimum, du har valgt.",
        "explain_cap": "Din aftale har et loft over noget af betalingen pr. år; dette er det, der går over loftet.",
        "what_period": "{start} – {end}",
        "what_capacity": "{market}, {when}",
        "rate_price_paid": "den pris, du betalte",
        "rate_share": "{pct} af netto",
        "unit_h": "t",
        "unit_kwh": "kWh",
        "unit_kw": "kW",
        "unit_month": "af måneden",
        "unit_kwh_capacity": "kWh kapacitet",
        "unit_year": "år",
        "per_month": "måned",
        "cap_what": "Optjent denne måned {earned}; årsloftet {cap} gav plads til {room}",
        "forfeited": "Ikke udbetalt denne måned ({amount}): bilen var tilsluttet kortere end aftalens minimum.",
        "all_cars": "alle",
        "footer": "Beløb i {currencies}. Spørgsmål til en linje? Oplys kilde, bil og datoer.",
    },
    Language.NL: {
        "title": "Uw flexfleet-afrekening",
        "for_month": "{month}",
        "owner": "Voor {name}",
        "version": "Versie {n}",
        "total_heading": "Aan u betaald voor {month}",
        "total_note": "Het geld dat wij betalen omdat uw auto het stroomnet helpt, na alle regels van uw contract.",
        "facts_hours": "uur beschikbaar",
        "facts_discharged": "kWh geleverd uit uw accu",
        "facts_wear": "betaald voor accuslijtage",
        "facts_promises": "beloften over vertrek en laadniveau nagekomen",
        "by_source": "Waar het geld vandaan komt",
        "total": "Totaal",
        "charts": "Uw maand in grafieken",
        "chart_hours": "Uren beschikbaar per dag (aangesloten en klaar)",
        "chart_energy": "Energie per dag",
        "chart_earnings": "Inkomsten per bron",
        "chart_wear": "Accuslijtage en wat wij ervoor betaalden",
        "chart_promises": "Beloften per dag",
        "axis_day": "Dag van de maand",
        "axis_hours": "uur",
        "axis_kwh": "kWh",
        "axis_kwh_capacity": "kWh capaciteit verloren",
        "legend_charged": "geladen",
        "legend_discharged": "ontladen",
        "legend_kept": "nagekomen",
        "legend_broken": "niet nagekomen",
        "wear_paid_label": "betaald {amount}",
        "details": "Alle regels, om zelf na te rekenen",
        "details_note": "Elk bedrag is hoeveelheid × tarief, één keer afgerond op de cent (helften naar boven).",
        "col_source": "Bron",
        "col_vehicle": "Auto",
        "col_what": "Wat en wanneer",
        "col_quantity": "Hoeveelheid",
        "col_rate": "Tarief",
        "col_amount": "Bedrag",
        "promises": "Uw vertrektijden en laadniveaus",
        "promises_note": "Rijden gaat voor: elke niet nagekomen belofte wordt vergoed zoals uw contract zegt.",
        "promises_none": "Er zijn deze maand geen beloften over vertrek of minimaal laadniveau vastgelegd.",
        "col_due": "Wanneer",
        "col_promise": "Belofte",
        "col_promised": "Beloofd",
        "col_reached": "Bereikt",
        "col_outcome": "Uitkomst",
        "outcome_kept": "nagekomen",
        "outcome_credited": "niet nagekomen, vergoed {amount}",
        "outcome_broken": "niet nagekomen (uw contract kent hiervoor geen vergoeding)",
        "kind_departure": "geladen voor vertrek",
        "kind_min_soc": "nooit onder uw minimum",
        "wear": "Accuslijtage",
        "wear_line": "{vehicle}: {kwh} kWh capaciteit verloren door ons gebruik ({cycles} volledige cycli die wij deze maand toevoegden)",
        "wear_none": "Deze maand is geen accuslijtage berekend.",
        "adjustment": "Wijziging ten opzichte van de vorige afrekening",
        "adjustment_note": "Deze maand is opnieuw afgerekend (bijvoorbeeld na late meetgegevens). "
                           "U ontvangt het verschil; niets wordt stilzwijgend teruggenomen.",
        "adj_previous": "Betaald in versie {n}",
        "adj_now": "Deze versie",
        "adj_difference": "Correctie",
        "src_availability": "Beschikbaarheid",
        "src_capacity_share": "Aandeel in capaciteitsopbrengst",
        "src_energy": "Geleverde energie",
        "src_charging_refund": "Terugbetaald laden",
        "src_wear": "Accuslijtage",
        "src_fixed": "Vast maandbedrag",
        "src_credit_departure": "Vergoeding: vertrekbelofte",
        "src_credit_min_soc": "Vergoeding: belofte minimaal laadniveau",
        "src_cap": "Jaarplafond",
        "explain_availability": "Betaald voor elk uur dat uw auto aangesloten en klaar was voor ons gebruik.",
        "explain_capacity_share": "Uw deel van wat de energiemarkten betaalden voor de capaciteit die uw auto "
                                  "klaarhield.",
        "explain_energy": "Betaald voor elke kWh die uw accu teruggaf aan het net.",
        "explain_charging_refund": "Wij betalen het laden terug dat wij veroorzaakten, zodat het u niets kost.",
        "explain_wear": "De waarde van de accuslijtage door ons gebruik, aan u betaald.",
        "explain_fixed": "Het vaste bedrag dat uw contract elke maand betaalt.",
        "explain_credit_departure": "Betaald als uw auto niet zoals beloofd geladen was op uw vertrektijd.",
        "explain_credit_min_soc": "Betaald als uw accu onder het door u gekozen minimum kwam.",
        "explain_cap": "Uw contract kent een jaarplafond voor een deel van de vergoeding; dit is wat erboven valt.",
        "what_period": "{start} – {end}",
        "what_capacity": "{market}, {when}",
        "rate_price_paid": "de prijs die u betaalde",
        "rate_share": "{pct} van netto",
        "unit_h": "u",
        "unit_kwh": "kWh",
        "unit_kw": "kW",
        "unit_month": "van de maand",
        "unit_kwh_capacity": "kWh capaciteit",
        "unit_year": "jaar",
        "per_month": "maand",
        "cap_what": "Verdiend deze maand {earned}; het jaarplafond {cap} liet ruimte voor {room}",
        "forfeited": "Deze maand niet betaald ({amount}): de auto was korter aangesloten dan het minimum van uw "
                     "contract.",
        "all_cars": "alle",
        "footer": "Bedragen in {currencies}. Vragen over een regel? Noem de bron, auto en data.",
    },
}


def language(value: Language | str) -> Language:
    """The language a statement is written in: the owner's, or English where we have no words."""
    try:
        lang = Language(value)
    except ValueError:
        raise DomainError("language", f"must be one of {', '.join(x.value for x in Language)}; got {value!r}") from None
    return lang if lang in WORDS else Language.EN


def words(lang: Language | str) -> dict[str, str]:
    return WORDS[language(lang)]


def text(lang: Language | str, key: str, **values: object) -> str:
    try:
        template = WORDS[language(lang)][key]
    except KeyError:
        raise DomainError("label", f"no label {key!r}") from None
    return template.format(**values)


def number(value: Decimal | int, lang: Language | str, places: int | None = None) -> str:
    """A number with the language's separators; `places` fixes the decimals, else as given."""
    fmt = FORMATS[language(lang)]
    d = Decimal(value)
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places), rounding="ROUND_HALF_UP")
    sign, digits = (MINUS if d < 0 else ""), f"{abs(d):f}"
    whole, _, frac = digits.partition(".")
    groups = []
    while len(whole) > 3:
        whole, tail = whole[:-3], whole[-3:]
        groups.insert(0, tail)
    whole = fmt.group.join([whole, *groups])
    return sign + whole + (fmt.decimal + frac if frac else "")


def money(minor: int, cur: Currency | str, lang: Language | str, signed: bool = False) -> str:
    """An amount of minor units: "EUR 1,234.50" (en), "1 234,50 kr" (sv), "€ 1.234,50" (nl).
    `signed` shows a plus on a positive amount (adjustments)."""
    cur = Currency(cur)
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise DomainError("amount", f"must be whole minor units (int); got {minor!r}")
    return _with_symbol(number(major(minor, cur), lang, MINOR_DIGITS[cur]), cur, lang, signed and minor > 0)


def rate(value: Decimal, cur: Currency | str, lang: Language | str) -> str:
    """A price per unit in major units, with as many decimals as the contract gives (at least the
    currency's two): 0.0812 stays 0,0812, 5 shows as 5,00."""
    cur = Currency(cur)
    places = max(MINOR_DIGITS[cur], -Decimal(value).normalize().as_tuple().exponent)  # type: ignore[operator]
    return _with_symbol(number(value, lang, places), cur, lang, False)


def _with_symbol(num: str, cur: Currency, lang: Language | str, plus: bool) -> str:
    fmt = FORMATS[language(lang)]
    symbol = fmt.symbols.get(cur, cur.value)
    if plus:
        num = "+" + num
    if not fmt.symbol_first:
        return f"{num}{NBSP}{symbol}"
    if fmt.sign_first and num[0] in (MINUS, "+"):
        return f"{num[0]}{symbol}{NBSP}{num[1:]}"
    return f"{symbol}{NBSP}{num}"


def percent(value: Decimal, lang: Language | str) -> str:
    sep = "" if language(lang) is Language.EN else NBSP
    return f"{number(Decimal(value).normalize(), lang)}{sep}%"


def month_name(first_day: date, lang: Language | str) -> str:
    """ "June 2026", "juni 2026"."""
    return f"{MONTHS[language(lang)][first_day.month - 1]} {first_day.year}"


def day_text(d: date, lang: Language | str) -> str:
    """ "3 June" (en), "3. juni" (nb, da), "3 juni" (sv, nl)."""
    lang = language(lang)
    dot = "." if lang in (Language.NB, Language.DA) else ""
    return f"{d.day}{dot} {MONTHS[lang][d.month - 1]}"


def time_text(ts: datetime) -> str:
    """24-hour clock in every language served."""
    return f"{ts.hour:02d}:{ts.minute:02d}"
