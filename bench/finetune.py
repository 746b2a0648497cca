"""Benchmark of the behaviour model: untuned base vs the committed default model on fresh held-out steps.

Recipe:
1. synthesize held-out conversations: demo-store ones (another store seed, phrasings never trained on)
   and, with --data, conversations from the held-out retail task specs (index % 5 == 0);
2. replay every assistant step with the base and the tuned model (same prompts, same steps);
3. time a few training steps of the shipped CPU config;
4. print a table and, last, one JSON line.

    .venv/bin/python bench/finetune.py --data ../shared/data/retail --limit 120
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from specialist.openmp import configure_openmp

configure_openmp()


def main() -> None:
    """Run the benchmark and print its JSON line last."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="the retail folder (adds task-spec conversations)"
    )
    parser.add_argument("--limit", type=int, default=120, help="held-out steps scored per model")
    parser.add_argument("--model", default="default", help="tuned model: default | RUN_ID | run folder")
    parser.add_argument("--train-steps", type=int, default=3, help="training steps timed (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    import torch

    from finetune.evaluate import evaluate, steps_of
    from finetune.models import open_model
    from finetune.registry import ModelRegistry
    from finetune.synth import synth_demo, synth_tasks, write_jsonl

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    registry = ModelRegistry(work / "runs", work / "registry.json")

    # 1. fresh held-out conversations
    records = list(synth_demo(40, split="heldout", seed=args.seed))
    if args.data is not None and (args.data / "tasks_train.json").exists():
        records += list(synth_tasks(args.data, split="heldout", seed=args.seed, limit=40))
    heldout = work / "heldout.jsonl"
    write_jsonl(records, heldout)
    steps = steps_of(heldout)
    random.Random(args.seed).shuffle(steps)
    steps = steps[: args.limit]

    # 2. base vs tuned on the same steps
    started = time.monotonic()
    base = evaluate(open_model("base", registry), steps)
    base_s = time.monotonic() - started
    started = time.monotonic()
    tuned = evaluate(open_model(args.model, registry), steps)
    tuned_s = time.monotonic() - started

    # 3. seconds per training step of the shipped CPU config
    sec_per_step = None
    if args.train_steps > 0:
        from finetune.config import TrainConfig
        from finetune.train import train_sft

        config = TrainConfig.load(
            Path("finetune/configs/cpu-smollm2.yaml"),
            [
                f"dataset={work / 'ds'}",
                f"output_dir={work / 'runs'}",
                f"max_steps={args.train_steps}",
                "synth_conversations=40",
                f"threads={args.threads}",
                "time_budget_min=0",
            ],
        )
        sec_per_step = round(train_sft(config).sec_per_step, 2)

    print(f"held-out: {len(records)} conversations, {len(steps)} steps scored ({heldout})")
    print(f"| metric | base | {tuned.model} |\n|---|---:|---:|")
    for label, key in [
        ("next-action accuracy", "next_action_acc"),
        ("argument exact match", "arg_exact"),
        ("tool-call validity", "valid_rate"),
        ("refusal correctness", "refusal_acc"),
        ("hand-off correctness", "handoff_acc"),
    ]:
        b, t = getattr(base, key), getattr(tuned, key)
        print(f"| {label} | {'n/a' if b is None else f'{b:.3f}'} | {'n/a' if t is None else f'{t:.3f}'} |")
    print(f"eval seconds: base {base_s:.0f}, tuned {tuned_s:.0f}")
    print(tuned.table())
    print(
        json.dumps(
            {
                "base_next_action_acc": round(base.next_action_acc, 4),
                "tuned_next_action_acc": round(tuned.next_action_acc, 4),
                "tuned_arg_exact": round(tuned.arg_exact, 4),
                "tuned_valid_rate": round(tuned.valid_rate, 4),
                "sec_per_step": sec_per_step,
                "n": len(steps),
            }
        )
    )


if __name__ == "__main__":
    main()
