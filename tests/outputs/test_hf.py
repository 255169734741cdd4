"""HF ``datasets`` reads a build's shards through ``load_dataset("webdataset")`` given the build's features."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from unigeo.outputs.hf import shard_files, webdataset_features
from unigeo.outputs.readers import iter_shard

datasets = pytest.importorskip("datasets")


def same_json(a: object, b: object) -> bool:
    """Equal JSON values, floats to 1e-9 relative (datasets' Json feature writes floats through ujson)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == pytest.approx(b, rel=1e-9)
    return a == b


@pytest.mark.parametrize("build", ["tiny_build", "tiny_build_compact"])
def test_load_dataset_finds_every_member_of_every_train_sample(build: str, request: pytest.FixtureRequest,
                                                               tmp_path: Path) -> None:
    tiny_build: Path = request.getfixturevalue(build)
    features = webdataset_features(str(tiny_build))
    files = shard_files(str(tiny_build), "train")
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, features=features, split="train",
                               cache_dir=str(tmp_path / "cache"))
    expected = {key: members for f in files for key, members in iter_shard(f)}
    manifest = json.loads((tiny_build / "manifest.json").read_text())
    assert len(ds) == len(expected) == manifest["counts"]["overall"]["samples"]["train"]
    crops_differ = set()
    for row in ds:
        members = expected[row["__key__"]]
        present = {k for k, v in row.items() if v is not None and not k.startswith("__")}
        assert present == set(members), row["__key__"]
        crops_differ.add(sum(k.startswith("sv.") for k in present))
        assert same_json(row["json"], json.loads(members["json"])) and row["txt"] == members["txt"].decode()
        if "dsm.npy" in members:
            np.testing.assert_array_equal(np.asarray(row["dsm.npy"], dtype=np.float32),
                                          np.load(io.BytesIO(members["dsm.npy"])))
        for name in present - {"json", "txt", "dsm.npy"}:
            assert row[name].tobytes() == datasets.Image().decode_example(
                {"path": None, "bytes": members[name]}).tobytes()
    assert len(crops_differ) > 1  # samples with different members: what inference alone refuses
