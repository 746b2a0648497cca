"""Fixtures of the finetune tests: synthesized transcripts, a built dataset, one real tiny SFT run."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.config import TrainConfig
from finetune.dataset import DatasetBuild, build_dataset
from finetune.synth import synth_demo, write_jsonl
from finetune.train import RunResult

RETAIL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "retail"


@pytest.fixture(scope="session")
def demo_transcripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve synthesized demo conversations (training split)."""
    path = tmp_path_factory.mktemp("transcripts") / "demo.jsonl"
    write_jsonl(synth_demo(12, split="train", seed=3), path)
    return path


@pytest.fixture(scope="session")
def dataset(demo_transcripts: Path, tmp_path_factory: pytest.TempPathFactory) -> DatasetBuild:
    """The dataset built from them (surrogate PII, like the default model's)."""
    return build_dataset([demo_transcripts], tmp_path_factory.mktemp("ds"), pii_mode="surrogate")


def tiny_config(dataset_dir: Path, runs_dir: Path, **overrides: object) -> TrainConfig:
    """The shipped CPU config cut down to a few short steps on one thread."""
    values = [
        f"dataset={dataset_dir}",
        f"output_dir={runs_dir}",
        "max_steps=2",
        "batch_size=1",
        "gradient_accumulation_steps=1",
        "max_length=640",
        "logging_steps=1",
        "threads=1",
        "time_budget_min=0",
    ]
    values += [f"{k}={v}" for k, v in overrides.items()]
    return TrainConfig.load(Path("finetune/configs/cpu-smollm2.yaml"), values)


@pytest.fixture(scope="session")
def sft_run(dataset: DatasetBuild, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """A real two-step LoRA SFT run on the real base model."""
    from finetune.train import train_sft

    runs = tmp_path_factory.mktemp("runs")
    return train_sft(tiny_config(dataset.out_dir, runs, run_name="tiny-sft"))
