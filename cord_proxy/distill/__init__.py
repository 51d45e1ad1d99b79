"""``cord-proxy distill``: a file of problems in, a file of traces out, resumable by id.

- ``problems``: the input, one problem a line;
- ``engines``: what solves a problem: the engine in this process, or a running proxy;
- ``errors``: how a run fails (`DistillError`); one problem's attempts, with retries of
  transient failures, and how it fails (`ProblemFailed`) are ``cord_proxy.attempts``;
- ``preflight``: the teachers or the proxy answer before the run starts;
- ``resume``: which problems are left to do;
- ``run``: the run loop and its progress bar; ``summary``: what it did;
- ``settings`` and ``arguments``: the run's settings, from the command line;
- ``command``: ``cord-proxy distill`` itself (``ray.distill`` for ``--ray``).
"""
