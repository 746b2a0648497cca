"""Models by name for eval and gate: `base`, `default`, `live`, a run id, or an OpenAI-compatible URL."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from agent.chat_model import ChatModel
from finetune.gate import GateResult, GateThresholds, run_gate, write_report
from finetune.registry import (
    ModelRegistry,
    base_record,
    default_record,
    read_run,
    run_record_for_serving,
    write_run,
)
from finetune.train import write_model_card
from specialist.errors import NotFound
from specialist.live_model import LiveModel


def record_for(spec: str, registry: ModelRegistry) -> LiveModel:
    """The serving record of a named model."""
    if spec == "base":
        return base_record()
    if spec == "default":
        return default_record()
    if spec == "live":
        return registry.live()
    path = Path(spec)
    if (path / "run.json").exists():
        return run_record_for_serving(path)
    if (path / "adapter_config.json").exists():
        return replace(base_record(), name=path.name, kind="adapter", adapter_dir=str(path))
    return run_record_for_serving(registry.run_dir(spec))


def open_model(
    spec: str, registry: ModelRegistry, *, endpoint_model: str | None = None, api_key: str | None = None
) -> ChatModel:
    """A ChatModel for a model name, run id, adapter folder or http(s) endpoint."""
    if spec.startswith(("http://", "https://")):
        from agent.backends import OpenAIChatModel

        if not endpoint_model:
            raise NotFound("an endpoint needs --endpoint-model (the model name the server serves)")
        return OpenAIChatModel(spec, endpoint_model, api_key=api_key)
    from agent.backends.local import TransformersChatModel

    return TransformersChatModel.from_record(record_for(spec, registry))


def gate_run(
    run_id: str,
    registry: ModelRegistry,
    data: Path,
    *,
    base: str = "base",
    thresholds: GateThresholds | None = None,
    limit: int | None = None,
) -> GateResult:
    """Gate a run against a base on held-out data; the verdict is written into the run folder."""
    run_dir = Path(run_id) if (Path(run_id) / "run.json").exists() else registry.run_dir(run_id)
    candidate = open_model(str(run_dir), registry)
    result = run_gate(candidate, open_model(base, registry), data, thresholds=thresholds, limit=limit)
    write_report(result, run_dir / "gate")
    run = read_run(run_dir)
    run["gate"] = result.to_json()
    run["status"] = "gated" if result.passed else "gate failed"
    write_run(run_dir, run)
    write_model_card(run_dir)
    return result


def report_json(result: GateResult) -> str:
    """A one-line JSON verdict."""
    return json.dumps({"passed": result.passed, "reason": result.reason})
