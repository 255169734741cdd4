"""WebDataset shards: sample encoding, size-bounded shard plans, deterministic tar writing."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Iterable, Iterator
from typing import IO, Any, NamedTuple

from fsspec.core import url_to_fs

from unigeo.core.fileio import create, open_binary, rename
from unigeo.core.sample import keys_sha256

PLAN_FOLDER = "plan"  # DIR/plan/{metro}-{split}.json: what the shard plan gave each shard
# Under the job's output (staging) folder: each rendered sample as a one-sample tar until its shard is
# written; the build deletes the folder once the job is done.
SAMPLE_FOLDER = ".unigeo-samples"
TAR_BLOCK = 512
TAR_MTIME = 0.0  # fixed member times: same inputs, same bytes


class EncodedSample(NamedTuple):
    """A sample ready for a shard: its WebDataset key and members ``(extension, bytes)``, sorted."""

    metro: str
    split: str
    key: str
    members: tuple[tuple[str, bytes], ...]

    @property
    def nbytes(self) -> int:
        """Bytes this sample adds to a tar: a header block per member plus data padded to blocks."""
        return sum(TAR_BLOCK + -(-len(data) // TAR_BLOCK) * TAR_BLOCK for _, data in self.members)


class SampleFile(NamedTuple):
    """A rendered sample written to a file (``spill_sample``): what travels through shard planning,
    grouping and the runner instead of the sample's bytes."""

    metro: str
    split: str
    key: str
    path: str
    nbytes: int  # what the sample adds to a shard (``EncodedSample.nbytes``)
    panoramas: int  # panoramas its json lists
    members: tuple[tuple[str, int], ...]  # (extension, bytes), sorted


class ShardId(NamedTuple):
    metro: str
    split: str
    number: int

    @property
    def name(self) -> str:
        return f"{self.metro}-{self.split}-{self.number:06d}"

    @property
    def path(self) -> str:
        """The shard's tar relative to the output folder."""
        return f"shards/{self.split}/{self.name}.tar"


def json_bytes(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_sample(metro: str, split: str, key: str, members: dict[str, Any]) -> EncodedSample:
    """Members by extension (``json`` values are dicts, others bytes) into an ``EncodedSample``."""
    out = []
    for ext in sorted(members):
        value = members[ext]
        out.append((ext, json_bytes(value) if ext == "json" else bytes(value)))
    return EncodedSample(metro, split, key, tuple(out))


def mixed_order(key: str, seed: int) -> bytes:
    """Where ``key`` falls in a training split's seeded, spatially mixed order (a SHA-256 of seed and key)."""
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


def plan_shards(sizes: Iterable[tuple[str, int]], max_samples: int, max_bytes: int,
                mix_seed: int | None = None) -> list[list[str]]:
    """Group sample keys into shards of at most ``max_samples`` and about ``max_bytes``.

    Keys are taken in key (S2) order, so a shard covers one compact area; with ``mix_seed`` they are taken
    in the order of :func:`mixed_order` instead, so every shard is a seeded random draw over the whole
    metro (the training split: a batch read through a small shuffle buffer then holds places from
    everywhere, not one neighbourhood). Either way a shard's keys are listed, and written, in key order.
    A sample larger than ``max_bytes`` gets a shard of its own rather than being dropped.
    """
    if max_samples < 1 or max_bytes < 1:
        raise ValueError("shard limits must be positive")
    ordered = sorted(sizes)
    if mix_seed is not None:
        ordered.sort(key=lambda item: mixed_order(item[0], mix_seed))
    shards: list[list[str]] = []
    current: list[str] = []
    current_bytes = 0
    for key, nbytes in ordered:
        if current and (len(current) >= max_samples or current_bytes + nbytes > max_bytes):
            shards.append(sorted(current))
            current, current_bytes = [], 0
        current.append(key)
        current_bytes += nbytes
    if current:
        shards.append(sorted(current))
    return shards


def plan_record(metro: str, split: str, sizes: list[tuple[str, int]], shards: list[list[str]]) -> dict[str, Any]:
    """What a plan gave each shard of one metro and split (``DIR/plan/{metro}-{split}.json``): the split's
    sample count and key digest, and per shard its path, sample count, planned bytes, first and last key
    and key digest. The build checks the shards' stats against it before it publishes. A key that came
    twice counts twice."""
    nbytes = dict(sizes)
    entries = []
    for number, keys in enumerate(shards):
        entries.append({"shard": ShardId(metro, split, number).path, "number": number, "samples": len(keys),
                        "bytes": sum(nbytes[k] for k in keys), "first_key": keys[0], "last_key": keys[-1],
                        "keys_sha256": keys_sha256(keys)})
    return {"metro": metro, "split": split, "samples": len(sizes), "keys_sha256": keys_sha256(k for k, _ in sizes),
            "shards": entries}


class _HashingWriter(io.RawIOBase):
    """Passes bytes to ``sink`` while counting them and hashing them with SHA-256."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sink.write(view)
        self.sha256.update(view)
        self.size += len(view)
        return len(view)


def write_tar(sink: IO[bytes], samples: Iterable[EncodedSample], ordered: bool = False) -> tuple[int, str]:
    """Write samples (sorted by key) as a WebDataset tar into ``sink``; return (bytes, sha256).

    Members ``{key}.{extension}`` in extension order, with fixed owner, mode and mtime (a PAX record holds
    the float mtime): byte for byte what webdataset's ``TarWriter`` writes, with the standard library, so
    that workers never import webdataset (which imports torch). With ``ordered`` the samples already come
    in key order and are written as they come (one in memory at a time); out of order is a ``ValueError``.
    """
    hashing = _HashingWriter(sink)
    last: str | None = None
    with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for sample in samples if ordered else sorted(samples, key=lambda s: s.key):
            if last is not None and sample.key < last:
                raise ValueError(f"samples out of key order: {sample.key} after {last}")
            last = sample.key
            for ext, data in sorted(sample.members):
                info = tarfile.TarInfo(f"{sample.key}.{ext}")
                info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o444
                info.uname = info.gname = "unigeo"
                tar.addfile(info, io.BytesIO(data))
    return hashing.size, hashing.sha256.hexdigest()


def sample_path(out_dir: str, metro: str, split: str, key: str) -> str:
    """Where ``spill_sample`` writes a sample: a name of its own, so a retried bundle rewrites its own file."""
    return f"{out_dir.rstrip('/')}/{SAMPLE_FOLDER}/{metro}/{split}/{key}.tar"


def spill_sample(out_dir: str, sample: EncodedSample) -> SampleFile:
    """Write ``sample`` as a one-sample tar under ``out_dir`` (through a temporary name, so a reader never
    sees part of one) and return the record that stands for it."""
    path = sample_path(out_dir, sample.metro, sample.split, sample.key)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with create(tmp) as f:
        write_tar(f, [sample])
    rename(tmp, path)
    listed = json.loads(dict(sample.members).get("json", b"{}")).get("panoramas", [])
    return SampleFile(sample.metro, sample.split, sample.key, path, sample.nbytes, len(listed),
                      tuple((ext, len(data)) for ext, data in sample.members))


def iter_shard(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of a shard (any tar ``write_tar`` wrote), in file order."""
    with open_binary(path) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        key: str | None = None
        members: dict[str, bytes] = {}
        for info in tar:
            if not info.isfile():
                continue
            k, _, ext = info.name.partition(".")
            if key is not None and k != key:
                yield key, members
                members = {}
            key = k
            data = tar.extractfile(info)
            members[ext] = data.read() if data else b""
        if key is not None:
            yield key, members


def load_sample(record: SampleFile) -> EncodedSample:
    """The sample a ``SampleFile`` stands for, read back from its file.

    Raises:
        ValueError: the file does not hold the sample the record describes.
    """
    found = list(iter_shard(record.path))
    for key, held in found:
        if key != record.key:
            raise ValueError(f"{record.path} holds {key}.{next(iter(held))}, not a member of sample {record.key}")
    members = tuple(found[0][1].items()) if found else ()
    if tuple((ext, len(data)) for ext, data in members) != record.members:
        raise ValueError(f"{record.path} does not hold the members written for sample {record.key}")
    return EncodedSample(record.metro, record.split, record.key, members)


def remove_sample_files(out_dir: str) -> None:
    """Delete the sample files of a finished job (nothing when there are none)."""
    fs, root = url_to_fs(f"{out_dir.rstrip('/')}/{SAMPLE_FOLDER}")
    if fs.exists(root):
        fs.rm(root, recursive=True)
