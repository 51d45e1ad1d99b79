"""cord-proxy's vLLM plugin: a logits processor that writes the tokens a request names, and
a route that tokenizes a round's (prefix, full) pairs in one request.

The teacher loads both from this folder (on its ``PYTHONPATH``) with ``--logits-processors
cord_forced_tokens:ForcedTokens --middleware cord_spans.spans_route``; any vLLM server can,
the same way. ``cord_forced_key`` and ``cord_spans_wire`` hold what both sides must agree on,
in the standard library only, so the proxy imports them without vLLM.
"""

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
LOGITS_PROCESSOR = "cord_forced_tokens:ForcedTokens"
SPANS_MIDDLEWARE = "cord_spans.spans_route"
