"""cord-proxy's vLLM plugin: a logits processor that writes the tokens a request names.

The teacher loads it from this folder (on its ``PYTHONPATH``) with ``--logits-processors
cord_forced_tokens:ForcedTokens``; any vLLM server can, the same way. ``cord_forced_key``
holds what both sides must agree on, in the standard library only, so the proxy imports it
without vLLM.
"""

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
LOGITS_PROCESSOR = "cord_forced_tokens:ForcedTokens"
