"""Training data: JSONL files, the trace record of a decode, and its exports.

- ``jsonl``: atomic appends and tolerant reads of JSONL files;
- ``sink``: the dataset sink, one record per finished decode;
- ``provenance``: a decode's provenance, rendered once for the response and the record;
- ``records``: the trace record (schema ``cord-trace/1``);
- ``exports``: trace records to training formats (``cord-proxy export``).
"""
