"""The tokenizer trained on built texts: saved, reloaded, the same ids; padding masked."""

from __future__ import annotations

from pathlib import Path

from unigeo.model.tokenizer import encode, load_tokenizer, save_tokenizer, train_tokenizer

TEXTS = [
    "Situated in Riverton's lively Brickyard neighborhood, this place offers cafe options including Aurora Cafe.",
    "This low-rise, residential part of Riverton has two schools and three banks.",
    "In the green, open Millpond area of Riverton, this spot sits near the park Millpond Green.",
] * 4


def test_train_save_load_and_encode(tmp_path: Path) -> None:
    tok = train_tokenizer(TEXTS, vocab_size=300, min_frequency=1)
    save_tokenizer(tok, str(tmp_path / "tokenizer.json"))
    again = load_tokenizer(str(tmp_path / "tokenizer.json"))
    ids, mask = encode(tok, TEXTS[:3], max_len=16)
    ids2, _ = encode(again, TEXTS[:3], max_len=16)
    assert ids.equal(ids2) and ids.shape == (3, 16)
    assert (ids[:, 0] == tok.token_to_id("[CLS]")).all() and mask[:, 0].all()
    short, short_mask = encode(tok, ["riverton"], max_len=16)
    assert short_mask.sum() == 1 + len(tok.encode("riverton", add_special_tokens=False).ids)
    assert (short[0, ~short_mask[0]] == tok.token_to_id("[PAD]")).all()
    assert tok.token_to_id("riverton") is not None  # a word of the training texts is in the vocabulary
