"""The training loop on the tiny build's real shards: a step lowers the loss, resuming repeats the
uninterrupted run, two gloo processes end with the same parameters, the run folder is complete."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from unigeo.core.errors import ConfigError
from unigeo.core.sample import TRAIN
from unigeo.model.data import Decoder, DecodeSpec, collate, epoch_plan, iter_raw, list_shards
from unigeo.model.loss import all_to_all_infonce
from unigeo.model.network import UniGeoModel
from unigeo.model.tokenizer import load_tokenizer
from unigeo.model.train import load_checkpoint, train

from .conftest import one_step, small_model, small_train


def step_losses(run: Path) -> list[float]:
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return [x["loss"] for x in lines if x["event"] == "step"]


def test_the_run_folder_holds_what_the_contract_names(tiny_run: Path) -> None:
    for name in ("model.pt", "config.json", "log.jsonl", "tokenizer.json"):
        assert (tiny_run / name).is_file(), name
    state = load_checkpoint(str(tiny_run / "model.pt"))
    assert {"model", "optimizer", "scheduler", "epoch", "model_config", "train_config"} <= set(state)
    assert state["epoch"] == 1
    events = [json.loads(x) for x in (tiny_run / "log.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "start" and events[0]["modalities"] == ["sv", "aerial", "dsm", "text", "coords"]
    step = next(e for e in events if e["event"] == "step")
    assert "sv->aerial" in step["pairs"] and step["samples_per_s"] > 0
    vocab = load_tokenizer(str(tiny_run / "tokenizer.json")).get_vocab()
    assert "[CLS]" in vocab and len(vocab) > 10  # fitted on the training descriptions


def test_one_optimiser_step_lowers_the_loss_on_a_fixed_batch(tiny_run: Path, tiny_build: Path) -> None:
    tok = load_tokenizer(str(tiny_run / "tokenizer.json"))
    shards = list_shards(str(tiny_build), TRAIN)
    dec = Decoder(DecodeSpec(image_px=32, dsm_px=32, text_len=48), tok)
    batch = collate([dec(r) for r in iter_raw(epoch_plan(shards, 0, 0, shuffle=False))])
    torch.manual_seed(0)
    model = UniGeoModel(small_model(vocab=tok.get_vocab_size()))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)  # Adam's first step moves every weight by ~lr

    def loss() -> torch.Tensor:
        emb, present, scale = model(batch)
        return all_to_all_infonce(emb, present, scale)[0]

    before, after = one_step(loss, opt)
    assert after < before


def test_resuming_gives_the_same_losses_as_an_uninterrupted_run(tiny_run: Path, tiny_build: Path,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    first = train(small_train(tiny_build, out, stop_after=1), small_model())
    assert first["epochs_run"] == [0]
    second = train(small_train(tiny_build, out, resume=True), small_model())
    assert second["epochs_run"] == [1]
    assert (out / "tokenizer.json").read_bytes() == (tiny_run / "tokenizer.json").read_bytes()
    assert step_losses(out) == step_losses(tiny_run)  # bitwise: same seed, same process count, CPU
    ref, got = load_checkpoint(str(tiny_run / "model.pt")), load_checkpoint(str(out / "model.pt"))
    for k, v in ref["model"].items():
        assert torch.equal(v, got["model"][k]), k
    events = [json.loads(x)["event"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert events.count("start") == 1 and events.count("resume") == 1 and events.count("epoch") == 2


def test_a_used_folder_is_refused_unless_overwrite_and_overwrite_starts_a_fresh_log(tiny_build: Path,
                                                                                    tmp_path: Path) -> None:
    out = tmp_path / "again"
    train(small_train(tiny_build, out, epochs=1), small_model())
    (out / "notes.txt").write_text("mine")
    before = (out / "model.pt").read_bytes()
    with pytest.raises(ConfigError, match="holds a run .*--resume.*--overwrite"):
        train(small_train(tiny_build, out, epochs=1), small_model())
    assert (out / "model.pt").read_bytes() == before
    train(small_train(tiny_build, out, epochs=1, overwrite=True), small_model())
    events = [json.loads(x)["event"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert events.count("start") == 1 and events.count("epoch") == 1
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_without_a_run_is_a_clear_error(tiny_build: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no run"):
        train(small_train(tiny_build, tmp_path / "none", resume=True), small_model())
    assert not (tmp_path / "none").exists()


DDP_SCRIPT = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    sys.path.insert(0, {tests!r})
    from model.conftest import small_model, small_train
    from unigeo.model.train import train
    s = train(small_train({data!r}, {out!r}, epochs=1, batch_size=3), small_model())
    torch.save(s["model"].state_dict(), {out!r} + f"/rank{{s['rank']}}.pt")
    print("steps", s["steps_per_epoch"], "world", s["world_size"])
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_gloo_processes_take_steps_and_end_with_identical_parameters(tiny_build: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parents[1]), data=str(tiny_build),
                                        out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_port", str(_free_port()), str(script)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world 2" in r.stdout
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    init = UniGeoModel(small_model(vocab=a["encoders.text.encoder.tok.weight"].shape[0])).state_dict()
    moved = False
    for k in a:
        assert torch.equal(a[k], b[k]), k
        moved |= not torch.equal(a[k], init[k])
    assert moved  # steps were taken
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert next(e for e in log if e["event"] == "start")["world_size"] == 2
