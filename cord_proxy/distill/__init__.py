"""``cord-proxy distill``: a file of problems in, a file of traces out, resumable by id.

- ``problems``: the input, one problem a line;
- ``engines``: what solves a problem: the engine in this process, or a running proxy;
- ``attempts``: one problem's attempts, with retries of transient failures;
- ``preflight``: the teachers or the proxy answer before the run starts;
- ``resume``: which problems are left to do;
- ``run``: the run loop, with its progress bar; ``summary``: what it did;
- ``command``: the command line.
"""
