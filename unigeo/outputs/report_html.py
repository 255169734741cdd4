"""The report page: one self-contained HTML file (inline CSS, figures as data URIs, no network)."""

from __future__ import annotations

from typing import Any

import jinja2

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>UniGeo build report</title>
<style>
 body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
 h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
 table { border-collapse: collapse; margin: 0.6em 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
 th { background: #f3f3f3; } td.l, th.l { text-align: left; } .ok { color: #2a7; } .bad { color: #c33; }
 .warn { border-left: 5px solid #d90; background: #fff6e0; padding: 4px 10px; margin: 4px 0; }
 .warn.error { border-color: #c33; background: #fde8e8; } .warn.note { border-color: #59c; background: #eef5fc; }
 .figs img { max-width: 100%; margin: 0.4em 0; display: block; } .muted { color: #777; font-size: 0.9em; }
 .sample { border-top: 1px solid #eee; padding: 0.5em 0; } .sample .row img { height: 160px; margin: 2px; }
 .sample .text { font-size: 0.9em; max-width: 900px; }
</style>
</head>
<body>
<h1>UniGeo build report</h1>
<p class="muted">UniGeo {{ r.build.unigeo_version }}, build {{ r.build.created }}, report {{ r.generated }};
 level {{ r.build.options.level }}, max {{ r.build.options.max_panos }} panoramas per cell, holdout
 {{ r.build.options.holdout_year }}, years {{ r.build.options.years }}, seed {{ r.build.seed }}.</p>

<section id="warnings"><h2>Look here</h2>
{% for w in r.warnings %}<div class="warn {{ w.level }}"><b>{{ w.level }}</b>: {{ w.message }}</div>
{% else %}<p class="ok">nothing to flag</p>{% endfor %}
</section>

<section id="summary"><h2>Summary</h2>
<table>
<tr><th class="l">input panoramas</th><td>{{ h.inputs }}</td></tr>
<tr><th class="l">kept</th><td>{{ h.kept }}</td></tr>
<tr><th class="l">not selected</th><td>{{ h.not_selected }}</td></tr>
<tr><th class="l">rejected</th><td>{{ h.rejected }}</td></tr>
<tr><th class="l">ledger balances (inputs = kept + not selected + rejected)</th>
 <td class="{{ 'ok' if h.ledger_balances else 'bad' }}">{{ 'yes' if h.ledger_balances else 'NO' }}</td></tr>
<tr><th class="l">samples (train / test)</th><td>{{ h.samples_train }} / {{ h.samples_test }}</td></tr>
<tr><th class="l">cells covered / shards</th><td>{{ h.cells }} / {{ h.shards }}</td></tr>
</table>
<table><tr><th class="l">metro</th><th>cells</th><th>cells with samples</th><th>coverage</th><th>inputs</th>
<th>kept</th><th>not selected</th><th>rejected</th><th>train samples</th><th>test samples</th></tr>
{% for m in r.metros %}<tr><td class="l">{{ m.name }}</td><td>{{ m.cells }}</td><td>{{ m.cells_with_samples }}</td>
<td>{{ '%.1f%%' % (100 * m.coverage) }}</td><td>{{ m.inputs }}</td><td>{{ m.kept }}</td><td>{{ m.not_selected }}</td>
<td>{{ m.rejected }}</td><td>{{ m.samples.train if m.samples else 0 }}</td><td>{{ m.samples.test if m.samples else 0 }}</td></tr>
{% endfor %}</table>
</section>

<section id="splits"><h2>Splits</h2>
<table><tr><th class="l">split</th><th>samples</th><th>panoramas</th></tr>
{% for name, s in r.splits.items() %}<tr><td class="l">{{ name }}</td><td>{{ s.samples }}</td><td>{{ s.panoramas }}</td></tr>{% endfor %}
</table>
</section>

<section id="gallery"><h2>Gallery</h2>
<p class="muted">{{ r.gallery | length }} samples drawn at random (seeded by the build's seed) from one random
 shard per split: every crop shown up to four, the aerial tile, the DSM shaded with its colour bar in metres (grey:
 unknown height) and the text.</p>
{% for g in r.gallery %}<div class="sample"><div class="muted"><b>{{ g.split }}</b> <code>{{ g.key }}</code>
 ({{ '%.5f' % g.lat }}, {{ '%.5f' % g.lon }}), {{ g.panoramas }} panoramas{% if g.dates %}, {{ g.dates.first }} to
 {{ g.dates.last }}{% endif %}; {{ g.shard }}</div>
<div class="row">{% for c in g.crops %}<img alt="crop" src="data:image/jpeg;base64,{{ figs[c] }}">{% endfor %}
{% if g.aerial %}<img alt="aerial" src="data:image/jpeg;base64,{{ figs[g.aerial] }}">{% else %}<span class="muted">no aerial</span>{% endif %}
{% if g.dsm %}<img alt="dsm" src="data:image/{{ 'png' if g.dsm.endswith('.png') else 'jpeg' }};base64,{{ figs[g.dsm] }}">{% else %}<span class="muted">no DSM</span>{% endif %}</div>
<p class="text">{{ g.text }}</p></div>
{% else %}<p class="muted">no sample to show</p>{% endfor %}
</section>

<section id="maps" class="figs"><h2>Maps</h2>
{% for m in r.metros %}
<img alt="{{ m.name }} cells by split" src="data:image/png;base64,{{ figs['map_split_' ~ m.name ~ '.png'] }}">
<img alt="{{ m.name }} panoramas per cell" src="data:image/png;base64,{{ figs['map_panoramas_' ~ m.name ~ '.png'] }}">
{% endfor %}
</section>

<section id="distributions" class="figs"><h2>Distributions</h2>
<img alt="panoramas per cell" src="data:image/png;base64,{{ figs['hist_panoramas_per_cell.png'] }}">
<img alt="capture years" src="data:image/png;base64,{{ figs['hist_capture_years.png'] }}">
{% if 'hist_years_by_split.png' in figs %}<img alt="capture years by split" src="data:image/png;base64,{{ figs['hist_years_by_split.png'] }}">{% endif %}
<table><tr><th class="l">year</th>{% for y in r.capture_years %}<th>{{ y }}</th>{% endfor %}</tr>
<tr><td class="l">panoramas</td>{% for y, n in r.capture_years.items() %}<td>{{ n }}</td>{% endfor %}</tr></table>
</section>

<section id="rejects"><h2>Rejects</h2>
<table><tr><th class="l">kind</th><th class="l">reason</th><th>count</th><th class="l">examples</th></tr>
{% for g in r.rejects %}<tr><td class="l">{{ g.kind }}</td><td class="l">{{ g.reason }}</td><td>{{ g.count }}</td>
<td class="l">{% for e in g.examples %}<div><code>{{ e.id }}</code>: {{ e.detail }}</div>{% endfor %}</td></tr>
{% else %}<tr><td class="l" colspan="4">nothing rejected</td></tr>{% endfor %}
</table>
</section>

<section id="completeness"><h2>Modality completeness</h2>
<p>{{ r.completeness.samples }} samples. {{ r.completeness.note or '' }}</p>
<table><tr><th class="l">member</th><th>samples without it</th><th class="l">why</th></tr>
{% for name, m in r.completeness.members.items() %}<tr><td class="l">{{ name }}</td><td>{{ m.missing }}</td>
<td class="l">{% for reason, n in m.reasons.items() %}{{ reason }}: {{ n }} {% endfor %}</td></tr>{% endfor %}
</table>
</section>

<section id="overlap"><h2>Train / test spatial overlap</h2>
<table>
<tr><th class="l">train cells / test cells</th><td>{{ r.overlap.train_cells }} / {{ r.overlap.test_cells }}</td></tr>
<tr><th class="l">cells in both splits</th><td>{{ r.overlap.cells_in_both }} ({{ '%.1f%%' % (100 * r.overlap.share_of_test_cells_in_both) }} of test cells)</td></tr>
{% if r.overlap.test_to_nearest_train_m %}{% set d = r.overlap.test_to_nearest_train_m %}
<tr><th class="l">test cell to nearest train cell (m): min / median / p90 / max</th>
<td>{{ d.min }} / {{ d.median }} / {{ d.p90 }} / {{ d.max }}</td></tr>{% endif %}
</table>
{% if 'hist_test_to_train_m.png' in figs %}<div class="figs"><img alt="test to train distance" src="data:image/png;base64,{{ figs['hist_test_to_train_m.png'] }}"></div>{% endif %}
</section>

{% if r.leakage %}{% set lk = r.leakage %}
<section id="leakage"><h2>Split leakage</h2>
<p class="muted">What the test split shares with the train split. A test sample in a cell that also has a train
 sample is compared with it member by member: identical bytes (the same raster epoch, the same points of interest)
 can be matched without learning the place. Unseen test cells have no train sample; their distance to the nearest
 train cell says whether they are new places or neighbours of trained ones.</p>
<table id="leakage-members"><tr><th class="l">member</th><th>test samples compared</th><th>identical to the cell's train sample</th><th>share</th></tr>
{% for kind, m in lk.members.items() %}<tr><td class="l">{{ kind }}</td>{% if m %}<td>{{ m.compared }}</td><td>{{ m.identical }}</td>
<td>{{ '%.1f%%' % (100 * m.share) }}</td>{% else %}<td colspan="3">not recorded by this build</td>{% endif %}</tr>{% endfor %}
</table>
<table id="leakage-unseen">
<tr><th class="l">unseen test cells (no train sample in the cell)</th><td>{{ lk.unseen.unseen_test_cells }}</td></tr>
{% if lk.unseen.to_nearest_train_m %}{% set u = lk.unseen.to_nearest_train_m %}
<tr><th class="l">unseen test cell to nearest train cell (m): min / median / max</th><td>{{ u.min }} / {{ u.median }} / {{ u.max }}</td></tr>{% endif %}
<tr><th class="l">spatially held out ({{ '%.0f' % lk.unseen.held_out_m }} m or more from every train cell)</th><td>{{ lk.unseen.spatially_held_out_cells }}</td></tr>
</table>
<table id="years-by-split"><tr><th class="l">year</th>{% for y in r.capture_years %}<th>{{ y }}</th>{% endfor %}</tr>
{% for g, years in r.capture_years_by_split.items() %}<tr><td class="l">{{ g }}</td>{% for y in r.capture_years %}<td>{{ years.get(y, 0) }}</td>{% endfor %}</tr>{% endfor %}
</table>
</section>
{% endif %}

<section id="shards"><h2>Shards</h2>
<table><tr><th class="l">shard</th><th class="l">split</th><th>samples</th><th>MB</th><th class="l">sha256</th></tr>
{% for s in r.shards %}<tr><td class="l">{{ s.shard }}</td><td class="l">{{ s.split }}</td><td>{{ s.samples }}</td>
<td>{{ '%.1f' % (s.bytes / 1e6) }}</td><td class="l"><code>{{ s.sha256 }}</code></td></tr>
{% else %}<tr><td class="l" colspan="5">no shard</td></tr>{% endfor %}
</table>
</section>

<section id="alignment"><h2>Alignment QA</h2>
<table>
<tr><th class="l">tile CRS</th><td class="l">{% for crs, n in r.alignment.tile_crs.items() %}{{ crs }} ({{ n }}) {% endfor %}</td></tr>
<tr><th class="l">tile gsd (m)</th><td class="l">{{ r.alignment.tile_gsd_m | join(', ') }}</td></tr>
{% for kind in ['aerial', 'dsm'] %}{% set s = r.alignment[kind ~ '_nodata_share'] %}
<tr><th class="l">{{ kind }} nodata share: mean / max</th><td class="l">{% if s %}{{ s.mean }} / {{ s.max }}{% else %}no tiles{% endif %}</td></tr>
<tr><th class="l">{{ kind }} epochs by split</th><td class="l">{% for split, years in r.alignment[kind ~ '_years_by_split'].items() %}{{ split }}: {% for y, n in years.items() %}{{ y }} ({{ n }}) {% endfor %}{% endfor %}</td></tr>
{% endfor %}
</table>
</section>
<script>
 window.addEventListener("load", function () {
   var imgs = document.images, ok = 0;
   for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
   document.body.setAttribute("data-images", imgs.length);
   document.body.setAttribute("data-images-loaded", ok);
 });
</script>
</body>
</html>
"""


def render_html(report: dict[str, Any], figures_b64: dict[str, str]) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(r=report, h=report["headline"], figs=figures_b64)
