"""The optimiser's parameter groups and the learning-rate schedule (linear warm-up, cosine decay)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn

from unigeo.model.modalities import no_weight_decay


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and convolutions only: not on norms, biases, the temperature, nor what the
    encoders list as taking none (position and class tokens, embedding tables)."""
    exempt = no_weight_decay(model)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name in exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return factor
