"""The text tokenizer: HF ``tokenizers``' WordPiece with a small vocabulary chosen from the training
texts (no download), or a pretrained text tower's own; saved as ``RUN/tokenizer.json`` and
loaded from there for evaluation."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
PADS = (PAD, "<pad>")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> Tokenizer:
    """A lower-cased WordPiece tokenizer fitted to ``texts``; ids 0, 1, 2 are [PAD], [UNK], [CLS].

    The vocabulary is every character seen (alone and as a ``##`` continuation), then the words seen at
    least ``min_frequency`` times, most frequent first, ties in alphabetical order, up to ``vocab_size``;
    words outside it are split into its pieces by WordPiece. Chosen this way, the same texts give the same
    ``tokenizer.json`` in every process (HF's ``WordPieceTrainer`` may break ties differently each time).
    """
    tok = Tokenizer(models.WordPiece({PAD: 0, UNK: 1, CLS: 2}, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    assert tok.normalizer is not None and tok.pre_tokenizer is not None
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    vocab = [PAD, UNK, CLS, *chars, *(f"##{c}" for c in chars)]
    known = set(vocab)
    for word, n in sorted(counts.items(), key=lambda wn: (-wn[1], wn[0])):
        if len(vocab) >= vocab_size or n < min_frequency:
            break
        if word not in known:
            vocab.append(word)
            known.add(word)
    tok.model = models.WordPiece({t: i for i, t in enumerate(vocab[:max(vocab_size, 3)])}, unk_token=UNK)
    return tok


def save_tokenizer(tok: Tokenizer, path: str) -> None:
    """Write ``path`` whole or not at all (a temporary file, then a rename)."""
    tok.save(f"{path}.tmp")
    os.replace(f"{path}.tmp", path)


def load_tokenizer(path: str) -> Tokenizer:
    return Tokenizer.from_file(path)


def pretrained_tokenizer(text_tower: str) -> Tokenizer | None:
    """The tokenizer a pretrained text tower was trained with; None for ``scratch``."""
    if text_tower == "minilm":
        from unigeo.model.minilm import minilm_tokenizer

        return minilm_tokenizer()
    if text_tower.startswith("siglip:"):
        from unigeo.model.siglip import siglip_tokenizer

        return siglip_tokenizer(text_tower[len("siglip:"):])
    return None


def encode(tok: Tokenizer, texts: list[str], max_len: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, max_len) and the mask (True where a token is real), padded with [PAD] (or ``<pad>``).

    [CLS] comes first and [SEP] last where the vocabulary has them (BERT-style towers); otherwise the
    text's tokens alone (SigLIP's, padded to the full length as it was trained).
    """
    pad_id = next((i for i in (tok.token_to_id(p) for p in PADS) if i is not None), None)
    if pad_id is None:
        raise ValueError("the tokenizer has no [PAD] or <pad> token: train it with train_tokenizer")
    cls_id, sep_id = tok.token_to_id(CLS), tok.token_to_id(SEP)
    head, tail = ([cls_id] if cls_id is not None else []), ([sep_id] if sep_id is not None else [])
    ids = torch.full((len(texts), max_len), pad_id, dtype=torch.long)
    mask = torch.zeros((len(texts), max_len), dtype=torch.bool)
    for i, enc in enumerate(tok.encode_batch(texts, add_special_tokens=False)):
        row = [*head, *enc.ids[: max(0, max_len - len(head) - len(tail))], *tail][:max_len]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = True
    return ids, mask
