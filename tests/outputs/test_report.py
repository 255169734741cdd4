"""The report: numbers that agree with the manifest, and a page that renders offline in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from unigeo.cli import cli

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  # Any host name resolves to nothing: the page must not need the network.
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"]


@pytest.fixture
def built(tiny_build: Path) -> Path:
    return tiny_build


def test_report_agrees_with_manifest_and_ledger(built: Path) -> None:
    report = json.loads((built / "report" / "report.json").read_text())
    manifest = json.loads((built / "manifest.json").read_text())
    c = manifest["counts"]["overall"]
    h = report["headline"]
    assert (h["inputs"], h["kept"], h["rejected"]) == (c["inputs"], c["kept"], c["rejected"])
    assert h["ledger_balances"] is True
    assert report["splits"]["train"]["samples"] == c["samples"]["train"]
    assert sum(report["capture_years"].values()) <= c["inputs"] and "2023" in report["capture_years"]
    by_reason = {(g["kind"], g["reason"]): g for g in report["rejects"]}
    assert by_reason[("panorama", "outside_metros")]["count"] == c["rejected_by_reason"]["outside_metros"]
    assert all(1 <= len(g["examples"]) <= 3 for g in report["rejects"])
    assert report["overlap"]["cells_in_both"] <= report["overlap"]["test_cells"]
    assert report["alignment"]["tile_crs"] and report["alignment"]["tile_gsd_m"] == [0.6]
    for name in report["figures"]:
        with Image.open(built / "report" / name) as img:
            assert img.format == "PNG" and img.width > 300


def test_report_lists_every_shard_and_flags_what_a_reviewer_must_see(built: Path) -> None:
    report = json.loads((built / "report" / "report.json").read_text())
    manifest = json.loads((built / "manifest.json").read_text())
    assert [(s["shard"], s["samples"], s["sha256"]) for s in report["shards"]] == [
        (s["shard"], s["samples"], s["sha256"][:12]) for s in manifest["shards"]]
    c = manifest["counts"]["overall"]
    messages = {w["level"]: [] for w in report["warnings"]}
    for w in report["warnings"]:
        messages[w["level"]].append(w["message"])
    assert c["rejected"] / c["inputs"] > 0.1  # the tiny world's faults
    assert any(f"{c['rejected']} of {c['inputs']}" in m for m in messages["warning"])
    unassigned = manifest["counts"]["unassigned"]["rejected"]
    assert unassigned > 0 and any(f"{unassigned} panoramas were rejected before a metro" in m for m in messages["note"])
    assert "error" not in messages
    html = (built / "report" / "index.html").read_text()
    assert all(s["sha256"][:12] in html for s in manifest["shards"]) and 'class="warn warning"' in html


def test_report_command_rebuilds_the_folder(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(built, out)
    shutil.rmtree(out / "report")
    r = CliRunner().invoke(cli, ["report", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "report" / "index.html").exists() and '"ledger_balances": true' in r.output
    assert CliRunner().invoke(cli, ["report", str(tmp_path / "nothing")]).exit_code == 1


def test_page_is_self_contained(built: Path) -> None:
    html = (built / "report" / "index.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "default-src 'none'" in html  # the page's own policy forbids any fetch but data: images


def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/run installs Debian's package")
    return found


def test_page_renders_in_headless_chromium(built: Path, tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip("chromium not installed (CI installs it)")
    url = (built / "report" / "index.html").as_uri()
    shot = tmp_path / "page.png"
    subprocess.run([browser, *CHROMIUM_FLAGS, "--window-size=1200,2400", f"--screenshot={shot}", url],
                   check=True, capture_output=True, timeout=120)
    with Image.open(shot) as img:
        assert img.size == (1200, 2400)
        colours = img.convert("RGB").resize((60, 120)).getcolors(maxcolors=100_000)
    assert colours is not None and len(colours) > 50  # figures and tables, not a blank page
    dom = subprocess.run([browser, *CHROMIUM_FLAGS, "--virtual-time-budget=5000", "--dump-dom", url],
                         check=True, capture_output=True, timeout=120, text=True).stdout
    for heading in ("Summary", "Splits", "Gallery", "Maps", "Distributions", "Rejects", "Modality completeness",
                    "Train / test spatial overlap", "Split leakage", "Alignment QA"):
        assert f">{heading}</h2>" in dom
    report = json.loads((built / "report" / "report.json").read_text())
    members = dom.split('id="leakage-members"')[1].split("</table>")[0]
    dsm = report["leakage"]["members"]["dsm"]
    assert f"<td>{dsm['compared']}</td><td>{dsm['identical']}</td>" in members
    look = dom.split('id="warnings"')[1].split("</section>")[0]
    assert "exact DSM bytes" in look and "capture years by split" in dom
    m = re.search(r'data-images="(\d+)" data-images-loaded="(\d+)"', dom)
    assert m and int(m[1]) >= 5 and m[1] == m[2]  # every figure decoded, with the network unreachable
    assert "outside_metros" in dom and "riverton" in dom


def test_a_build_without_staged_outlines_reads_the_boundary_files(built: Path, tmp_path: Path) -> None:
    """Builds written before metro outlines were staged under DIR/inputs still get their report."""
    out = tmp_path / "old"
    shutil.copytree(built, out)
    shutil.rmtree(out / "inputs")
    shutil.rmtree(out / "report")
    assert CliRunner().invoke(cli, ["report", str(out)]).exit_code == 0
    assert any(p.name.startswith("map_split_") for p in (out / "report").iterdir())


def test_a_build_with_an_empty_test_split_still_gets_its_report(tiny_world: Path, tmp_path: Path) -> None:
    """--holdout-year 2030: no test sample; the report says so instead of crashing after the shards."""
    out = tmp_path / "no_test"
    r = CliRunner().invoke(cli, ["-q", "build", "--config", str(tiny_world / "sources.yaml"), "--out", str(out),
                                 "--holdout-year", "2030", "--max-panos", "1", "--crop-px", "64"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["overlap"]["test_cells"] == 0 and report["overlap"]["test_to_nearest_train_m"] is None
    assert (out / "report" / "index.html").is_file()


def test_the_gallery_shows_real_samples_of_each_split(built: Path) -> None:
    from unigeo.outputs.readers import iter_shard

    report = json.loads((built / "report" / "report.json").read_text())
    html = (built / "report" / "index.html").read_text()
    gallery = report["gallery"]
    assert {g["split"] for g in gallery} == {"train", "test"} and len(gallery) <= 8
    samples = {key: members for s in json.loads((built / "manifest.json").read_text())["shards"]
               for key, members in iter_shard(str(built / s["shard"]))}
    for g in gallery:
        members = samples[g["key"]]  # a sample of the build, shown with its own members
        assert g["text"] == members["txt"].decode()
        assert g["crops"] and all((built / "report" / c).read_bytes() == members[c.split(f"{g['key']}_")[1]]
                                  for c in g["crops"])
        for image in [*g["crops"], g["aerial"]]:
            with Image.open(built / "report" / image) as img:
                assert img.format == "JPEG" and min(img.size) >= 64
        if g["dsm"]:  # shaded, with its colour bar in metres beside the tile: wider than tall
            with Image.open(built / "report" / g["dsm"]) as img:
                assert img.format == "PNG" and img.width > img.height >= 64
    assert html.count('src="data:image/jpeg;base64,') == sum(len(g["crops"]) + bool(g["aerial"]) for g in gallery)
    assert html.count('alt="dsm" src="data:image/png;base64,') == sum(bool(g["dsm"]) for g in gallery)


def test_look_here_flags_split_leakage_as_the_shards_hold_it(built: Path) -> None:
    """Per member, the share of test samples whose bytes equal their cell's train sample's, recomputed from the
    shards themselves; the unseen cells' distance to the nearest train cell; years by split."""
    import numpy as np

    from unigeo.core.sample import tile_member
    from unigeo.outputs.readers import iter_shard
    from unigeo.pipeline.fps import local_metres

    report = json.loads((built / "report" / "report.json").read_text())
    manifest = json.loads((built / "manifest.json").read_text())
    by_split: dict[str, dict[str, dict]] = {"train": {}, "test": {}}
    for s in manifest["shards"]:
        for _key, members in iter_shard(str(built / s["shard"])):
            meta = json.loads(members["json"])
            by_split[meta["split"]][meta["cell"]] = {"meta": meta, **{
                kind: members.get(tile_member(members, kind) or "") for kind in ("aerial", "dsm")},
                "txt": members.get("txt")}
    train, test = by_split["train"], by_split["test"]
    seen = [c for c in test if c in train]
    leak = report["leakage"]
    assert leak["test_samples_in_seen_cells"] == len(seen) > 0
    for kind in ("aerial", "dsm", "txt"):
        pairs = [(test[c][kind], train[c][kind]) for c in seen if test[c][kind] and train[c][kind]]
        same = sum(a == b for a, b in pairs)
        assert leak["members"][kind] == {"compared": len(pairs), "identical": same,
                                         "share": round(same / len(pairs), 4) if pairs else 0.0}, kind
    unseen = [c for c in test if c not in train]
    assert leak["unseen"]["unseen_test_cells"] == len(unseen) > 0
    d = [min(float(np.hypot(*local_metres(np.array([t["meta"]["lat"]]), np.array([t["meta"]["lon"]]),
                                           np.array([test[c]["meta"]["lat"]]), np.array([test[c]["meta"]["lon"]]))[0]))
             for t in train.values()) for c in unseen]
    assert leak["unseen"]["to_nearest_train_m"]["max"] == pytest.approx(max(d), abs=0.2)
    warnings = " ".join(w["message"] for w in report["warnings"])
    dsm = leak["members"]["dsm"]
    assert dsm["identical"] > 0 and f"{dsm['share']:.1%} of the {dsm['compared']} test samples" in warnings
    if max(d) < 1000:
        assert "no spatially held-out test set" in warnings
    years = report["capture_years_by_split"]
    holdout = manifest["options"]["holdout_year"]
    assert set(years["test"]) == {str(holdout)} and str(holdout) not in years["train"]
    assert sum(sum(g.values()) for g in years.values()) == sum(report["capture_years"].values())
    assert "hist_years_by_split.png" in report["figures"]


def test_maps_of_large_metros_aggregate_cells(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above MAX_POLYGONS cells a map draws hexagons, never a polygon per cell."""
    from unigeo.outputs import report as report_module

    out = tmp_path / "b"
    shutil.copytree(built, out)
    monkeypatch.setattr(report_module, "MAX_POLYGONS", 10)

    def no_polygons(token: str) -> None:
        raise AssertionError("a map drew a cell polygon")

    monkeypatch.setattr(report_module, "cell_polygon", no_polygons)
    result = report_module.build_report(str(out))
    assert {"map_split_riverton.png", "map_panoramas_riverton.png"} <= set(result["figures"])
    with Image.open(out / "report" / "map_panoramas_riverton.png") as img:
        assert len(img.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 20  # hexagons, not a blank map


def test_cell_values_colour_maps_by_split_and_by_panoramas() -> None:
    import numpy as np
    import pandas as pd

    from unigeo.outputs.report import _cell_values

    cells = pd.DataFrame({"cell": ["a", "b", "c", "d"]})
    samples = pd.DataFrame({"cell": ["a", "b", "b", "c"], "split": ["train", "train", "test", "test"],
                            "panoramas": [3, 2, 5, 1]})
    np.testing.assert_array_equal(_cell_values(cells, samples, "split"), [0.0, 0.5, 1.0, np.nan])
    np.testing.assert_array_equal(_cell_values(cells, samples, "panoramas"), [3, 7, 1, 0])
