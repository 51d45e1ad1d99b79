"""The trace list's queries: search, filter, sort, page; and the per-file statistics."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from cord_proxy.errors import InvalidRequestError
from cord_proxy.ui.index import Summary, TraceIndex, summarize

SORT_KEYS = ("line", "id", "score", "steps", "failures", "wall_s", "cost_usd")
MAX_LIMIT = 500
HISTOGRAM_BINS = 20
SECRET_KEYS = frozenset({"api_key", "api_keys", "authorization", "password", "secret"})
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class TraceQuery:
    offset: int = 0
    limit: int = 50
    search: str = ""
    sort: str = "line"
    descending: bool = False
    teacher: str = ""
    finish_reason: str = ""
    failures: str = ""
    min_score: float | None = None
    max_score: float | None = None

    @property
    def needs_summaries(self) -> bool:
        return bool(
            self.sort != "line"
            or self.descending
            or self.teacher
            or self.finish_reason
            or self.failures
            or self.min_score is not None
            or self.max_score is not None
        )


def _number(
    params: Mapping[str, str], name: str, convert: Callable[[str], N], kind: str
) -> N | None:
    raw = params.get(name, "")
    if raw == "":
        return None
    try:
        return convert(raw)
    except ValueError:
        raise InvalidRequestError(f"'{name}' must be {kind}", param=name) from None


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _number(params, name, int, "an integer")
    if value is None:
        return default
    if not low <= value <= high:
        raise InvalidRequestError(f"'{name}' must be between {low} and {high}", param=name)
    return value


def _float(params: Mapping[str, str], name: str) -> float | None:
    value = _number(params, name, float, "a number")
    if value is not None and not math.isfinite(value):
        raise InvalidRequestError(f"'{name}' must be finite", param=name)
    return value


def parse_query(params: Mapping[str, str]) -> TraceQuery:
    sort = params.get("sort", "") or "line"
    if sort not in SORT_KEYS:
        raise InvalidRequestError(f"'sort' must be one of {', '.join(SORT_KEYS)}", param="sort")
    failures = params.get("failures", "")
    if failures not in ("", "yes", "no"):
        raise InvalidRequestError("'failures' must be 'yes' or 'no'", param="failures")
    return TraceQuery(
        offset=_int(params, "offset", 0, 0, 1 << 40),
        limit=_int(params, "limit", 50, 1, MAX_LIMIT),
        search=params.get("q", "").strip()[:200],
        sort=sort,
        descending=params.get("order", "asc") == "desc",
        teacher=params.get("teacher", ""),
        finish_reason=params.get("finish_reason", ""),
        failures=failures,
        min_score=_float(params, "min_score"),
        max_score=_float(params, "max_score"),
    )


def _keep(summary: Summary, query: TraceQuery) -> bool:
    if query.teacher and query.teacher not in summary.teachers:
        return False
    if query.finish_reason and summary.finish_reason != query.finish_reason:
        return False
    if query.failures == "yes" and not summary.failures:
        return False
    if query.failures == "no" and summary.failures:
        return False
    score = summary.score
    if query.min_score is not None and (score is None or score < query.min_score):
        return False
    return not (query.max_score is not None and (score is None or score > query.max_score))


def _sort_key(name: str) -> Any:
    def key(summary: Summary) -> tuple[bool, Any]:
        value = getattr(summary, name)
        return (value is None, value if value is not None else 0)

    return key


def _texts(record: Any) -> list[str]:
    if not isinstance(record, dict):
        return []
    texts = [str(record.get(k, "")) for k in ("id", "request_id", "reasoning", "answer")]
    for message in record.get("messages") or ():
        if isinstance(message, dict):
            texts.append(str(message.get("content", "")))
    return texts


def search_lines(index: TraceIndex, text: str) -> set[int]:
    """Lines whose id, question, reasoning or answer holds `text` (case-insensitive).

    The raw bytes are scanned first; only the lines that hold the text somewhere are parsed.
    """
    needle = text.casefold()
    found: set[int] = set()
    candidates = sorted(index.search(text))
    for offset in range(0, len(candidates), 4096):
        batch = candidates[offset : offset + 4096]
        for line, raw in zip(batch, index.read(batch), strict=True):
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if any(needle in t.casefold() for t in _texts(record)):
                found.add(line)
    return found


def list_traces(index: TraceIndex, query: TraceQuery) -> dict[str, Any]:
    """One page of the list. Without sort or filter, only the page's lines are read."""
    total = index.refresh()
    hits = search_lines(index, query.search) if query.search else None
    if not query.needs_summaries:
        lines = sorted(hits) if hits is not None else None
        matched = len(lines) if lines is not None else total
        chosen = (
            lines[query.offset : query.offset + query.limit]
            if lines is not None
            else list(range(query.offset, min(total, query.offset + query.limit)))
        )
        rows = [summarize(i, raw).row() for i, raw in zip(chosen, index.read(chosen), strict=True)]
        return {"total": total, "matched": matched, "offset": query.offset, "items": rows}
    summaries = [
        s for s in index.summarize_all() if (hits is None or s.line in hits) and _keep(s, query)
    ]
    summaries.sort(key=_sort_key(query.sort), reverse=query.descending)
    if query.descending:
        summaries.sort(key=lambda s: getattr(s, query.sort) is None)
    page = summaries[query.offset : query.offset + query.limit]
    return {
        "total": total,
        "matched": len(summaries),
        "offset": query.offset,
        "items": [s.row() for s in page],
    }


def _histogram(scores: list[float]) -> dict[str, Any]:
    counts = [0] * HISTOGRAM_BINS
    for score in scores:
        counts[min(HISTOGRAM_BINS - 1, max(0, int(score * HISTOGRAM_BINS)))] += 1
    edges = [round(i / HISTOGRAM_BINS, 4) for i in range(HISTOGRAM_BINS + 1)]
    return {"edges": edges, "counts": counts}


def file_stats(index: TraceIndex) -> dict[str, Any]:
    """Score histogram, teachers' win rates (share of selected steps), finish reasons."""
    index.refresh()
    summaries = [s for s in index.summarize_all() if s.readable]
    selected: Counter[str] = Counter()
    proposals: Counter[str] = Counter()
    for summary in summaries:
        selected.update(summary.selected)
        proposals.update(summary.proposals)
    all_selected = sum(selected.values())
    names = sorted(set(selected) | set(proposals))
    win_rates = [
        {
            "teacher": name,
            "selected": selected[name],
            "proposals": proposals[name],
            "share": selected[name] / all_selected if all_selected else 0.0,
        }
        for name in names
    ]
    return {
        "count": len(summaries),
        "histogram": _histogram([s.score for s in summaries if s.score is not None]),
        "win_rates": win_rates,
        "finish_reasons": dict(Counter(s.finish_reason for s in summaries)),
        "teachers": names,
        "with_failures": sum(1 for s in summaries if s.failures),
    }


def scrub(value: Any) -> Any:
    """Drop any secret-looking key and any resolved ``env:`` reference from a record."""
    if isinstance(value, dict):
        return {
            k: scrub(v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.lower() in SECRET_KEYS)
        }
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str) and value.startswith("env:"):
        return "env:(hidden)"
    return value


def parsed_line(index: TraceIndex, line: int) -> tuple[bool, Any] | None:
    """(whether `line` is JSON, its value); None when there is no such line."""
    if not 0 <= line < index.refresh():
        return None
    (raw,) = index.read([line])
    try:
        return True, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False, None


def read_record(index: TraceIndex, line: int) -> dict[str, Any] | None:
    parsed = parsed_line(index, line)
    if parsed is None:
        return None
    readable, record = parsed
    if not readable:
        return {"line": line, "readable": False, "record": None}
    return {"line": line, "readable": True, "record": scrub(record)}
