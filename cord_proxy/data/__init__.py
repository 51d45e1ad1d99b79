"""Training data: JSONL files, the trace record of a decode, and its exports.

- ``jsonl``: atomic appends and tolerant reads of JSONL files;
- ``sink``: the dataset sink, one record per finished decode;
- ``provenance``: a decode's provenance, rendered once for the response and the record;
- ``records``: the trace record (schema ``cord-trace/1``);
- ``exports``: trace records to training formats (``cord-proxy export``);
- ``search_tree``: a record's search tree rebuilt (siblings by parent, each beam's trace so
  far, the best trace's path), for the dpo and prm exports;
- ``preferences``: step-level preference pairs (``export --format dpo``);
- ``process_labels``: stepwise process labels (``export --format prm``).
"""
