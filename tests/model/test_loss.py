"""All-to-all InfoNCE on hand-made tensors: equal to a direct per-pair computation, blind to absent
members, and lowered by an optimiser step."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unigeo.model.loss import LogitScale, all_to_all_infonce

from .conftest import one_step


def normed(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def direct(emb: dict[str, torch.Tensor], present: dict[str, torch.Tensor], scale: float) -> float:
    """The same loss written out with numpy, pair by pair, row by row."""
    losses = []
    for a, b in itertools.permutations(sorted(emb), 2):
        idx = np.nonzero((present[a] & present[b]).numpy())[0]
        if len(idx) < 2:
            continue
        qa, kb = emb[a].numpy()[idx].astype(np.float64), emb[b].numpy()[idx].astype(np.float64)
        row_losses = []
        for i in range(len(idx)):
            logits = scale * kb @ qa[i]
            row_losses.append(-logits[i] + np.log(np.exp(logits).sum()))
        losses.append(np.mean(row_losses))
    return float(np.mean(losses))


def test_loss_equals_the_direct_computation_and_ignores_absent_members() -> None:
    b, d = 9, 16
    emb = {m: normed(b, d, seed=i) for i, m in enumerate(["sv", "aerial", "dsm", "text", "coords"])}
    present = {m: torch.ones(b, dtype=torch.bool) for m in emb}
    present["dsm"][[1, 4, 7]] = False
    present["text"][:] = False
    present["text"][[0, 2]] = True
    scale = torch.tensor(12.5)
    loss, pairs = all_to_all_infonce(emb, present, scale)
    assert abs(float(loss) - direct(emb, present, 12.5)) < 1e-5
    assert "sv->aerial" in pairs and "aerial->sv" in pairs and len(pairs) == 20
    # What an absent member holds does not matter.
    emb2 = dict(emb)
    emb2["dsm"] = emb["dsm"].clone()
    emb2["dsm"][[1, 4, 7]] = normed(3, d, seed=99)
    assert torch.allclose(all_to_all_infonce(emb2, present, scale)[0], loss)
    present["text"][2] = False  # text now has one sample: its pairs are skipped
    _, pairs = all_to_all_infonce(emb, present, scale)
    assert len(pairs) == 12 and not any("text" in k for k in pairs)


def test_one_step_lowers_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    b, d_in, d = 16, 10, 8
    inputs = {m: torch.randn(b, d_in) for m in ("sv", "aerial", "coords")}
    heads = torch.nn.ModuleDict({m: torch.nn.Linear(d_in, d) for m in inputs})
    scale = LogitScale()
    opt = torch.optim.AdamW([*heads.parameters(), *scale.parameters()], lr=1e-2)
    present = {m: torch.ones(b, dtype=torch.bool) for m in inputs}

    def loss() -> torch.Tensor:
        emb = {m: F.normalize(heads[m](x), dim=-1) for m, x in inputs.items()}
        return all_to_all_infonce(emb, present, scale())[0]

    before, after = one_step(loss, opt)
    assert after < before
    assert float(scale()) <= 100.0


# ---------------------------------------------------------------- shared negatives across ranks

ROWS = {0: slice(0, 5), 1: slice(5, 9)}  # rank -> its rows of the global batch (unequal on purpose)


def global_batch() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    emb = {m: normed(9, 16, seed=i) for i, m in enumerate(["sv", "aerial", "dsm", "coords"])}
    present = {m: torch.ones(9, dtype=torch.bool) for m in emb}
    present["dsm"][[1, 6, 7]] = False
    return emb, present


def rank_step(rank: int, store: str, results: str) -> None:
    """One rank of a 2-rank gloo group: the loss over its gathered batch and its own rows' gradients."""
    import torch.distributed as dist

    from unigeo.model.loss import gather_across_ranks

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    emb, present = global_batch()
    local = {m: e[ROWS[rank]].clone().requires_grad_(True) for m, e in emb.items()}
    gathered, mask = gather_across_ranks(local, {m: p[ROWS[rank]] for m, p in present.items()})
    loss, _ = all_to_all_infonce(gathered, mask, torch.tensor(10.0))
    loss.backward()
    torch.save({"loss": loss.detach(), "grads": {m: t.grad for m, t in local.items()}}, f"{results}/{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_share_negatives_loss_and_gradients_equal_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(rank_step, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    emb, present = global_batch()
    whole = {m: e.clone().requires_grad_(True) for m, e in emb.items()}
    loss, _ = all_to_all_infonce(whole, present, torch.tensor(10.0))
    loss.backward()
    for rank, rows in ROWS.items():
        got = torch.load(tmp_path / f"{rank}.pt")
        assert abs(float(got["loss"]) - float(loss)) < 1e-6
        for m, t in whole.items():
            assert t.grad is not None and torch.allclose(got["grads"][m], t.grad[rows], atol=1e-7), (rank, m)
    local_only, _ = all_to_all_infonce({m: e[ROWS[0]] for m, e in emb.items()},
                                       {m: p[ROWS[0]] for m, p in present.items()}, torch.tensor(10.0))
    assert abs(float(local_only) - float(loss)) > 1e-3  # without the gather, a rank sees other negatives
