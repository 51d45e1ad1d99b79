"""Checks of a record's search tree (``search``, ``path``) against the traces it holds.

The rules are the record's (README, the record): round 1 extends the root beam 0; a chosen
candidate's `child` is the beam it became, numbered 0, 1, ... within its round; beam `p` of
round r+1 is its parent's text and that candidate's `step_text`; a trace is the line of beams
its `path` names, and its reasoning the concatenation of those step texts.
"""

from __future__ import annotations

from typing import Any


def beam_texts(search: list[dict[str, Any]]) -> list[dict[int, str]]:
    """Every round's beams (index -> its trace text so far), rebuilt from the tree alone;
    item r holds the beams after round r (item 0: the root). Checks the tree's shape."""
    rounds: list[dict[int, str]] = [{0: ""}]
    live = {0}
    for number, entry in enumerate(search, start=1):
        assert entry["step"] == number
        candidates = entry["candidates"]
        assert {c["parent"] for c in candidates} <= live, f"round {number}: unknown parent"
        chosen = [c for c in candidates if c["child"] is not None]
        assert all(c["selected"] == (c["child"] is not None) for c in candidates)
        assert sorted(c["child"] for c in chosen) == list(range(len(chosen)))
        texts = rounds[-1]
        rounds.append({c["child"]: texts[c["parent"]] + c["step_text"] for c in chosen})
        live = {c["child"] for c in chosen if c["closes"] is None}
    return rounds


def check_trace(search: list[dict[str, Any]], trace: dict[str, Any]) -> None:
    """`trace` (the record, or one of its alternatives) is a line of the tree: its path's
    candidates are its steps, and their step texts rebuild its reasoning."""
    path, steps = trace["path"], trace["steps"]
    assert path[0] == 0 and len(path) == len(steps) + 1
    texts = []
    for number, step in enumerate(steps, start=1):
        [candidate] = [c for c in search[number - 1]["candidates"] if c["child"] == path[number]]
        assert candidate["parent"] == path[number - 1]
        assert candidate["step_text"] == step["text"]
        assert candidate["proposers"] == step["proposers"]
        assert candidate["log_score"] == step["log_score"]
        assert candidate["trainable"] == step["trainable"]
        texts.append(candidate["step_text"])
    assert beam_texts(search)[len(steps)][path[-1]] == "".join(texts)
    assert "".join(texts).strip() == trace["reasoning"]
    last = [c for c in search[len(steps) - 1]["candidates"] if c["child"] == path[-1]]
    ended = trace["closed_by"]
    assert [c["closes"] for c in last] == [None if ended == "max_steps" else ended]


def check_record(record: dict[str, Any]) -> None:
    """The record's tree is well formed and holds its trace and every alternative."""
    search = record["search"]
    beam_texts(search)
    for trace in [record, *record["alternatives"]]:
        check_trace(search, trace)
