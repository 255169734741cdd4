"""``RUN/eval/index.html``: the whole evaluation on one page a person can read and audit.

- provenance: the checkpoint, its epochs and final loss, the build it was trained on and the build evaluated;
- what to look at first: a checkpoint trained on another build, and collapse (the top-1 results of a pair
  falling on a few gallery items);
- every modality pair and geolocation (each modality and the ensemble), overall, seen and unseen, with
  chance beside each accuracy;
- retrieval examples for each query modality: the query, its true item and the five items retrieved first,
  with their distance from the query's location; hits (within 100 m) and misses are marked.

Images are written next to the page (``img/``, small JPEG thumbnails), so it opens from disk with no network.
"""

from __future__ import annotations

import html
import io
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from unigeo.core.sample import TEXT, decode_aerial, decode_dsm, thumbnail_jpeg, tile_member
from unigeo.model.data import Shard, iter_whole
from unigeo.model.geo import haversine_m
from unigeo.model.metrics import RADIUS_M, location_means

COLLAPSE_SHARE = 0.2  # a pair whose most frequent top-1 item is the top-1 of this share of its queries
COLLAPSE_MIN_QUERIES = 10  # ... over at least this many queries, is flagged as collapsed
THUMB_PX = 112
# The gallery each query modality's examples retrieve from: aerial tiles show best; aerial retrieves street view.
EXAMPLE_GALLERY = {"sv": "aerial", "dsm": "aerial", "text": "aerial", "coords": "aerial", "aerial": "sv"}
NAMES = {"sv": "street view", "aerial": "aerial", "dsm": "DSM", "text": "text", "coords": "coordinates"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 1300px; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 3px 7px; border: 1px solid #ddd; }
td { text-align: right; } th.l, td.l { text-align: left; } .muted { color: #666; font-size: 0.9em; }
.warn { padding: 0.4em 0.7em; margin: 0.3em 0; border-left: 4px solid #e0a100; background: #fff8e1; }
.ok { padding: 0.4em 0.7em; border-left: 4px solid #2a9d3a; background: #eef8ef; }
table.examples td { text-align: center; vertical-align: top; width: 124px; }
table.examples img { width: 112px; height: 112px; display: block; margin: auto; border: 3px solid transparent; }
.hit img, .hit .item { border-color: #2a9d3a; } .miss img, .miss .item { border-color: #d1342f; }
.truth img, .truth .item { border-color: #3366cc; }
.item { font-size: 0.72em; width: 112px; height: 112px; overflow: hidden; border: 3px solid transparent;
        text-align: left; margin: auto; }
.mark { font-weight: bold; } .hit .mark { color: #2a9d3a; } .miss .mark { color: #d1342f; }
"""


def _pct(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.2f}%" if x < 0.01 else f"{100 * x:.1f}%"


def collapse_warnings(metrics: dict[str, Any]) -> list[str]:
    """One line per pair or geolocation whose top-1 results fall on a few gallery items."""
    out = []
    for block, suffix in (("pairs", ""), ("geolocation", "->cells")):
        for name, fig in metrics.get(block, {}).items():
            r = {**fig, **metrics.get("top1", {}).get(block, {}).get(name, {})}
            share, n = r.get("top1_max_share"), r.get("n_queries") or 0
            if share is not None and n >= COLLAPSE_MIN_QUERIES and share >= COLLAPSE_SHARE:
                out.append(f"{name}{suffix}: {share:.0%} of its {n} queries retrieve the same top-1 item "
                           f"({r['top1_distinct']} distinct top-1 items in a gallery of {r['n_gallery']}): the "
                           "embeddings have collapsed onto a few items, and its accuracy says little")
    return out


def provenance_warnings(metrics: dict[str, Any]) -> list[str]:
    trained = ((metrics.get("checkpoint") or {}).get("build") or {}).get("manifest_sha256")
    evaluated = metrics.get("data_manifest_sha256")
    if trained is None:
        return ["the checkpoint does not record the build it was trained on (an older checkpoint): seen and "
                "unseen follow the build evaluated"]
    if evaluated and trained != evaluated:
        return [f"the checkpoint was trained on another build (manifest sha256 {trained[:12]}) than the one "
                f"evaluated ({evaluated[:12]}): seen and unseen follow the build evaluated"]
    return []


def _provenance(metrics: dict[str, Any]) -> str:
    c = metrics.get("checkpoint") or {}
    build = c.get("build") or {}
    loss = c.get("final_loss")
    rows = [
        ("checkpoint", html.escape(str(c.get("path", "")))),
        ("epochs trained", f"{c.get('epoch', '?')}" + (f" of {c['epochs']}" if c.get("epochs") else "")),
        ("final training loss (last epoch's mean)", "-" if loss is None else f"{loss:.4f}"),
        ("modalities", html.escape(", ".join(c.get("modalities", [])))),
        ("coordinate encoder", html.escape(f"{c.get('coords', '?')} (depth {c.get('coords_depth', '?')})")),
        ("trained on (build manifest sha256)", html.escape(str(build.get("manifest_sha256", "not recorded")))),
        ("evaluated on", html.escape(f"{metrics.get('data', '')} (manifest sha256 "
                                     f"{metrics.get('data_manifest_sha256', '?')})")),
        ("test locations", f"{metrics['n_locations']} ({metrics['n_seen']} seen in training, "
                           f"{metrics['n_unseen']} unseen)"),
        ("UniGeo version", html.escape(str(c.get("unigeo_version", "?")))),
    ]
    return "<table id=\"provenance\">" + "".join(f"<tr><th class=\"l\">{k}</th><td class=\"l\">{v}</td></tr>"
                                                for k, v in rows) + "</table>"


def _figure_cell(r: dict[str, Any] | None) -> str:
    if not r or r.get("acc@100m") is None:
        return "<td>-</td>"
    return f"<td>{_pct(r['acc@100m'])} <span class=\"muted\">({_pct(r['chance@100m'])})</span></td>"


def _results_table(metrics: dict[str, Any], block: str, table_id: str, suffix: str) -> str:
    head = ("<tr><th class=\"l\">query -&gt; gallery</th><th>acc@100m all (chance)</th><th>seen (chance)</th>"
            "<th>unseen (chance)</th><th>r@1</th><th>r@5</th><th>median m</th><th>queries</th><th>gallery</th>"
            "<th>distinct top-1</th><th>most frequent top-1</th></tr>")
    rows = []
    sub = metrics.get("subsets", {})
    for name, fig in metrics.get(block, {}).items():
        r = {**fig, **metrics.get("top1", {}).get(block, {}).get(name, {})}
        seen = sub.get("seen", {}).get(block, {}).get(name)
        unseen = sub.get("unseen", {}).get(block, {}).get(name)
        median = "-" if r.get("median_m") is None else f"{r['median_m']:,.0f}"
        share = r.get("top1_max_share")
        rows.append(f"<tr data-name=\"{html.escape(name + suffix)}\"><td class=\"l\">{html.escape(name + suffix)}</td>"
                    f"{_figure_cell(r)}{_figure_cell(seen)}{_figure_cell(unseen)}<td>{_pct(r.get('r@1'))}</td>"
                    f"<td>{_pct(r.get('r@5'))}</td><td>{median}</td><td>{r.get('n_queries', 0)}</td>"
                    f"<td>{r.get('n_gallery', 0)}</td><td>{r.get('top1_distinct') or '-'}</td>"
                    f"<td>{'-' if share is None else f'{share:.1%}'}</td></tr>")
    return f"<table id=\"{table_id}\">{head}{''.join(rows)}</table>"


def _pick(seen: np.ndarray, n: int) -> list[int]:
    """Up to ``n`` row positions, half from seen and half from unseen, evenly spaced."""
    out: list[int] = []
    groups = [np.nonzero(seen)[0], np.nonzero(~seen)[0]]
    for k, g in enumerate(groups):
        want = n // 2 if len(groups[1 - k]) else n
        want = min(len(g), want)
        if want:
            out += [int(g[i]) for i in np.linspace(0, len(g) - 1, want).round().astype(int)]
    return sorted(set(out))


def _dsm_thumb(dsm: np.ndarray) -> tuple[bytes, str]:
    known = np.isfinite(dsm)
    low, high = (float(dsm[known].min()), float(dsm[known].max())) if known.any() else (0.0, 1.0)
    grey = np.where(known, (dsm - low) / max(high - low, 0.01), 0.0)
    rgb = (np.stack([grey] * 3, axis=-1) * 255).round().astype(np.uint8)
    return thumbnail_jpeg(rgb, THUMB_PX), f"{low:.0f}-{high:.0f} m"


class _Items:
    """What the page shows of a location's modality: an image file under ``img/`` or a short text."""

    def __init__(self, out: str) -> None:
        self.dir = os.path.join(out, "img")
        os.makedirs(self.dir, exist_ok=True)
        self.shown: dict[tuple[str, str], str] = {}

    def add(self, key: str, what: str, sample: dict[str, Any]) -> None:
        if what.startswith("sv."):
            if what in sample:
                self._image(key, what, sample[what], crop=True)
        elif what == "aerial":
            member = tile_member(sample, "aerial")
            if member is not None:
                self._image(key, what, thumbnail_jpeg(decode_aerial(sample[member]), THUMB_PX))
        elif what == "dsm":
            member = tile_member(sample, "dsm")
            if member is not None:
                data, caption = _dsm_thumb(decode_dsm(sample[member]))
                self._image(key, what, data, caption=caption)
        elif what == "text" and TEXT in sample:
            text = sample[TEXT].decode("utf-8", errors="replace")
            self.shown[(key, what)] = f'<div class="item">{html.escape(text[:220])}</div>'

    def _image(self, key: str, what: str, data: bytes, crop: bool = False, caption: str = "") -> None:
        if crop:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                data = thumbnail_jpeg(np.asarray(img.convert("RGB")), THUMB_PX)
        name = f"{key}.{what.replace('/', '_')}.jpg"
        with open(os.path.join(self.dir, name), "wb") as f:
            f.write(data)
        tag = f'<img src="img/{html.escape(name)}" alt="{html.escape(what)}">'
        self.shown[(key, what)] = tag + (f"<small>{html.escape(caption)}</small>" if caption else "")

    def html(self, key: str, what: str, lat: float, lon: float) -> str:
        if what == "coords":
            return f'<div class="item">{lat:.5f}, {lon:.5f}</div>'
        return self.shown.get((key, what), "<small>not in the sample</small>")


def _examples(out: str, shards: Sequence[Shard], arrays: dict[str, np.ndarray], sv_members: list[list[str]],
              modalities: Sequence[str], per_modality: int) -> str:
    n = len(arrays["key"])
    plans = []
    for q in modalities:
        g: str | None = EXAMPLE_GALLERY.get(q, "aerial")
        if g not in modalities or g == q:
            g = next((m for m in modalities if m != q), None)
        if g is None or q not in arrays or not len(arrays[q]) or g not in arrays or not len(arrays[g]):
            continue
        q_emb, q_idx = arrays[q], arrays[f"{q}_index"]
        g_emb, g_have = location_means(arrays[g], arrays[f"{g}_index"], n)
        gallery = np.nonzero(g_have)[0]
        rows = []
        crop_of_row = [m for members in sv_members for m in members] if q == "sv" else []
        for r in _pick(arrays["seen"][q_idx], per_modality):
            loc = int(q_idx[r])
            top = gallery[np.argsort(-(g_emb[gallery] @ q_emb[r]), kind="stable")[:5]]
            dist = haversine_m(arrays["lat"][loc], arrays["lon"][loc], arrays["lat"][top], arrays["lon"][top])
            shown = crop_of_row[r] if q == "sv" and r < len(crop_of_row) else q
            rows.append((loc, shown, top, dist))
        plans.append((q, g, rows))
    first_crop = {i: members[0] for i, members in enumerate(sv_members) if members}

    def item_of(loc: int, modality: str) -> str:
        return first_crop.get(loc, "sv.000.jpg") if modality == "sv" else modality

    wanted: dict[str, set[str]] = {}
    for _, g, rows in plans:
        for loc, shown, top, _ in rows:
            wanted.setdefault(str(arrays["key"][loc]), set()).update({shown, item_of(loc, g)})
            for t in top:
                wanted.setdefault(str(arrays["key"][t]), set()).add(item_of(int(t), g))
    items = _Items(out)
    for sample in iter_whole(shards):
        for what in wanted.get(sample["__key__"], ()):
            items.add(sample["__key__"], what, sample)

    def cell(loc: int, what: str, cls: str, label: str) -> str:
        key = str(arrays["key"][loc])
        return (f'<td class="{cls}">{items.html(key, what, float(arrays["lat"][loc]), float(arrays["lon"][loc]))}'
                f"{label}</td>")

    sections = []
    for q, g, rows in plans:
        body = []
        for loc, shown, top, dist in rows:
            key = str(arrays["key"][loc])
            seen = "seen" if arrays["seen"][loc] else "unseen"
            cells = [cell(loc, shown, "", f"<small>{html.escape(key)}<br>{seen}</small>"),
                     cell(loc, item_of(loc, g), "truth", "<small>truth</small>")]
            for t, d in zip(top, dist):
                hit = d <= RADIUS_M
                mark = f'<span class="mark">{"hit" if hit else "miss"}</span> <small>{d:,.0f} m</small>'
                cells.append(cell(int(t), item_of(int(t), g), "hit" if hit else "miss", mark))
            body.append("<tr>" + "".join(cells) + "</tr>")
        sections.append(
            f'<h3 id="examples-{q}">{NAMES.get(q, q)} &rarr; {NAMES.get(g, g)}</h3>'
            f'<table class="examples" data-query="{q}" data-gallery="{g}"><tr><th>query ({NAMES.get(q, q)})</th>'
            f"<th>true {NAMES.get(g, g)}</th>" + "".join(f"<th>top {k}</th>" for k in range(1, 6)) + "</tr>"
            + "\n".join(body) + "</table>")
    return "\n".join(sections)


def write_examples(out: str, shards: Sequence[Shard], arrays: dict[str, np.ndarray], sv_members: list[list[str]],
                   metrics: dict[str, Any], n_examples: int = 12) -> str:
    """Write ``index.html`` (provenance, warnings, every figure, examples) and its images; return its path.
    ``sv_members``: each test location's crop members, in the order of its street-view rows; ``n_examples``:
    examples in all, spread over the query modalities (at least two each)."""
    modalities = [m for m in (metrics.get("checkpoint") or {}).get("modalities", []) if m in arrays]
    per_modality = max(2, math.ceil(n_examples / max(1, len(modalities)))) if n_examples else 0
    warnings = provenance_warnings(metrics) + collapse_warnings(metrics)
    look = ("".join(f'<div class="warn">{html.escape(w)}</div>' for w in warnings) if warnings else
            '<div class="ok">nothing to flag: the checkpoint was trained on this build, and no pair\'s top-1 '
            "results collapse onto a few items</div>")
    geo = metrics.get("geolocation") or {}
    n_cells = next(iter(geo.values()))["n_gallery"] if geo else 0
    parts = [
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>UniGeo evaluation</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Evaluation on the held-out split</h1>",
        '<section id="provenance-section"><h2>Run</h2>' + _provenance(metrics) + "</section>",
        '<section id="look-here"><h2>Look here</h2>' + look + "</section>",
        '<section id="pairs"><h2>Cross-modal retrieval</h2>'
        "<p class=\"muted\">Every ordered pair of modalities: queries are the test locations' embeddings of the first "
        "modality (street view: every crop is its own query), the gallery is every test location that has the second. "
        f"acc@100m: the top-1 item lies within {RADIUS_M:.0f} m of the query's location; chance in brackets is what a "
        "uniformly random pick scores. Seen: a training sample exists for the same cell; unseen: none does, so the "
        "unseen column measures generalisation to new places.</p>"
        + _results_table(metrics, "pairs", "pairs-table", "") + "</section>",
        '<section id="geolocation"><h2>Geolocation</h2>'
        f"<p class=\"muted\">Each modality against the coordinate embeddings of the {n_cells} covered cell centres; "
        "the ensemble averages a location's similarities over its modalities.</p>"
        + (_results_table(metrics, "geolocation", "geolocation-table", "->cells") if geo else
           "<p>no geolocation: the model has no coordinate encoder</p>") + "</section>",
        '<section id="examples"><h2>Retrieval examples</h2>'
        f"<p class=\"muted\">For each query modality, queries spread over seen and unseen locations: the query, its "
        f"true item and the five retrieved first. Green: within {RADIUS_M:.0f} m of the query's location (a hit); red: "
        "a miss; blue: the truth. Distances are from the query's location.</p>"
        + _examples(out, shards, arrays, sv_members, modalities, per_modality) + "</section>",
        "</body></html>\n",
    ]
    path = os.path.join(out, "index.html")
    with open(path, "w") as f:
        f.write("\n".join(parts))
    return path
