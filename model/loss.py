"""All-to-all InfoNCE: the mean of the contrastive loss over every ordered pair of distinct
modalities, each pair over the samples that have both (an absent member is masked, never zero-filled).

Under DDP every rank's embeddings are the negatives of every other rank's (``gather_across_ranks``, the
pattern of open_clip's ``gather_features``): each rank computes the loss of the whole global batch, with
gradients through its own rows."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class LogitScale(nn.Module):
    """The learnable inverse temperature, exp(t), initialised at 1/0.07 and capped at 100."""

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))
        self.max_log = math.log(max_scale)

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=self.max_log).exp()


def pair_loss(queries: torch.Tensor, keys: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """InfoNCE of queries against keys, both (N, D) L2-normalised, row i's positive at column i."""
    logits = scale * queries @ keys.T
    return F.cross_entropy(logits, torch.arange(len(queries), device=queries.device))


def all_to_all_infonce(embeddings: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
                       scale: torch.Tensor, min_pairs: int = 2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean InfoNCE over all ordered modality pairs.

    Args:
        embeddings: modality -> (B, D) L2-normalised embeddings of one batch (rows of absent members
            are ignored whatever they hold).
        present: modality -> (B,) bool, which samples have that modality.
        scale: the logit scale (inverse temperature).
        min_pairs: a pair with fewer samples that have both modalities is skipped.

    Returns:
        The mean loss and each ordered pair's loss (``"sv->aerial"``, ...).
    """
    names = sorted(embeddings)
    per_pair: dict[str, torch.Tensor] = {}
    for a in names:
        for b in names:
            if a == b:
                continue
            both = present[a] & present[b]
            if int(both.sum()) < min_pairs:
                continue
            per_pair[f"{a}->{b}"] = pair_loss(embeddings[a][both], embeddings[b][both], scale)
    if not per_pair:
        zero = sum(e.sum() for e in embeddings.values()) * 0.0
        return torch.as_tensor(zero), per_pair
    return torch.stack(list(per_pair.values())).mean(), per_pair


def _gather_rows(t: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """Every rank's ``t``, detached (rows may differ in number: padded to the longest for the collective,
    then cut; masks travel as bytes, which every backend gathers)."""
    sent = t.detach().to(torch.uint8) if t.dtype == torch.bool else t.detach()
    padded = torch.zeros((max(sizes), *t.shape[1:]), dtype=sent.dtype, device=t.device)
    padded[:len(t)] = sent
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return [part[:n].to(t.dtype) for part, n in zip(parts, sizes)]


def gather_across_ranks(embeddings: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The global batch of a distributed step: every rank's embeddings and presence masks, in rank order,
    this rank's own rows keeping their gradients (the others' arrive detached). Without a process group of
    more than one rank, the inputs unchanged.

    Args:
        embeddings: modality -> (B, D) embeddings of this rank's batch (B may differ between ranks).
        present: modality -> (B,) bool presence masks.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(embeddings), dict(present)
    rank = dist.get_rank()
    first = next(iter(present.values()))
    n = torch.tensor([len(first)], device=first.device)
    counts = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, n)
    sizes = [int(c) for c in counts]
    out_emb, out_present = {}, {}
    for m in sorted(embeddings):
        parts = _gather_rows(embeddings[m], sizes)
        parts[rank] = embeddings[m]
        out_emb[m] = torch.cat(parts)
        out_present[m] = torch.cat(_gather_rows(present[m], sizes))
    return out_emb, out_present
