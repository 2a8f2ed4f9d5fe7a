"""The statement page (jinja2). Kept in a module, not a data file, so it ships with the package."""

PAGE = """<!DOCTYPE html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<title>{{ title }} {{ month }} · {{ owner }}</title>
<style>
@page { size: A4; margin: 14mm 13mm 14mm 13mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", Verdana, sans-serif; color: #1f2933; font-size: 10pt; line-height: 1.4;
       margin: 0 auto; max-width: 190mm; padding: 0; }
header { display: flex; justify-content: space-between; align-items: baseline; border-bottom: 2px solid #2f9e44;
         padding-bottom: 4px; margin-bottom: 10px; }
header .brand { font-weight: bold; color: #2f9e44; font-size: 11pt; }
header .meta { color: #616e7c; font-size: 9pt; text-align: right; }
h1 { font-size: 12pt; margin: 0 0 2px 0; font-weight: normal; color: #616e7c; }
h2 { font-size: 12pt; margin: 18px 0 6px 0; border-bottom: 1px solid #e4e7eb; padding-bottom: 2px; }
.total { background: #ebfbee; border-radius: 6px; padding: 10px 14px; margin-bottom: 10px; }
.total .amount { font-size: 24pt; font-weight: bold; color: #2b8a3e; white-space: nowrap; margin-right: 18px; }
.total p { margin: 4px 0 0 0; color: #616e7c; font-size: 9pt; }
.facts { display: flex; gap: 8px; margin: 0 0 6px 0; }
.fact { flex: 1; border: 1px solid #e4e7eb; border-radius: 6px; padding: 6px 8px; }
.fact b { display: block; font-size: 13pt; white-space: nowrap; }
.fact span { color: #616e7c; font-size: 8.5pt; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-size: 8.5pt; color: #616e7c; font-weight: normal; border-bottom: 1px solid #cbd2d9;
     padding: 3px 4px; }
td { padding: 3px 4px; border-bottom: 1px solid #f0f2f4; vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.car { white-space: nowrap; }
tr.sum td { font-weight: bold; border-top: 1px solid #cbd2d9; border-bottom: none; }
.sources td.explain { color: #616e7c; font-size: 8.5pt; }
.sources td.name { font-weight: bold; white-space: nowrap; }
.lines { font-size: 8.5pt; }
.lines tr { page-break-inside: avoid; }
td.note { color: #616e7c; font-style: italic; border-bottom: 1px solid #f0f2f4; padding-top: 0; }
.neg { color: #c92a2a; }
.broken { color: #c92a2a; font-weight: bold; }
.kept { color: #2b8a3e; }
.muted { color: #616e7c; font-size: 8.5pt; margin: 2px 0 6px 0; }
.chart { display: block; width: 100%; height: auto; margin: 4px 0 6px 0; page-break-inside: avoid; }
.adjust { border: 1px solid #f08c00; border-radius: 6px; padding: 6px 10px; margin: 8px 0; }
section { page-break-inside: auto; }
footer { margin-top: 16px; color: #616e7c; font-size: 8pt; border-top: 1px solid #e4e7eb; padding-top: 4px; }
</style>
</head>
<body>
<header>
  <div><div class="brand">flexfleet</div><h1>{{ title }}</h1></div>
  <div class="meta">{{ owner_line }}<br>{{ month }} · {{ version_text }}</div>
</header>

<div class="total">
  <div>{{ total_heading }}</div>
  {% for t in totals %}<span class="amount{% if t.negative %} neg{% endif %}">{{ t.text }}</span>{% endfor %}
  <p>{{ total_note }}</p>
</div>
{% if adjustment %}
<div class="adjust">
  <b>{{ adjustment.heading }}</b>
  <p class="muted">{{ adjustment.note }}</p>
  <table>
    <tr><th>{{ adjustment.previous_label }}</th><th>{{ adjustment.now_label }}</th><th class="num">{{ adjustment.difference_label }}</th></tr>
    {% for r in adjustment.rows %}<tr><td>{{ r.previous }}</td><td>{{ r.now }}</td><td class="num"><b>{{ r.difference }}</b></td></tr>{% endfor %}
  </table>
</div>
{% endif %}

<div class="facts">
  {% for f in facts %}<div class="fact"><b>{{ f.value }}</b><span>{{ f.label }}</span></div>{% endfor %}
</div>

<h2>{{ by_source }}</h2>
<table class="sources">
  {% for s in sources %}<tr><td class="name">{{ s.name }}</td><td class="explain">{{ s.explain }}</td><td class="num{% if s.negative %} neg{% endif %}">{{ s.amount }}</td></tr>
  {% endfor %}{% for t in totals %}<tr class="sum"><td>{{ total_label }}</td><td></td><td class="num">{{ t.text }}</td></tr>{% endfor %}
</table>

<h2>{{ charts_heading }}</h2>
{% for c in charts %}{{ c }}{% endfor %}

<h2>{{ wear_heading }}</h2>
{% for w in wear %}<p>{{ w }}</p>{% else %}<p class="muted">{{ wear_none }}</p>{% endfor %}

<h2>{{ promises_heading }}</h2>
<p class="muted">{{ promises_note }}</p>
{% if promises %}
<table class="promises">
  <tr><th>{{ col.due }}</th><th>{{ col.vehicle }}</th><th>{{ col.promise }}</th><th class="num">{{ col.promised }}</th><th class="num">{{ col.reached }}</th><th>{{ col.outcome }}</th></tr>
  {% for p in promises %}<tr><td>{{ p.due }}</td><td class="car">{{ p.vehicle }}</td><td>{{ p.kind }}</td><td class="num">{{ p.promised }}</td><td class="num">{{ p.reached }}</td><td class="{{ 'kept' if p.kept else 'broken' }}">{{ p.outcome }}</td></tr>
  {% endfor %}
</table>
{% else %}<p>{{ promises_none }}</p>{% endif %}

<h2>{{ details }}</h2>
<p class="muted">{{ details_note }}</p>
<table class="lines">
  <tr><th>{{ col.source }}</th><th>{{ col.vehicle }}</th><th>{{ col.what }}</th><th class="num">{{ col.quantity }}</th><th class="num">{{ col.rate }}</th><th class="num">{{ col.amount }}</th></tr>
  {% for x in lines %}<tr class="line" data-source="{{ x.source }}"><td>{{ x.name }}</td><td class="car">{{ x.vehicle }}</td><td>{{ x.what }}</td><td class="num">{{ x.quantity }}</td><td class="num">{{ x.rate }}</td><td class="num{% if x.negative %} neg{% endif %}">{{ x.amount }}</td></tr>
  {% if x.note %}<tr><td></td><td colspan="5" class="note">{{ x.note }}</td></tr>{% endif %}
  {% endfor %}{% for t in totals %}<tr class="sum"><td colspan="5">{{ total_label }}</td><td class="num">{{ t.text }}</td></tr>{% endfor %}
</table>

<footer>{{ footer }}</footer>
</body>
</html>
"""
