"""The text tokenizer: a small WordPiece vocabulary trained on the training texts with HF
``tokenizers`` (no download), saved as ``RUN/tokenizer.json`` and loaded from there for evaluation."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD, UNK, CLS = "[PAD]", "[UNK]", "[CLS]"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> Tokenizer:
    """A lower-cased WordPiece tokenizer fitted to ``texts``; ids 0, 1, 2 are [PAD], [UNK], [CLS]."""
    tok = Tokenizer(models.WordPiece(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=[PAD, UNK, CLS], show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def save_tokenizer(tok: Tokenizer, path: str) -> None:
    tok.save(path)


def load_tokenizer(path: str) -> Tokenizer:
    return Tokenizer.from_file(path)


def encode(tok: Tokenizer, texts: list[str], max_len: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, max_len) with [CLS] first, and the padding mask (True where a token is real)."""
    cls_id, pad_id = tok.token_to_id(CLS), tok.token_to_id(PAD)
    if cls_id is None or pad_id is None:
        raise ValueError("the tokenizer has no [CLS]/[PAD] token: train it with train_tokenizer")
    ids = torch.full((len(texts), max_len), pad_id, dtype=torch.long)
    for i, enc in enumerate(tok.encode_batch(texts, add_special_tokens=False)):
        row = [cls_id, *enc.ids[: max_len - 1]]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, torch.ne(ids, pad_id)
