"""What a hosted (litellm) teacher can do: checked against litellm, never assumed.

Scoring needs the log-probabilities of the tokens of a given span of the *prompt*. vLLM
gives them (``prompt_logprobs``) and is reached with kind ``openai``. litellm's
``acompletion`` normalises every provider's answer to the OpenAI chat schema, which carries
only the log-probabilities of generated tokens, and litellm's model map has no capability
flag for prompt log-probabilities. So no provider is known to give, through litellm, what
scoring needs: `PROMPT_LOGPROB_PROVIDERS` is empty, and a litellm teacher proposes only.
Add a provider there only together with a scoring path in `hosted.py` that is tested.

A request's sampling fields go to a hosted teacher as litellm maps them: OpenAI's
(``frequency_penalty``, ``presence_penalty``, ``logit_bias``) where
``get_supported_openai_params`` lists them for the provider; the others
(`PROVIDER_SAMPLING`) where the provider takes them (`provider_sampling`). Any other is
dropped by the teacher (hosted.py).

This module imports litellm only when asked (`load_litellm`), so that the check of a
teacher's roles (`litellm_score_problem`) runs without the three seconds of ``import litellm``.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Providers reached through litellm whose answers carry prompt log-probabilities: none.
PROMPT_LOGPROB_PROVIDERS: frozenset[str] = frozenset()

# vLLM's OpenAI server: continues the final assistant message when asked with
# ``continue_final_message: true, add_generation_prompt: false`` and reports which stop
# string ended a choice (``stop_reason``).
VLLM_PROVIDERS: frozenset[str] = frozenset({"hosted_vllm"})

# Sampling fields of OpenAI's API that a request may pass to its proposers, and beyond them
# (vLLM's names).
OPENAI_SAMPLING = ("frequency_penalty", "presence_penalty", "logit_bias")
PROVIDER_SAMPLING = ("top_k", "min_p", "repetition_penalty")


def prepare_litellm_env() -> None:
    """Settings that must hold before ``import litellm``; nothing is fetched, ever.

    litellm reads its bundled cost map instead of fetching one, and tiktoken finds its
    encodings in the copies litellm ships (when `TIKTOKEN_CACHE_DIR` is not set already).
    """
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        spec = importlib.util.find_spec("litellm")
        for root in (spec.submodule_search_locations or []) if spec else []:
            folder = Path(root) / "litellm_core_utils" / "tokenizers"
            if folder.is_dir():
                os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
                break


def load_litellm() -> None:
    """Import litellm after the settings it reads at import, without its debug notices."""
    prepare_litellm_env()
    import litellm

    litellm.suppress_debug_info = True


def provider_prefix(model: str) -> str | None:
    """The litellm provider named in ``provider/model``, without asking litellm."""
    head, sep, _ = model.partition("/")
    return head if sep else None


def litellm_score_problem(name: str, model: str) -> str | None:
    """Why a litellm teacher cannot have the score role, or None if it can."""
    provider = provider_prefix(model) or "(inferred by litellm)"
    if provider in PROMPT_LOGPROB_PROVIDERS:
        return None
    hint = (
        " To score with a vLLM server, configure it as kind 'openai' with its base_url."
        if provider in VLLM_PROVIDERS
        else ""
    )
    return (
        f"teacher '{name}': kind 'litellm' (provider {provider}, model {model}) cannot score: "
        "scoring needs prompt log-probabilities, which litellm does not return for this "
        f'provider; give it roles = ["propose"].{hint}'
    )


@dataclass(frozen=True)
class HostedCapabilities:
    """What one litellm teacher can do, and how it was decided."""

    provider: str
    model: str
    assistant_prefill: bool
    prefill_source: str
    prompt_logprobs: bool
    reports_stop_reason: bool
    supported_params: frozenset[str]
    provider_sampling: frozenset[str] = frozenset()

    @property
    def can_score(self) -> bool:
        return self.prompt_logprobs

    @property
    def vllm(self) -> bool:
        """A vLLM server: the fields OpenAI does not have go in the body's ``extra_body``."""
        return self.provider in VLLM_PROVIDERS

    def supports(self, param: str) -> bool:
        return param in self.supported_params

    def takes_sampling(self, name: str) -> bool:
        """Whether a request's sampling field `name` reaches the provider."""
        return self.supports(name) or name in self.provider_sampling

    def describe(self) -> dict[str, Any]:
        """For ``teachers check``: every capability and where it came from."""
        return {
            "provider": self.provider,
            "model": self.model,
            "propose": "assistant prefill" if self.assistant_prefill else "instruction",
            "assistant_prefill": self.assistant_prefill,
            "assistant_prefill_source": self.prefill_source,
            "score": self.can_score,
            "prompt_logprobs": self.prompt_logprobs,
            "reports_stop_reason": self.reports_stop_reason,
            "n": self.supports("n"),
            "seed": self.supports("seed"),
            "stop": self.supports("stop"),
            "sampling": [
                p for p in (*OPENAI_SAMPLING, *PROVIDER_SAMPLING) if self.takes_sampling(p)
            ],
        }


def litellm_capabilities(
    model: str, *, base_url: str | None = None, assistant_prefill: bool | None = None
) -> HostedCapabilities:
    """Ask litellm (offline, from its bundled model map) what a teacher of `model` can do.

    `assistant_prefill`, when set, is the config's word on prefilling. Raises `ValueError`
    when litellm cannot tell which provider serves the model.
    """
    load_litellm()
    import litellm
    from litellm.utils import supports_assistant_prefill

    try:
        served, provider, _, _ = litellm.get_llm_provider(model=model, api_base=base_url)
    except Exception as error:  # litellm raises its own BadRequestError
        raise ValueError(f"litellm cannot tell the provider of model {model!r}: {error}") from None
    params = litellm.get_supported_openai_params(model=served, custom_llm_provider=provider)
    if assistant_prefill is not None:
        prefill, source = assistant_prefill, "config (assistant_prefill)"
    elif provider in VLLM_PROVIDERS:
        prefill, source = True, "vLLM continue_final_message"
    else:
        prefill = bool(supports_assistant_prefill(served, provider))
        source = "litellm model map (supports_assistant_prefill)"
    return HostedCapabilities(
        provider=provider,
        model=served,
        assistant_prefill=prefill,
        prefill_source=source,
        prompt_logprobs=provider in PROMPT_LOGPROB_PROVIDERS,
        reports_stop_reason=provider in VLLM_PROVIDERS,
        supported_params=frozenset(str(p) for p in params or ()),
        provider_sampling=provider_sampling(served, provider),
    )


def provider_sampling(served: str, provider: str) -> frozenset[str]:
    """Which of `PROVIDER_SAMPLING` the provider takes: all of them for vLLM; elsewhere those
    that litellm's configuration of the provider declares (Anthropic's and Gemini's
    ``top_k``), which litellm passes on as they are."""
    if provider in VLLM_PROVIDERS:
        return frozenset(PROVIDER_SAMPLING)
    from litellm.types.utils import LlmProviders
    from litellm.utils import ProviderConfigManager

    try:
        config = ProviderConfigManager.get_provider_chat_config(
            model=served, provider=LlmProviders(provider)
        )
    except ValueError:  # a provider litellm has no enum member for
        return frozenset()
    if config is None:
        return frozenset()
    declared = inspect.signature(type(config).__init__).parameters
    return frozenset(name for name in PROVIDER_SAMPLING if name in declared)
