"""The text a run of token pieces spells, read here without asking the teacher.

A teacher's ``/tokenize`` can return each token's piece (``return_token_strs``). The two
common tokenizer families write pieces that map back to text exactly:

- byte-level BPE (GPT-2, Llama 3, Qwen): every character of a piece stands for one byte,
  through the fixed byte-to-character table of GPT-2;
- SentencePiece (Gemma, Llama 2, Mistral): ``▁`` stands for a space, and ``<0xNN>`` pieces
  are raw bytes (byte fallback).

`piece_text` returns that text, or None when the pieces fit neither family or do not make
valid UTF-8: the caller then asks the teacher (``/detokenize``). `spells_target` says whether
a span's text ends with its target. Pieces with a ``▁`` or a
``<0xNN>`` piece are read as SentencePiece; else, when every character is in the byte-level
table, as byte-level BPE (whose vocabulary holds no other character); else as SentencePiece.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

SENTENCEPIECE_SPACE = "▁"
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@cache
def _byte_of_character() -> dict[str, int]:
    """GPT-2's table: printable Latin-1 bytes stand for themselves, the rest for 256 + n."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    characters = list(printable)
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + shifted)
            shifted += 1
    return {chr(c): b for b, c in zip(printable, characters, strict=True)}


def _byte_level(pieces: Sequence[str]) -> bytes | None:
    table = _byte_of_character()
    joined = "".join(pieces)
    if not all(character in table for character in joined):
        return None
    return bytes(table[character] for character in joined)


def _sentencepiece(pieces: Sequence[str]) -> bytes:
    out = bytearray()
    for piece in pieces:
        byte = _BYTE_PIECE.fullmatch(piece)
        if byte is not None:
            out.append(int(byte.group(1), 16))
        else:
            out.extend(piece.replace(SENTENCEPIECE_SPACE, " ").encode("utf-8"))
    return bytes(out)


def piece_text(pieces: Sequence[str]) -> str | None:
    """The text `pieces` spell in their family, or None when it cannot be told here."""
    if not pieces or not all(pieces):
        return None
    sentencepiece = any(
        SENTENCEPIECE_SPACE in piece or _BYTE_PIECE.fullmatch(piece) for piece in pieces
    )
    raw = None if sentencepiece else _byte_level(pieces)
    if raw is None:
        raw = _sentencepiece(pieces)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def spells_target(decoded: str | None, target: str) -> bool:
    """Whether a span's decoded text (None: not known) ends with the target.

    SentencePiece decoders drop the word-start space of the first token of a fragment, so
    a target's single leading space may be missing from its own decoding.
    """
    if decoded is None:
        return False
    return decoded.endswith(target) or (target.startswith(" ") and decoded == target[1:])
