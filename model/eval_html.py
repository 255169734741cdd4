"""``RUN/eval/index.html``: street view -> aerial retrieval examples a person can look at.

Each row: the query crop, the true aerial tile of its location, and the five aerial tiles retrieved
first, with their distance from the query's location; hits (within 100 m) and misses are marked.
Queries are spread evenly over seen and unseen test locations. Images are copied next to the page
(``img/``), so it opens from disk with no network.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from unigeo.core.sample import AERIAL, tile_member
from unigeo.model.data import Shard, iter_whole
from unigeo.model.geo import haversine_m
from unigeo.model.metrics import RADIUS_M, location_means

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>UniGeo retrieval examples</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 4px 6px; text-align: center; vertical-align: top; }}
img {{ width: 128px; height: 128px; display: block; border: 3px solid transparent; }}
.hit img {{ border-color: #2a9d3a; }} .miss img {{ border-color: #d1342f; }}
.truth img {{ border-color: #3366cc; }} small {{ color: #555; }} .mark {{ font-weight: bold; }}
.hit .mark {{ color: #2a9d3a; }} .miss .mark {{ color: #d1342f; }}
</style></head><body>
<h1>Street view &rarr; aerial retrieval on the held-out split</h1>
<p>{summary}</p>
<p>Green: retrieved tile within {radius:.0f} m of the query's location (a hit); red: a miss; blue: the
query's true tile. Distances are from the query's location to each retrieved tile's location.</p>
<table id="examples">
<tr><th>query crop</th><th>true aerial</th><th>top 1</th><th>top 2</th><th>top 3</th><th>top 4</th><th>top 5</th></tr>
{rows}
</table></body></html>
"""


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


def write_examples(out: str, shards: Sequence[Shard], arrays: dict[str, np.ndarray], sv_members: list[list[str]],
                   metrics: dict[str, Any], n_examples: int = 12) -> str | None:
    """Write ``index.html`` and its images; None when the model has no street view or aerial.
    ``sv_members``: each test location's crop members, in the order of its street-view rows."""
    if "sv" not in arrays or "aerial" not in arrays or not len(arrays["sv"]) or not len(arrays["aerial"]):
        return None
    n = len(arrays["key"])
    sv, sv_idx = arrays["sv"], arrays["sv_index"]
    g_emb, g_have = location_means(arrays["aerial"], arrays["aerial_index"], n)
    gallery = np.nonzero(g_have)[0]
    rows = _pick(arrays["seen"][sv_idx], n_examples)
    crop_of_row = [(i, m) for i, members in enumerate(sv_members) for m in members]
    wanted: dict[str, set[str]] = {}
    plan = []
    for r in rows:
        loc = int(sv_idx[r])
        top = gallery[np.argsort(-(g_emb[gallery] @ sv[r]), kind="stable")[:5]]
        dist = haversine_m(arrays["lat"][loc], arrays["lon"][loc], arrays["lat"][top], arrays["lon"][top])
        member = crop_of_row[r][1]
        plan.append((loc, member, top, dist))
        wanted.setdefault(str(arrays["key"][loc]), set()).update({member, AERIAL})
        for t in top:
            wanted.setdefault(str(arrays["key"][t]), set()).add(AERIAL)
    img_dir = os.path.join(out, "img")
    os.makedirs(img_dir, exist_ok=True)
    files: dict[tuple[str, str], str] = {}
    for sample in iter_whole(shards):
        key = sample["__key__"]
        for member in wanted.get(key, ()):
            stored = tile_member(sample, "aerial") if member == AERIAL else member  # either tile encoding
            if stored is not None and stored in sample:
                name = f"{key}.{stored}"
                with open(os.path.join(img_dir, name), "wb") as fb:
                    fb.write(sample[stored])
                files[(key, member)] = f"img/{name}"

    def img(key: str, member: str, alt: str) -> str:
        src = files.get((key, member))
        return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">' if src else "<small>missing</small>"

    body = []
    for loc, member, top, dist in plan:
        key = str(arrays["key"][loc])
        seen = "seen" if arrays["seen"][loc] else "unseen"
        cells = [f'<td>{img(key, member, "query crop")}<small>{html.escape(key)}<br>{seen}</small></td>',
                 f'<td class="truth">{img(key, AERIAL, "true aerial")}<small>truth</small></td>']
        for t, d in zip(top, dist):
            tk = str(arrays["key"][t])
            hit = d <= RADIUS_M
            cells.append(f'<td class="{"hit" if hit else "miss"}">{img(tk, AERIAL, "retrieved aerial")}'
                         f'<span class="mark">{"hit" if hit else "miss"}</span> <small>{d:,.0f} m</small></td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    pair = metrics["pairs"].get("sv->aerial", {})
    acc, chance = pair.get("acc@100m"), pair.get("chance@100m")
    summary = (f"{n} test locations ({metrics['n_seen']} seen in training, {metrics['n_unseen']} unseen); "
               f"gallery: {len(gallery)} aerial tiles. sv&rarr;aerial accuracy@100m: "
               + (f"{100 * acc:.2f}% (chance {100 * chance:.2f}%)" if acc is not None else "n/a"))
    page = PAGE.format(summary=summary, radius=RADIUS_M, rows="\n".join(body))
    path = os.path.join(out, "index.html")
    with open(path, "w") as f:
        f.write(page)
    return path
