"""The GGUF LoRA export: llama.cpp loads it and answers like transformers with the peft adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune.base_model import cached_base_dir, smollm2_gguf_path, smollm2_ref
from finetune.gguf_export import merge_gguf_lora, rope_permute
from finetune.registry import (
    DEFAULT_BASE_TYPE,
    DEFAULT_MODEL_DIR,
    default_record,
    gguf_lora,
    merged_gguf,
    serving_base_gguf,
)
from specialist.errors import ModelUnavailable

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")

ADAPTER = DEFAULT_MODEL_DIR / "adapter"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = gguf_lora(ADAPTER, smollm2_gguf_path(), tmp_path_factory.mktemp("gguf"))
    assert path is not None
    return path


def test_the_file_is_what_llama_cpp_expects(exported: Path) -> None:
    from gguf import GGUFReader
    from safetensors import safe_open

    reader = GGUFReader(str(exported))
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    config = json.loads((ADAPTER / "adapter_config.json").read_text())
    assert reader.fields["adapter.lora.alpha"].contents() == config["lora_alpha"]
    tensors = {t.name: t for t in reader.tensors}
    with safe_open(str(ADAPTER / "adapter_model.safetensors"), "np") as fh:
        assert len(tensors) == len(list(fh.keys()))
    base = {t.name: t for t in GGUFReader(str(smollm2_gguf_path())).tensors}
    for name in ("blk.8.attn_q.weight", "blk.29.attn_k.weight", "blk.15.ffn_down.weight"):
        a, b, w = tensors[name + ".lora_a"], tensors[name + ".lora_b"], base[name]
        # llama-adapter.cpp: a.ne[0] == w.ne[0], b.ne[1] == w.ne[1], a.ne[1] == b.ne[0] (== rank)
        assert a.shape[0] == w.shape[0] and b.shape[1] == w.shape[1]
        assert a.shape[1] == b.shape[0] == config["r"]
    assert "blk.7.attn_q.weight.lora_a" not in tensors  # only the adapted layers (>= 8)

    # converting again is a cache hit on the adapter's hash
    assert gguf_lora(ADAPTER, smollm2_gguf_path(), exported.parent) == exported


def test_rope_permutation_maps_the_hf_layout_onto_the_gguf_layout() -> None:
    """The base GGUF's q/k rows are the HF rows permuted exactly as lora_B of q/k is permuted."""
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors import safe_open

    base = {t.name: t for t in GGUFReader(str(smollm2_gguf_path())).tensors}
    hf = cached_base_dir(smollm2_ref()) / "model.safetensors"
    with safe_open(str(hf), "np") as fh:
        for gguf_name, hf_name, n_head in (
            ("blk.3.attn_q.weight", "model.layers.3.self_attn.q_proj.weight", 9),
            ("blk.3.attn_k.weight", "model.layers.3.self_attn.k_proj.weight", 3),
        ):
            t = base[gguf_name]
            in_gguf = dequantize(t.data, t.tensor_type).reshape(hf_shape := fh.get_tensor(hf_name).shape)
            in_hf = fh.get_tensor(hf_name)
            assert np.allclose(rope_permute(in_hf, n_head), in_gguf, atol=1e-6)
            assert not np.allclose(in_hf, in_gguf, atol=1e-2), hf_shape  # the permutation matters


def _steps(tmp_path: Path, n: int) -> list[Any]:
    from finetune.evaluate import steps_of
    from finetune.synth import synth_demo, write_jsonl

    data = tmp_path / "heldout.jsonl"
    write_jsonl(synth_demo(4, split="heldout", seed=31), data)
    steps = steps_of(data)
    return steps[1 :: max(1, len(steps) // n)][:n]


def _action(reply: Any) -> str:
    return reply.tool_calls[0].name if reply.tool_calls else "reply"


def test_llama_cpp_with_the_lora_answers_like_transformers_with_the_adapter(
    exported: Path, tmp_path: Path
) -> None:
    import torch

    from agent.backends import local_model_from_record
    from agent.backends.llama_cpp import LlamaCppChatModel
    from agent.backends.local import TransformersChatModel
    from agent.tool_format import chat_messages, chatml

    torch.set_num_threads(1)
    record = default_record(exported.parent, base_dir=tmp_path / "base")
    assert record.gguf_lora == str(exported)
    # llama.cpp serves the base re-quantized (DEFAULT_BASE_TYPE), transformers the float32 of the shipped one
    assert record.base_gguf == str(
        serving_base_gguf(smollm2_gguf_path(), DEFAULT_BASE_TYPE, tmp_path / "base")
    )
    assert record.base_gguf != record.base_gguf_source == str(smollm2_gguf_path())
    fast = local_model_from_record(record, max_new_tokens=24)
    assert isinstance(fast, LlamaCppChatModel)
    slow = TransformersChatModel.from_record(record, max_new_tokens=24)
    bare = LlamaCppChatModel(smollm2_gguf_path(), max_new_tokens=24)

    steps = _steps(tmp_path, 4)
    same_raw, same_action, lora_changed = 0, 0, 0
    for step in steps:
        ours, reference = fast.complete(step.prompt, step.tools), slow.complete(step.prompt, step.tools)
        assert ours.prompt_tokens == reference.prompt_tokens  # the same prompt, token for token
        same_raw += ours.raw.strip() == reference.raw.strip()
        same_action += _action(ours) == _action(reference)
        lora_changed += bare.complete(step.prompt, step.tools).raw.strip() != ours.raw.strip()
    # quantized matmuls in llama.cpp vs float32 in torch may flip a late token, never the decision
    assert same_action == len(steps) and same_raw >= len(steps) - 1, (same_raw, same_action)
    assert lora_changed >= len(steps) - 1, "the LoRA barely changes llama.cpp's outputs"

    # a call reuses the KV cache of the prompt prefix it shares with the call before (system + tools)
    system = chatml(chat_messages(steps[1].prompt, steps[1].tools)[:1], add_generation_prompt=False)
    shared = len(fast._llm.tokenize(system.encode(), add_bos=False, special=True))
    fast.complete(steps[1].prompt, steps[1].tools)
    assert fast.reused_tokens >= shared > 100


def _last_logits(model: Any, tokens: list[int]) -> Any:
    import numpy as np

    llm = model._llm
    llm.reset()
    llm.eval(tokens)
    return np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),)).copy()


def test_the_merged_model_computes_what_base_plus_lora_computes(exported: Path, tmp_path: Path) -> None:
    """Folding the LoRA into the weights (W + alpha / r * B @ A) gives llama.cpp's run-time LoRA output."""
    import numpy as np

    from agent.backends import local_model_from_record
    from agent.backends.llama_cpp import LlamaCppChatModel
    from agent.tool_format import chat_messages, chatml

    base = serving_base_gguf(smollm2_gguf_path(), "f16", tmp_path / "base")
    exact = merged_gguf(base, exported, "f32", tmp_path / "merged")
    assert exact is not None and merged_gguf(base, exported, "f32", tmp_path / "merged") == exact  # cached
    at_run_time = LlamaCppChatModel(base, lora=exported, max_new_tokens=40)
    folded = LlamaCppChatModel(exact, max_new_tokens=40)
    bare = LlamaCppChatModel(base, max_new_tokens=40)

    step = _steps(tmp_path, 2)[1]
    prompt = chatml(chat_messages(step.prompt, step.tools))
    tokens = at_run_time._llm.tokenize(prompt.encode(), add_bos=False, special=True)
    want, got, without = (_last_logits(m, tokens) for m in (at_run_time, folded, bare))
    spread = float(want.std())
    assert float(np.abs(got - want).max()) < 0.05 * spread  # the same function, up to rounding
    assert float(np.abs(without - want).max()) > 0.5 * spread  # which the LoRA really changes
    assert folded.complete(step.prompt, step.tools).raw == at_run_time.complete(step.prompt, step.tools).raw

    # the record the registry derives serves the merged file (Q8_0 by default) with no LoRA applied
    record = default_record(exported.parent, base_dir=tmp_path / "base")
    served = local_model_from_record(record, max_new_tokens=40)
    assert isinstance(served, LlamaCppChatModel)
    assert Path(record.gguf_merged).name.endswith("-q8_0.gguf") and Path(record.gguf_merged).exists()
    assert served._llm.model_path == record.gguf_merged and served._llm.lora_path is None
    q8 = _last_logits(served, tokens)
    assert int(q8.argmax()) == int(want.argmax()) and float(np.abs(q8 - want).max()) < 0.5 * spread


@pytest.mark.parametrize("base_type", ["source", "q8_0"])
def test_merging_into_a_quantized_base_is_as_close_as_its_run_time_lora(
    exported: Path, tmp_path: Path, base_type: str
) -> None:
    """The shipped base is Q4_1 ("source") and a served base may be Q8_0. The merge dequantizes the adapted
    weights and adds the LoRA in float32: against the float truth (F16 base + the LoRA at run time) it is
    at least as close as llama.cpp's own run-time LoRA on that quantized base, with the same argmax.
    (Measured: Q8_0 merge 0.32 of the logits' spread away, Q8_0 + run-time LoRA 0.60.)"""
    import numpy as np

    from agent.backends.llama_cpp import LlamaCppChatModel
    from agent.tool_format import chat_messages, chatml

    float_base = serving_base_gguf(smollm2_gguf_path(), "f16", tmp_path / "base")
    base = serving_base_gguf(smollm2_gguf_path(), base_type, tmp_path / "base")
    merged = merged_gguf(base, exported, "f32", tmp_path / "merged")
    assert merged is not None and merged.exists()
    truth = LlamaCppChatModel(float_base, lora=exported, max_new_tokens=8)
    at_run_time = LlamaCppChatModel(base, lora=exported, max_new_tokens=8)
    folded = LlamaCppChatModel(merged, max_new_tokens=8)
    step = _steps(tmp_path, 1)[0]
    tokens = truth._llm.tokenize(
        chatml(chat_messages(step.prompt, step.tools)).encode(), add_bos=False, special=True
    )
    want, runtime, got = (_last_logits(m, tokens) for m in (truth, at_run_time, folded))
    spread = float(want.std())
    assert int(got.argmax()) == int(want.argmax())
    assert float(np.abs(got - want).max()) <= float(np.abs(runtime - want).max()) + 0.02 * spread
    for model in (truth, at_run_time, folded):
        model.close()


def test_merging_refuses_what_does_not_fit(exported: Path, tmp_path: Path) -> None:
    base = serving_base_gguf(smollm2_gguf_path(), "f16", tmp_path / "base")
    with pytest.raises(ModelUnavailable, match="not a GGUF LoRA"):
        merge_gguf_lora(base, base, tmp_path / "out.gguf", "f16")
    with pytest.raises(ModelUnavailable, match="unknown GGUF weight type"):
        merge_gguf_lora(base, exported, tmp_path / "out.gguf", "q3_k")
    assert not list(tmp_path.glob("out.gguf*"))  # nothing half-written
    # the registry falls back to the run-time LoRA instead of failing to serve
    assert merged_gguf(base, base, "f16", tmp_path / "merged") is None
