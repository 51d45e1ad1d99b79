"""The roles a teacher plays in a decode, and the one check that a team of teachers fills them.

A team fills its roles when some proposer can propose, every scorer can score, and there is a
scorer. `role_gaps` is that check. Each layer says a gap in its own words: the config (an
ensemble without a declared role), the runtime (a 400 that names the request's field) and the
engine (`TeacherCapabilityError` on a job). A leaf: it imports nothing of cord_proxy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Role = Literal["propose", "score"]
GapKind = Literal["no_proposer", "cannot_score", "no_scorer"]


@dataclass(frozen=True)
class RoleGap:
    """A role the team leaves unfilled. `teacher`: the scorer that cannot score."""

    kind: GapKind
    teacher: str | None = None

    @property
    def field(self) -> str:
        """The list of the team that has the gap: ``teachers`` (proposers) or ``scorers``."""
        return "teachers" if self.kind == "no_proposer" else "scorers"

    def said(self, words: Mapping[GapKind, str]) -> str:
        """The gap in a layer's `words`: a template per kind (``{teacher}``: the name)."""
        return words[self.kind].format(teacher=self.teacher)


def role_gaps(proposers: Iterable[bool], scorers: Mapping[str, bool]) -> list[RoleGap]:
    """The gaps of a team: no proposer that can propose (`proposers`: whether each can), each
    scorer that cannot score (`scorers`: name -> whether it can), in order, and no scorer."""
    gaps = [] if any(proposers) else [RoleGap("no_proposer")]
    gaps += [RoleGap("cannot_score", name) for name, can in scorers.items() if not can]
    if not scorers:
        gaps.append(RoleGap("no_scorer"))
    return gaps
