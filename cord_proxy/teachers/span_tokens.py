"""A target's token ids at a vLLM endpoint, found by the teacher's own tokenizer.

A span's target tokens are those of the rendered ``prefix + target`` that follow their
longest common prefix with the rendered ``prefix`` alone, both tokenized by the teacher
(``POST /tokenize``, with the prompt format the teacher reads). Identical requests share one
answer (`SharedCalls`). With `post_many`, the requests asked in one turn of the event loop (a
round's candidates) go out as one call (teachers/turn_batches.py, teachers/batch_call.py).
The decode check asks ``/detokenize`` whether a span's ids spell its target.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

import orjson

from cord_proxy.errors import (
    ScoredPromptTooLongError,
    SpanMismatchError,
    TeacherError,
    TeacherProtocolError,
)
from cord_proxy.teachers.piece_text import spells_target
from cord_proxy.teachers.read_answers import int_list
from cord_proxy.teachers.shared_calls import Asked, SharedCalls, request_key
from cord_proxy.teachers.token_prefix import common_prefix_length
from cord_proxy.teachers.turn_batches import Answers, TurnBatches

KEPT_TOKENS = 32768  # tokens of recent /tokenize answers kept for identical requests
T = TypeVar("T")
Tokenized = tuple[tuple[int, ...], Sequence[str], int | None]  # ids, pieces (or none), context
_STRINGS = frozenset({str})


class PostRead(Protocol):
    """Posts `body` to `url`; `read` turns the JSON answer into a value, inside the call,
    so that an answer of the wrong shape counts against the endpoint (teachers/breaker.py)."""

    def __call__(
        self, url: str, body: dict[str, Any], read: Callable[[dict[str, Any]], T]
    ) -> Awaitable[T]: ...


class PostManyRead(Protocol):
    """Posts every one of `bodies` (JSON, encoded) to `url` as one call
    (teachers/batch_call.py), each one's value (as `read` reads its answer) or error given to
    `answers` as it comes."""

    def __call__(
        self,
        url: str,
        bodies: Sequence[bytes],
        read: Callable[[dict[str, Any]], T],
        answers: Answers[T],
    ) -> Awaitable[None]: ...


@dataclass(frozen=True)
class TokenSpan:
    """A prompt's token ids, of which the last ones, from `start`, are the target."""

    prompt: tuple[int, ...]
    start: int
    pieces: tuple[str, ...] = ()

    @property
    def target(self) -> tuple[int, ...]:
        return self.prompt[self.start :]


def server_root(base_url: str) -> str:
    """vLLM serves ``/tokenize`` beside ``/v1``, at the server's root."""
    url = base_url.rstrip("/")
    return url.removesuffix("/v1")


class SpanTokens:
    """The spans of (prefix, full) prompt pairs at one endpoint, and their decode check."""

    def __init__(
        self,
        teacher: str,
        model: str,
        root: str,
        post: PostRead,
        post_many: PostManyRead | None = None,
    ):
        self.teacher = teacher
        self.model = model
        self.root = root
        self._post = post
        self._post_many = post_many
        # A step's candidates share their prefix, and so its /tokenize request.
        self._tokenized: SharedCalls[Tokenized] = SharedCalls(KEPT_TOKENS, lambda t: len(t[0]) + 1)
        self._tokenize_url = root + "/tokenize"
        self._tokenizing: TurnBatches[dict[str, Any], Tokenized] = TurnBatches(self._tokenize_many)

    async def span(self, prefix_prompt: dict[str, Any], full_prompt: dict[str, Any]) -> TokenSpan:
        (found,) = await self.find([(prefix_prompt, full_prompt)])
        if isinstance(found, TeacherError):
            raise found
        return found

    async def find(
        self, prompts: Sequence[tuple[dict[str, Any], dict[str, Any]]]
    ) -> list[TokenSpan | TeacherError]:
        """Each (prefix, full) pair's span, or the teacher's error for it. Every prompt is
        tokenized at once, identical requests once; when one of a pair fails, the other is
        left (`SharedCalls.call_groups`), not retried behind the caller."""
        asked = [
            [self._tokenize_call(prefix, with_pieces=False), self._tokenize_call(full)]
            for prefix, full in prompts
        ]
        return [self.span_of(pair) for pair in await self._tokenized.call_groups(asked)]

    def span_of(self, pair: list[Tokenized] | BaseException) -> TokenSpan | TeacherError:
        if isinstance(pair, TeacherError):
            return pair
        if isinstance(pair, BaseException):
            raise pair
        (prefix_ids, _, _), (full_ids, pieces, context) = pair
        if context is not None and len(full_ids) > context:
            return ScoredPromptTooLongError(
                self.teacher,
                f"the scored prompt has {len(full_ids)} tokens, over the teacher's context of "
                f"{context}",
            )
        start = common_prefix_length(prefix_ids, full_ids)
        if start == 0 or start >= len(full_ids):
            return SpanMismatchError(
                self.teacher, "the rendered target adds no token after the rendered prefix"
            )
        return TokenSpan(full_ids, start, _span_pieces(pieces, start, len(full_ids)))

    async def tokenize(self, prompt: dict[str, Any], *, with_pieces: bool = True) -> Tokenized:
        """The prompt's token ids, their pieces as the server sent them (none with
        `with_pieces` off, or where it sent none), and the server's ``max_model_len``.

        Identical requests running at once, or recently answered, share one answer.
        """
        return await self._tokenized.call(*self._tokenize_call(prompt, with_pieces=with_pieces))

    def _tokenize_call(
        self, prompt: dict[str, Any], *, with_pieces: bool = True
    ) -> Asked[Tokenized]:
        """The shared call's key, and what makes the call: with `post_many`, an ask of this
        turn's batch (a kept or running answer makes neither)."""
        url = self._tokenize_url
        body = {"model": self.model, "return_token_strs": with_pieces, **prompt}
        if self._post_many is not None:
            return request_key(url, body), partial(self._tokenizing.ask, body)
        return request_key(url, body), partial(self._post, url, body, self._tokens)

    def _tokenize_many(
        self, bodies: list[dict[str, Any]], answers: Answers[Tokenized]
    ) -> Awaitable[None]:
        """One batch's requests, encoded once here, as built: their fields' order can shape the
        prompt (a template that renders ``tools`` does), so the key's sorted JSON is not sent."""
        assert self._post_many is not None
        encoded = [orjson.dumps(body) for body in bodies]
        return self._post_many(self._tokenize_url, encoded, self._tokens, answers)

    def _tokens(self, data: dict[str, Any]) -> Tokenized:
        """The answer's ids, its pieces as sent (a span checks the ones it takes), and the
        server's context."""
        ids = tuple(int_list(data.get("tokens"), self.teacher, "tokenize 'tokens'"))
        pieces = data.get("token_strs")
        strings = pieces if isinstance(pieces, list) and len(pieces) == len(ids) else ()
        context = data.get("max_model_len")
        return ids, strings, context if isinstance(context, int) else None

    async def decoded_check(self, span: TokenSpan, target: str) -> None:
        """That the span's tokens spell the target as the teacher decodes them."""
        body = {"model": self.model, "tokens": list(span.target)}
        decoded = await self._post(self.root + "/detokenize", body, self._text)
        if not spells_target(decoded, target):
            raise SpanMismatchError(
                self.teacher,
                f"the {len(span.target)} scored tokens decode to {decoded[-80:]!r}, "
                f"which does not end with the target {target[-80:]!r}",
            )

    def _text(self, data: dict[str, Any]) -> str:
        decoded = data.get("prompt")
        if not isinstance(decoded, str):
            raise TeacherProtocolError(self.teacher, "detokenize answered no 'prompt' text")
        return decoded


def _span_pieces(pieces: Sequence[str], start: int, end: int) -> tuple[str, ...]:
    """The span's pieces; empty strings where the server sent none, or not only strings (the
    decode check then asks the server)."""
    taken = tuple(pieces[start:])
    return taken if taken and _STRINGS.issuperset(map(type, taken)) else ("",) * (end - start)
