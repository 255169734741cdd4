"""All-to-all InfoNCE on hand-made tensors: equal to a direct per-pair computation, blind to absent
members, and lowered by an optimiser step."""

from __future__ import annotations

import itertools

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
