"""Score a target span on the teacher's own token ids, at a vLLM endpoint.

A span is token ids, found by the teacher's own tokenizer (teachers/span_tokens.py).
Before a score is used, the span's ids are decoded (``POST /detokenize``) and must spell
the target: a span that does not is a `SpanMismatchError`, never a silent score.

Every method sends the prompt as token ids to ``/v1/completions``:

- ``cached``: reads that use the prefix cache, of the model's own values (vLLM's default
  ``logprobs_mode``, ``raw_logprobs``). Where the server loads cord-proxy's logits processor
  (the local teacher does), every span scored together (`score_many`: a round's candidates)
  is read in one forced generation that writes the targets (teachers/forced_read.py).
  Elsewhere, a one-token completion on the prompt up to each target token, asking for that
  token's log-probability with ``logprob_token_ids``: every span's first position in one
  request of many prompts, so that the contexts are in the cache, then every other position
  in one more (teachers/read_plan.py). A server that writes its own tokens instead of the
  forced ones gets one-token reads from then on; one that refuses a request of several spans
  has them read one span at a time.
- ``prompt_logprobs`` and ``echo``: one request that returns every prompt token's
  log-probability. vLLM skips its prefix cache for both, so each re-reads the whole trace.

The decode check reads the span's pieces here (teachers/piece_text.py) when the tokenizer's
family is known, and asks ``/detokenize`` otherwise, or when that reading does not spell the
target: the server's word is final before a span fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from cord_proxy.concurrency import gather_or_cancel, value_or_error
from cord_proxy.errors import (
    TeacherError,
    TeacherHTTPError,
    TeacherProtocolError,
)
from cord_proxy.teachers.base import SpanScore
from cord_proxy.teachers.forced_read import read_forced
from cord_proxy.teachers.piece_text import piece_text, spells_target
from cord_proxy.teachers.read_answers import (
    asked_logprob,
    entry_logprob,
    finite_logprob,
    first_choice,
    first_choice_logprobs,
    indexed_choices,
)
from cord_proxy.teachers.read_plan import Position, first_positions, later_positions, read_chunks
from cord_proxy.teachers.span_tokens import (
    PostManyRead,
    PostRead,
    SpanTokens,
    Tokenized,
    TokenSpan,
    server_root,
)

ReadMethod = Literal["cached", "prompt_logprobs", "echo"]
BATCH_REFUSED = frozenset({400, 413, 422})  # a server's answers to a request it will not take
T = TypeVar("T")


@dataclass(frozen=True)
class SpanQuestion:
    """One span to score: the prompts rendered with and without the target, and the target."""

    prefix: dict[str, Any]
    full: dict[str, Any]
    target: str


class SpanReader:
    """Token-id spans (`spans`: teachers/span_tokens.py), and their log-probabilities, at one
    OpenAI-compatible vLLM endpoint."""

    def __init__(
        self,
        teacher: str,
        model: str,
        base_url: str,
        post: PostRead,
        post_many: PostManyRead | None = None,
    ):
        self.teacher = teacher
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._post = post
        self._forces: bool | None = None  # whether the server writes forced tokens; unknown yet
        self.spans = SpanTokens(teacher, model, server_root(base_url), post, post_many)

    @property
    def forces(self) -> bool | None:
        """Whether the server writes forced tokens (None: not read by ``cached`` yet)."""
        return self._forces

    async def score(
        self,
        prefix_prompt: dict[str, Any],
        full_prompt: dict[str, Any],
        target: str,
        method: ReadMethod,
    ) -> SpanScore:
        """The log-probabilities of exactly the target's tokens, read by `method`."""
        (scored,) = await self.score_many(
            [SpanQuestion(prefix_prompt, full_prompt, target)], method
        )
        if isinstance(scored, TeacherError):
            raise scored
        return scored

    async def score_many(
        self, questions: Sequence[SpanQuestion], method: ReadMethod
    ) -> list[SpanScore | TeacherError]:
        """Each question's score, or the teacher's error for it; the spans are read together."""
        found = await self.spans.find([(q.prefix, q.full) for q in questions])
        spans = {k: span for k, span in enumerate(found) if isinstance(span, TokenSpan)}
        asked, checking = self._start_checks(spans, questions)
        try:
            read = await _caught(self.read_many(list(spans.values()), method))
        except BaseException:
            if checking is not None:
                checking.cancel()
                await asyncio.gather(checking, return_exceptions=True)  # ended, not left running
            raise
        checks = dict(zip(asked, await checking, strict=True)) if checking is not None else {}
        values = dict(zip(spans, read, strict=True)) if isinstance(read, list) else {}
        results: list[SpanScore | TeacherError] = []
        for k, outcome in enumerate(found):
            if not isinstance(outcome, TokenSpan):
                results.append(outcome)
            elif isinstance(checks.get(k), TeacherError):
                results.append(checks[k])  # type: ignore[arg-type]
            elif isinstance(read, TeacherError):
                results.append(read)
            else:
                results.append(_span_score(outcome, values[k], method))
        return results

    def _start_checks(
        self, spans: dict[int, TokenSpan], questions: Sequence[SpanQuestion]
    ) -> tuple[list[int], asyncio.Future[list[TeacherError | None]] | None]:
        """The decode checks that need the teacher, started to run beside the reads (a span
        whose pieces spell its target here needs none), and which spans they are for."""
        asked = [
            k
            for k, span in spans.items()
            if not spells_target(piece_text(span.pieces), questions[k].target)
        ]
        if not asked:
            return [], None
        checks = (_caught(self.spans.decoded_check(spans[k], questions[k].target)) for k in asked)
        return asked, asyncio.ensure_future(gather_or_cancel(*checks))

    async def tokenize(self, prompt: dict[str, Any], *, with_pieces: bool = True) -> Tokenized:
        return await self.spans.tokenize(prompt, with_pieces=with_pieces)

    async def span(self, prefix_prompt: dict[str, Any], full_prompt: dict[str, Any]) -> TokenSpan:
        return await self.spans.span(prefix_prompt, full_prompt)

    async def read(self, span: TokenSpan, method: ReadMethod) -> list[float]:
        (values,) = await self.read_many([span], method)
        return values

    async def read_many(self, spans: Sequence[TokenSpan], method: ReadMethod) -> list[list[float]]:
        """Each span's values; ``cached`` reads them together (the module says how)."""
        if not spans:
            return []
        if method == "cached":
            try:
                return await self._read_cached(spans)
            except TeacherHTTPError as error:
                if len(spans) == 1 or error.http_status not in BATCH_REFUSED:
                    raise
            alone = await gather_or_cancel(*(self._read_cached([span]) for span in spans))
            return [values for (values,) in alone]
        one = self._read_echo if method == "echo" else self._read_prompt_logprobs
        return list(await gather_or_cancel(*(one(span) for span in spans)))

    async def _read_cached(self, spans: Sequence[TokenSpan]) -> list[list[float]]:
        """Forced where the server writes what it is asked, else one-token reads; every span
        of a round by the same reads, so that their values compare on equal terms."""
        if self._forces is not False:
            asked = [(span.prompt[: span.start], span.target) for span in spans]
            try:
                forced = await read_forced(
                    self._post, self.base_url, self.model, self.teacher, asked
                )
            except TeacherHTTPError as error:
                if error.http_status not in BATCH_REFUSED:
                    raise
                forced = None  # a server that refuses forced reads
            self._forces = forced is not None
            if forced is not None:
                return forced
        return await self._read_positions_of(spans)

    async def _read_positions_of(self, spans: Sequence[TokenSpan]) -> list[list[float]]:
        """One-token reads: every first position in one request, every other in one more."""
        targets = [span.target for span in spans]
        values: dict[Position, float] = {}
        for positions in (first_positions(targets), later_positions(targets)):
            chunks = read_chunks(targets, positions)
            if len(chunks) == 1:  # the usual case: no task of its own
                read = [await self._read_positions(spans, chunks[0])]
            else:
                read = await gather_or_cancel(*(self._read_positions(spans, c) for c in chunks))
            for chunk, chunk_values in zip(chunks, read, strict=True):
                values.update(zip(chunk, chunk_values, strict=True))
        return [[values[(k, i)] for i in range(len(target))] for k, target in enumerate(targets)]

    async def _read_positions(
        self, spans: Sequence[TokenSpan], positions: Sequence[Position]
    ) -> list[float]:
        """One request: the prompt up to each position's token, asking for that token's value."""
        wanted = sorted({spans[k].target[i] for k, i in positions})
        prompts = [spans[k].prompt[: spans[k].start + i] for k, i in positions]  # tuples: no GC

        def values(data: dict[str, Any]) -> list[float]:
            choices = indexed_choices(data, len(positions), self.teacher)
            return [
                asked_logprob(choice, spans[k].target[i], self.teacher)
                for choice, (k, i) in zip(choices, positions, strict=True)
            ]

        return await self._greedy(
            prompts,
            values,
            logprobs=0,
            logprob_token_ids=wanted,
            return_tokens_as_token_ids=True,
        )

    async def _read_prompt_logprobs(self, span: TokenSpan) -> list[float]:
        def values(data: dict[str, Any]) -> list[float]:
            entries = first_choice(data, self.teacher).get("prompt_logprobs")
            if not isinstance(entries, list) or len(entries) != len(span.prompt):
                raise TeacherProtocolError(self.teacher, "prompt_logprobs do not match the prompt")
            return [
                entry_logprob(entries[span.start + i], token, self.teacher)
                for i, token in enumerate(span.target)
            ]

        return await self._greedy(list(span.prompt), values, prompt_logprobs=0)

    async def _read_echo(self, span: TokenSpan) -> list[float]:
        return await self._greedy(
            list(span.prompt),
            lambda data: self._echoed(span, data),
            max_tokens=0,
            echo=True,
            logprobs=0,
            return_tokens_as_token_ids=True,
        )

    async def _greedy(
        self,
        prompt: Sequence[int] | Sequence[Sequence[int]],
        read: Callable[[dict[str, Any]], list[float]],
        *,
        max_tokens: int = 1,
        **fields: Any,
    ) -> list[float]:
        """One greedy ``/completions`` request whose answer `read` turns into values."""
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            **fields,
        }
        return await self._post(self.base_url + "/completions", body, read)

    def _echoed(self, span: TokenSpan, data: dict[str, Any]) -> list[float]:
        logprobs = first_choice_logprobs(data)
        tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
        if not isinstance(tokens, list) or not isinstance(values, list):
            raise TeacherProtocolError(self.teacher, "echo returned no logprobs")
        if len(tokens) < len(span.prompt) or len(values) < len(span.prompt):
            raise TeacherProtocolError(self.teacher, "echo logprobs do not cover the prompt")
        expected = [f"token_id:{t}" for t in span.target]
        if tokens[span.start : len(span.prompt)] != expected:
            raise TeacherProtocolError(self.teacher, "echoed tokens differ from the prompt's")
        return [finite_logprob(v, self.teacher) for v in values[span.start : len(span.prompt)]]


async def _caught(work: Awaitable[T]) -> T | TeacherError:
    """`work`'s value, or the teacher's error it raised."""
    return await value_or_error(work, TeacherError)


def _span_score(span: TokenSpan, values: Sequence[float], method: ReadMethod) -> SpanScore:
    return SpanScore(
        tokens=span.pieces,
        logprobs=tuple(values),
        context_tokens=span.start,
        token_ids=span.target,
        method=method,
    )
