"""Hosted teachers through litellm (kind ``litellm``): propose-only, with retries.

One client for every provider litellm knows (OpenAI, Anthropic, DeepSeek, Gemini,
OpenRouter, a vLLM server as ``hosted_vllm/<model>`` with ``base_url``, ...).

Proposing. Where the provider continues a prefilled assistant message, the partial trace
is that message: vLLM is asked with ``continue_final_message`` (``hosted_vllm``), other
providers with litellm's ``"prefix": true`` message flag (Anthropic, DeepSeek, Mistral).
Elsewhere the teacher is sent an instruction that shows the trace so far and asks for
exactly the next step, starting with the step marker; a repeated marker is removed from
the reply. `capabilities.litellm_capabilities` decides which, from the config's
``assistant_prefill`` or litellm's model map.

Stop strings. vLLM says which stop string ended a choice; most hosted APIs only say
"stop". For those, a plain stop is read as the end of a step, ``</think>`` is not sent as
a stop string, and the reply is cut on our side at the first stop string it contains (so
a teacher that writes ``</think>`` closes the trace).

Scoring is never sent: `score` raises `TeacherCapabilityError` without any I/O (see
`capabilities` for why no provider scores through litellm).

Usage: tokens come from the response's usage (litellm's `token_counter` per choice when
n > 1), cost from `litellm.completion_cost` (0.0 for a model litellm has no price for).
A call's prompt tokens are put on its first proposal, so that sums over proposals are
exact; its cost is split evenly over its proposals.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cord_proxy.teachers.capabilities import prepare_litellm_env

prepare_litellm_env()

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import litellm  # noqa: E402
from litellm.exceptions import APIConnectionError, Timeout  # noqa: E402
from litellm.types.utils import ModelResponse  # noqa: E402

from cord_proxy.config import TeacherConfig  # noqa: E402
from cord_proxy.errors import (  # noqa: E402
    ConfigError,
    TeacherCapabilityError,
    TeacherError,
    TeacherHTTPError,
    TeacherProtocolError,
    TeacherTimeoutError,
    TeacherUnreachableError,
)
from cord_proxy.secret_refs import resolve_secret  # noqa: E402
from cord_proxy.teachers.base import (  # noqa: E402
    CallStats,
    FinishReason,
    Message,
    Proposal,
    ScoreRequest,
    SpanScore,
)
from cord_proxy.teachers.breaker import CircuitBreaker  # noqa: E402
from cord_proxy.teachers.capabilities import (  # noqa: E402
    HostedCapabilities,
    litellm_capabilities,
)
from cord_proxy.teachers.prompting import chat_messages, with_system_prompt  # noqa: E402
from cord_proxy.teachers.retry import (  # noqa: E402
    Retryable,
    RetryPolicy,
    call_with_retries,
    is_retryable_status,
    parse_retry_after,
)

litellm.suppress_debug_info = True

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
MAX_PROVIDER_STOPS = 4  # the OpenAI API takes at most four stop strings
ERROR_EXCERPT = 300

STEP_INSTRUCTION = (
    "You are writing a step-by-step reasoning trace for the conversation above, one step "
    "at a time. The trace so far is between <trace> and </trace>.\n\n"
    "<trace>\n{trace}\n</trace>\n\n"
    "Write exactly the next step of the reasoning and nothing after it.{start} "
    "If the reasoning is complete, write " + THINK_CLOSE + " right after your last step."
)
ANSWER_INSTRUCTION = (
    "You have finished reasoning about the conversation above. Your reasoning is between "
    "<trace> and </trace>.\n\n<trace>\n{trace}\n</trace>\n\n"
    "Now write the final answer to the question, and nothing else."
)


class HostedTeacher:
    """A teacher reached through ``litellm.acompletion``: it proposes and never scores."""

    def __init__(
        self,
        config: TeacherConfig,
        capabilities: HostedCapabilities | None = None,
        breaker: CircuitBreaker | None = None,
    ):
        if config.kind != "litellm":
            raise ConfigError(f"teacher '{config.name}': HostedTeacher needs kind 'litellm'")
        if capabilities is None:
            try:
                capabilities = litellm_capabilities(config)
            except ValueError as error:
                raise ConfigError(f"teacher '{config.name}': {error}") from None
        self.config = config
        self.capabilities = capabilities
        self.breaker = breaker or CircuitBreaker(config.breaker_threshold, config.breaker_cooldown)
        self.stats = CallStats()
        self.retries = 0
        self._api_key = resolve_secret(config.api_key)
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._policy = RetryPolicy(max_retries=config.max_retries, deadline_s=config.timeout)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def can_propose(self) -> bool:
        return "propose" in self.config.roles

    @property
    def can_score(self) -> bool:
        return self.capabilities.can_score and "score" in self.config.roles

    @property
    def score_identity(self) -> str:
        return f"litellm|{self.config.base_url or ''}|{self.config.model}"

    async def aclose(self) -> None:
        """litellm owns its HTTP clients; stop its background logging task on this loop."""
        await stop_litellm_worker()

    async def score(self, conversation: Sequence[Message], prefix: str, target: str) -> SpanScore:
        raise TeacherCapabilityError(
            self.name,
            f"cannot score: provider {self.capabilities.provider} returns no prompt "
            "log-probabilities through litellm (hosted teachers only propose)",
        )

    async def score_many(
        self, conversation: Sequence[Message], requests: Sequence[ScoreRequest]
    ) -> list[SpanScore]:
        if not requests:
            return []
        return [await self.score(conversation, requests[0].prefix, requests[0].target)]

    async def propose(
        self,
        conversation: Sequence[Message],
        prefix: str,
        *,
        n: int,
        stop: Sequence[str],
        max_tokens: int,
        seed: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        reserve: int = 0,
    ) -> list[Proposal]:
        """The next step(s); a provider's context limit is its own (`reserve` is not used)."""
        caps = self.capabilities
        answering = prefix.rstrip().endswith(THINK_CLOSE)
        marker = "" if caps.assistant_prefill or answering else step_marker(prefix, stop)
        sent = provider_stops(stop, marker, exact=caps.reports_stop_reason)
        request = self._request(conversation, prefix, marker, answering, sent, max_tokens, seed)
        if temperature is not None:
            request["temperature"] = temperature
        if top_p is not None:
            request["top_p"] = top_p
        calls = [n] if n == 1 or caps.supports("n") else [1] * n
        responses = await asyncio.gather(*(self._complete(request, k) for k in calls))
        exact = caps.assistant_prefill and caps.reports_stop_reason
        flagged = caps.assistant_prefill and not caps.reports_stop_reason
        trimmed = flagged and prefix != prefix.rstrip()
        proposals: list[Proposal] = []
        for response in responses:
            proposals += self._proposals(response, stop, sent, marker, exact, trimmed)
        return proposals

    def _request(
        self,
        conversation: Sequence[Message],
        prefix: str,
        marker: str,
        answering: bool,
        sent: Mapping[str, str],
        max_tokens: int,
        seed: int | None,
    ) -> dict[str, Any]:
        caps = self.capabilities
        full = with_system_prompt(conversation, self.config.system_prompt)
        extra: dict[str, Any] = dict(self.config.extra_body)
        if caps.assistant_prefill:
            if caps.reports_stop_reason:  # vLLM
                messages = chat_messages(full, prefix)
                extra.update(continue_final_message=True, add_generation_prompt=False)
            else:  # litellm's prefix flag; Anthropic refuses a prefill ending in whitespace
                messages = chat_messages(full, prefix.rstrip())
                messages[-1]["prefix"] = True
        else:
            messages = chat_messages(full, "")[:-1]
            messages.append({"role": "user", "content": instruction(prefix, marker, answering)})
        request: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self.config.temperature,
            "top_p": self.config.top_p,
        }
        if sent and caps.supports("stop"):
            request["stop"] = list(sent)[:MAX_PROVIDER_STOPS]
        chosen_seed = seed if seed is not None else self.config.seed
        if chosen_seed is not None and caps.supports("seed"):
            request["seed"] = chosen_seed
        if self.config.base_url:
            request["api_base"] = self.config.base_url
        if self._api_key:
            request["api_key"] = self._api_key
        if extra:
            request["extra_body"] = extra
        return request

    async def _complete(self, request: dict[str, Any], n: int) -> ModelResponse:
        """One ``acompletion`` with retries, counted in `stats`; errors as `TeacherError`."""
        body = {**request, "n": n} if n > 1 else request
        started = time.perf_counter()
        self.stats.propose_calls += 1
        try:
            return await self.breaker.call(
                self.name,
                lambda: call_with_retries(
                    lambda left: self._attempt(body, left), self._policy, on_retry=self._on_retry
                ),
            )
        except TimeoutError:
            error: TeacherError = TeacherTimeoutError(
                self.name, f"no answer within {self.config.timeout:g} s"
            )
            self._record_failure(error)
            raise error from None
        except TeacherError as failure:
            self._record_failure(failure)
            raise
        finally:
            self.stats.latency_s += time.perf_counter() - started

    async def _attempt(self, body: dict[str, Any], seconds_left: float) -> ModelResponse:
        async with self._slots:
            try:
                response = await litellm.acompletion(
                    **body, timeout=max(seconds_left, 0.001), num_retries=0, max_retries=0
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise self._mapped(exc) from None
        if not isinstance(response, ModelResponse):
            raise TeacherProtocolError(self.name, "litellm returned a stream, not a response")
        return response

    def _mapped(self, exc: Exception) -> TeacherError | Retryable:
        """A litellm exception as the error to raise: a `Retryable` when it may pass."""
        detail = f"{type(exc).__name__}: {str(exc)[:ERROR_EXCERPT]}"
        if isinstance(exc, Timeout):
            return TeacherTimeoutError(self.name, detail)
        if isinstance(exc, APIConnectionError) or connection_cause(exc) is not None:
            return Retryable(
                TeacherUnreachableError(
                    self.name,
                    f"cannot connect to {self.capabilities.provider} ({type(exc).__name__})",
                )
            )
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            error = TeacherHTTPError(self.name, f"HTTP {status}: {detail}", http_status=status)
            if is_retryable_status(status):
                return Retryable(error, retry_after_of(exc))
            return error
        return TeacherProtocolError(self.name, detail)

    def _on_retry(self, failure: Retryable, delay: float) -> None:
        self.retries += 1

    def _record_failure(self, error: TeacherError) -> None:
        self.stats.failures += 1
        self.stats.errors.append(error.message)

    def _proposals(
        self,
        response: ModelResponse,
        stop: Sequence[str],
        sent: Mapping[str, str],
        marker: str,
        exact: bool,
        trimmed: bool,
    ) -> list[Proposal]:
        """`trimmed`: the prefill lost trailing whitespace that the trace already has."""
        choices = sorted(response.choices, key=lambda c: getattr(c, "index", 0) or 0)
        if not choices:
            raise TeacherProtocolError(self.name, "response has no choices")
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = getattr(usage, "completion_tokens", None)
        cost = response_cost(response)
        self.stats.prompt_tokens += prompt_tokens
        self.stats.cost_usd += cost
        proposals: list[Proposal] = []
        for index, choice in enumerate(choices):
            message = getattr(choice, "message", None)
            raw = str(getattr(message, "content", None) or "")
            if trimmed:
                raw = raw.lstrip()
            text, reason, stop_string = shape_reply(
                raw,
                getattr(choice, "finish_reason", None),
                getattr(choice, "stop_reason", None),
                stops=stop,
                sent=sent,
                marker=marker,
                exact=exact,
            )
            if len(choices) == 1 and isinstance(completion_tokens, int):
                tokens = completion_tokens
            else:
                tokens = self._count_tokens(raw)
            self.stats.completion_tokens += tokens
            proposals.append(
                Proposal(
                    text=text,
                    finish_reason=reason,
                    tokens=tokens,
                    stop_string=stop_string,
                    prompt_tokens=prompt_tokens if index == 0 else 0,
                    cost_usd=cost / len(choices),
                )
            )
        return proposals

    def _count_tokens(self, text: str) -> int:
        try:
            return int(litellm.token_counter(model=self.config.model, text=text))
        except Exception:  # an unknown tokenizer must not fail a proposal
            return len(text.split())


async def stop_litellm_worker() -> None:
    """Stop litellm's background logging task (it restarts with the next litellm call).

    ``acompletion`` queues its logging callbacks on a task that lives as long as the event
    loop; a closed teacher must not leave it behind. Nothing of ours is queued there.
    """
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
    except ImportError:  # a litellm without the worker has nothing to stop
        return
    try:
        await GLOBAL_LOGGING_WORKER.stop(discard_pending=True, timeout=5.0)
    except Exception:  # best effort: closing a teacher must not fail on litellm internals
        return


def connection_cause(exc: BaseException) -> BaseException | None:
    """The lost or refused connection behind a litellm error, if that is what it was.

    litellm reports some of them as HTTP 500 (``hosted_vllm``); the cause chain tells.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, httpx.TimeoutException | aiohttp.ServerTimeoutError):
            return None
        if isinstance(cause, httpx.TransportError | aiohttp.ClientConnectionError | OSError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def response_cost(response: ModelResponse) -> float:
    """litellm's price of one response in US dollars; 0.0 for a model it has no price for."""
    hidden = getattr(response, "_hidden_params", None) or {}
    known = hidden.get("response_cost") if isinstance(hidden, dict) else None
    if isinstance(known, int | float):
        return float(known)
    try:
        return float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # litellm raises for models missing from its cost map
        return 0.0


def retry_after_of(exc: Exception) -> float | None:
    """The wait a provider asked for (``Retry-After``, ``retry-after-ms``), if it did."""
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        if not headers:
            continue
        try:
            millis = headers.get("retry-after-ms")
            if millis is not None:
                return max(0.0, float(millis) / 1000.0)
        except (TypeError, ValueError, AttributeError):
            pass
        try:
            seconds = parse_retry_after(headers.get("retry-after"))
        except AttributeError:
            seconds = None
        if seconds is not None:
            return seconds
    return None


def step_marker(prefix: str, stops: Sequence[str]) -> str:
    """The step marker the driver wrote at the end of `prefix` ("### Step 3.", "Wait"), if any.

    It begins with one of the step stop strings and runs to the end of the prefix on one
    line; line-break segmentation has none.
    """
    best = ""
    for stop in stops:
        if not stop.strip() or stop == THINK_CLOSE:
            continue
        at = prefix.rfind(stop)
        tail = prefix[at:] if at >= 0 else ""
        if tail and "\n" not in tail and len(tail) > len(best):
            best = tail
    return best


def instruction(prefix: str, marker: str, answering: bool) -> str:
    """The user turn that asks a teacher without assistant prefill for the next step."""
    trace = prefix[: len(prefix) - len(marker)] if marker else prefix
    trace = trace.strip()
    trace = trace.removeprefix(THINK_OPEN).strip()
    if answering:
        return ANSWER_INSTRUCTION.format(trace=trace.removesuffix(THINK_CLOSE).strip())
    start = f' Start your reply with "{marker}".' if marker else ""
    return STEP_INSTRUCTION.format(trace=trace or "(empty: write the first step)", start=start)


def provider_stops(stops: Sequence[str], marker: str, *, exact: bool) -> dict[str, str]:
    """The stop strings to send, each mapped to the stop string it stands for.

    A stop that the expected reply begins with (its marker) is sent after a line break, so
    that it ends the step at the next marker and not at the first. Without a provider that
    says which stop matched, ``</think>`` is not sent: it is found in the reply instead.
    """
    sent: dict[str, str] = {}
    for stop in stops:
        if stop == THINK_CLOSE and not exact:
            continue
        key = "\n" + stop if marker and marker.startswith(stop) else stop
        sent.setdefault(key, stop)
    return sent


def shape_reply(
    text: str,
    finish_reason: Any,
    stop_reason: Any,
    *,
    stops: Sequence[str],
    sent: Mapping[str, str],
    marker: str,
    exact: bool,
) -> tuple[str, FinishReason, str | None]:
    """A reply as a step body: its text, finish reason and the stop string that ended it.

    `exact` is true when an end of output really is the end of the teacher's trace
    (vLLM continuing the assistant message); otherwise it is the end of one step.
    """
    body = text
    if marker:
        stripped = body.lstrip()
        if stripped.startswith(marker):
            body = stripped[len(marker) :]
        if body and not body[0].isspace():
            body = " " + body
    cut = _first_stop(body, stops)
    if cut is not None:
        at, stop = cut
        return body[:at], "stop", stop
    if finish_reason == "length":
        return body, "length", None
    if isinstance(stop_reason, str) and stop_reason in sent:
        return body, "stop", sent[stop_reason]
    if exact:
        return body, "closed", None
    step_stops = [s for s in stops if s != THINK_CLOSE]
    return body, "stop", step_stops[0] if step_stops else None


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    found = [(text.find(s), s) for s in stops if s and s in text]
    return min(found) if found else None
