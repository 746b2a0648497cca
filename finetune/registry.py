"""The model registry: runs, which model is live, promotion (only after a passed gate) and rollback."""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.base_model import SMOLLM2_ID, cached_base_dir, file_sha256, smollm2_ref
from finetune.train import RUN_FILE
from specialist.errors import Conflict, GateFailed, ModelUnavailable, NotFound
from specialist.jsonio import read_json, write_json
from specialist.live_model import LiveModel

if TYPE_CHECKING:
    from finetune.settings import FinetuneSettings

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"
GGUF_LORA_DIR = Path("var/gguf_lora")
GGUF_EXPORT_VERSION = "1"  # part of the cache key: bump when finetune/gguf_export.py writes differently
GGUF_BASE_DIR = Path("var/gguf_base")
# llama.cpp serves the base as F16: ~1.7x the prompt tokens/s of the shipped Q4_1 on CPU (prompt processing
# dominates a step's latency) and greedy outputs closer to transformers' (Q8_0 is as fast, but further off)
DEFAULT_BASE_TYPE = "f16"
# the adapter folded into the base for serving (`merge_gguf_lora`): decoding runs without the LoRA's extra
# graph nodes, and Q8_0 reads half the bytes of F16 per token; "off" applies the GGUF LoRA at run time
DEFAULT_MERGED_TYPE = "q8_0"


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    # keyed by size and mtime too: hashing the ~100 MB base (or an adapter) on every record costs ~0.3 s
    return file_sha256(Path(path))


def serving_base_gguf(
    source: Path, weight_type: str = DEFAULT_BASE_TYPE, cache_dir: Path = GGUF_BASE_DIR
) -> Path:
    """The base GGUF llama.cpp serves: `source` re-quantized to `weight_type`, once, cached by the source's
    sha256 and the type. `source` itself for type `source`, or (with a warning) when re-quantizing fails."""
    from finetune.gguf_export import requantize_gguf

    if weight_type == "source" or not source.exists():
        return source
    st = source.stat()
    digest = _sha256(str(source.resolve()), st.st_size, st.st_mtime_ns)
    target = cache_dir / f"{digest[:32]}-{weight_type}.gguf"
    if target.exists():
        return target
    try:
        return requantize_gguf(source, target, weight_type)
    except ModelUnavailable as exc:
        log.warning("serving the base GGUF %s as it is: no %s copy (%s)", source, weight_type, exc)
        return source


def gguf_lora(adapter_dir: Path, base_gguf: Path, cache_dir: Path = GGUF_LORA_DIR) -> Path | None:
    """The adapter as a GGUF LoRA for llama.cpp, converted once and cached by the adapter's sha256.

    None when it cannot be converted (the record then serves on transformers).
    """
    from finetune.gguf_export import export_gguf_lora, head_counts

    digest = hashlib.sha256(GGUF_EXPORT_VERSION.encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        st = (adapter_dir / name).stat()  # the same cached file hash as the base: live() stays cheap
        digest.update(_sha256(str((adapter_dir / name).resolve()), st.st_size, st.st_mtime_ns).encode())
    target = cache_dir / f"{digest.hexdigest()[:32]}.gguf"
    if target.exists():
        return target
    try:
        return export_gguf_lora(adapter_dir, target, head_counts(base_gguf))
    except (ImportError, ModelUnavailable) as exc:
        log.warning("no GGUF LoRA for %s (%s): serving it on transformers", adapter_dir, exc)
        return None


def with_gguf_lora(record: LiveModel, cache_dir: Path = GGUF_LORA_DIR) -> LiveModel:
    """The record plus `gguf_lora` (what makes the in-process backend run it on llama.cpp)."""
    adapter, base = record.adapter_dir, record.base_gguf
    if not adapter or not base or not (Path(adapter) / "adapter_model.safetensors").exists():
        return record
    lora = gguf_lora(Path(adapter), Path(base), cache_dir)
    return replace(record, gguf_lora=str(lora) if lora else None)


def merged_gguf(
    base_gguf: Path, lora: Path, weight_type: str, cache_dir: Path = GGUF_LORA_DIR
) -> Path | None:
    """The base with the GGUF LoRA folded in, as `weight_type`: merged once, cached by both files' sha256
    and the type. None (with a warning) when merging fails: llama.cpp then applies the LoRA at run time."""
    from finetune.gguf_export import merge_gguf_lora

    digest = hashlib.sha256(f"{GGUF_EXPORT_VERSION}-{weight_type}".encode())
    for path in (base_gguf, lora):
        st = path.stat()
        digest.update(_sha256(str(path.resolve()), st.st_size, st.st_mtime_ns).encode())
    target = cache_dir / f"merged-{digest.hexdigest()[:32]}-{weight_type}.gguf"
    if target.exists():
        return target
    try:
        return merge_gguf_lora(base_gguf, lora, target, weight_type)
    except (ImportError, ModelUnavailable) as exc:
        log.warning("could not merge %s into %s (%s): llama.cpp applies it at run time", lora, base_gguf, exc)
        return None


def serving_record(
    record: LiveModel,
    gguf_dir: Path = GGUF_LORA_DIR,
    *,
    base_dir: Path = GGUF_BASE_DIR,
    base_type: str = DEFAULT_BASE_TYPE,
    merged_type: str = DEFAULT_MERGED_TYPE,
) -> LiveModel:
    """The record with the files llama.cpp serves it from: `base_gguf` (the re-quantized base), `gguf_lora`
    (the adapter as a GGUF LoRA) and, unless `merged_type` is "off", `gguf_merged` (both in one file)."""
    record = with_gguf_lora(with_serving_base(record, base_dir, base_type), gguf_dir)
    lora = record.gguf_lora
    if merged_type == "off" or not lora or not record.base_gguf:
        return record
    merged = merged_gguf(Path(record.base_gguf), Path(lora), merged_type, gguf_dir)
    return replace(record, gguf_merged=str(merged)) if merged else record


def with_serving_base(
    record: LiveModel, cache_dir: Path = GGUF_BASE_DIR, weight_type: str = DEFAULT_BASE_TYPE
) -> LiveModel:
    """The record with `base_gguf` = the re-quantized base llama.cpp serves; `base_gguf_source` keeps the
    shipped file (what the transformers weights in `base_dir` come from)."""
    source = record.base_gguf_source or record.base_gguf
    if not source:
        return record
    serving = serving_base_gguf(Path(source), weight_type, cache_dir)
    return replace(record, base_gguf_source=str(source), base_gguf=str(serving))


def default_record(
    gguf_dir: Path = GGUF_LORA_DIR,
    *,
    base_dir: Path = GGUF_BASE_DIR,
    base_type: str = DEFAULT_BASE_TYPE,
    merged_type: str = DEFAULT_MERGED_TYPE,
    serving: bool = True,
) -> LiveModel:
    """The committed default model: SmolLM2-135M-Instruct + the shipped LoRA adapter.

    With `serving=False` only what identifies it: nothing is converted (the serving weights, the GGUF LoRA
    and the transformers copy of the base are derived on first use and can take minutes on a cold cache).
    """
    ref = smollm2_ref()
    adapter = DEFAULT_MODEL_DIR / "adapter"
    record = LiveModel(
        name="default",
        kind="default",
        base_model=SMOLLM2_ID,
        base_gguf=str(ref.gguf_path),
        adapter_dir=str(adapter) if (adapter / "adapter_config.json").exists() else None,
        prompt_format="compact",
    )
    if not serving:
        return record
    record = replace(record, base_dir=str(cached_base_dir(ref)))
    return serving_record(record, gguf_dir, base_dir=base_dir, base_type=base_type, merged_type=merged_type)


def base_record(*, base_dir: Path = GGUF_BASE_DIR, base_type: str = DEFAULT_BASE_TYPE) -> LiveModel:
    """The untuned base model (for comparisons)."""
    ref = smollm2_ref()
    record = LiveModel(
        name="base-smollm2",
        kind="base",
        base_model=SMOLLM2_ID,
        base_gguf=str(ref.gguf_path),
        base_dir=str(cached_base_dir(ref)),
        adapter_dir=None,
        prompt_format="compact",
    )
    return with_serving_base(record, base_dir, base_type)


def read_run(run_dir: Path) -> dict[str, Any]:
    """The run record (status and gate result) of a run folder."""
    path = run_dir / RUN_FILE
    if not path.exists():
        raise NotFound(f"no run at {run_dir}")
    data: dict[str, Any] = read_json(path)
    return data


def live_data(run_dir: Path) -> dict[str, Any]:
    """How much live (exported, reviewed) data a run learned from, and from which exports (data.json)."""
    path = run_dir / "data.json"
    exports = []
    if path.exists():
        try:
            exports = list(read_json(path).get("live") or [])
        except (ValueError, OSError):
            exports = []
    return {
        "conversations": sum(int(e.get("conversations", 0)) for e in exports),
        "corrections": sum(int(e.get("corrections", 0)) for e in exports),
        "exports": exports,
    }


def write_run(run_dir: Path, record: dict[str, Any]) -> None:
    """Atomically rewrite a run record."""
    write_json(run_dir / RUN_FILE, record)


def run_record_for_serving(
    run_dir: Path,
    gguf_dir: Path = GGUF_LORA_DIR,
    *,
    base_dir: Path = GGUF_BASE_DIR,
    base_type: str = DEFAULT_BASE_TYPE,
    merged_type: str = DEFAULT_MERGED_TYPE,
) -> LiveModel:
    """The live-model record of a trained run (base weights + its adapter)."""
    base = read_json(run_dir / "base.json")
    ref = smollm2_ref()
    record = LiveModel(
        name=run_dir.name,
        kind="run",
        base_model=base.get("model_id", SMOLLM2_ID),
        base_gguf=str(ref.gguf_path),
        base_dir=str(cached_base_dir(ref)),
        adapter_dir=str(run_dir / "adapter"),
        prompt_format=base.get("prompt_format", "compact"),
    )
    return serving_record(record, gguf_dir, base_dir=base_dir, base_type=base_type, merged_type=merged_type)


class ModelRegistry:
    """Runs live in `runs_dir`; the promotion history (last entry = live) in `registry_path`; GGUF
    conversions of the adapters, the re-quantized base (`base_type`) and the merged models (`merged_type`)
    next to it."""

    def __init__(
        self,
        runs_dir: Path,
        registry_path: Path,
        *,
        base_type: str = DEFAULT_BASE_TYPE,
        merged_type: str = DEFAULT_MERGED_TYPE,
    ) -> None:
        self.runs_dir = Path(runs_dir)
        self.registry_path = Path(registry_path)
        self.gguf_dir = self.registry_path.parent / "gguf_lora"
        self.base_gguf_dir = self.registry_path.parent / "gguf_base"
        self.base_type = base_type
        self.merged_type = merged_type

    @classmethod
    def from_settings(cls, settings: FinetuneSettings) -> ModelRegistry:
        """The registry the settings describe (where runs live, which GGUFs llama.cpp serves)."""
        return cls(
            settings.runs_dir,
            settings.registry_path,
            base_type=settings.base_gguf_type,
            merged_type=settings.merged_gguf_type,
        )

    def _history(self) -> list[dict[str, Any]]:
        if not self.registry_path.exists():
            return []
        data = read_json(self.registry_path)
        history: list[dict[str, Any]] = data.get("history", [])
        return history

    def _save(self, history: list[dict[str, Any]]) -> None:
        write_json(self.registry_path, {"history": history})

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run with its kind, status and gate result; the live one is marked."""
        live = self.live(serving=False).name
        out = []
        if self.runs_dir.exists():
            for run_dir in sorted(p for p in self.runs_dir.iterdir() if (p / RUN_FILE).exists()):
                rec = read_run(run_dir)
                rec["path"] = str(run_dir)
                rec["live_data"] = live_data(run_dir)
                rec["live"] = rec.get("run_id") == live
                out.append(rec)
        return out

    def live(self, *, serving: bool = True) -> LiveModel:
        """The live-model record: the last promotion, or the committed default model.

        `serving=False` (listings, checks) names it without deriving the files that serve it.
        """
        return self._live_after(self._history(), serving=serving)

    def _live_after(self, history: list[dict[str, Any]], *, serving: bool = True) -> LiveModel:
        """The record that is live when `history` holds these promotions (none: the committed default)."""
        # the serving GGUFs are (re)derived, never trusted from the history: a cleared cache converts again
        if not history:
            return default_record(self.gguf_dir, serving=serving, **self._types())
        last = LiveModel.from_dict(history[-1])
        if not serving:
            return last
        return serving_record(last, self.gguf_dir, **self._types())

    def _types(self) -> dict[str, Any]:
        return {"base_dir": self.base_gguf_dir, "base_type": self.base_type, "merged_type": self.merged_type}

    def run_dir(self, run_id: str) -> Path:
        """The folder of a run (NotFound for an unknown id or a path outside the runs folder)."""
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise NotFound(f"no run {run_id!r}")
        path = self.runs_dir / run_id
        if not (path / RUN_FILE).exists():
            raise NotFound(f"no run {run_id!r} in {self.runs_dir}")
        return path

    def promote(self, run_id: str, *, merged: bool = False) -> LiveModel:
        """Make a gated run live: export what vLLM loads and record it (refused with the reason otherwise)."""
        run_dir = self.run_dir(run_id)
        run = read_run(run_dir)
        gate = run.get("gate")
        if not gate:
            raise GateFailed(
                f"run {run_id} has not been gated; run `specialist finetune gate --candidate {run_id}` first"
            )
        if not gate.get("passed"):
            raise GateFailed(f"run {run_id} failed its gate: {gate.get('reason', 'no reason recorded')}")
        if self.live(serving=False).name == run_id:
            raise Conflict(f"run {run_id} is already live")
        serving = run_record_for_serving(run_dir, self.gguf_dir, **self._types())
        record = replace(
            serving,
            gguf_lora=None,  # cache paths; live() derives them
            gguf_merged=None,
            base_gguf=serving.base_gguf_source or serving.base_gguf,  # the shipped file, not the cached copy
            base_gguf_source=None,
            export_dir=str(export_adapter(run_dir, merged=merged)),
            promoted_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            gate={k: gate.get(k) for k in ("passed", "reason", "data_sha256")},
        )
        history = self._history()
        history.append(record.to_dict())
        self._save(history)
        run["status"] = "promoted"
        write_run(run_dir, run)
        return record

    def rollback(self) -> LiveModel:
        """Make the previously live model live again (the default model after the first promotion)."""
        history = self._history()
        if not history:
            raise Conflict("nothing to roll back: the default model is live")
        dropped = history.pop()
        self._save(history)
        with_run = self.runs_dir / str(dropped.get("name", ""))
        if (with_run / RUN_FILE).exists():
            run = read_run(with_run)
            run["status"] = "rolled back"
            write_run(with_run, run)
        return self.live(serving=False)

    def prune_cache(self) -> list[Path]:
        """Delete the cached GGUF conversions (adapter exports, merged models) that neither the live model nor
        the one `rollback` would restore is served from; each is derived again if it is ever needed. A
        running server keeps reading a file it has open. Returns the deleted files."""
        history = self._history()
        keep_records = [self._live_after(history)]
        if history:
            keep_records.append(self._live_after(history[:-1]))  # what `rollback` restores
        keep = {
            Path(path).resolve()
            for record in keep_records
            for path in (record.gguf_lora, record.gguf_merged)
            if path
        }
        removed = []
        for path in sorted(self.gguf_dir.glob("*.gguf")) if self.gguf_dir.exists() else []:
            if path.resolve() not in keep:
                path.unlink()
                removed.append(path)
        return removed


def export_adapter(run_dir: Path, *, merged: bool = False) -> Path:
    """Write what vLLM loads: the adapter folder (`--lora-modules` / load_lora_adapter) and, on request, a
    merged safetensors model."""
    export = run_dir / "export"
    target = export / "adapter"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(run_dir / "adapter", target)
    if merged:
        merge_adapter(run_dir / "adapter", export / "merged")
    return target


def merge_adapter(adapter_dir: Path, out_dir: Path) -> Path:
    """Base + adapter merged into one safetensors model folder (for servers without LoRA support)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = cached_base_dir(smollm2_ref())
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype="float32")
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(str(out_dir))
    return out_dir


def install_default(run_dir: Path, target: Path = DEFAULT_MODEL_DIR) -> Path:
    """Copy a gated run into the package as the default model: fp16 adapter, records, gate report, card."""
    import torch
    from safetensors.torch import load_file, save_file

    run = read_run(run_dir)
    if not (run.get("gate") or {}).get("passed"):
        raise GateFailed(f"run {run_dir.name} has not passed its gate; it cannot become the default model")
    lineage = _keep_lineage(target)
    if target.exists():
        shutil.rmtree(target)
    (target / "adapter").mkdir(parents=True)
    if lineage is not None:
        shutil.move(str(lineage), target / LINEAGE_DIR)
    tensors = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    # fp16 halves the committed size; the weights are cast back to float32 when merged
    save_file(
        {k: v.to(torch.float16) for k, v in tensors.items()},
        str(target / "adapter" / "adapter_model.safetensors"),
    )
    shutil.copy2(run_dir / "adapter" / "adapter_config.json", target / "adapter" / "adapter_config.json")
    for name in ("config.json", "base.json", "data.json", "metrics.json", "loss.png", "README.md", RUN_FILE):
        shutil.copy2(run_dir / name, target / name)
    for name in ("gate.md", "gate.png", "gate.json"):
        shutil.copy2(run_dir / "gate" / name, target / name)
    _card_lineage(target)
    return target


LINEAGE_DIR = "lineage"
_RECORDS = ("config.json", "base.json", "data.json", "metrics.json", "README.md", RUN_FILE)


def _keep_lineage(target: Path) -> Path | None:
    """Move the default's lineage, with the outgoing default's own records added, out of `target`.

    The records (no weights) of every run the default grew from stay with it, so its model card can
    total the training time over all sittings."""
    if not target.exists():
        return None
    keep = target.parent / f".{target.name}-lineage"
    shutil.rmtree(keep, ignore_errors=True)
    if (target / LINEAGE_DIR).is_dir():
        shutil.copytree(target / LINEAGE_DIR, keep)
    else:
        keep.mkdir()
    if (target / RUN_FILE).exists():
        outgoing = keep / str(read_run(target)["run_id"])
        outgoing.mkdir(exist_ok=True)
        for name in _RECORDS:
            if (target / name).exists():
                shutil.copy2(target / name, outgoing / name)
    return keep


def training_minutes(run_dir: Path) -> float:
    """Minutes of training a run's metrics record (steps x seconds per step)."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return 0.0
    metrics = read_json(path)
    return float(metrics.get("steps") or 0) * float(metrics.get("sec_per_step") or 0.0) / 60.0


def _card_lineage(target: Path) -> None:
    """Add the lineage (each earlier run and the total training minutes) to the default's model card."""
    runs = (
        sorted(p for p in (target / LINEAGE_DIR).glob("*") if p.is_dir())
        if (target / LINEAGE_DIR).is_dir()
        else []
    )
    own = training_minutes(target)
    total = own + sum(training_minutes(p) for p in runs)
    lines = ["", "## Lineage", f"- this run: {own:.1f} min of training"]
    lines += [f"- `{p.name}`: {training_minutes(p):.1f} min (records in `lineage/{p.name}/`)" for p in runs]
    lines.append(f"- total over {len(runs) + 1} sittings: {total:.1f} min")
    card = target / "README.md"
    card.write_text(card.read_text().rstrip("\n") + "\n" + "\n".join(lines) + "\n")
