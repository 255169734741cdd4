"""Hugging Face ``datasets`` for a build's shards: the ``Features`` that ``load_dataset("webdataset")`` needs.

The ``webdataset`` builder infers features from the first samples and refuses shards whose samples
carry different members (a sample with 3 crops beside one with 5, a sample without its DSM tile).
Given the features of every member a build can write, it reads them all, with ``None`` for a member a
sample lacks::

    from datasets import load_dataset
    from unigeo.outputs.hf import shard_files, webdataset_features

    ds = load_dataset("webdataset", data_files={"train": shard_files("data", "train")},
                      features=webdataset_features("data"), split="train")

Needs the ``hf`` extra (``datasets``). The ``json`` member goes through ``datasets.Json``, which writes
floats through ujson: they come back within 1e-9 relative (``0.6`` may read ``0.6000000000000001``;
lat/lon within ~1e-10 degrees); parse ``json`` from the shards themselves where exact text matters.
"""

from __future__ import annotations

from typing import Any

from unigeo.core.build_files import build_root, read_manifest, read_samples
from unigeo.core.fileio import join
from unigeo.core.sample import DSM, DSM_PNG, JSON, TEXT, TILE_ENCODINGS, crop_member


def max_crops(out: str) -> int:
    """The largest number of crops in one sample of the build (from its samples table)."""
    samples = read_samples(build_root(out))
    return int(samples["crops"].max()) if len(samples) else 0


def webdataset_features(out: str) -> Any:
    """The ``datasets.Features`` of a build's samples: key and url, ``json`` (a ``Json`` feature), ``txt``,
    and with imagery ``aerial.png`` (Image), ``dsm.npy`` (float32 ``tile_px`` x ``tile_px``) and
    (``--tile-encoding compact``) ``aerial.webp`` and ``dsm.png`` (Images) instead, and
    ``sv.000.jpg`` ... up to the largest crop count (Images)."""
    import datasets

    manifest = read_manifest(out)
    imagery = manifest["options"].get("imagery")
    fields: dict[str, Any] = {"__key__": datasets.Value("string"), "__url__": datasets.Value("string"),
                              JSON: datasets.Json(), TEXT: datasets.Value("string")}
    if imagery:
        px = int(imagery["tile_px"])
        encoding = TILE_ENCODINGS[imagery.get("tile_encoding", "standard")]
        fields[encoding["aerial"]] = datasets.Image()
        fields[DSM] = datasets.Array2D((px, px), "float32")  # compact builds too: a DSM too tall for dsm.png
        if encoding["dsm"] == DSM_PNG:
            fields[DSM_PNG] = datasets.Image()  # 16-bit centimetres; unigeo.core.sample.decode_dsm gives metres
        for i in range(max_crops(out)):
            fields[crop_member(i)] = datasets.Image()
    return datasets.Features(fields)


def shard_files(out: str, split: str) -> list[str]:
    """The shard paths of one split, as the manifest lists them (under the prefix it names, if any)."""
    manifest = read_manifest(out)
    root = build_root(out, manifest)
    return [join(root, s["shard"]) for s in manifest["shards"] if s["split"] == split]
