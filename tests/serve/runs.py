"""Run folders in the finetune room's format, for the models routes (real registry, fixture data)."""

from __future__ import annotations

import json
from pathlib import Path


def make_run(runs_dir: Path, run_id: str, *, passed: bool | None) -> Path:
    """A trained run's folder: run.json (gate verdict or none), base.json, adapter/, gate report + chart."""
    run_dir = runs_dir / run_id
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    (run_dir / "base.json").write_text(json.dumps({"model_id": "HuggingFaceTB/SmolLM2-135M-Instruct"}))
    gate = None
    if passed is not None:
        base = {"model": "base", "n": 40, "next_action_acc": 0.40, "valid_rate": 0.90}
        cand = {"model": run_id, "n": 40, "next_action_acc": 0.75 if passed else 0.42, "valid_rate": 0.95}
        reason = "next-action accuracy gain +0.350" if passed else "gain +0.020 is below the 0.100 needed"
        gate = {"passed": passed, "reason": reason, "data_sha256": "0" * 64, "base": base, "candidate": cand}
        (run_dir / "gate").mkdir()
        per = {"lookup": {"n": 20, "acc": 0.5}, "handoff": {"n": 20, "acc": 0.3}}
        better = {"lookup": {"n": 20, "acc": 0.8}, "handoff": {"n": 20, "acc": 0.7}}
        (run_dir / "gate" / "gate.json").write_text(
            json.dumps(
                {**gate, "base_report": {"per_category": per}, "candidate_report": {"per_category": better}}
            )
        )
        _chart(run_dir / "gate" / "gate.png")
    status = "trained" if passed is None else ("gated" if passed else "gate failed")
    (run_dir / "run.json").write_text(
        json.dumps({"run_id": run_id, "kind": "sft", "status": status, "gate": gate})
    )
    return run_dir


def _chart(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(["base", "candidate"], [0.4, 0.75])
    fig.savefig(path)
    plt.close(fig)
