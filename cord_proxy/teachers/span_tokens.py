"""A target's token ids at a vLLM endpoint, found by the teacher's own tokenizer.

A span's target tokens are those of the rendered ``prefix + target`` that follow their
longest common prefix with the rendered ``prefix`` alone, both tokenized by the teacher
(with the prompt format the teacher reads). Where the server has cord-proxy's spans route
(``POST /cord/spans``: cord_proxy/local/vllm_plugin/cord_spans_wire.py; the local teacher
does), the pairs asked together go in one request, which answers each pair's full ids, where
the target starts, and the target's pieces. Elsewhere each prompt is one ``POST /tokenize``:
identical requests share one answer (`SharedCalls`), and with `post_many` the requests asked
in one turn of the event loop (a round's candidates) go out as one call
(teachers/turn_batches.py, teachers/batch_call.py). A server that answers the route with 404
or 405 is asked ``/tokenize`` from then on. The decode check asks ``/detokenize`` whether a
span's ids spell its target.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

import orjson

from cord_proxy.concurrency import gather_or_cancel
from cord_proxy.errors import (
    ScoredPromptTooLongError,
    SpanMismatchError,
    TeacherError,
    TeacherHTTPError,
    TeacherProtocolError,
)
from cord_proxy.local.vllm_plugin.cord_spans_wire import ROUTE, common_prefix_length
from cord_proxy.teachers.http_endpoint import ROUTE_MISSING
from cord_proxy.teachers.piece_text import spells_target
from cord_proxy.teachers.read_answers import int_list
from cord_proxy.teachers.shared_calls import Asked, SharedCalls, request_key
from cord_proxy.teachers.turn_batches import Answers, TurnBatches

KEPT_TOKENS = 32768  # tokens of recent /tokenize answers kept for identical requests
PAIRS_PER_REQUEST = 64  # pairs in one request to the spans route
WHOLE_REFUSED = (400, 413, 422)  # the route refused the request as a whole, not one pair
ERROR_EXCERPT = 300
AUXILIARY_ROUTES = ("/tokenize", "/detokenize", ROUTE)  # they serve a call, not calls of their own
T = TypeVar("T")
Tokenized = tuple[tuple[int, ...], Sequence[str], int | None]  # ids, pieces (or none), context
Pair = tuple[dict[str, Any], dict[str, Any]]  # the prompts rendered without and with the target
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


RouteFound = list[TokenSpan | TeacherError] | None  # a chunk's spans; None: refused whole


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
        self._spans_url = root + ROUTE
        self.route: bool | None = None  # whether the server serves the spans route; unknown yet
        self._routing: TurnBatches[Sequence[Pair], RouteFound] = TurnBatches(self._route_many)
        self._tokenizing: TurnBatches[dict[str, Any], Tokenized] = TurnBatches(self._tokenize_many)

    async def span(self, prefix_prompt: dict[str, Any], full_prompt: dict[str, Any]) -> TokenSpan:
        (found,) = await self.find([(prefix_prompt, full_prompt)])
        if isinstance(found, TeacherError):
            raise found
        return found

    async def find(self, prompts: Sequence[Pair]) -> list[TokenSpan | TeacherError]:
        """Each (prefix, full) pair's span, or the teacher's error for it: by the spans route
        where the server has it, else by ``/tokenize`` (the module says how)."""
        if prompts and self.route is not False:
            found = await self._find_by_route(prompts)
            if found is not None:
                return found
        return await self._find_by_tokenize(prompts)

    async def _find_by_route(
        self, prompts: Sequence[Pair]
    ) -> list[TokenSpan | TeacherError] | None:
        """The spans, asked with the others of this turn of the event loop (`_route_many`);
        None where the route refused them as a whole (the pairs are then tokenized one prompt
        a request)."""
        chunks = [
            prompts[at : at + PAIRS_PER_REQUEST] for at in range(0, len(prompts), PAIRS_PER_REQUEST)
        ]
        asked = [self._routing.ask(chunk) for chunk in chunks]
        found = [await asked[0]] if len(asked) == 1 else await asyncio.gather(*asked)
        if any(spans is None for spans in found):
            return None
        return [span for spans in found if spans is not None for span in spans]

    async def _route_many(self, asks: list[Sequence[Pair]], answers: Answers[RouteFound]) -> None:
        """One turn's asks, in requests of at most `PAIRS_PER_REQUEST` pairs."""
        requests = _grouped([len(pairs) for pairs in asks], PAIRS_PER_REQUEST)
        await gather_or_cancel(*(self._route_request(asks, places, answers) for places in requests))

    async def _route_request(
        self, asks: list[Sequence[Pair]], places: list[int], answers: Answers[RouteFound]
    ) -> None:
        found = await self._spans_request([pair for place in places for pair in asks[place]])
        at = 0
        for place in places:
            count = len(asks[place])
            answers.give(place, None if found is None else found[at : at + count])
            at += count

    async def _spans_request(self, pairs: Sequence[Pair]) -> RouteFound:
        body = {"model": self.model, "pairs": [{"prefix": p, "full": f} for p, f in pairs]}
        try:
            found = await self._post(self._spans_url, body, partial(self._read_spans, len(pairs)))
        except TeacherHTTPError as error:
            if error.http_status in ROUTE_MISSING:
                self.route = False
            if error.http_status in ROUTE_MISSING + WHOLE_REFUSED:
                return None
            return [error] * len(pairs)
        except TeacherError as error:
            return [error] * len(pairs)
        self.route = True
        return found

    def _read_spans(self, count: int, data: dict[str, Any]) -> list[TokenSpan | TeacherError]:
        entries = data.get("spans")
        if not isinstance(entries, list) or len(entries) != count:
            raise TeacherProtocolError(self.teacher, f"the spans route answered no {count} spans")
        return [self._route_span(entry) for entry in entries]

    def _route_span(self, entry: Any) -> TokenSpan | TeacherError:
        """One pair's answer from the spans route: its span, or the error its server gave."""
        if not isinstance(entry, dict):
            raise TeacherProtocolError(
                self.teacher, "the spans route answered a span that is no object"
            )
        if "error" in entry:
            return self._pair_error(entry["error"])
        ids = tuple(int_list(entry.get("tokens"), self.teacher, "spans 'tokens'"))
        start = entry.get("start")
        if type(start) is not int or not 0 <= start <= len(ids):
            raise TeacherProtocolError(
                self.teacher, "the spans route answered a start outside its tokens"
            )
        pieces = entry.get("token_strs")
        strings = pieces if isinstance(pieces, list) and len(pieces) == len(ids) - start else ()
        context = entry.get("max_model_len")
        return self._span(ids, start, strings, context if isinstance(context, int) else None)

    def _pair_error(self, error: Any) -> TeacherHTTPError:
        """A pair the server could not tokenize, as ``/tokenize`` would have failed."""
        message = error.get("message") if isinstance(error, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if not isinstance(message, str) or type(code) is not int or not 400 <= code <= 599:
            raise TeacherProtocolError(self.teacher, "the spans route answered a malformed error")
        return TeacherHTTPError(
            self.teacher, f"HTTP {code}: {message[:ERROR_EXCERPT]}", http_status=code
        )

    async def _find_by_tokenize(self, prompts: Sequence[Pair]) -> list[TokenSpan | TeacherError]:
        """Every prompt tokenized at once, identical requests once; when one of a pair fails,
        the other is left (`SharedCalls.call_groups`), not retried behind the caller."""
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
        start = common_prefix_length(prefix_ids, full_ids)
        return self._span(full_ids, start, pieces[start:], context)

    def _span(
        self, ids: tuple[int, ...], start: int, pieces: Sequence[str], context: int | None
    ) -> TokenSpan | TeacherError:
        """The span of a full prompt's `ids` from `start` (`pieces`: those of the target)."""
        if context is not None and len(ids) > context:
            return ScoredPromptTooLongError(
                self.teacher,
                f"the scored prompt has {len(ids)} tokens, over the teacher's context of {context}",
            )
        if start == 0 or start >= len(ids):
            return SpanMismatchError(
                self.teacher, "the rendered target adds no token after the rendered prefix"
            )
        return TokenSpan(ids, start, _span_pieces(pieces, len(ids) - start))

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


def _grouped(sizes: Sequence[int], most: int) -> list[list[int]]:
    """The places of `sizes`, in order, in groups of at most `most` in all (a larger one alone)."""
    groups: list[list[int]] = []
    total = most
    for place, size in enumerate(sizes):
        if total + size > most:
            groups.append([])
            total = 0
        groups[-1].append(place)
        total += size
    return groups


def _span_pieces(pieces: Sequence[str], count: int) -> tuple[str, ...]:
    """The target's `count` pieces; empty strings where the server sent none, or not only
    strings (the decode check then asks the server)."""
    taken = tuple(pieces)
    return taken if taken and _STRINGS.issuperset(map(type, taken)) else ("",) * count
