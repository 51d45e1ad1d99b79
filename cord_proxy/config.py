"""Configuration models and TOML loading.

One file holds ``[server]``, ``[[teachers]]``, ``[[ensembles]]``, ``[dataset]`` and ``[batches]``.
Secrets are references (``api_key = "env:OPENAI_API_KEY"``), resolved at start. A relative
path in a file (``[dataset] path``, ``[batches] data_dir``) is read from the file's folder.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.errors import ConfigError, format_validation_error
from cord_proxy.roles import GapKind, Role, role_gaps

ScoreMethod = Literal["auto", "cached", "prompt_logprobs", "echo"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$"
SECRET_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")


class ChatPrompt(BaseModel):
    """The server renders the conversation with its own chat template.

    Proposals continue the final assistant message (``continue_final_message``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["chat"] = "chat"


class TemplatePrompt(BaseModel):
    """The proxy renders the prompt itself and calls the raw ``/v1/completions``.

    Each field is a string with one ``{content}`` placeholder.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["template"] = "template"
    system: str = "{content}\n\n"
    user: str
    assistant: str
    assistant_open: str

    @field_validator("system", "user", "assistant")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{content}" not in value:
            raise ValueError("must contain the placeholder {content}")
        return value


GEMMA_TEMPLATE = TemplatePrompt(
    system="<start_of_turn>user\n{content}<end_of_turn>\n",
    user="<start_of_turn>user\n{content}<end_of_turn>\n",
    assistant="<start_of_turn>model\n{content}<end_of_turn>\n",
    assistant_open="<start_of_turn>model\n",
)

PromptFormat = Annotated[ChatPrompt | TemplatePrompt, Field(discriminator="kind")]


def _check_secret_ref(value: str | None) -> str | None:
    if value is not None and not SECRET_REF.match(value):
        raise ValueError("give secrets as a reference 'env:NAME', never inline")
    return value


class TeacherConfig(BaseModel):
    """One named model at one endpoint. Two teachers may share an endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, max_length=128)
    kind: Literal["openai", "litellm"] = "openai"
    base_url: str | None = Field(None, validate_default=True)
    model: str = Field(min_length=1)
    api_key: str | None = None
    temperature: float = Field(0.6, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    roles: frozenset[Role] = frozenset({"propose", "score"})
    system_prompt: str | None = None
    timeout: float = Field(120.0, gt=0.0, le=3600.0)
    max_concurrency: int = Field(64, ge=1, le=4096)
    prompt: PromptFormat = ChatPrompt()
    score_method: ScoreMethod = "auto"
    max_retries: int = Field(2, ge=0, le=10)
    # the endpoint's circuit breaker (teachers/breaker.py): open after this many failures in a
    # row, counted once per outage; a call is let through after the cool-down, which starts at
    # breaker_first_cooldown (at most breaker_cooldown) and doubles while the endpoint stays
    # down, up to breaker_cooldown; vLLM endpoints are also checked in the background
    breaker_threshold: int = Field(5, ge=1, le=1000)
    breaker_cooldown: float = Field(30.0, gt=0.0, le=3600.0)
    breaker_first_cooldown: float = Field(1.0, gt=0.0, le=3600.0)
    # tokens; None: read the server's max_model_len (vLLM's /tokenize)
    context_length: int | None = Field(None, ge=16, le=10_000_000)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    # kind 'litellm' only: continue a prefilled assistant turn (None: ask litellm's model map)
    assistant_prefill: bool | None = None
    # USD per million tokens this teacher processes: its proposals' prompt and completion
    # tokens and its scoring reads' tokens alike (decoding/context.py prices them). None: 0 for
    # kind 'openai', litellm's cost map for kind 'litellm'; set, it overrides the map
    cost_per_million_tokens: float | None = None
    trainable: bool = Field(
        True,
        description="false when the provider's terms forbid training on its outputs; every "
        "step, candidate and answer it writes is marked, and `cord-proxy export` skips them",
    )

    @model_validator(mode="before")
    @classmethod
    def _hosted_default_roles(cls, data: Any) -> Any:
        """A litellm teacher proposes only, unless its roles say otherwise (and can)."""
        if isinstance(data, dict) and data.get("kind") == "litellm" and "roles" not in data:
            return {**data, "roles": ["propose"]}
        return data

    @field_validator("api_key")
    @classmethod
    def _secret_reference(cls, value: str | None) -> str | None:
        return _check_secret_ref(value)

    @field_validator("base_url")
    @classmethod
    def _endpoint_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("kind", "openai") == "openai":
            raise ValueError("base_url is required for kind 'openai'")
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        if value is not None and _has_credentials(value):
            raise ValueError(
                "base_url must not hold credentials (user:password@); "
                'give the key as api_key = "env:NAME"'
            )
        return value

    @field_validator("roles")
    @classmethod
    def _some_role(cls, value: frozenset[Role]) -> frozenset[Role]:
        if not value:
            raise ValueError("a teacher needs at least one role: propose or score")
        return value

    @model_validator(mode="after")
    def _kind_settings(self) -> TeacherConfig:
        if self.kind != "litellm" and self.assistant_prefill is not None:
            raise ValueError("assistant_prefill applies to kind 'litellm' only")
        return self

    @model_validator(mode="after")
    def _price(self) -> TeacherConfig:
        price = self.cost_per_million_tokens
        if price is not None and not (math.isfinite(price) and price >= 0):
            raise ValueError(
                f"teacher '{self.name}': cost_per_million_tokens must be a finite number "
                f">= 0 (USD per million tokens), not {price}"
            )
        return self


def _has_credentials(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return bool(parts.username or parts.password or "@" in parts.netloc)
    except ValueError:
        return True


Budget = Annotated[int, Field(ge=1, le=1_000_000)]


class ReasoningBudgets(BaseModel):
    """The thinking budget, in tokens, each ``reasoning_effort`` level of a request sets
    (``[ensembles.reasoning_budgets]``); a request's ``cord.thinking_budget`` wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    minimal: Budget = 1024
    low: Budget = 4096
    medium: Budget = 16384
    high: Budget = 32768
    xhigh: Budget = 65536
    max: Budget = 131072


class EnsembleConfig(BaseModel):
    """A named set of proposers and scorers with default decoding settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, max_length=128)
    teachers: tuple[str, ...] = Field(min_length=1)
    scorers: tuple[str, ...] | None = None
    scorer_weights: dict[str, float] = Field(default_factory=dict)
    defaults: DecodeOptions = DecodeOptions()
    reasoning_budgets: ReasoningBudgets = ReasoningBudgets()

    @field_validator("scorer_weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [name for name, weight in value.items() if not weight > 0]
        if bad:
            raise ValueError(f"weights must be > 0: {', '.join(bad)}")
        return value


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8400, ge=0, le=65535)
    api_keys: tuple[str, ...] = ()
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_concurrent_requests: int = Field(256, ge=1)
    request_timeout: float = Field(3600.0, gt=0)
    header_timeout: float = Field(10.0, gt=0, le=3600)  # a request's headers, from first byte
    body_timeout: float = Field(60.0, gt=0, le=3600)  # its body, once the headers are in
    keepalive_timeout: float = Field(75.0, gt=0, le=3600)  # an idle kept-alive connection
    metrics_public: bool = False  # False: /metrics needs a key, as /v1/ does
    # a chat completion whose client drops runs on this long for a retry to attach to it
    # (cord_proxy/api/attach.py); 0: it is cancelled at once
    detach_grace_s: float = Field(60.0, ge=0, le=86_400)

    @field_validator("api_keys")
    @classmethod
    def _refs_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for ref in value:
            _check_secret_ref(ref)
        return value


class LimitsConfig(BaseModel):
    """Caps on what one request may cost; a request over one gets a 400 that names it.

    The defaults fit the paper's set-up (B = 4, K = 3, 64 steps, 3 scorers: 3,084 calls at
    worst) with room.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_candidates_per_step: int = Field(64, ge=1, le=100_000)
    max_teacher_calls: int = Field(10_000, ge=1, le=10_000_000)


class DatasetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = None


class BatchesConfig(BaseModel):
    """The Files and Batches API: where files live, and how batches run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: str | None = None  # default: $XDG_DATA_HOME/cord-proxy (~/.local/share/...)
    max_upload_bytes: int = Field(209_715_200, ge=1024)
    max_active_batches: int = Field(16, ge=1)
    concurrency: int = Field(4, ge=1, le=4096)
    retries: int = Field(2, ge=0, le=10)
    # seconds from create to `expired`; the request's completion_window stays "24h"
    completion_window_s: int = Field(86_400, ge=1, le=31_536_000, strict=True)
    owners: dict[str, str] = Field(default_factory=dict)  # "env:KEY" -> owner: a key sees its own

    @field_validator("owners")
    @classmethod
    def _owner_refs(cls, value: dict[str, str]) -> dict[str, str]:
        for ref, owner in value.items():
            _check_secret_ref(ref)
            if not owner.strip():
                raise ValueError(f"the owner of {ref} is empty")
        return value


class CordConfig(BaseModel):
    """The whole configuration file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: ServerConfig = ServerConfig()
    teachers: tuple[TeacherConfig, ...] = Field(min_length=1)
    ensembles: tuple[EnsembleConfig, ...] = Field(min_length=1)
    limits: LimitsConfig = LimitsConfig()
    dataset: DatasetConfig = DatasetConfig()
    batches: BatchesConfig = BatchesConfig()

    @model_validator(mode="after")
    def _references(self) -> CordConfig:
        problems = _reference_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def teacher(self, name: str) -> TeacherConfig:
        return next(t for t in self.teachers if t.name == name)

    def ensemble(self, name: str) -> EnsembleConfig | None:
        return next((e for e in self.ensembles if e.name == name), None)


def ensemble_scorers(config: CordConfig, ensemble: EnsembleConfig) -> tuple[str, ...]:
    """The ensemble's scorers: as listed, or every member teacher with the score role."""
    if ensemble.scorers is not None:
        return ensemble.scorers
    return tuple(n for n in ensemble.teachers if "score" in config.teacher(n).roles)


# an ensemble's role gaps, as config problems
ROLE_GAPS: dict[GapKind, str] = {
    "no_proposer": "no teacher with the 'propose' role",
    "cannot_score": "teacher '{teacher}' does not have the score role",
    "no_scorer": "no teacher can score",
}


def _reference_problems(config: CordConfig) -> list[str]:
    problems: list[str] = []
    names = [t.name for t in config.teachers]
    problems += [
        f"teachers: duplicate name '{n}'" for n in sorted(set(names)) if names.count(n) > 1
    ]
    ensemble_names = [e.name for e in config.ensembles]
    problems += [
        f"ensembles: duplicate name '{n}'"
        for n in sorted(set(ensemble_names))
        if ensemble_names.count(n) > 1
    ]
    known = set(names)
    for index, ensemble in enumerate(config.ensembles):
        where = f"ensembles.{index}"
        for name in (*ensemble.teachers, *(ensemble.scorers or ()), *ensemble.scorer_weights):
            if name not in known:
                problems.append(f"{where}: unknown teacher '{name}'")
        if problems:
            continue
        gaps = role_gaps(
            ["propose" in config.teacher(n).roles for n in ensemble.teachers],
            {n: "score" in config.teacher(n).roles for n in ensemble_scorers(config, ensemble)},
        )
        problems += [f"{where}.{gap.field}: {gap.said(ROLE_GAPS)}" for gap in gaps]
    return problems


def parse_config(data: dict[str, Any], source: str = "config") -> CordConfig:
    try:
        return CordConfig.model_validate(data)
    except ValidationError as error:
        problems = format_validation_error(error)
        raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(problems), problems) from None


def load_config(path: str | Path) -> CordConfig:
    """Load and validate a TOML config; every bad field is named in the error."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {file} is not valid TOML: {error}") from None
    return paths_from(parse_config(data, source=str(file)), file.resolve().parent)


def paths_from(config: CordConfig, folder: Path) -> CordConfig:
    """`config` with each relative path made absolute from `folder` (its file's), ``~`` the
    user's home: the same file means the same files whatever the working directory."""

    def resolved(value: str | None) -> str | None:
        return str(folder / Path(value).expanduser()) if value else value

    dataset, batches = config.dataset, config.batches
    return config.model_copy(
        update={
            "dataset": dataset.model_copy(update={"path": resolved(dataset.path)}),
            "batches": batches.model_copy(update={"data_dir": resolved(batches.data_dir)}),
        }
    )
