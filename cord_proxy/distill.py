"""``cord-proxy distill``: a file of problems in, a file of traces out, resumable by id.

Input: one JSON object a line, ``{"id", "question" | "messages", "answer"}`` (``answer`` is
the reference answer; without one the steps are scored without a reference; an optional
``cord`` object overrides decoding options for that problem). Ids are compared as strings.

Each finished problem is appended to the output as one record (``dataset.trace_record``),
atomically and fsync'd, so a rerun after any interruption, even ``kill -9``, skips the ids
already in the output and finishes the rest. Failures go to a separate file with reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO, TypeVar

import httpx
from pydantic import ValidationError

from cord_proxy.config import CordConfig
from cord_proxy.dataset import (
    JsonlSink,
    ReadReport,
    iter_jsonl,
    read_records,
    record_from_completion,
    trace_record,
)
from cord_proxy.errors import (
    CordError,
    DecodeError,
    DecodeTimeoutError,
    TeacherError,
    format_validation_error,
)
from cord_proxy.progress import ProgressBar, format_duration
from cord_proxy.protocol import ChatCompletionRequest, CordOptions
from cord_proxy.teachers.base import Teacher
from cord_proxy.teachers.endpoint import fetch_model_ids

if TYPE_CHECKING:
    from cord_proxy.decoding.trace import DecodeResult
    from cord_proxy.runtime import ChatJob

T = TypeVar("T")

DEFAULT_TEACHER_URL = "http://127.0.0.1:8401/v1"
ROLES = ("system", "developer", "user", "assistant")
RETRY_STATUSES = (429, 500, 502, 503, 504)
PREFLIGHT_TIMEOUT_S = 10.0
TICK_S = 1.0


class DistillError(Exception):
    """The run cannot start (bad options, unreachable teacher or proxy); exit status 2."""


class ProblemFailed(Exception):
    """One problem failed; `transient` failures are retried. `status`: its HTTP status."""

    def __init__(self, message: str, kind: str, transient: bool, status: int = 500):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.transient = transient
        self.status = status


async def decode_or_fail(plan: ChatJob, timeout_s: float) -> DecodeResult:
    """The plan's decode; a failure as `ProblemFailed`, transient for teachers and timeouts."""
    from cord_proxy.runtime import run_job

    try:
        return await run_job(plan, timeout_s)
    except DecodeTimeoutError as error:
        raise ProblemFailed(
            f"no trace within {timeout_s:g} s", "timeout", transient=True, status=error.status
        ) from None
    except (TeacherError, DecodeError) as error:
        raise ProblemFailed(
            error.message, type(error).__name__, transient=True, status=error.status
        ) from None
    except CordError as error:
        raise ProblemFailed(
            error.message, type(error).__name__, transient=False, status=error.status
        ) from None


async def with_retries(
    call: Callable[[], Awaitable[T]], retries: int, backoff_s: float
) -> tuple[T | None, ProblemFailed | None, int]:
    """``(result, None, attempts)``, or ``(None, failure, attempts)`` once a failure is not
    transient or `retries` retries are spent (exponential backoff between attempts)."""
    attempts = 0
    while True:
        attempts += 1
        try:
            return await call(), None, attempts
        except ProblemFailed as error:
            if not error.transient or attempts > retries:
                return None, error, attempts
        except Exception as error:  # a bug must not lose the run: record it as a failure
            failure = ProblemFailed(
                f"{type(error).__name__}: {error}"[:500], "internal", transient=False
            )
            return None, failure, attempts
        await asyncio.sleep(backoff_s * 2 ** (attempts - 1))


# --- input -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    id: str | int
    line: int
    messages: list[dict[str, str]]
    answer: str | None
    cord: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return str(self.id)


def parse_problem(value: Any, line: int) -> Problem:
    """One input line as a problem; `ValueError` names what is wrong with it."""
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    problem_id = value.get("id")
    if isinstance(problem_id, bool) or not isinstance(problem_id, str | int):
        raise ValueError("'id' is missing or not a string or integer")
    if isinstance(problem_id, str) and not problem_id.strip():
        raise ValueError("'id' is empty")
    messages = _messages(value)
    answer = value.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, str | int | float | None):
        raise ValueError("'answer' must be a string or a number")
    cord = value.get("cord") or {}
    if not isinstance(cord, dict):
        raise ValueError("'cord' must be an object")
    return Problem(problem_id, line, messages, None if answer is None else str(answer), cord)


def _messages(value: dict[str, Any]) -> list[dict[str, str]]:
    question, messages = value.get("question"), value.get("messages")
    if (question is None) == (messages is None):
        raise ValueError("give exactly one of 'question' and 'messages'")
    if question is not None:
        if not isinstance(question, str) or not question.strip():
            raise ValueError("'question' must be a non-empty string")
        return [{"role": "user", "content": question}]
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    turns = []
    for index, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise ValueError(
                f"messages[{index}] needs a role ({', '.join(ROLES)}) and a string content"
            )
        turns.append({"role": message["role"], "content": message["content"]})
    if not any(t["role"] == "user" and t["content"].strip() for t in turns):
        raise ValueError("'messages' has no non-empty user turn")
    return turns


def read_problems(path: str | Path) -> tuple[list[Problem], list[tuple[int, str]]]:
    """The valid problems, and every bad line as ``(line number, reason)``."""
    report = ReadReport()
    problems: list[Problem] = []
    bad: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    try:
        for line, value in iter_jsonl(path, report, written_by_us=False):
            try:
                problem = parse_problem(value, line)
            except ValueError as error:
                bad.append((line, str(error)))
                continue
            if problem.key in first_line:
                bad.append(
                    (
                        line,
                        f"duplicate id {problem.key!r} (first on line {first_line[problem.key]})",
                    )
                )
                continue
            first_line[problem.key] = line
            problems.append(problem)
    except OSError as error:
        raise DistillError(f"cannot read input {path}: {error.strerror or error}") from None
    bad += report.bad_lines
    return problems, sorted(bad)


# --- engines ---------------------------------------------------------------------------------


class Engine(Protocol):
    async def solve(self, problem: Problem) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


def _cord(base: dict[str, Any], problem: Problem) -> dict[str, Any]:
    cord = {**base, **problem.cord}
    if problem.answer is not None:
        cord["reference_answer"] = problem.answer
    return cord


class LocalEngine:
    """The decoding engine in this process, on a config."""

    def __init__(
        self,
        config: CordConfig,
        model: str,
        cord: dict[str, Any],
        timeout_s: float,
        teachers: Mapping[str, Teacher] | None = None,
    ):
        from cord_proxy.runtime import Runtime

        self.runtime = Runtime(config, teachers)
        self.model = model
        self.cord = cord
        self.timeout_s = timeout_s

    async def solve(self, problem: Problem) -> dict[str, Any]:
        from cord_proxy.completion import completion_id

        try:
            request = ChatCompletionRequest.model_validate(
                {
                    "model": self.model,
                    "messages": problem.messages,
                    "cord": _cord(self.cord, problem),
                }
            )
            plan = self.runtime.job_for_request(request)
        except ValidationError as error:
            raise ProblemFailed(
                "invalid request: " + "; ".join(format_validation_error(error)),
                "invalid_request",
                transient=False,
            ) from None
        except CordError as error:
            raise ProblemFailed(error.message, type(error).__name__, transient=False) from None
        result = await decode_or_fail(plan, self.timeout_s)
        return trace_record(completion_id(), plan, result, problem_id=problem.id)

    async def aclose(self) -> None:
        await self.runtime.aclose()


class ProxyEngine:
    """A running cord-proxy, over plain HTTP (``POST /v1/chat/completions``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        cord: dict[str, Any],
        timeout_s: float,
        api_key: str | None = None,
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0)
        )
        self.model = model
        self.cord = cord

    async def solve(self, problem: Problem) -> dict[str, Any]:
        cord = _cord(self.cord, problem)
        body = {
            "model": self.model,
            "messages": problem.messages,
            "cord": cord,
            "metadata": {"cord_problem_id": problem.key[:512]},
        }
        started = time.time()
        try:
            answer = await self.client.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            raise ProblemFailed(
                "the proxy did not answer in time", "timeout", transient=True
            ) from None
        except httpx.HTTPError as error:
            raise ProblemFailed(
                f"cannot reach the proxy: {error!r}"[:300], "unreachable", transient=True
            ) from None
        if answer.status_code != 200:
            raise ProblemFailed(
                _error_message(answer),
                f"http_{answer.status_code}",
                transient=answer.status_code in RETRY_STATUSES,
            )
        try:
            completion = answer.json()
            requested = {
                "ensemble": self.model,
                "cord": {k: v for k, v in cord.items() if k != "reference_answer"},
            }
            return record_from_completion(
                completion,
                problem_id=problem.id,
                messages=problem.messages,
                reference_answer=problem.answer,
                requested=requested,
                started_at=started,
            )
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise ProblemFailed(
                f"malformed completion from the proxy: {error!r}"[:300], "protocol", transient=False
            ) from None

    async def aclose(self) -> None:
        await self.client.aclose()


def _error_message(answer: httpx.Response) -> str:
    try:
        error = answer.json()["error"]
        return f"{answer.status_code} {error.get('type')}: {error.get('message')}"[:500]
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{answer.status_code}: {answer.text[:300]}"


# --- preflight -------------------------------------------------------------------------------


def as_base_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


async def check_teachers(config: CordConfig, model: str) -> None:
    """Every OpenAI-compatible teacher of the ensemble answers ``GET /models``."""
    from cord_proxy.config import ensemble_scorers
    from cord_proxy.secret_refs import resolve_secret

    ensemble = config.ensemble(model)
    if ensemble is None:
        names = ", ".join(e.name for e in config.ensembles)
        raise DistillError(f"no ensemble named {model!r} in the config (ensembles: {names})")
    members = dict.fromkeys([*ensemble.teachers, *ensemble_scorers(config, ensemble)])
    for name in members:
        teacher = config.teacher(name)
        if teacher.kind != "openai" or teacher.base_url is None:
            continue
        try:
            await fetch_model_ids(
                teacher.base_url, resolve_secret(teacher.api_key), PREFLIGHT_TIMEOUT_S
            )
        except (httpx.HTTPError, ValueError) as error:
            raise DistillError(
                f"teacher {name!r} at {teacher.base_url} is unreachable ({error!r:.200}); "
                "start it first (the local CPU teacher: `cord-proxy up`), or pass "
                "--teacher-url / --config / --url"
            ) from None


async def check_proxy(base_url: str, model: str | None, api_key: str | None) -> str:
    """The proxy lists its ensembles; returns the one to use."""
    try:
        models = await fetch_model_ids(base_url, api_key, PREFLIGHT_TIMEOUT_S)
    except (httpx.HTTPError, ValueError) as error:
        raise DistillError(
            f"the proxy at {base_url} is unreachable or not a cord-proxy "
            f"({error!r:.200}); start it with `cord-proxy serve`"
        ) from None
    if model is None:
        if not models:
            raise DistillError(f"the proxy at {base_url} lists no ensembles")
        return models[0]
    if model not in models:
        raise DistillError(
            f"the proxy at {base_url} has no ensemble {model!r} (it has: {', '.join(models)})"
        )
    return model


# --- the run ---------------------------------------------------------------------------------


@dataclass
class DistillSettings:
    input: Path
    output: Path
    failures: Path
    concurrency: int = 4
    retries: int = 2
    retry_backoff_s: float = 1.0
    cord: dict[str, Any] = field(default_factory=dict)


@dataclass
class Summary:
    problems: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    already_done: int = 0
    done: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    scores: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    interrupted: bool = False
    output_records: int = 0

    @property
    def rate_per_min(self) -> float:
        return 60.0 * self.done / self.wall_s if self.wall_s > 0 else 0.0

    def render(self, settings: DistillSettings) -> str:
        mean = f"{sum(self.scores) / len(self.scores):.3f}" if self.scores else "-"
        bad = ""
        if self.bad_lines:
            numbers = ", ".join(str(n) for n, _ in self.bad_lines[:20])
            more = " ..." if len(self.bad_lines) > 20 else ""
            bad = f" ({len(self.bad_lines)} bad lines skipped: {numbers}{more})"
        state = "interrupted (rerun the same command to resume)" if self.interrupted else "done"
        return "\n".join(
            [
                f"distill {state}",
                f"  input:      {self.problems} problems in {settings.input}{bad}",
                f"  resumed:    {self.already_done} already in the output",
                f"  this run:   {self.done} done, {self.failed} failed in "
                f"{format_duration(self.wall_s)} ({self.rate_per_min:.1f} problems/min)",
                f"  cost:       ${self.cost_usd:.4f} this run",
                f"  mean score: {mean} this run",
                f"  output:     {settings.output} ({self.output_records} records)",
                f"  failures:   {settings.failures} ({self.failed} this run)",
            ]
        )


def load_problems(path: Path, summary: Summary, stream: TextIO) -> list[Problem]:
    """The input's problems; each bad line is counted in `summary` and reported by number."""
    problems, summary.bad_lines = read_problems(path)
    summary.problems = len(problems)
    for line, reason in summary.bad_lines:
        print(f"cord-proxy distill: {path}:{line}: skipped: {reason}", file=stream)
    return problems


def default_failures_path(output: Path) -> Path:
    name = output.name.removesuffix(".jsonl")
    return output.with_name(f"{name}.failures.jsonl")


async def run_distill(
    settings: DistillSettings, engine: Engine, *, progress_stream: TextIO | None = None
) -> Summary:
    """Solve every problem of the input not yet in the output; the engine is closed after."""
    stream = progress_stream if progress_stream is not None else sys.stderr
    summary = Summary()
    problems = load_problems(settings.input, summary, stream)
    report = ReadReport()
    done_keys = {str(r.get("id")) for r in read_records(settings.output, report)}
    if report.partial_tail:
        print(
            f"cord-proxy distill: {settings.output}: a partial last line (an interrupted "
            "write) is ignored and will be cut",
            file=stream,
        )
    for line, reason in report.bad_lines:
        print(
            f"cord-proxy distill: {settings.output}:{line}: unreadable record ignored: {reason}",
            file=stream,
        )
    todo = [p for p in problems if p.key not in done_keys]
    summary.already_done = len(problems) - len(todo)
    if summary.already_done:
        print(
            f"cord-proxy distill: resuming: {summary.already_done} of {len(problems)} "
            f"already in {settings.output}, {len(todo)} to do",
            file=stream,
        )
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    output, failures = JsonlSink(settings.output), JsonlSink(settings.failures)
    bar = ProgressBar(len(todo), stream=stream)
    queue: asyncio.Queue[Problem] = asyncio.Queue()
    for problem in todo:
        queue.put_nowait(problem)
    started = time.monotonic()

    async def worker() -> None:
        while not queue.empty():
            problem = queue.get_nowait()
            record, error, attempts = await _attempt(engine, problem, settings)
            if record is not None:
                await output(record)
                summary.done += 1
                cost = float(record.get("cost_usd") or 0.0)
                score = record.get("score")
                summary.cost_usd += cost
                if isinstance(score, int | float):
                    summary.scores.append(float(score))
                bar.succeeded(cost, score if isinstance(score, int | float) else None)
            else:
                assert error is not None
                await failures(
                    {
                        "id": problem.id,
                        "line": problem.line,
                        "error": error.message,
                        "kind": error.kind,
                        "attempts": attempts,
                        "at": round(time.time(), 3),
                    }
                )
                summary.failed += 1
                bar.failure()

    async def tick() -> None:  # redraw (terminal) or print a line (log) even between events
        while True:
            await asyncio.sleep(TICK_S)
            bar.update()

    bar.update(force=True)
    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, settings.concurrency))]
    ticker = asyncio.ensure_future(tick())
    stop = _on_signals(workers)
    try:
        await asyncio.gather(*workers)
    except asyncio.CancelledError:
        summary.interrupted = True
    finally:
        for task in [*workers, ticker]:
            task.cancel()
        await asyncio.gather(*workers, ticker, return_exceptions=True)
        stop()
        bar.close()
        await engine.aclose()
        summary.wall_s = time.monotonic() - started
        summary.output_records = len(read_records(settings.output))
    return summary


async def _attempt(
    engine: Engine, problem: Problem, settings: DistillSettings
) -> tuple[dict[str, Any] | None, ProblemFailed | None, int]:
    return await with_retries(
        lambda: engine.solve(problem), settings.retries, settings.retry_backoff_s
    )


def _on_signals(workers: Sequence[asyncio.Future[None]]) -> Any:
    """SIGINT / SIGTERM cancel the workers (the summary still prints); returns an undo."""
    loop = asyncio.get_running_loop()
    installed = []

    def cancel() -> None:
        for task in workers:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, cancel)
            installed.append(sig)

    def undo() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return undo


def parse_cord_option(text: str | None) -> dict[str, Any]:
    """``--cord '{"max_steps": 2}'``: decoding options for every problem, checked up front."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise DistillError(f"--cord is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise DistillError("--cord must be a JSON object")
    if "reference_answer" in value:
        raise DistillError(
            "--cord cannot set reference_answer: it comes from each problem's 'answer'"
        )
    try:
        CordOptions.model_validate(value)
    except ValidationError as error:
        raise DistillError("--cord: " + "; ".join(format_validation_error(error))) from None
    return value


def run_command(args: Any) -> int:
    """``cord-proxy distill`` (args from cli.py). Exit 0: all done; 1: some failed; 2: could
    not start; 130: interrupted."""
    import os

    from cord_proxy.config import load_config
    from cord_proxy.defaults import default_config

    output = Path(args.output)
    settings = DistillSettings(
        input=Path(args.input),
        output=output,
        failures=Path(args.failures) if args.failures else default_failures_path(output),
        concurrency=max(1, args.concurrency),
        retries=max(0, args.retries),
    )

    if getattr(args, "ray", None):
        from cord_proxy.ray.distill import run_command as run_on_ray

        return run_on_ray(args, settings)

    async def run() -> int:
        settings.cord = parse_cord_option(args.cord)
        if not settings.input.is_file():
            raise DistillError(f"input {settings.input} does not exist")
        engine: Engine
        if args.url:
            base_url, key = as_base_url(args.url), os.environ.get(args.api_key_env)
            model = await check_proxy(base_url, args.model, key)
            engine = ProxyEngine(base_url, model, settings.cord, args.timeout or 3600.0, key)
        else:
            config = (
                load_config(args.config)
                if args.config
                else default_config(as_base_url(args.teacher_url))
            )
            model = args.model or config.ensembles[0].name
            await check_teachers(config, model)
            engine = LocalEngine(
                config, model, settings.cord, args.timeout or config.server.request_timeout
            )
        summary = await run_distill(settings, engine)
        print(summary.render(settings), flush=True)
        return 130 if summary.interrupted else (1 if summary.failed else 0)

    try:
        return asyncio.run(run())
    except DistillError as error:
        print(f"cord-proxy distill: {error}", file=sys.stderr)
        return 2
