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


@pytest.mark.parametrize("store", ["local", "memory"])
def test_a_publish_killed_at_every_step_is_finished_by_recover(tiny_build: Path, tiny_build_compact: Path,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              store: str) -> None:
    if store == "local":
        fs: Any = FaultyLocal(auto_mkdir=True)
        out = root = str(tmp_path / "data")
    else:
        fs = FaultyMemory()
        out, root = "memory://recovery/data", "/recovery/data"
    monkeypatch.setattr(folder, "_fs", lambda _out: (fs, root))
    earlier = {p.relative_to(tiny_build).as_posix(): p.read_bytes() for p in tiny_build.rglob("*") if p.is_file()}
    steps = 0
    while True:
        Faulty.kill_at, Faulty.calls = -1, 0
        staged = setup(fs, root, tiny_build, tiny_build_compact)
        Faulty.kill_at, Faulty.calls = steps, 0
        try:
            publish(out)
        except Killed:
            killed = True
        else:
            killed = False
        Faulty.kill_at = -1
        said = recover(out)
        if steps == 0:  # killed before the journal: the publish never began, the earlier build stands
            assert said is None
            assert {k: v for k, v in tree(fs, root).items() if not k.startswith(STAGING)} == earlier
            steps += 1
            continue
        assert (said is not None) == killed, (steps, said)
        assert tree(fs, root) == staged, f"killed at call {steps}"
        assert not fs.exists(f"{root}/{JOURNAL}") and not fs.exists(f"{root}/{PREVIOUS}")
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

