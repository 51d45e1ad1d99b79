"""The trace file index and the page's JSON APIs, over real files and a real HTTP server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from cord_proxy.decoding.trace import TeacherUsage
from cord_proxy.metrics import Metrics
from cord_proxy.ui.index import TraceIndex
from cord_proxy.ui.query import TraceQuery, file_stats, list_traces, read_record, scrub
from tests.ui.viewer import running_view


def _record(i: int, score: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"r{i}",
        "messages": [{"role": "user", "content": f"question {i}"}],
        "reasoning": f"reasoning {i}",
        "answer": str(i),
        "score": score,
        "finish_reason": "stop" if i % 2 else "length",
        "steps": [{"index": 1, "text": "s", "proposers": ["a" if i % 2 else "b"], "score": 0.5}],
        "teachers": [{"name": "a", "selected": i % 2, "proposals": 1}],
        "failures": [{"step": 1}] if i == 3 else [],
        **extra,
    }


def _write(path: Path, records: list[dict[str, Any]], tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")


def test_index_follows_appends_skips_partial_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    _write(path, [_record(0, 0.1), _record(1, 0.2)], tail='\n\n{"id": "partial", ')
    index = TraceIndex(path)
    assert index.refresh() == 2
    with path.open("a", encoding="utf-8") as handle:
        handle.write('"score": 0.9}\nnot json\n')
    assert index.refresh() == 4
    rows = list_traces(index, TraceQuery())["items"]
    assert [r["id"] for r in rows] == ["r0", "r1", "partial", ""]
    assert [r["readable"] for r in rows] == [True, True, True, False]


def test_index_starts_again_when_the_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    _write(path, [_record(i, 0.1) for i in range(5)])
    index = TraceIndex(path)
    assert index.refresh() == 5 and len(index.summarize_all()) == 5
    replacement = tmp_path / "new.jsonl"
    _write(replacement, [_record(9, 0.3)])
    os.replace(replacement, path)
    assert index.refresh() == 1
    assert [s.id for s in index.summarize_all()] == ["r9"]


def test_search_sort_and_filters(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    records = [_record(i, s) for i, s in enumerate([0.5, None, 0.9, 0.1, 0.7])]
    records[4]["reasoning"] = 'She said "Wait, <b>no</b>"'
    _write(path, records)
    index = TraceIndex(path)

    def ids(**query: Any) -> list[str]:
        return [r["id"] for r in list_traces(index, TraceQuery(**query))["items"]]

    assert ids(search='"wait, <B>') == ["r4"]
    assert ids(search="score") == []  # a key of every record, not its text
    assert ids(search="QUESTION 2") == ["r2"]
    assert ids(sort="score", descending=True) == ["r2", "r4", "r0", "r3", "r1"]
    assert ids(sort="score") == ["r3", "r0", "r4", "r2", "r1"]
    assert ids(teacher="a") == ["r1", "r3"]
    assert ids(finish_reason="length") == ["r0", "r2", "r4"]
    assert ids(failures="yes") == ["r3"]
    assert ids(min_score=0.5, max_score=0.8) == ["r0", "r4"]
    assert ids(offset=3, limit=1) == ["r3"]
    stats = file_stats(index)
    assert sum(stats["histogram"]["counts"]) == 4 and stats["count"] == 5
    assert stats["win_rates"] == [{"teacher": "a", "selected": 2, "proposals": 5, "share": 1.0}]


def test_records_lose_secrets(tmp_path: Path) -> None:
    record = _record(0, 0.1, settings={"proposers": [{"name": "x", "api_key": "sk-1"}]})
    record["note"] = "env:SECRET_NAME"
    assert "sk-1" not in json.dumps(scrub(record))
    assert scrub(record)["note"] == "env:(hidden)"
    path = tmp_path / "t.jsonl"
    _write(path, [record])
    found = read_record(TraceIndex(path), 0)
    assert found is not None and "api_key" not in json.dumps(found)
    assert read_record(TraceIndex(path), 1) is None


def test_teacher_stats_of_the_metrics() -> None:
    metrics = Metrics()
    for latency in (1.0, 3.0, 2.0):
        usage = TeacherUsage(
            name="a",
            proposals=2,
            selected=1,
            propose_calls=2,
            score_calls=1,
            prompt_tokens=10,
            completion_tokens=5,
            score_tokens=7,
            cost_usd=0.5,
            latency_s=latency,
        )
        metrics.observe_decode([usage])
    stats = metrics.teacher_stats("a")
    assert stats["calls"] == 9 and stats["proposals"] == 6 and stats["selected"] == 3
    assert stats["tokens"] == 66 and stats["cost_usd"] == 1.5
    assert stats["latency_p50_s"] == 1.0 and stats["latency_p99_s"] == 1.5
    assert metrics.teacher_stats("b")["latency_p50_s"] is None


def test_view_api_answers_and_refuses_with_openai_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    _write(path, [_record(i, 0.1 * i) for i in range(3)])
    with running_view(path, tmp_path / "view.log") as url:
        page = httpx.get(f"{url}/ui/api/traces?limit=2").json()
        assert page["total"] == 3 and [r["id"] for r in page["items"]] == ["r0", "r1"]
        info = httpx.get(f"{url}/ui/api/info").json()
        assert info == {"mode": "view", "ensembles": [], "teachers": [], "trace_file": "t.jsonl"}
        assert httpx.get(f"{url}/ui/api/teachers").json()["teachers"] == []
        html = httpx.get(f"{url}/ui")
        assert "script-src 'self'" in html.headers["Content-Security-Policy"]
        assert httpx.get(url, follow_redirects=True).url.path == "/ui"
        for query, status, param in (
            ("traces?sort=nope", 400, "sort"),
            ("traces?limit=0", 400, "limit"),
            ("traces?min_score=nan", 400, "min_score"),
            ("traces?offset=two", 400, "offset"),
            ("traces?max_score=high", 400, "max_score"),
            ("traces?failures=maybe", 400, "failures"),
            ("traces/7", 404, "line"),
            ("traces/-1", 404, "line"),
        ):
            answer = httpx.get(f"{url}/ui/api/{query}")
            assert answer.status_code == status, query
            assert answer.json()["error"]["param"] == param
        assert httpx.get(f"{url}/ui/static/routes.py").status_code == 404
