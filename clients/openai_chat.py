"""Ask cord-proxy for one CoRD trace with the official openai SDK.

.venv/bin/python clients/openai_chat.py --base-url http://127.0.0.1:8400/v1

The key: $CORD_API_KEY, else $OPENAI_API_KEY (any string when the proxy has no api_keys).
"""

from __future__ import annotations

import argparse
import json
import os

from openai import OpenAI


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="http://127.0.0.1:8400/v1")
    parser.add_argument("--model", default="cord")
    parser.add_argument("--question", default="What is 12 + 30?")
    parser.add_argument("--reference-answer", default="42")
    parser.add_argument("--max-steps", type=int, default=2)
    args = parser.parse_args()

    key = os.environ.get("CORD_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
    client = OpenAI(base_url=args.base_url, api_key=key)
    completion = client.chat.completions.create(
        model=args.model,
        messages=[{"role": "user", "content": args.question}],
        extra_body={
            "cord": {"reference_answer": args.reference_answer, "max_steps": args.max_steps}
        },
    )
    message = completion.choices[0].message
    extra = message.model_extra or {}
    cord = (completion.model_extra or {})["cord"]
    print("reasoning:", extra.get("reasoning_content"))
    print("answer:", message.content)
    print(
        "steps:",
        json.dumps([{"by": s["proposers"], "score": round(s["score"], 4)} for s in cord["steps"]]),
    )
    print("usage:", completion.usage.model_dump_json() if completion.usage else None)


if __name__ == "__main__":
    main()
