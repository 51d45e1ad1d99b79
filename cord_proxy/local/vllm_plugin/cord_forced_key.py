"""What the proxy and the forced-tokens processor agree on: the request field and the key.

A request names its forced tokens in ``vllm_xargs[FORCED_TOKENS]``: a JSON object from each
prompt's key to the token ids to write after it. vLLM hands a logits processor each prompt's
token ids but not its place in the request, so a prompt is found by a hash of its ids.
Standard library only: this file is imported by the proxy and, as a top-level module, by
the teacher's vLLM.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

FORCED_TOKENS = "cord_forced_tokens"
_MALFORMED = f"{FORCED_TOKENS} must be a JSON object of non-empty token-id lists"


def prompt_key(token_ids: Sequence[int]) -> str:
    """The CRC-32 of the ids as little-endian 32-bit integers, in hex."""
    packed = struct.pack(f"<{len(token_ids)}i", *token_ids)
    return format(zlib.crc32(packed), "08x")


def forced_field(table: Mapping[str, Sequence[int]]) -> str:
    """The ``vllm_xargs`` value naming each prompt key's tokens."""
    return json.dumps({key: list(ids) for key, ids in table.items()}, separators=(",", ":"))


def read_field(extra_args: Mapping[str, Any] | None) -> dict[str, list[int]] | None:
    """The table a request names, or None when it names none. Do not change it: the rows of
    one request share it (vLLM hands the field to the processor once per prompt).

    Raises ValueError when the field is not a JSON object of token-id lists.
    """
    raw = (extra_args or {}).get(FORCED_TOKENS)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ValueError(_MALFORMED)
    return _parsed(raw)


@lru_cache(maxsize=16)
def _parsed(raw: str) -> dict[str, list[int]]:
    try:
        table = json.loads(raw)
    except ValueError:
        table = None
    if not isinstance(table, dict) or not all(_token_ids(ids) for ids in table.values()):
        raise ValueError(_MALFORMED)
    return table


def _token_ids(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    )
