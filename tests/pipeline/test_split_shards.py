from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import webdataset as wds

from unigeo.pipeline.shards import encode_sample, plan_shards, write_tar
from unigeo.pipeline.split import parse_years, split_of


@pytest.mark.parametrize(("year", "expected"), [
    (2023, "test"), (2017, "train"), (2022, "train"), (2024, "train"), (2016, None), (2025, None)])
def test_split_of(year: int, expected: str | None) -> None:
    assert split_of(year, 2023, (2017, 2024)) == expected


def test_holdout_outside_the_range_is_still_test() -> None:
    assert split_of(2023, 2023, (2017, 2022)) == "test"
    assert parse_years(" 2017 - 2024 ") == (2017, 2024)
    for bad in ("2017", "2024-2017", "17-24", "2017..2024"):
        with pytest.raises(ValueError, match="2017-2024"):
            parse_years(bad)


def test_plan_shards_respects_both_limits_and_key_order() -> None:
    sizes = [(f"k{i:03d}", 100) for i in range(10)][::-1]
    plan = plan_shards(sizes, max_samples=4, max_bytes=10_000)
    assert plan == [["k000", "k001", "k002", "k003"], ["k004", "k005", "k006", "k007"], ["k008", "k009"]]
    plan = plan_shards(sizes, max_samples=100, max_bytes=250)
    assert [len(s) for s in plan] == [2, 2, 2, 2, 2]
    plan = plan_shards([("a", 10), ("b", 1000), ("c", 10)], max_samples=10, max_bytes=100)
    assert plan == [["a"], ["b"], ["c"]]  # an oversized sample gets a shard of its own
    with pytest.raises(ValueError):
        plan_shards(sizes, 0, 1)


def test_mixed_plan_draws_each_shard_over_the_whole_key_range() -> None:
    sizes = [(f"k{i:04d}", 100) for i in range(1000)]
    s2 = plan_shards(sizes, max_samples=100, max_bytes=10**9)
    mixed = plan_shards(sizes, max_samples=100, max_bytes=10**9, mix_seed=0)
    assert [len(s) for s in mixed] == [100] * 10
    assert sorted(k for s in mixed for k in s) == [k for k, _ in sizes]  # every key once
    assert all(s == sorted(s) for s in mixed)  # listed (and written) in key order
    # an S2-ordered shard spans a tenth of the keys; a mixed one nearly all of them
    span = [int(s[-1][1:]) - int(s[0][1:]) for s in mixed]
    assert max(int(s[-1][1:]) - int(s[0][1:]) for s in s2) == 99 and min(span) > 900
    assert mixed == plan_shards(sizes[::-1], max_samples=100, max_bytes=10**9, mix_seed=0)  # input order
    assert mixed != plan_shards(sizes, max_samples=100, max_bytes=10**9, mix_seed=1)  # the seed


def samples() -> list:
    return [encode_sample("m", "train", f"89e{i}_train", {"json": {"i": i, "name": "ä"}, "dsm.npy": bytes(i * 300)})
            for i in range(5)]


def test_tar_round_trips_through_webdataset_and_is_reproducible(tmp_path: Path) -> None:
    buf1, buf2 = io.BytesIO(), io.BytesIO()
    n1, sha1 = write_tar(buf1, samples())
    n2, sha2 = write_tar(buf2, samples()[::-1])  # input order does not matter
    assert (n1, sha1) == (n2, sha2) and buf1.getvalue() == buf2.getvalue() and n1 == len(buf1.getvalue())
    (tmp_path / "s.tar").write_bytes(buf1.getvalue())
    read = list(wds.WebDataset(str(tmp_path / "s.tar"), shardshuffle=False))
    assert [s["__key__"] for s in read] == [f"89e{i}_train" for i in range(5)]
    assert [json.loads(s["json"])["i"] for s in read] == list(range(5))
    assert [len(s["dsm.npy"]) for s in read] == [i * 300 for i in range(5)]
    with tarfile.open(tmp_path / "s.tar") as tar:
        infos = tar.getmembers()
    assert {i.mtime for i in infos} == {0} and {i.uname for i in infos} == {"unigeo"}
    assert [i.name for i in infos][:2] == ["89e0_train.dsm.npy", "89e0_train.json"]  # members sorted


def test_nbytes_bounds_the_tar_size() -> None:
    s = samples()
    buf = io.BytesIO()
    size, _ = write_tar(buf, s)
    payload = sum(x.nbytes for x in s)
    assert payload <= size <= payload + 2 * 10240  # end-of-archive blocks and record padding


def test_shards_are_byte_for_byte_what_webdataset_writes() -> None:
    """Workers write tars with the standard library; readers expect webdataset's layout."""
    import hashlib
    import io

    from webdataset import TarWriter

    from unigeo.pipeline.shards import TAR_MTIME, encode_sample, write_tar

    samples = [encode_sample("m", "train", f"89e{i:03d}_train",
                             {"json": {"i": i, "name": "é"}, "txt": f"place {i}".encode(),
                              "sv.000.jpg": bytes(range(i)), "dsm.npy": b"\x00" * (700 * i)}) for i in (3, 1, 2)]
    ours = io.BytesIO()
    size, sha = write_tar(ours, samples)
    theirs = io.BytesIO()
    with TarWriter(theirs, user="unigeo", group="unigeo", mode=0o444, encoder=False, mtime=TAR_MTIME) as w:
        for s in sorted(samples, key=lambda s: s.key):
            w.write({"__key__": s.key, **dict(s.members)})
    assert ours.getvalue() == theirs.getvalue()
    assert size == len(theirs.getvalue()) and sha == hashlib.sha256(theirs.getvalue()).hexdigest()
