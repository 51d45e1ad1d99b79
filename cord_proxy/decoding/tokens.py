"""How the thinking budget counts a trace (docs/method.md, "The thinking budget").

Teachers tokenise differently, so a trace is counted one way whoever wrote it: every step's
text as the trace holds it (the driver's marker and separator with the teacher's body), in
tiktoken's ``o200k_base`` encoding, each step on its own and summed.
"""

from __future__ import annotations

import asyncio
from functools import cache

import tiktoken

from cord_proxy.teachers.capabilities import prepare_litellm_env

ENCODING = "o200k_base"


@cache
def _encoding() -> tiktoken.Encoding:
    prepare_litellm_env()  # tiktoken reads the encoding litellm ships; nothing is fetched
    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    """The tokens of `text` in the budget's one encoding."""
    return len(_encoding().encode(text, disallowed_special=()))


async def load_encoding() -> None:
    """Load the encoding off the event loop: its first load reads a file (about 0.4 s)."""
    if _encoding.cache_info().currsize == 0:
        await asyncio.to_thread(_encoding)
