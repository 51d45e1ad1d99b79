"""The text token pieces spell, read here, against real tokenizers' own decoding: DeepSeek's
byte-level BPE (the copy litellm ships) and the local teacher's Gemma 3 (SentencePiece with
byte fallback), over every contiguous run of tokens of texts with multi-byte characters."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from cord_proxy.local.paths import model_dir
from cord_proxy.teachers.piece_text import piece_text
from tests.support.fake_vllm_bpe import load_tokenizer

TEXTS = [
    "6 times 7 is 42.",
    " The farmer's 12 cows, and 30 more: 42!\n\n### Step 2.",
    "café naïve 🐄🐄 — 東京 \t tabs\n  two spaces",
    "</think> The final answer is \\boxed{42}",
]


def _runs(tokenizer: Tokenizer, text: str) -> list[tuple[list[int], list[str]]]:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    pieces = [str(tokenizer.id_to_token(i)) for i in ids]
    return [(ids[a:b], pieces[a:b]) for a in range(len(ids)) for b in range(a + 1, len(ids) + 1)]


def _reads_every_text(tokenizer: Tokenizer) -> None:
    """Every run of every text read here matches the tokenizer's decoding, some are read
    here, and a whole text reads back as itself."""
    for text in TEXTS:
        read = 0
        for ids, pieces in _runs(tokenizer, text):
            local = piece_text(pieces)
            if local is not None:
                assert local == tokenizer.decode(ids, skip_special_tokens=False), pieces
                read += 1
        assert read > 0
    whole = tokenizer.encode(TEXTS[2], add_special_tokens=False).ids
    assert piece_text([str(tokenizer.id_to_token(i)) for i in whole]) == TEXTS[2]


def test_byte_level_bpe_pieces_read_as_the_tokenizer_decodes() -> None:
    _reads_every_text(load_tokenizer())


def test_sentencepiece_pieces_read_as_the_tokenizer_decodes() -> None:
    path = model_dir() / "tokenizer.json"
    if not path.is_file():
        pytest.skip("the local teacher's model is not set up (bash deploy/local/setup.sh)")
    _reads_every_text(Tokenizer.from_file(str(path)))


def test_what_cannot_be_told_here_is_none() -> None:
    assert piece_text([]) is None
    assert piece_text(["a", ""]) is None  # a server that gave no piece for a token
    assert piece_text(["<0xF0>", "<0x9F>"]) is None  # half a character
    assert piece_text(["Ã"]) is None  # byte-level: a lone lead byte
    assert piece_text(["<0xF0>", "<0x9F>", "<0x90>", "<0x84>"]) == "🐄"
    assert piece_text(["▁café", "\n"]) == " café\n"
    assert piece_text(["Ġcaf", "Ã©", "Ċ"]) == " café\n"
