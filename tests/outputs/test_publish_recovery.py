"""A publish killed at any step is finished by the next build or `unigeo audit`: the folder then holds
one complete build, byte for byte the staged one, and nothing of the publish is left. Faults are
injected through the filesystem layer, on the local disk and on fsspec's memory filesystem (an object
store's stand-in: there a move is a copy and a delete per object)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from unigeo.cli import cli
from unigeo.outputs import folder
from unigeo.outputs.audit import audit
from unigeo.outputs.folder import JOURNAL, MANIFEST, PREVIOUS, STAGING, publish, recover


class Killed(Exception):
    """The process died here."""


class Faulty:
    """Counts the filesystem's changing calls and dies at call number ``kill_at``."""

    kill_at = -1
    calls = 0

    def _tick(self) -> None:
        if Faulty.calls == Faulty.kill_at:
            raise Killed
        Faulty.calls += 1

    def mv(self, *args: Any, **kw: Any) -> Any:
        self._tick()
        return super().mv(*args, **kw)  # type: ignore[misc]

    def rm(self, *args: Any, **kw: Any) -> Any:
        self._tick()
        return super().rm(*args, **kw)  # type: ignore[misc]

    def pipe_file(self, *args: Any, **kw: Any) -> Any:
        self._tick()
        return super().pipe_file(*args, **kw)  # type: ignore[misc]


class FaultyLocal(Faulty, LocalFileSystem):
    pass


class FaultyMemory(Faulty, MemoryFileSystem):
    pass


def publish_killed_at(call: int, out: str, staging: str | None = None) -> tuple[bool, str | None]:
    """Publish, dying at the filesystem's changing call number ``call``, then recover as the next build or
    audit would; returns whether the publish was killed and what recovery said."""
    Faulty.kill_at, Faulty.calls = call, 0
    try:
        publish(out, staging)
    except Killed:
        killed = True
    else:
        killed = False
    Faulty.kill_at = -1
    return killed, recover(out)


def tree(fs: Any, root: str) -> dict[str, bytes]:
    return {p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root)}


def put_tree(fs: Any, src: Path, dst: str) -> None:
    for p in sorted(src.rglob("*")):
        if p.is_file():
            fs.pipe_file(f"{dst}/{p.relative_to(src).as_posix()}", p.read_bytes())


def setup(fs: Any, root: str, earlier: Path, staged: Path) -> dict[str, bytes]:
    """``root`` holds the earlier build and, staged, a complete new one; returns the new one's files."""
    if fs.exists(root):
        fs.rm(root, recursive=True)
    put_tree(fs, earlier, root)
    put_tree(fs, staged, f"{root}/{STAGING}")
    return tree(fs, f"{root}/{STAGING}")


def store(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str, str]:
    """A faulty filesystem that ``folder`` uses, the ``--out`` a user gives, and its root on that filesystem."""
    if kind == "local":
        fs: Any = FaultyLocal(auto_mkdir=True)
        out = root = str(tmp_path / "data")
    else:
        fs = FaultyMemory()
        root = f"/{tmp_path.name}/data"
        out = f"memory://{root}"  # as fsspec spells the paths it finds there
    monkeypatch.setattr(folder, "_fs", lambda _out: (fs, root))
    return fs, out, root


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_a_publish_killed_at_every_step_is_finished_by_recover(tiny_build: Path, tiny_build_compact: Path,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              kind: str) -> None:
    fs, out, root = store(kind, tmp_path, monkeypatch)
    earlier = {p.relative_to(tiny_build).as_posix(): p.read_bytes() for p in tiny_build.rglob("*") if p.is_file()}
    steps = 0
    while True:
        Faulty.kill_at, Faulty.calls = -1, 0
        staged = setup(fs, root, tiny_build, tiny_build_compact)
        killed, said = publish_killed_at(steps, out)
        if steps == 0:  # killed before the journal: the publish never began, the earlier build stands
            assert said is None
            assert {k: v for k, v in tree(fs, root).items() if not k.startswith(STAGING)} == earlier
            steps += 1
            continue
        assert (said is not None) == killed, (steps, said)
        assert tree(fs, root) == staged, f"killed at call {steps}"
        assert not fs.exists(f"{root}/{JOURNAL}") and not fs.exists(f"{root}/{PREVIOUS}")
        result = audit(out)
        assert result["ok"], (steps, result["violations"])
        if not killed:
            break
        steps += 1
    assert steps >= 10  # every step of the publish was a kill point


def legacy_state(out: Path, earlier: Path, staged: Path | None) -> None:
    """What a publish without a journal left when killed after moving the manifest and two entries aside."""
    shutil.copytree(earlier, out)
    if staged is not None:
        shutil.copytree(staged, out / STAGING)
    else:
        (out / STAGING / "shards").mkdir(parents=True)  # a build killed before its manifest was staged
    (out / PREVIOUS).mkdir()
    for name in (MANIFEST, "inputs", "cells"):
        shutil.move(out / name, out / PREVIOUS / name)


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_audit_finishes_an_interrupted_publish_and_says_so(tiny_build: Path, tiny_build_compact: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "data"
    legacy_state(out, tiny_build, tiny_build_compact)
    r = CliRunner().invoke(cli, ["audit", str(out)])
    assert r.exit_code == 0, r.output
    assert "finished a publish that was interrupted" in r.output
    result = json.loads(r.output[r.output.index("{"):])
    assert result["ok"] and "finished a publish" in result["recovered"]
    assert files(out) == files(tiny_build_compact)


def test_a_publish_whose_new_build_was_not_whole_is_rolled_back(tiny_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    legacy_state(out, tiny_build, None)
    said = recover(str(out))
    assert said is not None and "rolled back" in said
    assert files(out) == files(tiny_build)


def test_a_build_into_an_interrupted_folder_recovers_then_builds(tiny_world: Path, tiny_build: Path,
                                                                 tiny_build_compact: Path, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from tests.conftest import TINY_BUILD_ARGS

    out = tmp_path / "data"
    legacy_state(out, tiny_build, tiny_build_compact)
    r = CliRunner().invoke(cli, ["-q", "build", "--config", str(tiny_world / "sources.yaml"), "--out", str(out),
                                 *TINY_BUILD_ARGS])
    assert r.exit_code == 0, r.output
    assert "finished a publish that was interrupted" in caplog.text
    assert CliRunner().invoke(cli, ["audit", str(out)]).exit_code == 0
    assert not (out / PREVIOUS).exists() and not (out / STAGING).exists()



# ---------------------------------------------------------------- the versioned layout (object stores)

OLD, NEW = "20260101T000000Z-0000aaaa", "20260102T000000Z-0000bbbb"


def versioned(fs: Any, src: Path, root: str, build_id: str) -> dict[str, bytes]:
    """``src``'s build put under ``root/builds/<build_id>`` with a manifest naming that prefix (unpublished);
    returns its files, relative to ``root``."""
    prefix = f"{folder.BUILDS}/{build_id}"
    put_tree(fs, src, f"{root}/{prefix}")
    manifest = json.loads((src / MANIFEST).read_bytes())
    manifest["prefix"] = prefix
    fs.pipe_file(f"{root}/{prefix}/{MANIFEST}", json.dumps(manifest, indent=2).encode())
    return {f"{prefix}/{k}": v for k, v in tree(fs, f"{root}/{prefix}").items()}


@pytest.mark.parametrize("earlier", ["in-place", "versioned"])
@pytest.mark.parametrize("kind", ["local", "memory"])
def test_a_versioned_publish_killed_at_every_step_ends_with_the_new_build(
        tiny_build: Path, tiny_build_compact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str,
        earlier: str) -> None:
    fs, out, root = store(kind, tmp_path, monkeypatch)
    steps = 0
    while True:
        Faulty.kill_at, Faulty.calls = -1, 0
        if fs.exists(root):
            fs.rm(root, recursive=True)
        if earlier == "in-place":
            put_tree(fs, tiny_build, root)
        else:
            versioned(fs, tiny_build, root, OLD)
            fs.pipe_file(f"{root}/{MANIFEST}", fs.cat_file(f"{root}/{folder.BUILDS}/{OLD}/{MANIFEST}"))
        staged = versioned(fs, tiny_build_compact, root, NEW)
        killed, said = publish_killed_at(steps, out, f"{out}/{folder.BUILDS}/{NEW}")
        assert (said is not None) == killed, (steps, said)
        if killed:
            assert NEW in said or "removed" in said, said
        # one build: the new one, published, and nothing of the earlier one left
        assert tree(fs, root) == {**staged, MANIFEST: staged[f"{folder.BUILDS}/{NEW}/{MANIFEST}"]}, steps
        result = audit(out)
        assert result["ok"], (steps, result["violations"])
        if not killed:
            break
        steps += 1
    assert steps >= 2  # the pointer write, then each deletion of the earlier build
    assert result["build"] == {"layout": "versioned", "files": f"{folder.BUILDS}/{NEW}", "unfinished": []}


class Counting(MemoryFileSystem):
    """Counts the objects written (created or copied) and deleted."""

    writes = 0
    copies = 0

    def _open(self, path: str, mode: str = "rb", *args: Any, **kw: Any) -> Any:
        if "w" in mode or "x" in mode:
            Counting.writes += 1
        return super()._open(path, mode, *args, **kw)

    def cp_file(self, *args: Any, **kw: Any) -> Any:
        Counting.copies += 1
        return super().cp_file(*args, **kw)


def test_a_versioned_publish_writes_one_object_whatever_the_shard_count(tiny_world: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import TINY_BUILD_ARGS

    def build(out: Path, per_shard: str) -> Path:
        r = CliRunner().invoke(cli, ["-q", "build", "--config", str(tiny_world / "sources.yaml"), "--out", str(out),
                                     *TINY_BUILD_ARGS, "--shard-max-samples", per_shard])
        assert r.exit_code == 0, r.output
        return out

    earlier = build(tmp_path / "earlier", "4")
    builds = {per_shard: build(tmp_path / f"new{per_shard}", per_shard) for per_shard in ("100", "1")}
    fs = Counting()
    root = f"/{tmp_path.name}/data"
    out = f"memory://{root}"
    monkeypatch.setattr(folder, "_fs", lambda _out: (fs, root))
    costs = {}
    for new in builds.values():  # 2 shards, then one per sample
        if fs.exists(root):
            fs.rm(root, recursive=True)
        versioned(fs, earlier, root, OLD)
        fs.pipe_file(f"{root}/{MANIFEST}", fs.cat_file(f"{root}/{folder.BUILDS}/{OLD}/{MANIFEST}"))
        staged = versioned(fs, new, root, NEW)
        before = set(fs.find(root))
        Counting.writes = Counting.copies = 0
        publish(out, f"{out}/{folder.BUILDS}/{NEW}")
        shards = len(json.loads((new / MANIFEST).read_bytes())["shards"])
        costs[shards] = (Counting.writes, Counting.copies)
        deleted = {p[len(root) + 1:] for p in before - set(fs.find(root))}
        assert deleted and all(p.startswith(f"{folder.BUILDS}/{OLD}/") for p in deleted)  # the earlier build only
        assert {k: v for k, v in tree(fs, root).items() if k != MANIFEST} == staged
    assert len(costs) == 2 and min(costs) < max(costs) >= 10, costs  # the shard counts differ
    assert set(costs.values()) == {(1, 0)}, costs  # one object written, nothing copied, whatever the shards


def test_layout_for_picks_versioned_on_object_stores() -> None:
    assert folder.layout_for("gs://bucket/data") == "versioned"
    assert folder.layout_for("s3://bucket/data") == "versioned"
    assert folder.layout_for("memory://x/data") == "versioned"
    assert folder.layout_for("/tmp/data") == "in-place"
    assert folder.layout_for("file:///tmp/data") == "in-place"
    assert folder.layout_for("gs://bucket/data", "in-place") == "in-place"
    with pytest.raises(folder.ConfigError, match="--layout"):
        folder.layout_for("/tmp/data", "atomic")
    # a build id sorts after the folder's newest, even when this clock is behind the one that wrote it
    assert folder.new_build_id("29991231T235959Z-0000dead").startswith("30000101T000000Z-")
    assert folder.new_build_id("20000101T000000Z-0000dead") > "20260101"


def test_a_versioned_build_replaces_an_in_place_one_and_readers_follow_its_prefix(
        tiny_world: Path, tiny_build: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.conftest import TINY_BUILD_ARGS
    from unigeo.core.build_files import build_root
    from unigeo.model.data import list_shards
    from unigeo.outputs.hf import shard_files

    out = tmp_path / "data"
    shutil.copytree(tiny_build, out)
    args = ["-q", "build", "--config", str(tiny_world / "sources.yaml"), "--out", str(out), *TINY_BUILD_ARGS,
            "--layout", "versioned"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    (first,) = (out / folder.BUILDS).iterdir()
    assert sorted(p.name for p in out.iterdir()) == [folder.BUILDS, MANIFEST]  # the in-place build is gone
    assert (out / MANIFEST).read_bytes() == (first / MANIFEST).read_bytes()
    assert json.loads((out / MANIFEST).read_bytes())["prefix"] == f"{folder.BUILDS}/{first.name}"
    assert build_root(str(out)) == str(first) and build_root(str(first)) == str(first)
    # the shards are the in-place build's, byte for byte, now under the prefix
    assert files(first / "shards") == files(tiny_build / "shards")
    assert shard_files(str(out), "train") == [str(first / s["shard"]) for s in
                                              json.loads((out / MANIFEST).read_bytes())["shards"]
                                              if s["split"] == "train"]
    assert [s.url for s in list_shards(str(out), "test")] == sorted(
        str(p) for p in (first / "shards" / "test").glob("*.tar"))

    # a build killed before it published leaves a prefix without a manifest: audit names it and leaves it
    killed = out / folder.BUILDS / "29991231T000000Z-0000dead"
    (killed / "shards" / "train").mkdir(parents=True)
    r = CliRunner().invoke(cli, ["audit", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["build"] == {"layout": "versioned", "files": f"{folder.BUILDS}/{first.name}",
                                             "unfinished": [f"{folder.BUILDS}/{killed.name}"]}
    assert killed.exists()
    # and a killed clean-up leaves an earlier prefix: the next build removes both, then publishes its own
    stale = out / folder.BUILDS / "20000101T000000Z-0000beef"
    shutil.copytree(first, stale)
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert "removed 1 earlier build" in caplog.text
    (second,) = (out / folder.BUILDS).iterdir()
    assert second.name > first.name
    r = CliRunner().invoke(cli, ["audit", str(out)])
    assert r.exit_code == 0 and json.loads(r.output)["build"]["unfinished"] == []
    # back to in place: the versioned builds go once the new one is in
    assert CliRunner().invoke(cli, args[:-2]).exit_code == 0
    assert not (out / folder.BUILDS).exists() and files(out / "shards") == files(tiny_build / "shards")


@pytest.mark.parametrize("layout", ["in-place", "versioned"])
def test_abandon_removes_only_the_failed_build(tiny_build: Path, tmp_path: Path, layout: str) -> None:
    out = tmp_path / "data"
    shutil.copytree(tiny_build, out)
    staging = folder.start(str(out), layout)
    (Path(staging) / "shards").mkdir(parents=True)
    (Path(staging) / "shards" / "part.tar").write_bytes(b"half a shard")
    folder.abandon(str(out), staging)
    assert files(out) == files(tiny_build) and not Path(staging).exists()
