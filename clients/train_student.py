"""Fine-tune the local Gemma 3 270M on cord-proxy's exports with TRL, on the CPU.

    python=$(bash scripts/student_venv.sh)   # TRL, peft, datasets on the teacher's torch
    cord-proxy export --input traces.jsonl --format trl --output sft.jsonl
    $python clients/train_student.py --trainer sft --data sft.jsonl --steps 20
    cord-proxy export --input traces.jsonl --format dpo --output pairs.jsonl
    $python clients/train_student.py --trainer dpo --data pairs.jsonl --steps 20
    cord-proxy export --input traces.jsonl --format prm --output labels.jsonl
    $python clients/train_student.py --trainer prm --data labels.jsonl --steps 20

One trainer a format:
- ``sft`` (``--format trl``, ``{"messages": [...]}``): ``SFTTrainer``, the loss on the
  assistant turn only (the thinking and the answer).
- ``dpo`` (``--format dpo``, TRL's conversational preference rows): ``DPOTrainer``; with
  LoRA the reference model is the base without the adapter.
- ``prm`` (``--format prm``, TRL's stepwise supervision rows, boolean labels): TRL's
  experimental ``PRMTrainer`` on a token-classification head over the causal LM's text
  weights.

Columns a trainer does not read (scores, margins, proposers) are dropped. Conversations are
written with cord-proxy's Gemma chat template, the one the local teacher is served with. It
prints the loss at every step and the wall time; its last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never ask a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import datasets
import torch
import transformers
from datasets import Dataset
from peft import LoraConfig
from transformers import (
    AutoTokenizer,
    Gemma3TextConfig,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.modeling_layers import GenericForTokenClassification
from transformers.models.gemma3.modeling_gemma3 import Gemma3PreTrainedModel
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer
from trl.experimental.prm import PRMConfig, PRMTrainer

REPO = Path(__file__).resolve().parents[1]
CHAT_TEMPLATE = REPO / "cord_proxy" / "local" / "gemma_chat_template.jinja"
COLUMNS = {
    "sft": ("messages",),
    "dpo": ("prompt", "chosen", "rejected"),
    "prm": ("prompt", "completions", "labels"),
}
# The segmenter joins steps with a blank line, and the prm export strips it from each step:
# the trainer puts it back after each, so the steps rejoined are the trace.
STEP_SEPARATOR = "\n\n"
# what a step's line shows beside the loss, where the trainer logs it
SHOWN = ("grad_norm", "mean_token_accuracy", "rewards/accuracies", "rewards/margins")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ASSISTANT_TURN = "{{- '<start_of_turn>model\\n' + message['content'] + '<end_of_turn>\\n' -}}"
MARKED_TURN = (
    "{{- '<start_of_turn>model\\n' -}}{% generation %}"
    "{{- message['content'] + '<end_of_turn>\\n' -}}{% endgeneration %}"
)


def default_model() -> Path:
    """The converted model `cord-proxy up` leaves in CORD_HOME (cord_proxy/local/paths.py)."""
    home = os.environ.get("CORD_HOME")
    if home:
        base = Path(home).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = Path(cache).expanduser() / "cord-proxy"
    return base / "models" / "gemma3-270m-hf"


def native_bf16() -> bool:
    """Whether the CPU has bf16 instructions (AVX512-BF16, AMX): there autocast to bf16 took
    about a third less time a step than float32, at the same losses; elsewhere it is emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Gemma3TextForTokenClassification(GenericForTokenClassification, Gemma3PreTrainedModel):
    """Gemma 3's text model with a per-token head, built as transformers builds its
    ``Gemma3TextForSequenceClassification``; transformers has no token-classification one."""

    config_class = Gemma3TextConfig  # not an annotation: this module's annotations are strings
    input_modalities = ("text",)


def read_rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """The JSONL rows, each cut to the columns its trainer reads."""
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [c for c in columns if c not in row]
            if missing:
                raise SystemExit(f"{path}:{number}: no {', '.join(missing)} column")
            rows.append({c: row[c] for c in columns})
    if not rows:
        raise SystemExit(f"{path}: no rows")
    return rows


def training_template(template: str) -> str:
    """The chat template with ``{% generation %}`` around the assistant's turn, so that SFT's
    loss covers what the model writes (its end-of-turn included) and not the prompt."""
    if ASSISTANT_TURN not in template:
        raise SystemExit(f"the chat template has no assistant turn {ASSISTANT_TURN} to mark")
    return template.replace(ASSISTANT_TURN, MARKED_TURN)


def stepwise_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Process labels as PRMTrainer reads them: one boolean a step (it casts labels to
    integers, so the scores of `export --format prm --soft` would all become 0)."""
    for row in rows:
        labels = row["labels"]
        if not all(isinstance(label, bool) for label in labels):
            raise SystemExit("the PRM trainer needs boolean labels: export without --soft")
        if len(labels) != len(row["completions"]):
            raise SystemExit("a prm row has not one label per completion")
    return rows


class LossPrinter(TrainerCallback):
    """Prints each step's training loss as the trainer logs it, and keeps them."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.started = time.monotonic()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))
            elapsed = time.monotonic() - self.started
            shown = " ".join(f"{key} {float(logs[key]):.4g}" for key in SHOWN if key in logs)
            print(
                f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f} {shown} "
                f"({elapsed:.1f}s)",
                flush=True,
            )


def common_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainingArguments every trainer shares: CPU, a few steps, a log line each step."""
    default_rate = 2e-4 if args.lora else 2e-5
    return {
        "output_dir": str(args.output),
        "max_steps": args.steps,
        "per_device_train_batch_size": args.batch_size,
        "gradient_accumulation_steps": args.grad_accum,
        "learning_rate": default_rate if args.learning_rate is None else args.learning_rate,
        "max_length": args.max_length,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": args.bf16,
        "gradient_checkpointing": False,  # a 270M model's activations fit; recomputing costs
        "disable_tqdm": True,
        "seed": args.seed,
    }


def lora(args: argparse.Namespace, task_type: str, **extra: Any) -> LoraConfig | None:
    if not args.lora:
        return None
    return LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        task_type=task_type,
        **extra,
    )


def sft_trainer(args: argparse.Namespace, tokenizer: PreTrainedTokenizerBase) -> Trainer:
    tokenizer.chat_template = training_template(tokenizer.chat_template)
    config = SFTConfig(**common_settings(args), assistant_only_loss=True)
    return SFTTrainer(
        model=str(args.model),
        args=config,
        train_dataset=Dataset.from_list(read_rows(args.data, COLUMNS["sft"])),
        processing_class=tokenizer,
        peft_config=lora(args, "CAUSAL_LM"),
    )


def dpo_trainer(args: argparse.Namespace, tokenizer: PreTrainedTokenizerBase) -> Trainer:
    config = DPOConfig(**common_settings(args))
    return DPOTrainer(
        model=str(args.model),  # without LoRA, TRL loads a second copy as the reference
        args=config,
        train_dataset=Dataset.from_list(read_rows(args.data, COLUMNS["dpo"])),
        processing_class=tokenizer,
        peft_config=lora(args, "CAUSAL_LM"),
    )


def token_classifier(model_path: Path) -> Gemma3TextForTokenClassification:
    """The causal LM's text weights under a new two-label head, at zero; says what loaded.

    At zero the head starts undecided (loss ln 2): a random one, on hidden states whose norms
    are near 100, starts with confident guesses (logits of ±3) that the first steps undo.
    """
    model, info = Gemma3TextForTokenClassification.from_pretrained(
        model_path, num_labels=2, dtype=torch.float32, output_loading_info=True
    )
    torch.nn.init.zeros_(model.score.weight)
    torch.nn.init.zeros_(model.score.bias)
    total = len(model.state_dict())
    fresh = sorted(info["missing_keys"])
    print(
        f"[prm] loaded {total - len(fresh)} of {total} tensors from {model_path}; "
        f"new: {', '.join(fresh) or 'none'}; "
        f"unused: {', '.join(sorted(info['unexpected_keys'])) or 'none'}",
        flush=True,
    )
    return model  # type: ignore[no-any-return]


def prm_trainer(args: argparse.Namespace, tokenizer: PreTrainedTokenizerBase) -> Trainer:
    settings = common_settings(args)
    config = PRMConfig(**settings, step_separator=STEP_SEPARATOR)
    return PRMTrainer(
        model=token_classifier(args.model),
        args=config,
        train_dataset=Dataset.from_list(stepwise_rows(read_rows(args.data, COLUMNS["prm"]))),
        processing_class=tokenizer,
        peft_config=lora(args, "TOKEN_CLS", modules_to_save=["score"]),
    )


TRAINERS = {"sft": sft_trainer, "dpo": dpo_trainer, "prm": prm_trainer}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trainer", choices=sorted(TRAINERS), required=True)
    parser.add_argument("--data", type=Path, required=True, help="the export's JSONL")
    parser.add_argument("--model", type=Path, default=default_model())
    parser.add_argument("--chat-template", type=Path, default=CHAT_TEMPLATE)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps")
    parser.add_argument("--max-length", type=int, default=512, help="tokens a row keeps")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, help="default 2e-4 (LoRA), 2e-5 (full)")
    parser.add_argument("--lora", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        help="autocast to bf16 (default: where the CPU has bf16 instructions)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, help="default: student-TRAINER")
    args = parser.parse_args(argv)
    args.output = args.output or Path(f"student-{args.trainer}")
    args.bf16 = native_bf16() if args.bf16 is None else args.bf16
    if not (args.model / "config.json").is_file():
        parser.error(f"no model at {args.model}: run `cord-proxy up` once to convert it")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.chat_template = args.chat_template.read_text(encoding="utf-8")
    trainer = TRAINERS[args.trainer](args, tokenizer)
    printer = LossPrinter()
    trainer.remove_callback(PrinterCallback)  # its dict a step is what LossPrinter says
    trainer.add_callback(printer)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    print(f"[{args.trainer}] {len(trainer.train_dataset)} rows, {trainable:,} trainable parameters")
    trained = time.monotonic()
    trainer.train()
    train_s = time.monotonic() - trained
    trainer.save_model(str(args.output))
    wall_s = time.monotonic() - started
    print(f"[{args.trainer}] {len(printer.losses)} steps in {train_s:.1f}s ({wall_s:.1f}s in all)")
    print(
        json.dumps(
            {
                "trainer": args.trainer,
                "steps": len(printer.losses),
                "losses": printer.losses,
                "train_s": round(train_s, 2),
                "wall_s": round(wall_s, 2),
                "rows": len(trainer.train_dataset),
                "lora": args.lora,
                "bf16": args.bf16,
                "output": str(args.output),
            }
        )
    )
    return 0 if all(math.isfinite(loss) for loss in printer.losses) else 1


if __name__ == "__main__":
    sys.exit(main())
