"""The CoRD stage in a Ray Data pipeline: problems JSONL in, trace records JSONL out.

python clients/ray_data.py problems.jsonl traces.jsonl --teacher-url http://127.0.0.1:8401/v1
"""

import argparse
import json

import ray

from cord_proxy.ray import StageSettings, apply_cord

parser = argparse.ArgumentParser()
parser.add_argument("input")
parser.add_argument("output")
parser.add_argument("--teacher-url", default="http://127.0.0.1:8401/v1")
parser.add_argument("--cord", default='{"max_steps": 2}', help="decoding options, as JSON")
args = parser.parse_args()

ray.init(num_cpus=2, include_dashboard=False)
settings = StageSettings(teacher_url=args.teacher_url, cord=json.loads(args.cord))
traces = apply_cord(ray.data.read_json(args.input), settings, num_actors=2)
with open(args.output, "w", encoding="utf-8") as out:
    for row in traces.iter_rows():  # a failed problem is a row whose "error" says why
        out.write(json.dumps(row, default=str) + "\n")
