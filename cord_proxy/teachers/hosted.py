"""Hosted teachers through litellm (kind ``litellm``): propose-only, with retries.

One client for every provider litellm knows (OpenAI, Anthropic, DeepSeek, Gemini,
OpenRouter, a vLLM server as ``hosted_vllm/<model>`` with ``base_url``, ...). This module
is the transport; how a step is asked of a provider and read back is `emulation`, and
`capabilities.litellm_capabilities` decides how, from the config's ``assistant_prefill``
or litellm's model map.

Scoring is never sent: `score` raises `TeacherCapabilityError` without any I/O (see
`capabilities` for why no provider scores through litellm).

Usage: tokens come from the response's usage (litellm's `token_counter` per choice when
n > 1), cost from `litellm.completion_cost` (0.0 for a model litellm has no price for),
unless the teacher's ``cost_per_million_tokens`` prices it (then 0.0 here: the decode
prices its tokens at its end).
A call's prompt tokens are put on its first proposal, so that sums over proposals are
exact; its cost is split evenly over its proposals.

A request's extra fields (`CallExtras`): its sampling fields go where litellm says the
provider takes them (capabilities.py), as arguments or, for vLLM, in ``extra_body``; the rest
are dropped, with one debug line. ``response_format`` goes to litellm as it is. A hosted
teacher gives no log-probabilities (`gives_logprobs`): a call that asks for them is refused.

litellm is imported when the first teacher is built (`load_litellm`), after the settings
it must find at import time.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx

from cord_proxy.concurrency import gather_or_cancel
from cord_proxy.config import TeacherConfig
from cord_proxy.errors import (
    ConfigError,
    TeacherCapabilityError,
    TeacherError,
    TeacherHTTPError,
    TeacherProtocolError,
    TeacherTimeoutError,
    TeacherUnreachableError,
)
from cord_proxy.teachers._client import StepCall, TeacherClient
from cord_proxy.teachers.base import Message, Proposal, SpanScore
from cord_proxy.teachers.breaker import CircuitBreaker
from cord_proxy.teachers.capabilities import (
    HostedCapabilities,
    litellm_capabilities,
    load_litellm,
)
from cord_proxy.teachers.emulation import StepPrompt, step_prompt
from cord_proxy.teachers.endpoint import api_key_of
from cord_proxy.teachers.prompting import with_system_prompt
from cord_proxy.teachers.retry import Retryable, is_retryable_status, parse_retry_after

if TYPE_CHECKING:
    from litellm.types.utils import ModelResponse

MAX_PROVIDER_STOPS = 4  # the OpenAI API takes at most four stop strings
ERROR_EXCERPT = 300
log = logging.getLogger(__name__)


class HostedTeacher(TeacherClient):
    """A teacher reached through ``litellm.acompletion``: it proposes and never scores.

    Its circuit breaker has no background check: a hosted API has no call that is both cheap
    and free (a completion is billed, and ``/models`` may answer while completions fail), so
    the breaker closes on the trial call let through after each cool-down (breaker.py).
    """

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
                capabilities = litellm_capabilities(
                    config.model,
                    base_url=config.base_url,
                    assistant_prefill=config.assistant_prefill,
                )
            except ValueError as error:
                raise ConfigError(f"teacher '{config.name}': {error}") from None
        super().__init__(config, breaker)
        self.capabilities = capabilities
        load_litellm()
        self._api_key = api_key_of(config)

    @property
    def can_score(self) -> bool:
        return self.capabilities.can_score and super().can_score

    @property
    def score_identity(self) -> str:
        return f"litellm|{self.config.base_url or ''}|{self.config.model}"

    @property
    def gives_logprobs(self) -> bool:
        """Never: a hosted teacher's answers are read without their tokens' values."""
        return False

    async def aclose(self) -> None:
        """litellm owns its HTTP clients; stop its background logging task on this loop."""
        await stop_litellm_worker()

    async def score(self, conversation: Sequence[Message], prefix: str, target: str) -> SpanScore:
        raise TeacherCapabilityError(
            self.name,
            f"cannot score: provider {self.capabilities.provider} returns no prompt "
            "log-probabilities through litellm (hosted teachers only propose)",
        )

    async def _propose(
        self, conversation: Sequence[Message], prefix: str, call: StepCall
    ) -> list[Proposal]:
        """The next step(s); a provider's context limit is its own (the reserve is not used)."""
        if call.extras.logprobs is not None:
            raise TeacherCapabilityError(
                self.name,
                "cannot give log-probabilities: a hosted teacher's answers are read through "
                "litellm without them; ask a vLLM teacher (kind 'openai') for logprobs",
            )
        full = with_system_prompt(conversation, self.config.system_prompt)
        prompt = step_prompt(self.capabilities, full, prefix, call.stop)
        request = self._request(prompt, call)
        calls = [call.n] if call.n == 1 or self.capabilities.supports("n") else [1] * call.n
        responses = await gather_or_cancel(*(self._complete(request, k) for k in calls))
        proposals: list[Proposal] = []
        for response in responses:
            proposals += self._proposals(response, prompt)
        return proposals

    def _request(self, prompt: StepPrompt, call: StepCall) -> dict[str, Any]:
        """The ``acompletion`` arguments of one step."""
        caps = self.capabilities
        extra: dict[str, Any] = dict(self.config.extra_body)
        arguments, native = self._sampling(call.extras.sampling)
        for name in arguments:
            extra.pop(name, None)  # the request's value is the one sent
        extra.update(native)
        if prompt.exact:  # vLLM continues the final assistant message
            extra.update(continue_final_message=True, add_generation_prompt=False)
        request: dict[str, Any] = {
            "model": self.config.model,
            "messages": prompt.messages,
            "max_tokens": call.max_tokens,
            "temperature": self.config.temperature,
            "top_p": self.config.top_p,
        }
        if prompt.sent and caps.supports("stop"):
            request["stop"] = list(prompt.sent)[:MAX_PROVIDER_STOPS]
        if call.seed is not None and caps.supports("seed"):
            request["seed"] = call.seed
        if self.config.base_url:
            request["api_base"] = self.config.base_url
        if self._api_key:
            request["api_key"] = self._api_key
        if extra:
            request["extra_body"] = extra
        request.update(call.overrides())
        request.update(arguments)
        if call.extras.response_format is not None:
            request["response_format"] = self._response_format(call.extras.response_format)
        return request

    def _sampling(self, sampling: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A request's sampling fields as ``acompletion`` arguments, and as vLLM's own body
        fields: each where the provider takes it (capabilities.py), the rest dropped."""
        caps = self.capabilities
        arguments: dict[str, Any] = {}
        native: dict[str, Any] = {}
        dropped = [name for name in sampling if not caps.takes_sampling(name)]
        for name, value in sampling.items():
            if caps.supports(name):
                arguments[name] = value
            elif caps.takes_sampling(name):
                (native if caps.vllm else arguments)[name] = value
        if dropped:
            log.debug(
                "sampling fields not sent: the provider does not take them",
                extra={"teacher": self.name, "provider": caps.provider, "fields": dropped},
            )
        return arguments, native

    def _response_format(self, response_format: Mapping[str, Any]) -> dict[str, Any]:
        """The request's ``response_format``, for a provider that litellm says takes one."""
        if not self.capabilities.supports("response_format"):
            raise TeacherCapabilityError(
                self.name,
                f"cannot constrain its answer: provider {self.capabilities.provider} takes no "
                "response_format through litellm",
            )
        return dict(response_format)

    async def _complete(self, request: dict[str, Any], n: int) -> ModelResponse:
        """One ``acompletion`` with retries; errors as `TeacherError`."""
        body = {**request, "n": n} if n > 1 else request
        return await self._call(lambda left: self._attempt(body, left), _itself)

    async def _attempt(self, body: dict[str, Any], seconds_left: float) -> ModelResponse:
        import litellm
        from litellm.types.utils import ModelResponse

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
        from litellm.exceptions import APIConnectionError, Timeout

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

    def _proposals(self, response: ModelResponse, prompt: StepPrompt) -> list[Proposal]:
        """The response's choices as proposals, with its usage and cost."""
        choices = sorted(response.choices, key=lambda c: getattr(c, "index", 0) or 0)
        if not choices:
            raise TeacherProtocolError(self.name, "response has no choices")
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = getattr(usage, "completion_tokens", None)
        # a configured price is applied to the decode's token counts at its end (decoding/
        # context.py): litellm's cost map is not consulted, on the hot path or anywhere
        cost = 0.0 if self.config.cost_per_million_tokens is not None else response_cost(response)
        proposals: list[Proposal] = []
        for index, choice in enumerate(choices):
            raw = prompt.received(
                str(getattr(getattr(choice, "message", None), "content", None) or "")
            )
            text, reason, stop_string = prompt.shape(
                raw, getattr(choice, "finish_reason", None), getattr(choice, "stop_reason", None)
            )
            if len(choices) == 1 and isinstance(completion_tokens, int):
                tokens = completion_tokens
            else:
                tokens = self._count_tokens(raw)
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
        import litellm

        try:
            return int(litellm.token_counter(model=self.config.model, text=text))
        except Exception:  # an unknown tokenizer must not fail a proposal
            return len(text.split())


def _itself(response: ModelResponse) -> ModelResponse:
    return response


async def stop_litellm_worker() -> None:
    """Stop litellm's background logging task (it restarts with the next litellm call).

    ``acompletion`` queues its logging callbacks on a task that lives as long as the event
    loop; a closed teacher must not leave it behind. Nothing of ours is queued there.
    """
    if "litellm" not in sys.modules:  # never loaded: no task to stop
        return
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
    import litellm

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
