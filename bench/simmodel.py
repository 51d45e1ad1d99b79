"""The simulated teacher's model: tokens, texts, log-probabilities and latencies.

Everything here is a pure, deterministic function of the request: the same prompt to the
same model gives the same text, the same log-probabilities and the same latency (the
jitter is drawn from a generator seeded by a hash of the request). A benchmark fixture,
not a language model.

Every proposed step carries a marker ``[sim:ID]`` at its start. A later prompt that
contains the step therefore names it, which lets the simulator log which proposal a score
or an answer request belongs to; `bench.critical` rebuilds the ideal critical path from it.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

TOKEN_CHARS = 4
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
MARKER = re.compile(r"\[sim:([0-9a-f]{10})\]")
WORDS = (
    "so",
    "the",
    "sum",
    "is",
    "then",
    "we",
    "check",
    "each",
    "term",
    "and",
    "carry",
    "one",
    "next",
    "add",
    "both",
    "sides",
    "which",
    "gives",
    "value",
    "again",
)


@dataclass(frozen=True)
class ModelSpec:
    """One simulated model: its speed, its jitter and the shape of its traces."""

    name: str
    fixed_s: float = 0.02
    per_token_s: float = 0.01
    prefill_per_token_s: float = 0.00005
    score_fixed_s: float = 0.02
    jitter_sigma: float = 0.1
    steps: int = 10
    step_tokens: tuple[int, int] = (16, 40)
    answer: str = "42"

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> ModelSpec:
        values = dict(data)
        if "step_tokens" in values:
            low, high = values["step_tokens"]
            values["step_tokens"] = (int(low), int(high))
        return cls(name=name, **values)


@dataclass(frozen=True)
class SimConfig:
    seed: int
    models: dict[str, ModelSpec] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimConfig:
        models = {
            name: ModelSpec.from_dict(name, spec) for name, spec in data.get("models", {}).items()
        }
        if not models:
            raise ValueError("the simulator config names no model")
        return cls(seed=int(data.get("seed", 0)), models=models)


@dataclass(frozen=True)
class Choice:
    text: str
    tokens: int
    finish_reason: str
    stop_reason: str | None
    marker: str | None


def digest(*parts: str | int) -> int:
    """A stable 64-bit hash of the parts."""
    blob = "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big")


def tokenize(text: str) -> list[str]:
    """Four-character pieces; the last one may be shorter."""
    return [text[i : i + TOKEN_CHARS] for i in range(0, len(text), TOKEN_CHARS)]


def count_tokens(text: str) -> int:
    return math.ceil(len(text) / TOKEN_CHARS)


def token_id(piece: str) -> int:
    return zlib.crc32(piece.encode("utf-8", "surrogatepass")) % VOCAB_SIZE


VOCAB_SIZE = 262_144


class Vocabulary:
    """Token ids for the simulator's pieces, two-way: ids are crc32-based, collisions probe on.

    A piece gets its id the first time it is seen, so ids sent back by a client (token-id
    prompts, ``/detokenize``) always name a piece this server has handed out.
    """

    def __init__(self) -> None:
        self.pieces: dict[int, str] = {}
        self.ids: dict[str, int] = {}

    def id_of(self, piece: str) -> int:
        found = self.ids.get(piece)
        if found is not None:
            return found
        token = token_id(piece)
        while token in self.pieces:
            token = (token + 1) % VOCAB_SIZE
        self.pieces[token] = piece
        self.ids[piece] = token
        return token

    def encode(self, text: str) -> list[int]:
        return [self.id_of(piece) for piece in tokenize(text)]

    def decode(self, ids: list[int]) -> str:
        """The text of `ids`; a `KeyError` names an id this server never handed out."""
        return "".join(self.pieces[token] for token in ids)


def render_chat(
    messages: list[dict[str, Any]], *, continue_final: bool, add_generation_prompt: bool
) -> str:
    """A minimal chat template: ``<|role|>`` headers; a continued last turn stays open."""
    parts: list[str] = []
    for index, message in enumerate(messages):
        content = str(message.get("content") or "")
        is_last = index == len(messages) - 1
        if is_last and continue_final and message.get("role") == "assistant":
            parts.append(f"<|assistant|>\n{content}")
        else:
            parts.append(f"<|{message.get('role')}|>\n{content}\n")
    if add_generation_prompt and not continue_final:
        parts.append("<|assistant|>\n")
    return "".join(parts)


def conversation_key(prompt: str) -> str:
    """Which client request a teacher call belongs to: a hash of the prompt before the trace."""
    head = prompt.split(THINK_OPEN, 1)[0]
    return f"{digest(head):016x}"


def markers(prompt: str) -> list[str]:
    return MARKER.findall(prompt)


def jitter(config: SimConfig, spec: ModelSpec, *key: str | int) -> float:
    """A log-normal factor with median 1, fixed by the request."""
    if spec.jitter_sigma <= 0:
        return 1.0
    rng = random.Random(digest(config.seed, spec.name, *key))
    return rng.lognormvariate(0.0, spec.jitter_sigma)


def propose_latency(
    config: SimConfig, spec: ModelSpec, prompt: str, choices: list[Choice]
) -> float:
    generated = max((c.tokens for c in choices), default=0)
    base = spec.fixed_s + spec.prefill_per_token_s * count_tokens(prompt)
    return (base + spec.per_token_s * generated) * jitter(config, spec, "propose", prompt)


def score_latency(config: SimConfig, spec: ModelSpec, prompt: str) -> float:
    base = spec.score_fixed_s + spec.prefill_per_token_s * count_tokens(prompt)
    return base * jitter(config, spec, "score", prompt)


MASK64 = (1 << 64) - 1


def _mix(value: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash of an integer."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK64
    return value ^ (value >> 31)


def logprob_base(config: SimConfig, spec: ModelSpec) -> int:
    """What fixes the log-probabilities besides the token and its position: the model."""
    return digest(config.seed, spec.name, "logprobs")


def position_logprob(base: int, position: int, token: int) -> float:
    """The log-probability in [-4, 0) of token id `token` at prompt position `position`.

    A function of the model, the position and the id only, so every way of asking for it
    (prompt logprobs, echo, a forced one-token read) reads the same value.
    """
    mixed = _mix(base ^ _mix(position * 0x9E3779B97F4A7C15 + token) & MASK64)
    return -4.0 * (mixed / 2.0**64) - 1e-3


def token_logprobs(config: SimConfig, spec: ModelSpec, ids: list[int]) -> list[float]:
    """Deterministic log-probabilities of the prompt's tokens `ids`, one a position."""
    base = logprob_base(config, spec)
    return [position_logprob(base, position, token) for position, token in enumerate(ids)]


def _words(seed: int, chars: int) -> str:
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < chars:
        word = WORDS[rng.randrange(len(WORDS))]
        out.append(word)
        size += len(word) + 1
    return " ".join(out)


def step_body(config: SimConfig, spec: ModelSpec, prompt: str, index: int) -> tuple[str, str]:
    """One step's text (starting with its marker) and the marker id."""
    seed = digest(config.seed, spec.name, "step", prompt, index)
    low, high = spec.step_tokens
    tokens = low + seed % (high - low + 1)
    marker = f"{seed:016x}"[:10]
    head = f" [sim:{marker}] "
    text = head + _words(seed, tokens * TOKEN_CHARS - len(head) - 2) + "\n\n"
    return text, marker


def _truncate(text: str, max_tokens: int) -> tuple[str, bool]:
    limit = max_tokens * TOKEN_CHARS
    return (text[:limit], True) if len(text) > limit else (text, False)


def generate(
    config: SimConfig, spec: ModelSpec, prompt: str, stop: list[str], max_tokens: int, index: int
) -> Choice:
    """The continuation of `prompt`: one step, the rest of the trace, or the final answer."""
    if THINK_CLOSE in prompt.rsplit(THINK_OPEN, 1)[-1]:
        return _finish(f"{spec.answer}", max_tokens, None, None)
    depth = len(markers(prompt)) + 1
    step_stops = [s for s in stop if s != THINK_CLOSE]
    if step_stops:
        body, marker = step_body(config, spec, prompt, index)
        closing = depth >= spec.steps and THINK_CLOSE in stop
        return _finish(body, max_tokens, THINK_CLOSE if closing else step_stops[0], marker)
    return _whole_trace(config, spec, prompt, stop, max_tokens, index, depth)


def _whole_trace(
    config: SimConfig,
    spec: ModelSpec,
    prompt: str,
    stop: list[str],
    max_tokens: int,
    index: int,
    depth: int,
) -> Choice:
    parts: list[str] = []
    first_marker: str | None = None
    for step in range(depth, max(spec.steps, depth) + 1):
        body, marker = step_body(config, spec, prompt + "".join(parts), index)
        first_marker = first_marker or marker
        parts.append(f"### Step {step}." + body if parts else body)
    text = "".join(parts)
    if THINK_CLOSE in stop:
        return _finish(text, max_tokens, THINK_CLOSE, first_marker)
    return _finish(f"{text}{THINK_CLOSE}\n\n{spec.answer}", max_tokens, None, first_marker)


def _finish(text: str, max_tokens: int, stop_reason: str | None, marker: str | None) -> Choice:
    text, cut = _truncate(text, max_tokens)
    if cut:
        return Choice(text, count_tokens(text), "length", None, marker)
    return Choice(text, count_tokens(text), "stop", stop_reason, marker)
