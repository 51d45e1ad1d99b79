"""Print the PIDs of a Ray cluster's live CoRD stage actors, as JSON, from Ray's actor table.

python -m tests.ray.ray_actors GCS_ADDRESS

Joins the cluster as a second driver and reads the GCS actor table (``ray list actors``
reads the same through the dashboard, which ``distill --ray local`` does not start).
"""

from __future__ import annotations

import json
import sys

import ray
from ray._private.state import actors

STAGE_ACTOR = "MapWorker(MapBatches(CordStage))"


def main() -> None:
    ray.init(address=sys.argv[1], log_to_driver=False, include_dashboard=False)
    try:
        table = actors(actor_state_name="ALIVE")
        pids = [a["Pid"] for a in table.values() if a["ActorClassName"] == STAGE_ACTOR]
        print(json.dumps(pids))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
