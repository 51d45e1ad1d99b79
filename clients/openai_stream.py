"""Stream a CoRD trace with the openai SDK: reasoning deltas as steps become certain, then answer.

.venv/bin/python clients/openai_stream.py --base-url http://127.0.0.1:8400/v1

The key: $CORD_API_KEY, else $OPENAI_API_KEY (any string when the proxy has no api_keys).
"""

from __future__ import annotations

import argparse
import os
import sys

from openai import OpenAI


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="http://127.0.0.1:8400/v1")
    parser.add_argument("--model", default="cord")
    parser.add_argument("--question", default="What is 12 + 30?")
    parser.add_argument("--max-steps", type=int, default=2)
    args = parser.parse_args()

    key = os.environ.get("CORD_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
    client = OpenAI(base_url=args.base_url, api_key=key)
    stream = client.chat.completions.create(
        model=args.model,
        messages=[{"role": "user", "content": args.question}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"cord": {"max_steps": args.max_steps}},
    )
    section = ""
    for chunk in stream:
        if chunk.usage is not None:
            print(f"\n[usage] {chunk.usage.model_dump_json()}")
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            if extra.get("reasoning_content"):
                section = _switch(section, "reasoning")
                sys.stdout.write(extra["reasoning_content"])
            if choice.delta.content:
                section = _switch(section, "answer")
                sys.stdout.write(choice.delta.content)
            if choice.finish_reason:
                print(f"\n[finish_reason] {choice.finish_reason}")
        sys.stdout.flush()


def _switch(current: str, new: str) -> str:
    if current != new:
        print(f"\n[{new}]")
    return new


if __name__ == "__main__":
    main()
