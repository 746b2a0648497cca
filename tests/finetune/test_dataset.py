"""The dataset builder: SFT steps, DPO pairs, de-duplication, split by conversation, content hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.dataset import (
    DPO_TRAIN,
    GRAPH_STEP,
    SFT_TRAIN,
    SFT_VAL,
    DatasetBuild,
    build_dataset,
    content_hash,
    read_jsonl,
)


def test_sft_steps_cover_every_model_step(dataset: DatasetBuild, demo_transcripts: Path) -> None:
    """Every assistant message is a target, except the ones the agent graph writes itself."""
    rows = read_jsonl(dataset.out_dir / SFT_TRAIN) + read_jsonl(dataset.out_dir / SFT_VAL)
    model_steps = graph_steps = 0
    for line in demo_transcripts.read_text().splitlines():
        record = json.loads(line)
        for i, m in enumerate(record["messages"]):
            if m["role"] == "assistant":
                graph = record["metadata"]["step_categories"].get(str(i)) == GRAPH_STEP
                graph_steps += graph
                model_steps += not graph
    assert len(rows) == model_steps and graph_steps > 0
    assert not any(row["category"] == GRAPH_STEP for row in rows)
    for row in rows:
        assert row["completion"][0]["role"] == "assistant"
        assert len(row["prompt"]) == row["step"] and row["tools"]


def test_split_is_by_conversation_and_hashes_match(dataset: DatasetBuild) -> None:
    train = {r["conversation_id"] for r in read_jsonl(dataset.out_dir / SFT_TRAIN)}
    val = {r["conversation_id"] for r in read_jsonl(dataset.out_dir / SFT_VAL)}
    assert train and not train & val
    for name, digest in dataset.manifest["files"].items():
        assert content_hash(dataset.out_dir / name) == digest
    assert dataset.manifest["scrub"]["replaced"]["EMAIL"] > 0


def test_dpo_pairs_from_corrections_and_ratings_and_dedup(tmp_path: Path, demo_transcripts: Path) -> None:
    first = json.loads(demo_transcripts.read_text().splitlines()[0])
    idx = next(i for i, m in enumerate(first["messages"]) if m["role"] == "assistant")
    corrected = {
        **first,
        "id": "corr",
        "corrections": [{"index": idx, "message": {"role": "assistant", "content": "Better."}}],
    }
    worse = json.loads(json.dumps(first))
    worse["id"], worse["rating"] = "worse", 1
    worse["messages"][idx] = {"role": "assistant", "content": "Whatever."}
    worse["messages"] = worse["messages"][: idx + 1]
    good = {**first, "id": "good", "rating": 5}
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [corrected, worse, good, good]) + "\n")
    built = build_dataset([src], tmp_path / "ds", val_fraction=0.0, scrub=False)
    pairs = read_jsonl(tmp_path / "ds" / DPO_TRAIN)
    sources = sorted(p["source"] for p in pairs)
    assert sources == ["correction", "rating"]
    corr = next(p for p in pairs if p["source"] == "correction")
    assert corr["chosen"][0]["content"] == "Better." and corr["rejected"][0] == first["messages"][idx]
    rated = next(p for p in pairs if p["source"] == "rating")
    assert rated["rejected"][0]["content"] == "Whatever."
    assert built.manifest["conversations"]["train"] == 3  # the duplicate 'good' line was dropped


def test_mix_weights_repeat_or_thin_a_source_and_bad_mixes_are_refused(
    tmp_path: Path, demo_transcripts: Path
) -> None:
    from finetune.config import TrainConfig
    from specialist.errors import InvalidInput, InvalidTranscript

    plain = build_dataset([demo_transcripts], tmp_path / "plain", val_fraction=0.0)
    doubled = build_dataset([demo_transcripts], tmp_path / "doubled", val_fraction=0.0, weights=[2.0])
    assert doubled.manifest["rows"]["sft_train.jsonl"] == 2 * plain.manifest["rows"]["sft_train.jsonl"]
    ids = {r["conversation_id"] for r in read_jsonl(doubled.out_dir / "sft_train.jsonl")}
    assert any(i.endswith("~1") for i in ids)  # copies pack as their own sequences
    none = build_dataset([demo_transcripts], tmp_path / "none", val_fraction=0.0, weights=[0.0])
    assert none.manifest["rows"]["sft_train.jsonl"] == 0 and none.manifest["live"] == []
    with pytest.raises(InvalidTranscript, match="one weight"):
        build_dataset([demo_transcripts], tmp_path / "bad", weights=[1.0, 2.0])
    config = TrainConfig.load(Path("cpu-smollm2.yaml"), [f"mix=[{{path: {demo_transcripts}, weight: 3}}]"])
    assert config.mix_sources() == [(demo_transcripts, 3.0)]
    with pytest.raises(InvalidInput, match="mix entry 0: weight"):
        TrainConfig.load(Path("cpu-smollm2.yaml"), [f"mix=[{{path: {demo_transcripts}, weight: -1}}]"])
    with pytest.raises(InvalidInput, match="mix entry 0 must be"):
        TrainConfig.load(Path("cpu-smollm2.yaml"), ["mix=[{file: x.jsonl}]"])
