"""``unigeo eval`` on the tiny run: embeddings that do not depend on the batch size, every figure of
metrics.json recomputed here from embeddings.npz, and a page that renders in headless Chromium."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from unigeo.cli import cli
from unigeo.model.modalities import names

from ..outputs.test_report import CHROMIUM_FLAGS, chromium

MODALITIES = names()


@pytest.fixture(scope="module")
def evaluated(tiny_run: Path, tiny_build: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    outs = {}
    for bs in (7, 64):
        out = tmp_path_factory.mktemp(f"eval{bs}")
        r = CliRunner().invoke(cli, ["eval", "--data", str(tiny_build), "--checkpoint", str(tiny_run / "model.pt"),
                                     "--out", str(out), "--batch-size", str(bs)])
        assert r.exit_code == 0, r.output
        assert "sv->aerial" in r.output and "ensemble->cells" in r.output and "unseen" in r.output
        outs[bs] = out
    return outs


def test_embeddings_do_not_depend_on_the_batch_size(evaluated: dict[int, Path]) -> None:
    a, b = np.load(evaluated[7] / "embeddings.npz"), np.load(evaluated[64] / "embeddings.npz")
    assert sorted(a.files) == sorted(b.files)
    for m in (*MODALITIES, "coords_gallery"):
        assert a[m].shape == b[m].shape and a[m].shape[0] > 0
        assert np.allclose(a[m], b[m], atol=1e-5), m


def test_embeddings_npz_follows_the_contract(evaluated: dict[int, Path], tiny_build: Path) -> None:
    z = np.load(evaluated[64] / "embeddings.npz")
    n = len(z["key"])
    assert z["lat"].dtype == z["lon"].dtype == np.float64 and z["seen"].dtype == bool
    assert z["seen"].any() and (~z["seen"]).any()
    for m in MODALITIES:
        e, idx = z[m], z[f"{m}_index"]
        assert e.dtype == np.float32 and idx.dtype == np.int64 and len(e) == len(idx)
        assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
        assert idx.min() >= 0 and idx.max() < n
    assert len(z["sv"]) > n  # one row per crop (two crops per panorama in the tiny build)
    assert len(z["coords_gallery"]) == len(z["gallery_lat"]) == len(z["gallery_lon"]) > n


def _hav(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


def _retrieval(queries: list[tuple[np.ndarray, float, float, int]],
               gallery: list[tuple[np.ndarray, float, float, int]]) -> dict:
    """Written out query by query; items are (vector, lat, lon, identity), similarity = dot product."""
    acc, r1, r5, top_d, chance, firsts = [], [], [], [], [], []
    for q, qlat, qlon, qid in queries:
        sims = [float(q @ g) for g, *_ in gallery]
        order = sorted(range(len(gallery)), key=lambda j: (-sims[j], j))
        firsts.append(order[0])
        d = _hav(qlat, qlon, gallery[order[0]][1], gallery[order[0]][2])
        acc.append(d <= 100)
        top_d.append(d)
        r1.append(gallery[order[0]][3] == qid)
        r5.append(any(gallery[j][3] == qid for j in order[:5]))
        chance.append(np.mean([_hav(qlat, qlon, g[1], g[2]) <= 100 for g in gallery]))
    return {"acc@100m": np.mean(acc), "r@1": np.mean(r1), "r@5": np.mean(r5), "median_m": np.median(top_d),
            "n_queries": len(queries), "n_gallery": len(gallery), "chance@100m": np.mean(chance),
            "top1_distinct": len(set(firsts)),
            "top1_max_share": max(firsts.count(j) for j in set(firsts)) / len(firsts)}


def _expected(z: np.lib.npyio.NpzFile, subset: str) -> dict:
    n = len(z["key"])
    keep = {"all": np.ones(n, bool), "seen": z["seen"], "unseen": ~z["seen"]}[subset]
    lat, lon = z["lat"], z["lon"]
    loc_mean = {}
    for m in MODALITIES:
        loc_mean[m] = {}
        for i in sorted(set(z[f"{m}_index"].tolist())):
            v = z[m][z[f"{m}_index"] == i].astype(np.float64).sum(axis=0)
            loc_mean[m][i] = v / np.linalg.norm(v)
    pairs = {}
    for a, b in itertools.permutations(MODALITIES, 2):
        gallery = [(loc_mean[b][i], lat[i], lon[i], i) for i in sorted(loc_mean[b])]
        queries = [(z[a][r], lat[i], lon[i], i) for r, i in enumerate(z[f"{a}_index"]) if keep[i]]
        pairs[f"{a}->{b}"] = _retrieval(queries, gallery)
    g_lat, g_lon, g_emb = z["gallery_lat"], z["gallery_lon"], z["coords_gallery"]
    own = [int(np.argmin([_hav(lat[i], lon[i], a, b) for a, b in zip(g_lat, g_lon)])) for i in range(n)]
    gallery = [(g_emb[j], g_lat[j], g_lon[j], j) for j in range(len(g_lat))]
    geo = {}
    image = [m for m in MODALITIES if m != "coords"]
    for a in image:
        queries = [(z[a][r], lat[i], lon[i], own[i]) for r, i in enumerate(z[f"{a}_index"]) if keep[i]]
        geo[a] = _retrieval(queries, gallery)
    ens = []
    for i in range(n):
        rows = [np.mean([z[m][r] @ g_emb.T for r in np.nonzero(z[f"{m}_index"] == i)[0]], axis=0)
                for m in image if i in loc_mean[m]]
        if keep[i] and rows:
            ens.append((np.mean(rows, axis=0), lat[i], lon[i], own[i]))
    # An ensemble query is already a row of similarities: against one-hot gallery vectors, the dot
    # product reads its entries back.
    one_hot = np.eye(len(g_lat))
    geo["ensemble"] = _retrieval(ens, [(one_hot[j], g_lat[j], g_lon[j], j) for j in range(len(g_lat))])
    return {"pairs": pairs, "geolocation": geo}


def test_every_metric_is_recomputed_from_the_embeddings(evaluated: dict[int, Path]) -> None:
    out = evaluated[64]
    metrics = json.loads((out / "metrics.json").read_text())
    z = np.load(out / "embeddings.npz")
    checked = 0
    for subset in ("all", "seen", "unseen"):
        got = metrics if subset == "all" else metrics["subsets"][subset]
        want = _expected(z, subset)
        for block in ("pairs", "geolocation"):
            assert set(got[block]) == set(want[block])
            for name, fig in want[block].items():
                for k, v in fig.items():
                    if k.startswith("top1_"):  # the spread of the top-1 results sits beside the figures
                        if subset == "all":
                            assert metrics["top1"][block][name][k] == pytest.approx(v, abs=1e-9), (name, k)
                            checked += 1
                        continue
                    assert got[block][name][k] == pytest.approx(v, abs=1e-9), (subset, name, k)
                    checked += 1
                assert set(got[block][name]) == set(fig) - {"top1_distinct", "top1_max_share"}
    assert checked == 3 * (20 + 5) * 7 + (20 + 5) * 2
    assert metrics["n_seen"] + metrics["n_unseen"] == metrics["n_locations"] == len(z["key"])
    for fig in metrics["pairs"].values():
        assert 0 <= fig["acc@100m"] <= 1 and 0 <= fig["chance@100m"] <= 1


def _page_pct(x: float) -> str:
    return f"{100 * x:.2f}%" if x < 0.01 else f"{100 * x:.1f}%"


def test_collapse_is_flagged_on_the_page() -> None:
    """A pair whose queries all retrieve one of two gallery items is flagged; a spread one is not."""
    from unigeo.model.eval_html import collapse_warnings

    spread = {"top1_max_share": 0.05, "top1_distinct": 40, "n_queries": 56, "n_gallery": 56}
    collapsed = {"top1_max_share": 0.71, "top1_distinct": 2, "n_queries": 56, "n_gallery": 56}
    figures = {"pairs": {"sv->aerial": {"n_queries": 56, "n_gallery": 56}, "aerial->sv": {"n_queries": 56,
                                                                                     "n_gallery": 56}},
               "geolocation": {"ensemble": {"n_queries": 56, "n_gallery": 56}}}
    warnings = collapse_warnings({**figures, "top1": {"pairs": {"sv->aerial": collapsed, "aerial->sv": spread},
                                                      "geolocation": {"ensemble": spread}}})
    assert len(warnings) == 1 and warnings[0].startswith("sv->aerial: 71% of its 56 queries")


def test_retrieval_page_renders_in_headless_chromium(evaluated: dict[int, Path], tmp_path: Path) -> None:
    page = evaluated[64] / "index.html"
    html = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    n_img = html.count("<img ")
    assert n_img >= 7 and "hit" in html and "miss" in html and "unseen" in html
    browser = chromium()
    if browser is None:
        pytest.skip("chromium not installed (CI installs it)")
    dom = subprocess.run([browser, *CHROMIUM_FLAGS, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         check=True, capture_output=True, timeout=120, text=True).stdout
    assert 'id="examples"' in dom
    metrics = json.loads((evaluated[64] / "metrics.json").read_text())
    # The whole evaluation: every pair and geolocation with its figures as metrics.json holds them, chance beside.
    for block, table, suffix in (("pairs", "pairs-table", ""), ("geolocation", "geolocation-table", "->cells")):
        section = dom.split(f'id="{table}"')[1].split("</table>")[0]
        for name, r in metrics[block].items():
            row = section.split(f'data-name="{name}{suffix}"'.replace(">", "&gt;"))[1].split("</tr>")[0]
            assert f"({_page_pct(r['chance@100m'])})" in row and _page_pct(r["acc@100m"]) in row, (name, row)
    assert metrics["checkpoint"]["final_loss"] is not None
    provenance = dom.split('id="provenance"')[1].split("</table>")[0]
    assert metrics["data_manifest_sha256"] in provenance and f"{metrics['checkpoint']['final_loss']:.4f}" in provenance
    # Examples for every query modality, each with its five retrieved items.
    for m in metrics["checkpoint"]["modalities"]:
        table = dom.split(f'data-query="{m}"')[1].split("</table>")[0]
        assert table.count("<tr>") >= 3 and table.count('class="hit"') + table.count('class="miss"') >= 10
    assert 'id="look-here"' in dom
    shot = tmp_path / "eval.png"
    subprocess.run([browser, *CHROMIUM_FLAGS, "--window-size=1100,1400", f"--screenshot={shot}",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(shot) as img:
        colours = img.convert("RGB").resize((55, 70)).getcolors(maxcolors=100_000)
    assert colours is not None and len(colours) > 50  # tiles drawn, not a blank page


def test_a_split_embedded_in_small_chunks_gives_the_same_embeddings(
        evaluated: dict[int, Path], tiny_run: Path, tiny_build: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The split is decoded and embedded a chunk of locations at a time and spooled to files: chunks of 2
    locations give the arrays one chunk gives, and no spool file is left."""
    from unigeo.model import evaluate

    monkeypatch.setattr(evaluate, "CHUNK_LOCATIONS", 2)
    evaluate.evaluate(str(tiny_build), str(tiny_run / "model.pt"), str(tmp_path), batch_size=64)
    a, b = np.load(tmp_path / "embeddings.npz"), np.load(evaluated[64] / "embeddings.npz")
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        if a[name].dtype.kind == "f":
            assert np.allclose(a[name], b[name], atol=1e-6), name
        else:
            assert np.array_equal(a[name], b[name]), name
    assert json.loads((tmp_path / "metrics.json").read_text())["pairs"] == json.loads(
        (evaluated[64] / "metrics.json").read_text())["pairs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings.npz", "img", "index.html", "metrics.json"]
