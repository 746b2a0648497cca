"""The live-model record: which behaviour model serves, and the files each engine loads it from.

`finetune.registry` makes every record (the committed default, the base, a promoted run) and keeps the
promotion history as their JSON; `serve` asks the registry for the live one and hands it to
`agent.backends`, which load it. The type lives in the shared kernel rather than in `finetune` because
`finetune` already imports `agent` (chat model, prompt rendering, tool specs): `agent` importing `finetune`
would make the two rooms depend on each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Kind = Literal["default", "base", "run", "adapter"]

# written to JSON whenever set; the rest only when not None (what the history and the API have always shown)
_ALWAYS = ("name", "kind", "base_model", "base_gguf", "adapter_dir", "prompt_format")


@dataclass(frozen=True)
class LiveModel:
    """One behaviour model: a base, optionally a LoRA adapter, and where the serving files are.

    Paths are kept as text, as the registry's JSON holds them. The serving files (`base_gguf` as served,
    `gguf_lora`, `gguf_merged`) are derived by the registry on demand and never trusted from history.
    """

    name: str
    kind: Kind
    base_model: str = ""  # the hub id of the base, for the record
    base_gguf: str | None = None  # the GGUF llama.cpp serves the base from
    adapter_dir: str | None = None  # the PEFT adapter folder (None: the bare base)
    prompt_format: str = "compact"  # how prompts are rendered (agent.tool_format)
    base_dir: str | None = None  # the base as transformers weights (TransformersChatModel loads them)
    base_gguf_source: str | None = None  # the shipped GGUF that `base_gguf` was re-quantized from
    gguf_lora: str | None = None  # the adapter converted to a GGUF LoRA (llama.cpp applies it at run time)
    gguf_merged: str | None = None  # base and adapter in one GGUF (llama.cpp loads it without a LoRA)
    export_dir: str | None = None  # a promoted run's adapter export, what vLLM's load_lora_adapter reads
    promoted_at: str | None = None
    gate: dict[str, Any] | None = field(default=None)  # a promoted run's verdict: passed, reason, data_sha256

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the registry's history, the API's `live`)."""
        return {k: v for k, v in asdict(self).items() if k in _ALWAYS or v is not None}

    def get(self, key: str, default: Any = None) -> Any:
        """A field by name, as the dict this type replaced was read (kept for bench/agent.py until it reads
        `record.adapter_dir`); new code reads the attributes."""
        return getattr(self, key, default)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LiveModel:
        """The record of a JSON object written by `to_dict` (keys this type does not know are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
