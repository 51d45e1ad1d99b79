"""Test support that tests/, bench/ and scripts/ share (and users may reuse in their own
tests): ``bench`` and ``cord_proxy`` import nothing from ``tests``, so what they share lives
here. Nothing else in cord_proxy imports it.

- ``fake_vllm_wire``: FAKE vLLM routes (``/tokenize``, ``/detokenize``, scoring completions)
  over a character-level tokenizer, for fake teacher servers;
- ``browser``: Chromium driven by Playwright (the ``dev`` extra) and a page that records what
  went wrong on it, for the UI tests, the UI benchmark and the screenshots.
"""
