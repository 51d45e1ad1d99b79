"""How a distill run fails as a whole: it cannot start. One problem's failure is
`cord_proxy.attempts.ProblemFailed` (recorded, maybe retried), shared with ``batches``."""

from __future__ import annotations


class DistillError(Exception):
    """The run cannot start (bad options, unreachable teacher or proxy); exit status 2."""
