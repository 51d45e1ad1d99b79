"""Teacher client for vLLM and other OpenAI-compatible servers, over http_endpoint.py.

A request's extra fields (`CallExtras`) reach a proposal as vLLM 0.32 takes them, on the chat
route (``/v1/chat/completions``, continuing the final message) and the completions route (a
`TemplatePrompt`) alike: the sampling fields in the body, over the teacher's `extra_body`;
``response_format`` as OpenAI's object (vLLM turns ``json_object`` and ``json_schema`` into
its structured outputs); ``logprobs`` as ``logprobs: true, top_logprobs: k`` (chat) or
``logprobs: k`` (completions). None of them goes to ``/tokenize`` or to a scoring read.
A request's chat template arguments make a view of the teacher (`with_prompt_fields`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import aiohttp

from cord_proxy.config import TeacherConfig, TemplatePrompt
from cord_proxy.errors import (
    TeacherCapabilityError,
    TeacherError,
    TeacherHTTPError,
    TeacherProtocolError,
)
from cord_proxy.teachers._client import StepCall, TeacherClient
from cord_proxy.teachers.answers import read_proposals
from cord_proxy.teachers.base import Message, Proposal, SpanScore
from cord_proxy.teachers.batch_call import PostedBatch
from cord_proxy.teachers.breaker import CircuitBreaker
from cord_proxy.teachers.endpoint import api_key_of, bearer_headers
from cord_proxy.teachers.http_endpoint import ROUTE_MISSING, HttpEndpoint
from cord_proxy.teachers.prompt_fields import (
    fields_identity,
    prompt_fields,
    unbounded,
    with_request_fields,
)
from cord_proxy.teachers.prompting import chat_messages, render_template, with_system_prompt
from cord_proxy.teachers.score_probe import (
    PROBE_PREFIX,
    PROBE_QUESTION,
    PROBE_TARGET,
    ScoringProbe,
    judge,
    refused,
)
from cord_proxy.teachers.shared_calls import SharedCalls
from cord_proxy.teachers.span_scoring import ReadMethod, SpanQuestion, SpanReader
from cord_proxy.teachers.span_tokens import AUXILIARY_ROUTES
from cord_proxy.teachers.turn_batches import Answers

T = TypeVar("T")
log = logging.getLogger(__name__)


class OpenAICompatTeacher(TeacherClient):
    """A teacher at an OpenAI-compatible endpoint (vLLM for scoring).

    A view of it (`with_prompt_fields`) is a shallow copy: every attribute is either read
    only or an object the copies share (the breaker, the slots, `HttpEndpoint`, the span reader,
    the probe's choice); only the body its prompt is derived from, and its count of
    `retries`, are its own.
    """

    def __init__(
        self,
        config: TeacherConfig,
        session: aiohttp.ClientSession | None = None,
        breaker: CircuitBreaker | None = None,
    ):
        super().__init__(config, breaker)
        self._base_url = (config.base_url or "").rstrip("/")
        self._endpoint = HttpEndpoint(
            name=config.name,
            base_url=self._base_url,
            timeout=config.timeout,
            max_concurrency=config.max_concurrency,
            auth=bearer_headers(api_key_of(config)),
            session=session,
            owns_session=session is None,
        )
        self._owner = True  # a view closes nothing of what it shares
        self.breaker.attach_probe(self, self._endpoint.answers, config.name)
        self._reader = SpanReader(
            config.name, config.model, self._base_url, self._post_read, self._post_many_read
        )
        self._shape_prompt(config.extra_body)
        # The probe's choice is kept once made; a failed probe is made again when next asked.
        self._probe: SharedCalls[ScoringProbe] = SharedCalls(1, lambda _: 1)

    def _shape_prompt(self, extra_body: Mapping[str, Any]) -> None:
        """Proposals carry `extra_body`; the part of it that shapes the prompt goes with
        ``/tokenize`` too (prompt_fields.py)."""
        self._extra_body = dict(extra_body)
        self._prompt_fields = prompt_fields(extra_body, chat=self._chat)
        self._score_identity = "|".join(
            (
                self._base_url,
                self.config.model,
                self.config.prompt.model_dump_json(),
                self.config.system_prompt or "",
                fields_identity(self._prompt_fields),
                self.config.score_method,
            )
        )

    def with_prompt_fields(self, fields: Mapping[str, Any]) -> OpenAICompatTeacher:
        """This teacher with a request's prompt `fields` (``chat_template_kwargs``, merged
        into its own; the request's keys win), in its proposals and its scoring alike.

        The view shares this teacher's session, breaker, slots, tokenize answers and scoring
        probe; its `score_identity` reflects the fields. Where the fields change nothing (the
        proxy renders the prompt, or they are the teacher's own), it is this teacher. Raises
        `ValueError` for a field that is not a prompt field.
        """
        body = with_request_fields(self._extra_body, fields, chat=self._chat)
        if body == self._extra_body:
            return self
        view = copy.copy(self)
        view._owner = False
        view._shape_prompt(body)
        return view

    @property
    def gives_logprobs(self) -> bool:
        """Its proposals carry their tokens' log-probabilities when a call asks for them."""
        return True

    @property
    def _session(self) -> aiohttp.ClientSession | None:
        """The HTTP session its views share: None before the first call and once closed."""
        return self._endpoint.session

    @property
    def score_identity(self) -> str:
        """Everything that decides a score: the endpoint, the model, and the prompt it reads
        (fixed with the teacher's prompt fields, `_shape_prompt`)."""
        return self._score_identity

    @property
    def _chat(self) -> bool:
        """Whether the server renders the prompt with its chat template (else the proxy does)."""
        return not isinstance(self.config.prompt, TemplatePrompt)

    async def aclose(self) -> None:
        """Close what the teacher owns; a view owns nothing, and closing it is a no-op."""
        if not self._owner:
            return
        await self.breaker.detach_probe(self)  # its check uses the session
        await self._probe.aclose()
        await self._endpoint.close()

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use inside the running event loop."""
        return self._endpoint.client()

    async def _propose(
        self, conversation: Sequence[Message], prefix: str, call: StepCall
    ) -> list[Proposal]:
        """The continuations of `prefix`, each within the room the teacher's context leaves.

        The reserve is at most a quarter of the context. When no room is left, the one
        proposal is an empty one marked `context_full`.
        """
        room = await self._room(conversation, prefix, call.reserve, call.max_tokens)
        if room is not None and room < 1:
            return [Proposal(text="", finish_reason="length", tokens=0, context_full=True)]
        allowed = call.max_tokens if room is None else min(call.max_tokens, room)
        url, body = self._proposal_request(conversation, prefix, call, allowed)
        chat, top = self._chat, call.extras.logprobs
        proposals = await self._post_read(
            url, body, lambda d: read_proposals(d, call.stop, self.name, chat=chat, logprobs=top)
        )
        if allowed < call.max_tokens:
            proposals = [_mark_context_full(p) for p in proposals]
        return proposals

    def _proposal_request(
        self, conversation: Sequence[Message], prefix: str, call: StepCall, max_tokens: int
    ) -> tuple[str, dict[str, Any]]:
        """The URL and body of one proposal call. The chat route asks each token's
        log-probability always (they count the tokens); `CallExtras.logprobs` adds the best
        alternatives, and on the completions route asks for the values at all."""
        extras = call.extras
        body = self._sampling_body(call, max_tokens)
        body.update(call.overrides())
        body.update(extras.sampling)
        if self._chat:
            body["messages"] = self._messages(conversation, prefix)
            body.update(continue_final_message=True, add_generation_prompt=False, logprobs=True)
            if extras.logprobs:
                body["top_logprobs"] = extras.logprobs
            url = self._base_url + "/chat/completions"
        else:
            body["prompt"] = self._render(conversation, prefix)
            body["logprobs"] = extras.logprobs or 0
            url = self._base_url + "/completions"
        if extras.response_format is not None:
            body["response_format"] = dict(extras.response_format)
        return url, body

    async def context_length(self) -> int | None:
        """The teacher's context in tokens: the server's ``max_model_len``, else the config's."""
        if self.config.context_length is not None:
            return self.config.context_length
        measured = await self._measure([Message(role="user", content=".")], "")
        return measured[1] if measured else None

    async def _room(
        self, conversation: Sequence[Message], prefix: str, reserve: int, max_tokens: int
    ) -> int | None:
        """Tokens left after the prompt and the reserve; None when there is room enough or the
        server cannot tell.

        A prompt has at most as many tokens as UTF-8 bytes, plus the template's own: once the
        context is known, a prompt whose bytes fit with room to spare is not tokenized, unless
        its prompt fields may add text of their own (tools, another template).
        """
        known = self.config.context_length or self._endpoint.context
        if known is not None and not unbounded(self._prompt_fields):
            full = with_system_prompt(conversation, self.config.system_prompt)
            bound = prompt_token_bound(full, prefix)
            if bound + max_tokens + min(reserve, known // 4) <= known:
                return None
        measured = await self._measure(conversation, prefix)
        if measured is None:
            return None
        prompt_tokens, served = measured
        self._endpoint.context = served
        context = self.config.context_length or served
        return context - prompt_tokens - min(reserve, context // 4)

    async def _measure(
        self, conversation: Sequence[Message], prefix: str
    ) -> tuple[int, int] | None:
        """(prompt tokens, max_model_len) from ``/tokenize``; None where it is not served.

        The request is the scorer's for the same prefix (span_scoring.py), so a step's
        proposal and the scoring of its candidates share one answer.
        """
        if self._endpoint.no_tokenize:
            return None
        try:
            ids, _, context = await self._reader.tokenize(
                self._tokenize_prompt(conversation, prefix), with_pieces=False
            )
        except TeacherHTTPError as error:
            if not _not_served(error):
                raise
            self._endpoint.no_tokenize = True
            return None
        if context is None or context < 1:
            raise TeacherProtocolError(self.name, "tokenize answered no max_model_len")
        return len(ids), context

    async def score(self, conversation: Sequence[Message], prefix: str, target: str) -> SpanScore:
        (scored,) = await self.score_many(conversation, [(prefix, target)])
        if isinstance(scored, TeacherError):
            raise scored
        return scored

    async def score_many(
        self, conversation: Sequence[Message], questions: Sequence[tuple[str, str]]
    ) -> list[SpanScore | TeacherError]:
        """Each (prefix, target)'s score, or the error for it: the spans are read together
        (teachers/span_scoring.py)."""
        if not self.can_score:
            raise TeacherCapabilityError(self.name, "this teacher does not have the score role")
        asked = [
            SpanQuestion(
                self._tokenize_prompt(conversation, prefix),
                self._tokenize_prompt(conversation, prefix + target),
                target,
            )
            for prefix, target in questions
            if target
        ]
        scored = await self._reader.score_many(asked, await self.scoring_method()) if asked else []
        answers = iter(scored)
        empty = SpanScore(tokens=(), logprobs=())
        return [next(answers) if target else empty for _, target in questions]

    async def scoring_method(self) -> ReadMethod:
        return (await self.scoring_choice()).method

    async def scoring_choice(self) -> ScoringProbe:
        """The configured method; for ``auto``, the probe's choice (probed once, kept)."""
        if self.config.score_method != "auto":
            return ScoringProbe(self.config.score_method, None, "configured")
        return await self._probe.call("probe", self.probe_scoring)

    async def probe_scoring(self) -> ScoringProbe:
        """Score one known span by ``cached`` and ``prompt_logprobs`` and compare them."""
        conversation = [Message(role="user", content=PROBE_QUESTION)]
        span = await self._reader.span(
            self._tokenize_prompt(conversation, PROBE_PREFIX),
            self._tokenize_prompt(conversation, PROBE_PREFIX + PROBE_TARGET),
        )
        reference = await self._reader.read(span, "prompt_logprobs")
        try:
            cached = await self._reader.read(span, "cached")
        except TeacherError as error:
            probe = refused(error.message)
        else:
            probe = judge(cached, reference, self._reader.forces)
        level = logging.INFO if probe.method == "cached" else logging.WARNING
        log.log(level, "scoring probe", extra={"teacher": self.name, "method": probe.describe()})
        return probe

    def _tokenize_prompt(self, conversation: Sequence[Message], prefix: str) -> dict[str, Any]:
        """The ``/tokenize`` body that renders the prompt exactly as the teacher's proposals
        read it: vLLM's defaults, then the teacher's prompt fields, then the open turn."""
        if not self._chat:
            prompt = self._render(conversation, prefix)
            return {"prompt": prompt, "add_special_tokens": True, **self._prompt_fields}
        return {
            "messages": self._messages(conversation, prefix),
            "add_special_tokens": False,
            **self._prompt_fields,
            "add_generation_prompt": False,
            "continue_final_message": True,
        }

    def _sampling_body(self, call: StepCall, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "n": call.n,
            "stop": list(call.stop),
            "max_tokens": max_tokens,
            "temperature": self.config.temperature,
            "top_p": self.config.top_p,
            **self._extra_body,
        }
        if call.seed is not None:
            body["seed"] = call.seed
        return body

    def _messages(self, conversation: Sequence[Message], prefix: str) -> list[dict[str, Any]]:
        return chat_messages(with_system_prompt(conversation, self.config.system_prompt), prefix)

    def _render(self, conversation: Sequence[Message], prefix: str) -> str:
        assert isinstance(self.config.prompt, TemplatePrompt)
        full = with_system_prompt(conversation, self.config.system_prompt)
        return render_template(self.config.prompt, full, prefix)

    def _post_read(
        self, url: str, body: dict[str, Any], read: Callable[[dict[str, Any]], T]
    ) -> Awaitable[T]:
        """One call, its answer read by `read`; tokenizing is an auxiliary route. (The call's
        own coroutine is returned: one fewer kept alive while it waits.)"""
        attempt = partial(self._attempt, url, body)
        return self._call(attempt, read, auxiliary=url.endswith(AUXILIARY_ROUTES))

    async def _post_many_read(
        self,
        url: str,
        bodies: Sequence[bytes],
        read: Callable[[dict[str, Any]], T],
        answers: Answers[T],
    ) -> None:
        """Every body POSTed at once as one call (batch_call.py), each answered by `read`."""
        post_all = partial(self._endpoint.post_json_many, slots=self._slots)
        batch = PostedBatch(url, bodies, post_all, read, answers)
        await self._call(batch.attempt, batch.ended, auxiliary=url.endswith(AUXILIARY_ROUTES))

    async def _attempt(self, url: str, body: dict[str, Any], _left: float) -> dict[str, Any]:
        """One try, within the teacher's slots (http_endpoint.py). The slot is taken and given
        back as ``async with`` would, without its two coroutines a call."""
        await self._slots.acquire()
        try:
            return await self._endpoint.post_json(url, body)
        finally:
            self._slots.release()


TEMPLATE_TOKENS_PER_MESSAGE = 32


def prompt_token_bound(conversation: Sequence[Message], prefix: str) -> int:
    """An upper bound on a prompt's tokens: a token is at least one UTF-8 byte of its text,
    and each turn's template adds at most `TEMPLATE_TOKENS_PER_MESSAGE`."""
    text = sum(len(m.content.encode()) for m in conversation) + len(prefix.encode())
    return text + TEMPLATE_TOKENS_PER_MESSAGE * (len(conversation) + 2)


def _not_served(error: TeacherError) -> bool:
    """An optional route the server does not have (not vLLM): not the teacher's failure."""
    return isinstance(error, TeacherHTTPError) and error.http_status in ROUTE_MISSING


def _mark_context_full(proposal: Proposal) -> Proposal:
    """A proposal cut by the room its context left, rather than by the step budget."""
    if proposal.finish_reason != "length":
        return proposal
    return dataclasses.replace(proposal, context_full=True)
