"""The dashboard's Jinja2 templates, as module strings: the package ships only *.sql, *.json and
*.csv files besides Python (pyproject's package-data), so .html files would be left out of a wheel.
Autoescaped; charts come in as Markup (inline SVG drawn by us)."""

from __future__ import annotations

BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · flexfleet</title>
<style>
  body { font-family: "DejaVu Sans", system-ui, sans-serif; color: #1f2933; margin: 0; background: #f5f7fa; }
  header { background: #1f2933; color: #fff; padding: .6rem 1.2rem; display: flex; gap: 1rem; align-items: center; }
  header a { color: #fff; } header .who { margin-left: auto; font-size: .9rem; }
  header form { display: inline; } header button { font: inherit; }
  main { padding: 1rem 1.2rem; max-width: 72rem; }
  section { background: #fff; border: 1px solid #e4e7eb; border-radius: 6px; padding: .8rem 1rem; margin-bottom: 1rem; }
  h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 0; }
  table { border-collapse: collapse; width: 100%; font-size: .9rem; }
  th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #e4e7eb; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .tiles { display: flex; flex-wrap: wrap; gap: .8rem; }
  .tile { border: 1px solid #e4e7eb; border-radius: 6px; padding: .5rem .8rem; min-width: 9rem; }
  .tile .value { font-size: 1.6rem; font-weight: bold; }
  .rule { color: #616e7c; font-size: .85rem; }
  .alert { border-left: 4px solid #e03131; padding-left: .6rem; margin: .3rem 0; }
  .ok { color: #2f9e44; } .bad { color: #e03131; }
  svg.chart { width: 100%; height: auto; max-width: 42rem; }
  .error { color: #e03131; }
  label { display: block; margin: .5rem 0 .2rem; }
</style>
{% block head %}{% endblock %}
</head>
<body>
<header>
  <strong>flexfleet</strong>
  {% if who %}{% if who.role.value in ("operator", "admin") %}<a href="/ops">Operations</a>{% endif %}
  <span class="who">{{ who.username }} ({{ who.role.value }})
    <form method="post" action="/logout"><button type="submit">Log out</button></form></span>{% endif %}
</header>
<main>
{% block main %}{% endblock %}
</main>
</body>
</html>
"""

LOGIN = """{% extends "base.html" %}
{% block main %}
<h1>Log in</h1>
<section>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="/login">
  <label for="username">Username</label>
  <input id="username" name="username" autocomplete="username" required value="{{ username }}">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <p><button type="submit">Log in</button></p>
</form>
</section>
{% endblock %}
"""

OPS = """{% extends "base.html" %}
{% block head %}<script src="/static/dashboard.js" defer></script>{% endblock %}
{% block main %}
<h1>Operations</h1>
<nav id="pages"><a href="/ops/forecast">Forecast vs realised</a> · <a href="/ops/bids">Bids and clearing</a> ·
<a href="/ops/alerts/lag/ingest">Ingest consumer lag</a> · <a href="/ops/alerts/dlq/telemetry">Telemetry DLQ</a></nav>
<div id="live" data-refresh="/ops/live" data-every="{{ every }}" aria-live="polite">
{% include "live.html" %}
</div>
{% endblock %}
"""

LIVE = """<p class="rule">As of <time id="as-of" datetime="{{ fleet.at.isoformat() }}">{{ fleet.at | local(tz) }}</time>
({{ day.zone.timezone }}, the local time of the fleet's zone {{ day.zone.value }}); this part refreshes every {{ every }} s.</p>
<section id="alerts">
<h2>Alerts ({{ alerts | length }})</h2>
{% for a in alerts %}<p class="alert"><a href="{{ a.href }}">{{ a.title }}</a> — {{ a.text }}</p>
{% else %}<p class="ok">No alerts.</p>{% endfor %}
<p class="rule">Chargers offline: a car is plugged in at the charger (its latest reading of the last {{ lookback_h }} h
says so, or its charging session is still open) but no reading from any car has named the charger for more than
{{ offline_min }} minutes. Telemetry comes from the cars, so this cannot tell a dead charger from a car that lost its
link. DLQ growth: more telemetry rejects in the last hour than in the hour before. Obligation at risk: the committed
vehicles' P90 kW under the latest forecast that covers the MTU is below the volume in some quarter hour. Ingest
consumer lag: the ingest group ({{ lag.group }}) is more than {{ "{:,}".format(lag.alert_messages) }} messages behind the
broker's newest on {{ lag.topic }}, read from the broker itself; "broker unreachable" when it cannot be read.</p>
</section>
<section id="fleet">
<h2>Fleet now</h2>
<div class="tiles">
  <div class="tile"><div class="value" id="plugged-in">{{ fleet.plugged_in }}</div>plugged in now</div>
  <div class="tile"><div class="value" id="reporting">{{ fleet.reporting }}</div>reporting of {{ fleet.registered }}</div>
  <div class="tile"><div class="value" id="v2g-share">{{ fleet.v2g_share | pct }}</div>V2G-capable of plugged in
    ({{ fleet.v2g_registered }} of {{ fleet.registered }} registered)</div>
  <div class="tile"><div class="value" id="offline">{{ offline | length }}</div>chargers offline</div>
</div>
<p class="rule">Plugged in and reporting: by each vehicle's latest reading within the last {{ window_min }} minutes.</p>
{{ soc_chart }}
</section>
<section id="responses">
<h2>Response to activations today</h2>
<div class="tiles">
  <div class="tile"><div class="value" id="activations">{{ responses.count }}</div>activations assessed</div>
  <div class="tile"><div class="value" id="response-median">{{ responses.median_s | seconds }}</div>median response time</div>
  <div class="tile"><div class="value" id="response-slowest">{{ responses.slowest_s | seconds }}</div>slowest
    {%- if responses.never %} ({{ responses.never }} never reached){% endif %}</div>
  <div class="tile"><div class="value" id="response-passed">{{ responses.passed }} / {{ responses.count }}</div>passed</div>
  <div class="tile"><div class="value" id="ingest-lag">{% if lag.reachable %}{{ "{:,}".format(lag.total) }}{% else %}?{% endif %}</div>
    <a href="/ops/alerts/lag/ingest">ingest lag</a> (messages)</div>
</div>
<p class="rule">Response time: from the activation's start to the fleet's response reaching the required share of what
the frequency asked (FCR-D: 86 % at 7.5 s; FCR-N: 63 % at 60 s), per verified delivery; details on each obligation's page.</p>
</section>
<section id="obligations">
<h2>Today's obligations ({{ day.label }})</h2>
{% if obligations %}
<table>
<thead><tr><th>Obligation</th><th>Product</th><th>Delivery ({{ day.zone.timezone }})</th><th class="num">Volume</th>
<th class="num">Vehicles</th><th class="num">P90 committed</th><th class="num">Delivered</th></tr></thead>
<tbody>
{% for o, c in obligations %}
<tr><td><a href="/ops/alerts/obligation/{{ o.obligation_id }}">{{ o.obligation_id }}</a></td>
<td>{{ o.product_id }} {{ o.direction }}</td><td>{{ o.mtu_start | lhm(tz) }}–{{ o.mtu_end | lhm(tz) }}</td>
<td class="num">{{ "%.2f" | format(o.volume_mw) }} MW</td><td class="num">{{ o.vehicles }}</td>
<td class="num {{ 'bad' if c and c.at_risk else '' }}">{% if c %}{{ "%.0f" | format(c.weakest_kw) }} kW{% else %}unknown{% endif %}</td>
<td class="num">{% if o.delivered_share is none %}not verified{% else %}{{ o.delivered_share | pct }}
({{ o.verified_mtus }} MTU){% endif %}</td></tr>
{% endfor %}
</tbody></table>
<p class="rule">"P90 committed": the kW the committed vehicles hold with 90 % probability in the weakest quarter hour,
from the latest forecast covering the MTU ("unknown": no forecast covers it). "Delivered": the verified
deliveries' delivered share, weighted by required MW and duration.</p>
<p class="rule">Today: {{ day.start | local(tz) }} to {{ day.end | local(tz) }} ({{ "%g" | format(day.hours) }} h), local midnight to midnight.</p>
{% else %}<p>No obligations today ({{ "%g" | format(day.hours) }} h from local midnight).</p>{% endif %}
</section>
"""

OFFLINE = """{% extends "base.html" %}
{% block main %}
<h1>Chargers offline ({{ offline | length }})</h1>
<section>
<p class="rule">A car is plugged in at the charger but no reading has named the charger for more than {{ offline_min }}
minutes. The fleet's latest reading from any car: {{ last_reading | utc if last_reading else "none" }}.</p>
{% if offline %}<table><thead><tr><th>Charger</th><th>Site</th><th>Last reading naming it (UTC)</th><th>Plugged in</th></tr></thead>
<tbody>{% for c in offline %}<tr><td><a href="/ops/alerts/charger/{{ c.charger_id }}">{{ c.charger_id }}</a></td>
<td>{{ c.site_id or "not in the registry" }}</td><td>{{ c.last_seen | utc if c.last_seen else "none" }}</td>
<td>{% for v in c.vehicles %}<a href="/ops/vehicles/{{ v }}">{{ v }}</a>{{ ", " if not loop.last }}{% endfor %}</td></tr>{% endfor %}</tbody></table>
{% else %}<p class="ok">No charger is offline.</p>{% endif %}
</section>
{% endblock %}
"""

CHARGER = """{% extends "base.html" %}
{% block main %}
<h1>Charger {{ charger_id }}</h1>
<section>
{% if alert %}<p class="alert">Offline: last reading naming it {{ alert.last_seen | utc if alert.last_seen else "none in the last %d h" | format(lookback_h) }};
plugged in there: {% for v in alert.vehicles %}<a href="/ops/vehicles/{{ v }}">{{ v }}</a>{{ ", " if not loop.last }}{% endfor %}.</p>
{% else %}<p class="ok">Not offline now.</p>{% endif %}
{% if charger %}<p>Site {{ charger.site_id }} ({{ charger.bidding_zone }}),
{{ "bidirectional" if charger.bidirectional else "charge only" }}, {{ charger.max_charge_kw }} kW charge /
{{ charger.max_discharge_kw }} kW discharge.</p>{% else %}<p>Not in the registry.</p>{% endif %}
</section>
<section>
<h2>Latest readings naming it</h2>
{% if readings %}<table><thead><tr><th>Time (UTC)</th><th>Vehicle</th><th>Plugged in</th><th class="num">kW</th><th class="num">SoC</th></tr></thead>
<tbody>{% for r in readings %}<tr><td>{{ r.ts | utc }}</td><td><a href="/ops/vehicles/{{ r.vehicle_id }}">{{ r.vehicle_id }}</a></td>
<td>{{ "yes" if r.plugged_in else "no" }}</td><td class="num">{{ "%.1f" | format(r.power_kw) }}</td>
<td class="num">{{ "%.0f %%" | format(r.soc_pct) if r.soc_pct is not none else "–" }}</td></tr>{% endfor %}</tbody></table>
{% else %}<p>None in the last {{ lookback_h }} h.</p>{% endif %}
</section>
{% endblock %}
"""

DLQ = """{% extends "base.html" %}
{% block main %}
<h1>Telemetry dead-letter queue</h1>
<section>
<p class="{{ 'alert' if growth.growing else 'ok' }}">{{ growth.last_hour }} rejected in the last hour,
{{ growth.hour_before }} in the hour before.</p>
<h2>Last hour by field and reason</h2>
{% if by_reason %}<table><thead><tr><th>Field</th><th>Code</th><th class="num">Rejects</th></tr></thead><tbody>
{% for r in by_reason %}<tr><td>{{ r.field }}</td><td>{{ r.code }}</td><td class="num">{{ r.count }}</td></tr>{% endfor %}
</tbody></table>{% else %}<p>None.</p>{% endif %}
</section>
<section>
<h2>Latest rejects</h2>
{% if latest %}<table><thead><tr><th>Rejected (UTC)</th><th>Source</th><th>Field</th><th>Reason</th></tr></thead><tbody>
{% for r in latest %}<tr><td>{{ r.rejected_at | utc }}</td><td>{{ r.topic }}/{{ r.partition }}@{{ r.offset }}</td>
<td>{{ r.field }}</td><td>{{ r.reason }}</td></tr>{% endfor %}</tbody></table>{% else %}<p>None.</p>{% endif %}
</section>
{% endblock %}
"""

OBLIGATION = """{% extends "base.html" %}
{% block main %}
<h1>Obligation {{ o.obligation_id }}</h1>
<section>
<p>{{ o.product_id }} {{ o.direction }} in {{ o.zone }}, {{ o.mtu_start | local(tz) }}–{{ o.mtu_end | lhm(tz) }},
{{ "%.2f" | format(o.volume_mw) }} MW, {{ o.vehicles }} vehicles committed.
Delivered: {% if o.delivered_share is none %}not verified yet{% else %}{{ o.delivered_share | pct }}
over {{ o.verified_mtus }} verified MTU{% endif %}.</p>
{% if coverage %}
<p class="{{ 'alert' if coverage.at_risk else 'ok' }}" id="coverage">P90 of the committed vehicles:
{{ "%.1f" | format(coverage.weakest_kw) }} kW in the weakest quarter hour against {{ "%.1f" | format(coverage.required_kw) }} kW
required{{ ": at risk" if coverage.at_risk }}.</p>
<p class="rule">Forecast {{ coverage.forecast_id }} issued {{ coverage.issued_at | utc }}; fleet correlation
rho {{ "%.2f" | format(coverage.rho) }}. A car counts with its forecast probability of being plugged in and at most the kW it
holds for 20 minutes; a car without a forecast row counts for nothing.</p>
<table><thead><tr><th>Quarter hour</th><th class="num">P90 kW</th></tr></thead><tbody>
{% for q, kw in coverage.quarters %}<tr><td>{{ q | lhm(tz) }}</td><td class="num">{{ "%.1f" | format(kw) }}</td></tr>{% endfor %}
</tbody></table>
<h2>Committed vehicles</h2>
<table><thead><tr><th>Vehicle</th><th class="num">Committed kW</th><th class="num">P(plugged in), weakest quarter</th></tr></thead><tbody>
{% for v in coverage.vehicles %}<tr><td><a href="/ops/vehicles/{{ v.vehicle_id }}">{{ v.vehicle_id }}</a></td>
<td class="num">{{ "%.1f" | format(v.kw) }}</td><td class="num">{{ v.p90_weakest_p | pct }}</td></tr>{% endfor %}
</tbody></table>
{% else %}<p>No forecast covers this obligation's MTU: its P90 coverage is unknown.</p>{% endif %}
</section>
<section id="response">
<h2>Response times</h2>
{% if responses.activations %}
<p id="response-summary">{{ responses.count }} activations assessed: median {{ responses.median_s | seconds }}, slowest
{{ responses.slowest_s | seconds }}{% if responses.never %}, {{ responses.never }} never reached the required share{% endif %};
{{ responses.passed }} passed.</p>
<table><thead><tr><th>Activation</th><th>MTU</th><th class="num">Response time</th><th class="num">Required</th><th>Result</th></tr></thead><tbody>
{% for a in responses.activations %}<tr><td>{{ a.start.astimezone(tz).strftime("%H:%M:%S %Z") }}</td><td>{{ a.mtu_start | lhm(tz) }}</td>
<td class="num {{ '' if a.in_time else 'bad' }}">{{ a.response_time_s | seconds if a.response_time_s is not none else "never reached" }}</td>
<td class="num">{{ "%.0f %%" | format(a.required_share * 100) }} by {{ a.required_response_s | seconds }}</td>
<td class="{{ 'ok' if a.passed else 'bad' }}">{{ "passed" if a.passed else "failed" }}</td></tr>{% endfor %}
</tbody></table>
{% else %}<p>No assessed activation in the verified deliveries{% if o.delivered_share is none %} (none verified yet){% endif %}.</p>{% endif %}
<p class="rule">From the verified deliveries (dispatch verify): the time from the activation's start until the fleet's
response (power minus baseline) first reached the required share of what the frequency asked at the checkpoint.
Times in {{ tz.key }}.</p>
</section>
{% endblock %}
"""

VEHICLE = """{% extends "base.html" %}
{% block main %}
<h1>Vehicle {{ v.vehicle_id }}</h1>
<section>
<p>{{ v.make }} {{ v.model }}, {{ "%.0f" | format(v.battery_kwh) }} kWh, {{ "V2G-capable" if v.v2g_capable else "charge only" }};
owner {{ v.owner_id }}; home charger {% if v.home_charger_id %}<a href="/ops/alerts/charger/{{ v.home_charger_id }}">{{ v.home_charger_id }}</a>
({{ v.zone }}){% else %}none{% endif %}.</p>
</section>
<section id="soc">
<h2>State of charge, last {{ days }} days</h2>
{% if soc_chart %}{{ soc_chart }}{% else %}<p>No SoC readings in the last {{ days }} days.</p>{% endif %}
</section>
<section id="promises">
<h2>Promises (this and last month)</h2>
{% if promises %}<table><thead><tr><th>Due (UTC)</th><th>Promise</th><th class="num">Promised</th><th class="num">Reached</th><th>Kept</th></tr></thead><tbody>
{% for p in promises %}<tr><td>{{ p.due | utc }}</td><td>{{ "departure SoC" if p.kind.value == "departure" else "minimum SoC" }}</td>
<td class="num">{{ "%.1f %%" | format(p.promised_soc_pct) }}</td><td class="num">{{ "%.1f %%" | format(p.reached_soc_pct) }}</td>
<td class="{{ 'ok' if p.kept else 'bad' }}">{{ "kept" if p.kept else "broken" }}</td></tr>{% endfor %}</tbody></table>
{% else %}<p>No departure or minimum-SoC promises in stays that ended this or last month.</p>{% endif %}
<p class="rule">Judged as settlement judges them for the owner's statement.</p>
</section>
<section id="sessions">
<h2>Recent charging sessions</h2>
{% if sessions %}<table><thead><tr><th>Plugged in (UTC)</th><th>Out</th><th>Charger</th><th class="num">kWh</th>
<th class="num">SoC</th><th>Departure declared</th><th class="num">Min SoC</th></tr></thead><tbody>
{% for s in sessions %}<tr><td>{{ s.plug_in_at | utc }}</td><td>{{ s.plug_out_at | utc }}{{ " (open)" if not s.complete }}</td>
<td>{{ s.charger_id or "–" }}</td><td class="num">{{ "%.1f" | format(s.energy_kwh) }}</td>
<td class="num">{{ s.soc_start | soc }} → {{ s.soc_end | soc }}</td><td>{{ s.departure_declared_at | utc if s.departure_declared_at else "–" }}</td>
<td class="num">{{ s.min_soc | soc }}</td></tr>{% endfor %}</tbody></table>
{% else %}<p>No charging sessions.</p>{% endif %}
</section>
<section id="earnings">
<h2>Earnings (settled)</h2>
{% if earnings %}{% for key, lines, total in earnings %}
<h3>{{ key[0].strftime("%Y-%m") }} {{ key[1] }} v{{ key[2] }}: {{ total | money(key[3]) }}</h3>
<table><tbody>{% for e in lines %}<tr><td>{{ e.source }}</td><td class="num">{{ e.amount | money(e.currency) }}</td></tr>{% endfor %}</tbody></table>
{% endfor %}{% else %}<p>Nothing settled for this vehicle yet.</p>{% endif %}
</section>
{% endblock %}
"""

ME = """{% extends "base.html" %}
{% block main %}
<h1>My statements</h1>
<section>
{% if statements %}<table><thead><tr><th>Month</th><th>Zone</th><th>Version</th><th>Issued (UTC)</th>
<th class="num">Total</th><th>Files</th></tr></thead><tbody>
{% for s in statements %}<tr><td>{{ s.month }}</td><td>{{ s.zone }}</td><td>v{{ s.version }}{{ " (latest)" if s.latest }}</td>
<td>{{ s.issued_at | utc }}</td><td class="num">{% for t in s.totals %}{{ t.total }} {{ t.currency }}{{ "; " if not loop.last }}{% endfor %}</td>
<td>{% if s.links.html %}<a href="{{ s.links.html }}">page</a>{% endif %}
{% if s.links.pdf %}<a href="{{ s.links.pdf }}">PDF</a>{% endif %}
{% if not s.links.html and not s.links.pdf %}being printed{% endif %}</td></tr>{% endfor %}
</tbody></table>
{% else %}<p>No statements yet: the first comes after your first settled month.</p>{% endif %}
</section>
{% endblock %}
"""

FORBIDDEN = """{% extends "base.html" %}
{% block main %}
<h1>Not for this account</h1>
<section><p>{{ reason }}</p></section>
{% endblock %}
"""

FORECAST = """{% extends "base.html" %}
{% block main %}
<h1>Forecast vs realised, {{ day.label }}</h1>
<p><a href="/ops/forecast?day={{ day.shifted(-1).day.isoformat() }}">previous day</a> ·
<a href="/ops/forecast?day={{ day.shifted(1).day.isoformat() }}">next day</a> · <a href="/ops">operations</a></p>
{% for direction, chart in charts %}<section id="forecast-{{ direction }}">{{ chart }}</section>{% endfor %}
<section id="scores">
<h2>How the realised MTUs fell in the band</h2>
<table><thead><tr><th>Direction</th><th>Day</th><th>Forecast issued</th><th class="num">MTUs realised</th>
<th class="num">Inside P10-P90</th><th class="num">Below P10 (P90 volume missed)</th></tr></thead><tbody>
{% for direction, f, s in scores %}<tr><td>{{ direction }}</td><td>{{ f.day.day.isoformat() }}</td>
<td>{% if f.forecast_id %}{{ f.issued_at | local(tz) }}{% else %}no forecast{% endif %}</td><td class="num">{{ s.mtus }}</td>
<td class="num">{{ s.inside_share | pct }}</td><td class="num">{{ s.below_share | pct }}</td></tr>{% endfor %}
</tbody></table>
<p class="rule">The band: the portfolio quantiles of flexible power (endurance 0) of the forecast each day was planned
on: the latest issued by the day's local midnight, else the first issued during the day. Realised: the forecaster's
own target computed from telemetry: sessions derived from the readings as ingest derives them, each MTU's plugged-in
share times the car-charger pair's kW (up: V2G car on a bidirectional charger, the least of car, charger and site
export; down: the lesser of car and charger charge power), summed over the registered vehicles, for the MTUs that
have ended{% if realised_to %} (up to {{ realised_to | local(tz) }}){% endif %}. Times in {{ day.zone.timezone }}.</p>
</section>
{% endblock %}
"""

BIDS = """{% extends "base.html" %}
{% block main %}
<h1>Bids and clearing, {{ day.label }}</h1>
<p><a href="/ops/bids?day={{ day.shifted(-1).day.isoformat() }}">previous day</a> ·
<a href="/ops/bids?day={{ day.shifted(1).day.isoformat() }}">next day</a> · <a href="/ops">operations</a></p>
{% if not products %}<section id="no-bids"><p>No bids for {{ day.day.isoformat() }} in {{ day.zone.value }}
({{ day.start | local(tz) }} to {{ day.end | local(tz) }}).</p></section>{% endif %}
{% for p, chart in products %}
<section class="product" id="product-{{ loop.index }}">
<h2>{{ p.product_id }} {{ p.direction }}</h2>
<p>Offered {{ "%.2f" | format(p.offered_mwh) }} MW·h of capacity, cleared {{ "%.2f" | format(p.accepted_mwh) }} MW·h{% if p.awaiting %};
{{ p.awaiting }} MTU not cleared yet{% endif %}.</p>
{{ chart }}
<table><thead><tr><th>MTU ({{ day.zone.timezone }})</th><th>Auction</th><th class="num">Offered MW</th><th class="num">Bid price</th>
<th class="num">Cleared MW</th><th class="num">Clearing price</th></tr></thead><tbody>
{% for r in p.rows %}<tr><td>{{ r.mtu_start | lhm(tz) }}–{{ r.mtu_end | lhm(tz) }}</td><td>{{ r.auction }}</td>
<td class="num">{{ "%.1f" | format(r.offered_mw) }}</td><td class="num">{{ "%.2f" | format(r.bid_price) }} EUR/MW/h</td>
<td class="num">{% if r.cleared %}{{ "%.1f" | format(r.accepted_mw) }}{% else %}not cleared yet{% endif %}</td>
<td class="num">{% if r.clearing_price is not none %}{{ "%.2f" | format(r.clearing_price) }} EUR/MW/h{% else %}–{% endif %}</td></tr>
{% endfor %}</tbody></table>
</section>
{% endfor %}
<p class="rule">Per auction the plan the market answered (one with clearing results), else the latest plan. The day is the
zone's local delivery day ({{ "%g" | format(day.hours) }} h).</p>
{% endblock %}
"""

LAG = """{% extends "base.html" %}
{% block main %}
<h1>Ingest consumer lag</h1>
<section>
{% if not lag.reachable %}<p class="alert" id="lag-state">Broker unreachable: {{ lag.error }}.</p>
{% elif lag.lagging %}<p class="alert" id="lag-state">Group {{ lag.group }} is {{ "{:,}".format(lag.total) }} messages behind on
{{ lag.topic }}: above the {{ "{:,}".format(lag.alert_messages) }} alert threshold.</p>
{% else %}<p class="ok" id="lag-state">Group {{ lag.group }} is {{ "{:,}".format(lag.total) }} messages behind on {{ lag.topic }}
(alert above {{ "{:,}".format(lag.alert_messages) }}).</p>{% endif %}
<p class="rule">Read from the broker ({{ lag.bootstrap_servers or "none configured" }}) at {{ lag.checked_at | utc }}:
per partition, the log end offset against the offset the group committed (from the log start where it never committed).
Answers are cached for a few seconds; a broker that does not answer within the time-out is reported unreachable.</p>
{% if lag.partitions %}<table><thead><tr><th class="num">Partition</th><th class="num">Log start</th><th class="num">Log end</th>
<th class="num">Committed</th><th class="num">Lag</th><th>Newest message (UTC)</th></tr></thead><tbody>
{% for p in lag.partitions %}<tr><td class="num">{{ p.partition }}</td><td class="num">{{ p.start }}</td><td class="num">{{ p.end }}</td>
<td class="num">{{ p.committed if p.committed is not none else "never" }}</td><td class="num {{ 'bad' if p.lag else '' }}">{{ p.lag }}</td>
<td>{{ p.newest_at | utc }}</td></tr>{% endfor %}</tbody></table>{% endif %}
</section>
{% endblock %}
"""

# Re-fetches each [data-refresh] element's fragment every data-every seconds. Served from our own
# origin (the pages' Content-Security-Policy allows no inline script).
REFRESH_JS = """"use strict";
(function () {
  for (const el of document.querySelectorAll("[data-refresh]")) {
    const every = Math.max(2, Number(el.dataset.every || 30)) * 1000;
    const tick = async () => {
      try {
        const r = await fetch(el.dataset.refresh, {credentials: "same-origin", cache: "no-store",
                                                   headers: {"Accept": "text/html"}});
        if (r.redirected || r.status === 401 || r.status === 403) { location.reload(); return; }
        if (r.ok) { el.innerHTML = await r.text(); }
      } catch (e) { /* the network blinked: keep the last fragment, try again next time */ }
      setTimeout(tick, every);
    };
    setTimeout(tick, every);
  }
})();
"""

TEMPLATES = {"base.html": BASE, "login.html": LOGIN, "ops.html": OPS, "live.html": LIVE, "charger.html": CHARGER,
             "offline.html": OFFLINE,
             "dlq.html": DLQ, "obligation.html": OBLIGATION, "vehicle.html": VEHICLE, "me.html": ME,
             "forbidden.html": FORBIDDEN, "forecast.html": FORECAST, "bids.html": BIDS, "lag.html": LAG}
