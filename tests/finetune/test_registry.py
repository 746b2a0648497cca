"""Gate verdicts, promotion only after a passed gate, rollback, and reload of the promoted adapter."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from finetune.evaluate import EvalReport
from finetune.gate import GateThresholds, decide, run_gate, write_report
from finetune.registry import ModelRegistry, read_run, write_run
from finetune.train import RunResult
from specialist.errors import Conflict, GateFailed, NotFound


def _report(acc: float, valid: float) -> EvalReport:
    return EvalReport("m", 10, acc, 0.5, valid, None, None, {"identify": {"n": 10.0, "acc": acc}})


def test_gate_decision() -> None:
    t = GateThresholds()
    assert decide(_report(0.2, 0.5), _report(0.35, 0.9), t)[0]
    ok, why = decide(_report(0.2, 0.5), _report(0.25, 0.9), t)
    assert not ok and "gain +0.050 < required +0.100" in why
    ok, why = decide(_report(0.2, 0.95), _report(0.9, 0.9), t)
    assert not ok and "validity" in why
    assert decide(_report(0.2, 0.95), _report(0.9, 0.9), GateThresholds(max_validity_drop=0.1))[0]


def test_on_constrained_steps_the_gate_counts_only_the_steps_with_a_choice() -> None:
    # 0.60 vs 0.48 over all steps, but the steps where a model chose: 0.55 vs 0.47
    base = replace(_report(0.48, 1.0), choice_n=70, choice_next_action_acc=0.47)
    candidate = replace(_report(0.60, 1.0), choice_n=70, choice_next_action_acc=0.55)
    ok, why = decide(base, candidate, GateThresholds())
    assert not ok and "on the 70 steps with a choice 0.550 vs base 0.470" in why
    better = replace(candidate, choice_next_action_acc=0.60)
    ok, why = decide(base, better, GateThresholds())
    assert ok and "gain +0.130" in why


@pytest.fixture
def registry(tmp_path: Path, sft_run: RunResult) -> ModelRegistry:
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(sft_run.run_dir, runs / "cand")
    run = read_run(runs / "cand")
    write_run(runs / "cand", {**run, "run_id": "cand"})
    return ModelRegistry(runs, tmp_path / "registry.json")


def test_promotion_is_refused_without_a_passed_gate(registry: ModelRegistry) -> None:
    # naming the live model converts nothing (a listing on a cold cache once took longer than a request may)
    assert registry.live(serving=False).kind == "default"
    assert [r["live"] for r in registry.list_runs()] == [False]
    assert not registry.gguf_dir.exists() and not registry.base_gguf_dir.exists()
    with pytest.raises(GateFailed, match="has not been gated"):
        registry.promote("cand")
    run_dir = registry.run_dir("cand")
    write_run(
        run_dir, {**read_run(run_dir), "gate": {"passed": False, "reason": "gain +0.02 < required +0.10"}}
    )
    with pytest.raises(GateFailed, match=r"failed its gate: gain \+0.02"):
        registry.promote("cand")
    with pytest.raises(NotFound):
        registry.promote("../etc")
    assert registry.live().kind == "default"


def test_a_real_gate_that_fails_writes_its_report(registry: ModelRegistry, tmp_path: Path) -> None:
    import torch

    from finetune.models import open_model
    from finetune.synth import synth_demo, write_jsonl

    torch.set_num_threads(1)
    data = tmp_path / "heldout.jsonl"
    write_jsonl(synth_demo(2, split="heldout", seed=5), data)
    base = open_model("base", registry)
    result = run_gate(base, base, data, limit=4)  # the base against itself gains nothing
    assert not result.passed and "gain +0.000" in result.reason
    md = write_report(result, tmp_path / "gate")
    assert "Gate: FAILED" in md.read_text() and (tmp_path / "gate" / "gate.png").stat().st_size > 1000


def test_promote_rollback_and_reload(registry: ModelRegistry) -> None:
    import torch

    from agent.backends.local import TransformersChatModel
    from agent.chat_model import ChatMessage

    torch.set_num_threads(1)
    run_dir = registry.run_dir("cand")
    write_run(run_dir, {**read_run(run_dir), "gate": {"passed": True, "reason": "test verdict"}})
    serving = TransformersChatModel.from_record(registry.live(), max_new_tokens=4)
    assert serving.name == "default"
    msgs = [ChatMessage("user", "hello")]
    before = serving._model.model.layers[29].mlp.down_proj.weight.clone()

    default_lora = registry.live().gguf_lora
    assert Path(default_lora).parent == registry.gguf_dir

    record = registry.promote("cand")
    assert registry.live().name == "cand" and record.export_dir.endswith("export/adapter")
    # llama.cpp serves the promoted adapter from its own cached GGUF conversion (keyed by the adapter)
    assert "gguf_lora" not in json.loads(registry.registry_path.read_text())["history"][-1]
    # and the base from its converted copy, while the history keeps the shipped file
    live = registry.live()
    assert json.loads(registry.registry_path.read_text())["history"][-1]["base_gguf"] == live.base_gguf_source
    assert Path(live.base_gguf).parent == registry.base_gguf_dir and Path(live.base_gguf).exists()
    run_lora = Path(registry.live().gguf_lora)
    assert run_lora.exists() and run_lora.parent == registry.gguf_dir and str(run_lora) != default_lora
    # llama.cpp serves base and adapter merged into one file, derived like the rest, never kept in history
    merged = Path(live.gguf_merged)
    assert merged.exists() and merged.parent == registry.gguf_dir and merged.name.endswith("-q8_0.gguf")
    assert "gguf_merged" not in json.loads(registry.registry_path.read_text())["history"][-1]
    unmerged = ModelRegistry(registry.runs_dir, registry.registry_path, merged_type="off")
    assert unmerged.live().gguf_merged is None
    assert (Path(record.export_dir) / "adapter_config.json").exists()
    assert read_run(run_dir)["status"] == "promoted"
    with pytest.raises(Conflict, match="already live"):
        registry.promote("cand")
    assert [r["live"] for r in registry.list_runs()] == [True]

    serving.reload(registry.live())  # no restart: the new adapter's weights are in place
    assert serving.name == "cand"
    after = serving._model.model.layers[29].mlp.down_proj.weight
    assert not torch.equal(before, after)
    assert serving.complete(msgs).completion_tokens > 0

    # the cache keeps what serves the live model and its rollback target (the default); the rest goes
    stale = registry.gguf_dir / "merged-0123456789abcdef-q8_0.gguf"
    stale.write_bytes(b"GGUF")
    assert registry.prune_cache() == [stale]
    assert merged.exists() and run_lora.exists() and Path(default_lora).exists()
    assert registry.prune_cache() == []

    assert registry.rollback().name == "default"
    with pytest.raises(Conflict, match="nothing to roll back"):
        registry.rollback()
    assert json.loads(registry.registry_path.read_text())["history"] == []
    # with the default live again, the rolled-back run's conversions are pruned, the default's kept
    pruned = registry.prune_cache()
    assert run_lora in pruned and merged in pruned and not run_lora.exists()
    assert Path(registry.live().gguf_lora).exists() and Path(registry.live().gguf_merged).exists()


def test_merged_export_matches_base_plus_adapter(registry: ModelRegistry, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from finetune.base_model import cached_base_dir, smollm2_ref
    from finetune.registry import merge_adapter

    torch.set_num_threads(1)
    adapter = registry.run_dir("cand") / "adapter"
    out = merge_adapter(adapter, tmp_path / "merged")
    assert (out / "model.safetensors").exists() and (out / "tokenizer_config.json").exists()

    ids = torch.tensor([[1, 42, 314, 2718, 99]])
    merged = AutoModelForCausalLM.from_pretrained(str(out), dtype="float32")
    base = AutoModelForCausalLM.from_pretrained(str(cached_base_dir(smollm2_ref())), dtype="float32")
    with torch.no_grad():
        base_logits = base(ids).logits
        with_adapter = PeftModel.from_pretrained(base, str(adapter))(ids).logits
        merged_logits = merged(ids).logits
    assert torch.allclose(merged_logits, with_adapter, atol=1e-3)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-6), "the adapter changed nothing"


def test_installing_a_default_keeps_its_lineage_and_totals_the_training(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from finetune.registry import install_default

    def gated_run(name: str, steps: int, sec_per_step: float) -> Path:
        run = tmp_path / "runs" / name
        (run / "adapter").mkdir(parents=True)
        (run / "gate").mkdir()
        save_file({"w": torch.ones(2, 2)}, str(run / "adapter" / "adapter_model.safetensors"))
        (run / "adapter" / "adapter_config.json").write_text("{}")
        for f in ("config.json", "base.json", "data.json"):
            (run / f).write_text("{}")
        (run / "metrics.json").write_text(json.dumps({"steps": steps, "sec_per_step": sec_per_step}))
        (run / "loss.png").write_bytes(b"png")
        (run / "README.md").write_text(f"# {name}\n")
        (run / "run.json").write_text(json.dumps({"run_id": name, "gate": {"passed": True}}))
        for f in ("gate.md", "gate.png", "gate.json"):
            (run / "gate" / f).write_text("x")
        return run

    target = tmp_path / "default_model"
    install_default(gated_run("first", 60, 30.0), target)  # 30 min
    (target / "lineage" / "older").mkdir(parents=True)
    (target / "lineage" / "older" / "metrics.json").write_text(json.dumps({"steps": 10, "sec_per_step": 60}))
    install_default(gated_run("second", 120, 15.0), target)  # 30 min
    assert sorted(p.name for p in (target / "lineage").iterdir()) == ["first", "older"]
    assert json.loads((target / "lineage" / "first" / "run.json").read_text())["run_id"] == "first"
    assert not (target / "lineage" / "first" / "adapter").exists()  # records only, no weights
    card = (target / "README.md").read_text()
    assert "# second" in card and "total over 3 sittings: 70.0 min" in card
    assert not (tmp_path / ".default_model-lineage").exists()
