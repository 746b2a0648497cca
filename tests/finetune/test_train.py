"""Real LoRA training runs of a few steps on the real base model (SFT and DPO), and their run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.base_model import file_sha256, smollm2_gguf_path
from finetune.dataset import DatasetBuild, build_dataset
from finetune.train import RunResult, pack_examples
from specialist.errors import InvalidInput

from .conftest import tiny_config


def test_sft_run_writes_a_traceable_folder(sft_run: RunResult, dataset: DatasetBuild) -> None:
    run = sft_run.run_dir
    for name in (
        "adapter/adapter_model.safetensors",
        "config.json",
        "base.json",
        "data.json",
        "metrics.json",
    ):
        assert (run / name).exists(), name
    assert (run / "loss.png").stat().st_size > 1000
    base = json.loads((run / "base.json").read_text())
    assert base["sha256"] == file_sha256(smollm2_gguf_path())
    assert json.loads((run / "data.json").read_text())["files"] == dataset.manifest["files"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and any("loss" in h for h in metrics["log"])
    assert json.loads((run / "config.json").read_text())["max_steps"] == 2
    assert "LoRA adapter (sft)" in (run / "README.md").read_text()
    assert json.loads((run / "run.json").read_text())["gate"] is None


def test_packing_keeps_one_loss_span_per_assistant_step(dataset: DatasetBuild) -> None:
    from transformers import AutoTokenizer

    from finetune.base_model import cached_base_dir, smollm2_ref
    from finetune.dataset import SFT_TRAIN, read_jsonl

    tok = AutoTokenizer.from_pretrained(str(cached_base_dir(smollm2_ref())))
    rows = read_jsonl(dataset.out_dir / SFT_TRAIN)
    config = tiny_config(dataset.out_dir, Path("/unused"), max_length=4096)
    seqs = pack_examples(tok, rows, config)
    assert len(seqs) < len(rows)  # steps of one conversation share a sequence
    end = tok.convert_tokens_to_ids("<|im_end|>")
    targets = sum(sum(1 for i, lab in enumerate(s["labels"]) if lab == end) for s in seqs)
    assert targets == len(rows)  # every step's end-of-turn is a training target, once


def _corrected(transcripts: Path, tmp_path: Path, n: int) -> DatasetBuild:
    """A dataset of the first `n` demo transcripts, each with its first assistant step corrected."""
    records = [json.loads(line) for line in transcripts.read_text().splitlines()[:n]]
    for rec in records:
        idx = next(i for i, m in enumerate(rec["messages"]) if m["role"] == "assistant")
        rec["corrections"] = [
            {"index": idx, "message": {"role": "assistant", "content": "Let me check that."}}
        ]
    src = tmp_path / "corrected.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return build_dataset([src], tmp_path / "ds", val_fraction=0.0)


def test_dpo_run_on_corrections(tmp_path: Path, demo_transcripts: Path) -> None:
    from finetune.train import train_dpo

    ds = _corrected(demo_transcripts, tmp_path, 3)
    assert ds.manifest["rows"]["dpo_train.jsonl"] == 3
    result = train_dpo(tiny_config(ds.out_dir, tmp_path / "runs", run_name="tiny-dpo", max_length=512))
    assert (result.run_dir / "adapter" / "adapter_model.safetensors").exists()
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["kind"] == "dpo" and metrics["pairs"] == 3


def test_dpo_from_an_adapter_is_measured_against_that_adapter(tmp_path: Path, demo_transcripts: Path) -> None:
    from finetune.registry import DEFAULT_MODEL_DIR
    from finetune.train import train_dpo

    ds = _corrected(demo_transcripts, tmp_path, 2)
    config = tiny_config(ds.out_dir, tmp_path / "runs", run_name="dpo-on-default", max_steps=1)
    result = train_dpo(config, init_adapter=DEFAULT_MODEL_DIR / "adapter")
    first = next(h for h in json.loads((result.run_dir / "metrics.json").read_text())["log"] if "loss" in h)
    # the reference is the adapter DPO starts from (not the base under it): before the first update, no
    # reward either way
    assert abs(first["rewards/chosen"]) < 0.01 and abs(first["rewards/rejected"]) < 0.01, first
    adapter = result.run_dir / "adapter"  # the trained adapter alone, not the reference's copy too
    assert (adapter / "adapter_model.safetensors").exists() and not (adapter / "ref").exists()
    with pytest.raises(InvalidInput, match="not a LoRA adapter folder"):
        train_dpo(config, init_adapter=tmp_path)


def test_unknown_config_keys_are_refused() -> None:
    from finetune.config import TrainConfig

    with pytest.raises(InvalidInput, match="unknown config keys: lora_rank"):
        TrainConfig.load(Path("finetune/configs/cpu-smollm2.yaml"), ["lora_rank=8"])
    assert TrainConfig.load(Path("cpu-smollm2.yaml"), ["lora_r=8"]).lora_r == 8


def test_config_values_take_their_fields_type_or_are_refused_by_name() -> None:
    from finetune.config import TrainConfig
    from specialist.errors import InvalidInput

    config = TrainConfig.load(Path("cpu-smollm2.yaml"), ["learning_rate=5e-5", "epochs=2", "run_name=2024"])
    assert config.learning_rate == 5e-5 and config.epochs == 2.0 and config.run_name == "2024"
    for bad, key in (
        ("learning_rate=fast", "learning_rate"),
        ("max_steps=1.5", "max_steps"),
        ("bf16=maybe", "bf16"),
    ):
        with pytest.raises(InvalidInput, match=f"config key {key} must be"):
            TrainConfig.load(Path("cpu-smollm2.yaml"), [bad])
