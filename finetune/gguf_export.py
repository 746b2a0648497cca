"""A peft LoRA adapter as a GGUF LoRA that llama.cpp applies to the base GGUF at load time.

Writes what llama.cpp's `convert_lora_to_gguf.py` writes for a `LlamaForCausalLM` adapter (f32 tensors):
`general.type=adapter`, `adapter.type=lora`, `adapter.lora.alpha`, and per target weight
`blk.{i}.{tensor}.weight.lora_a` (rank x in) and `.lora_b` (out x rank), numpy row-major; the writer
reverses the shape into ggml's `ne`, which is what `llama-adapter.cpp` checks (a.ne[0] == model.ne[0],
b.ne[1] == model.ne[1], a.ne[1] == b.ne[0]). llama.cpp scales the product by alpha / rank, as peft does.

The base GGUF stores q and k rows rope-permuted (convert_hf_to_gguf.py, `LlamaModel.permute`); the
adapter was trained on the HF layout, so the rows of lora_B of q_proj and k_proj get the same permutation.

The base GGUF itself can be re-quantized for serving (`requantize_gguf`): llama.cpp's prompt processing on
CPU is faster on Q8_0 than on the shipped Q4_1, and the LoRA applies to either.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specialist.errors import ModelUnavailable

# weight types a base GGUF can be re-quantized to for serving -> llama.cpp's `llama_ftype` name
BASE_TYPES = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
    "f32": "LLAMA_FTYPE_ALL_F32",
}

# peft module (under model.layers.{i}.) -> llama.cpp tensor (under blk.{i}.)
LLAMA_TENSORS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_NAME = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(\w+\.\w+)\.lora_([AB])\.weight$")
# what the adapter config may set without changing the arithmetic llama.cpp does (alpha / rank * B @ A)
_UNSUPPORTED = ("use_dora", "use_rslora", "lora_bias", "modules_to_save", "alpha_pattern", "fan_in_fan_out")


@dataclass(frozen=True)
class HeadCounts:
    """Attention heads of the base model (the rope permutation of q and k rows depends on them)."""

    n_head: int
    n_head_kv: int


def head_counts(base_gguf: Path) -> HeadCounts:
    """Read `llama.attention.head_count(_kv)` from the base GGUF (memory-mapped, no weights read)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(base_gguf))

    def field(key: str) -> int:
        if key not in reader.fields:
            raise ModelUnavailable(f"{base_gguf} has no {key}: not a llama GGUF")
        return int(reader.fields[key].contents())

    arch = reader.fields["general.architecture"].contents()
    if arch != "llama":
        raise ModelUnavailable(f"{base_gguf} is a {arch!r} model; only llama adapters are exported")
    return HeadCounts(field("llama.attention.head_count"), field("llama.attention.head_count_kv"))


def rope_permute(rows: Any, n_head: int) -> Any:
    """convert_hf_to_gguf.py's `LlamaModel.permute` on the output rows of a q/k weight (or lora_B)."""
    return (
        rows.reshape(n_head, 2, rows.shape[0] // n_head // 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )


def export_gguf_lora(adapter_dir: Path, out: Path, heads: HeadCounts) -> Path:
    """Convert a peft LoRA folder (adapter_model.safetensors + adapter_config.json) into one GGUF file."""
    import numpy as np
    from gguf import GGUFType, GGUFWriter, Keys
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise ModelUnavailable(f"{adapter_dir} is a {config['peft_type']} adapter, not LoRA")
    set_options = [key for key in _UNSUPPORTED if config.get(key)]
    if set_options:
        raise ModelUnavailable(f"{adapter_dir}: llama.cpp cannot apply a LoRA with {', '.join(set_options)}")
    pairs: dict[tuple[int, str], dict[str, Any]] = {}
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    for name, value in tensors.items():
        match = _NAME.match(name)
        if match is None or match.group(2) not in LLAMA_TENSORS:
            raise ModelUnavailable(f"{adapter_dir}: tensor {name} has no llama.cpp counterpart")
        layer, module, side = int(match.group(1)), match.group(2), match.group(3)
        pairs.setdefault((layer, module), {})[side] = value.astype(np.float32)

    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(tmp), "llama")
    writer.add_type(GGUFType.ADAPTER)
    writer.add_string(Keys.Adapter.TYPE, "lora")
    writer.add_float32(Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for (layer, module), pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise ModelUnavailable(f"{adapter_dir}: layer {layer} {module} lacks lora_A or lora_B")
        lora_a, lora_b = pair["A"], pair["B"]  # (rank, in), (out, rank)
        if lora_a.shape[0] != lora_b.shape[1]:
            raise ModelUnavailable(f"{adapter_dir}: layer {layer} {module} has mismatched ranks")
        if module == "self_attn.q_proj":
            lora_b = rope_permute(lora_b, heads.n_head)
        elif module == "self_attn.k_proj":
            lora_b = rope_permute(lora_b, heads.n_head_kv)
        base = f"blk.{layer}.{LLAMA_TENSORS[module]}.weight"
        writer.add_tensor(base + ".lora_a", np.ascontiguousarray(lora_a))
        writer.add_tensor(base + ".lora_b", np.ascontiguousarray(lora_b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)
    return out


def requantize_gguf(source: Path, out: Path, weight_type: str, *, threads: int = 1) -> Path:
    """Re-quantize a GGUF model to `weight_type` (a BASE_TYPES key) with llama.cpp's quantizer.

    The source's quantized weights are dequantized to float32 first (`allow_requantize`), so the result is
    never more precise than the source: it only changes how fast llama.cpp multiplies with it.
    """
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelUnavailable("llama-cpp-python is not installed") from exc
    if weight_type not in BASE_TYPES:
        raise ModelUnavailable(f"unknown GGUF weight type {weight_type!r}; one of {', '.join(BASE_TYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, BASE_TYPES[weight_type])
    params.allow_requantize = True
    params.nthread = threads
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
    if code != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise ModelUnavailable(f"llama.cpp could not re-quantize {source} to {weight_type} (code {code})")
    os.replace(tmp, out)
    return out


def merge_gguf_lora(base_gguf: Path, lora_gguf: Path, out: Path, weight_type: str) -> Path:
    """The base GGUF with a GGUF LoRA folded into its weights (W + alpha / rank * B @ A), as `weight_type`.

    llama.cpp applies a LoRA at run time as extra graph nodes per target weight (two small products, a
    scale, an add); for a 135M model decoding one token at a time those nodes cost as much as the weights
    themselves. The merged model computes the same function with none of them. The merged weights are
    written as float32 and then quantized once by llama.cpp's quantizer (`requantize_gguf`).
    """
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter, Keys
    from gguf.quants import dequantize

    if weight_type not in BASE_TYPES:
        raise ModelUnavailable(f"unknown GGUF weight type {weight_type!r}; one of {', '.join(BASE_TYPES)}")
    base, lora = GGUFReader(str(base_gguf)), GGUFReader(str(lora_gguf))
    if Keys.Adapter.LORA_ALPHA not in lora.fields:
        raise ModelUnavailable(f"{lora_gguf} is not a GGUF LoRA (no {Keys.Adapter.LORA_ALPHA})")
    alpha = float(lora.fields[Keys.Adapter.LORA_ALPHA].contents())
    pairs: dict[str, dict[str, Any]] = {}
    for tensor in lora.tensors:
        target, side = tensor.name.rsplit(".", 1)
        pairs.setdefault(target, {})[side] = np.asarray(tensor.data, dtype=np.float32)
    names = {t.name for t in base.tensors}
    missing = sorted(set(pairs) - names)
    if missing:
        raise ModelUnavailable(f"{lora_gguf} adapts {missing[0]}, which {base_gguf} does not have")

    tmp = out.with_name(out.name + f".{os.getpid()}.f32.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(tmp), str(base.fields[Keys.General.ARCHITECTURE].contents()))
    for field in base.fields.values():
        if field.name == Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # the writer adds these itself
        kind = field.types[0]
        writer.add_key_value(
            field.name,
            field.contents(),
            kind,
            sub_type=field.types[-1] if kind == GGUFValueType.ARRAY else None,
        )
    try:
        for tensor in base.tensors:
            if tensor.name not in pairs:
                writer.add_tensor(tensor.name, np.asarray(tensor.data), raw_dtype=tensor.tensor_type)
                continue
            pair = pairs[tensor.name]
            lora_a, lora_b = pair.get("lora_a"), pair.get("lora_b")
            if lora_a is None or lora_b is None:
                raise ModelUnavailable(f"{lora_gguf}: {tensor.name} lacks lora_a or lora_b")
            weight = dequantize(np.asarray(tensor.data), tensor.tensor_type).reshape(lora_b.shape[0], -1)
            if weight.shape[1] != lora_a.shape[1] or lora_a.shape[0] != lora_b.shape[1]:
                raise ModelUnavailable(f"{lora_gguf}: {tensor.name} does not fit the base's {weight.shape}")
            merged = weight + np.float32(alpha / lora_a.shape[0]) * (lora_b @ lora_a)
            writer.add_tensor(tensor.name, np.ascontiguousarray(merged, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return requantize_gguf(tmp, out, weight_type)
    finally:
        tmp.unlink(missing_ok=True)
