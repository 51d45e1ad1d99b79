"""`distill` without a real teacher: input checks, resume, failures, retries, the progress bar."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from cord_proxy.api.app import create_app
from cord_proxy.attempts import ProblemFailed
from cord_proxy.data.jsonl import read_records
from cord_proxy.data.sink import JsonlSink
from cord_proxy.distill.arguments import parse_cord_option
from cord_proxy.distill.engines import LocalEngine, ProxyEngine
from cord_proxy.distill.errors import DistillError
from cord_proxy.distill.problems import Problem, read_problems
from cord_proxy.distill.run import run_distill
from cord_proxy.distill.settings import DistillSettings, default_failures_path
from cord_proxy.progress import ProgressBar, format_duration
from cord_proxy.runtime import Runtime
from tests.support.search_tree import check_record
from tests.test_dataset import _config, _fakes


def _write(path: Path, lines: list[str], final_newline: bool = True) -> Path:
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""), encoding="utf-8")
    return path


def _problem(i: int | str, **extra: Any) -> str:
    return json.dumps({"id": i, "question": f"What is {i} + 1?", "answer": f"{i}+1", **extra})


def test_bad_input_lines_are_reported_by_number_and_skipped(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "in.jsonl",
        [
            _problem("a"),
            "{not json",
            json.dumps({"question": "no id"}),
            json.dumps(
                {"id": "b", "question": "q", "messages": [{"role": "user", "content": "q"}]}
            ),
            json.dumps({"id": "c", "messages": [{"role": "robot", "content": "q"}]}),
            "",
            _problem("a"),
            json.dumps(
                {
                    "id": 7,
                    "messages": [
                        {"role": "system", "content": "s"},
                        {"role": "user", "content": "q"},
                    ],
                    "answer": 3,
                }
            ),
            json.dumps({"id": "d", "question": "   "}),
            _problem("e"),
        ],
        final_newline=False,
    )
    problems, bad = read_problems(path)
    assert [p.id for p in problems] == ["a", 7, "e"]
    assert problems[1].answer == "3" and problems[1].messages[0]["role"] == "system"
    assert [n for n, _ in bad] == [2, 3, 4, 5, 7, 9]
    reasons = dict(bad)
    assert "duplicate id 'a' (first on line 1)" in reasons[7]
    assert "exactly one of 'question' and 'messages'" in reasons[4]


class FakeEngine:
    """Answers by script: a problem's id maps to a record, or to failures before success."""

    def __init__(self, fail_first: dict[str, int] | None = None, permanent: set[str] | None = None):
        self.fail_first = dict(fail_first or {})
        self.permanent = permanent or set()
        self.calls: list[str] = []
        self.closed = False

    async def solve(self, problem: Problem) -> dict[str, Any]:
        self.calls.append(problem.key)
        if problem.key in self.permanent:
            raise ProblemFailed("unknown teacher 'nope'", "InvalidRequestError", transient=False)
        if self.fail_first.get(problem.key, 0) > 0:
            self.fail_first[problem.key] -= 1
            raise ProblemFailed("teacher timed out", "TeacherTimeoutError", transient=True)
        return {
            "id": problem.id,
            "reasoning": "r",
            "answer": "a",
            "score": 0.5,
            "cost_usd": 0.25,
            "messages": problem.messages,
        }

    async def aclose(self) -> None:
        self.closed = True


def _settings(tmp_path: Path, n: int, **extra: Any) -> DistillSettings:
    source = _write(tmp_path / "in.jsonl", [_problem(f"p{i}") for i in range(n)])
    output = tmp_path / "out.jsonl"
    return DistillSettings(
        input=source,
        output=output,
        failures=default_failures_path(output),
        concurrency=3,
        retry_backoff_s=0.0,
        **extra,
    )


async def test_a_rerun_skips_the_ids_already_in_the_output(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 6)
    settings.output.write_text(
        json.dumps({"id": "p1"}) + "\n" + json.dumps({"id": "p4"}) + "\n" + '{"id": "p5", "re',
        encoding="utf-8",
    )  # p5 was cut by a crash mid-write: it is done again
    engine = FakeEngine()
    summary = await run_distill(settings, engine, progress_stream=io.StringIO())
    assert sorted(engine.calls) == ["p0", "p2", "p3", "p5"] and engine.closed
    assert (summary.already_done, summary.done, summary.failed) == (2, 4, 0)
    ids = [r["id"] for r in read_records(settings.output)]
    assert sorted(ids) == [f"p{i}" for i in range(6)]
    again = FakeEngine()
    summary = await run_distill(settings, again, progress_stream=io.StringIO())
    assert again.calls == [] and summary.already_done == 6 and summary.output_records == 6


async def test_failures_go_to_their_own_file_with_reasons(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 4, retries=2)
    engine = FakeEngine(fail_first={"p0": 2, "p1": 5}, permanent={"p2"})
    stream = io.StringIO()
    summary = await run_distill(settings, engine, progress_stream=stream)
    assert settings.failures.name == "out.failures.jsonl"
    failures = {f["id"]: f for f in read_records(settings.failures)}
    assert set(failures) == {"p1", "p2"}
    assert failures["p1"]["attempts"] == 3 and failures["p1"]["kind"] == "TeacherTimeoutError"
    assert failures["p2"]["attempts"] == 1 and "unknown teacher" in failures["p2"]["error"]
    assert sorted(r["id"] for r in read_records(settings.output)) == ["p0", "p3"]
    assert (summary.done, summary.failed) == (2, 2)
    text = summary.render(settings)
    assert "2 done, 2 failed" in text and "$0.5000" in text and "mean score: 0.500" in text
    # a rerun retries the failed ids (and only those)
    retry = FakeEngine()
    summary = await run_distill(settings, retry, progress_stream=io.StringIO())
    assert sorted(retry.calls) == ["p1", "p2"] and summary.output_records == 4


async def test_the_in_process_engine_writes_full_records(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 3)
    engine = LocalEngine(_config(), "duo", {"max_steps": 2}, 60.0, teachers=_fakes())
    summary = await run_distill(settings, engine, progress_stream=io.StringIO())
    assert summary.done == 3
    records = read_records(settings.output)
    assert sorted(r["id"] for r in records) == ["p0", "p1", "p2"]
    assert all(r["reference_answer"] == f"{r['id']}+1" and r["steps"] for r in records)
    assert all(r["settings"]["options"]["max_steps"] == 2 for r in records)
    for record in records:
        check_record(record)


@pytest.mark.parametrize("asked", [False, True])
async def test_the_proxy_engine_records_the_search_tree(tmp_path: Path, asked: bool) -> None:
    """`distill --url` asks for every candidate to record the tree; the steps repeat their
    round's candidates only when the run asked for them."""
    sink = JsonlSink(tmp_path / "sink.jsonl")
    server = TestServer(create_app(Runtime(_config(), _fakes()), sink))
    await server.start_server()
    cord = {"max_steps": 2, **({"include_candidates": True} if asked else {})}
    engine = ProxyEngine(str(server.make_url("/v1")), "duo", cord, 60.0)
    messages = [{"role": "user", "content": "What is 40 + 2?"}]
    try:
        record = await engine.solve(Problem("p1", 1, messages, "42"))
    finally:
        await engine.aclose()
        await server.close()
    [sunk] = read_records(sink.path)
    assert record["source"] == "proxy" and record["search"] == sunk["search"]
    assert record["path"] == sunk["path"] and record["answer_trainable"] is True
    assert record["settings"]["cord"] == cord
    assert all(("candidates" in step) is asked for step in record["steps"])
    check_record(record)


async def test_a_bad_option_fails_the_problem_not_the_run(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 2)
    engine = LocalEngine(_config(), "duo", {"teachers": ["nope"]}, 60.0, teachers=_fakes())
    summary = await run_distill(settings, engine, progress_stream=io.StringIO())
    assert summary.failed == 2
    assert all("unknown teacher" in f["error"] for f in read_records(settings.failures))


def test_cord_option_is_checked_up_front() -> None:
    assert parse_cord_option('{"max_steps": 2}') == {"max_steps": 2}
    for bad, message in (
        ("[1]", "JSON object"),
        ("{", "not valid JSON"),
        ('{"beam_width": 0}', "beam_width"),
        ('{"reference_answer": "1"}', "reference_answer"),
    ):
        with pytest.raises(DistillError, match=message):
            parse_cord_option(bad)


def test_the_progress_bar_redraws_in_place_on_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar(4, stream=stream, tty=True, every_s=0.0)
    bar.succeeded(cost_usd=0.5, score=0.25)
    bar.failure()
    bar.message("line 3: skipped")
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") >= 3 and text.endswith("\n")
    last = text.split("\r")[-1]
    assert "[############............] 2/4" in last
    assert "done 1 failed 1" in last and "$0.5000" in last and "mean score 0.250" in last
    assert "/min" in last and "ETA" in last
    assert format_duration(3725) == "1:02:05" and format_duration(None) == "--:--"


def test_the_progress_bar_prints_plain_lines_in_a_log() -> None:
    stream = io.StringIO()
    bar = ProgressBar(2, stream=stream, tty=False, every_s=3600.0)
    bar.update(force=True)
    bar.succeeded()
    bar.succeeded()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 2
    assert "2/2 100%" in lines[-1]


def test_an_unreachable_teacher_fails_clearly(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", [_problem("a")])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cord_proxy",
            "distill",
            "--input",
            str(source),
            "--output",
            str(tmp_path / "out.jsonl"),
            "--teacher-url",
            "http://127.0.0.1:9/v1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "unreachable" in done.stderr and "http://127.0.0.1:9/v1" in done.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_the_preflight_refuses_a_teacher_that_cannot_fill_its_roles() -> None:
    import asyncio

    from cord_proxy.config import parse_config
    from cord_proxy.distill.preflight import check_teachers

    gpt = {"name": "gpt", "kind": "litellm", "model": "openai/gpt-4o-mini", "roles": ["score"]}
    config = parse_config(
        {
            "teachers": [{"name": "a", "base_url": "http://127.0.0.1:9/v1", "model": "m"}, gpt],
            "ensembles": [{"name": "e", "teachers": ["a"], "scorers": ["gpt"]}],
        }
    )
    with pytest.raises(DistillError, match=r"teacher 'gpt'.*cannot score"):
        asyncio.run(check_teachers(config, "e"))
