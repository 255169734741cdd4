"""Runs are reproducible on CPU: two fresh `unigeo train` processes with the same seed write the same
tokenizer, losses and weights; a run killed with SIGKILL at random moments and resumed each time ends
with the weights of the run never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from unigeo.model.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

EPOCHS = 6


def command(build: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "unigeo", "-q", "train", "--data", str(build), "--out", str(out),
            "--epochs", str(EPOCHS), "--batch-size", "4", "--workers", "0", "--no-progress", *extra]


def run(build: Path, out: Path, *extra: str, hash_seed: str = "0") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command(build, out, *extra), capture_output=True, text=True, env=env, timeout=600)


def losses(out: Path) -> list[float]:
    return [e["loss"] for e in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if e["event"] == "step"]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return dict(load_checkpoint(str(out / "model.pt"))["model"])


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def reference(tiny_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reproducible") / "reference"
    r = run(tiny_build, out)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_two_fresh_processes_write_the_same_tokenizer_losses_and_weights(tiny_build: Path, reference: Path,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "again"
    r = run(tiny_build, out, hash_seed="12345")  # another string hashing order: nothing may depend on it
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "tokenizer.json").read_bytes() == (reference / "tokenizer.json").read_bytes()
    assert losses(out) == losses(reference) and len(losses(out)) == EPOCHS  # a step record per epoch
    assert_same_weights(out, reference)


def test_three_sigkills_and_resumes_end_with_the_uninterrupted_weights(tiny_build: Path, reference: Path,
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "killed"
    rng = np.random.default_rng(7)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kills = 0
    while kills < 3:
        started = (out / "config.json").exists()
        proc = subprocess.Popen(command(tiny_build, out, *(["--resume"] if started else [])), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(float(rng.uniform(2.0, 12.0)))
        if proc.poll() is not None:  # finished before the kill: start again from nothing
            assert proc.returncode == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            proc.stderr.close() if proc.stderr else None
            for f in out.iterdir():
                f.unlink() if f.is_file() else None
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close() if proc.stderr else None
        kills += 1
    resumed = (out / "config.json").exists()
    r = subprocess.run(command(tiny_build, out, *(["--resume"] if resumed else [])), capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert load_checkpoint(str(out / "model.pt"))["epoch"] == EPOCHS - 1
    assert_same_weights(out, reference)
    assert losses(out) == losses(reference)  # the log keeps what each epoch logged once
