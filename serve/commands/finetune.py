"""CLI of the finetune area: `finetune sft|dpo|eval|gate|synth|build-dataset`, `models ...`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from finetune.registry import ModelRegistry

finetune_app = typer.Typer(
    help="Transcripts to datasets, LoRA training, eval and gate.", no_args_is_help=True
)
models_app = typer.Typer(help="The model registry: list, promote, roll back.", no_args_is_help=True)
_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
T = TypeVar("T")


def _run(step: Callable[[], T]) -> T:
    """Run a step; project errors become one clear line and exit code 1."""
    from specialist.errors import SpecialistError

    try:
        return step()
    except SpecialistError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _registry() -> ModelRegistry:
    from finetune.registry import ModelRegistry
    from serve.context import load_settings

    return ModelRegistry.from_settings(load_settings().finetune)


@finetune_app.command(context_settings=_EXTRA)
def sft(
    ctx: typer.Context,
    config: Path = typer.Option(Path("cpu-smollm2.yaml"), help="YAML config (shipped: cpu-smollm2.yaml)."),
) -> None:
    """LoRA SFT with TRL's SFTTrainer; extra `key=value` arguments override the config."""
    from finetune.config import TrainConfig
    from finetune.train import train_sft

    result = _run(lambda: train_sft(TrainConfig.load(config, list(ctx.args))))
    typer.echo(
        json.dumps(
            {"run_dir": str(result.run_dir), "steps": result.steps, "sec_per_step": result.sec_per_step}
        )
    )


@finetune_app.command(context_settings=_EXTRA)
def dpo(
    ctx: typer.Context,
    config: Path = typer.Option(Path("cpu-smollm2.yaml"), help="YAML config."),
    init_adapter: Path | None = typer.Option(None, help="Start from this SFT adapter folder."),
) -> None:
    """LoRA DPO with TRL's DPOTrainer on the dataset's preference pairs; `key=value` overrides."""
    from finetune.config import TrainConfig
    from finetune.train import train_dpo

    result = _run(lambda: train_dpo(TrainConfig.load(config, list(ctx.args)), init_adapter=init_adapter))
    typer.echo(
        json.dumps(
            {"run_dir": str(result.run_dir), "steps": result.steps, "sec_per_step": result.sec_per_step}
        )
    )


@finetune_app.command("eval")
def eval_cmd(
    model: str = typer.Option(
        ..., help="base | default | live | RUN_ID | adapter folder | http(s) endpoint."
    ),
    data: Path = typer.Option(..., help="Held-out transcripts (JSONL)."),
    endpoint_model: str | None = typer.Option(None, help="Model name at the endpoint."),
    api_key: str | None = typer.Option(None, envvar="SPECIALIST_EVAL_API_KEY", help="Endpoint API key."),
    limit: int | None = typer.Option(None, help="Score at most this many steps."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
) -> None:
    """Replay held-out conversations step by step and score the model's next action."""
    from finetune.evaluate import evaluate, steps_of
    from finetune.models import open_model

    def go() -> Any:
        chat = open_model(model, _registry(), endpoint_model=endpoint_model, api_key=api_key)
        return evaluate(chat, steps_of(data, limit=limit))

    report = _run(go)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    typer.echo(
        f"{report.model}: n={report.n} next-action={report.next_action_acc:.3f} args={report.arg_exact:.3f} "
        f"valid={report.valid_rate:.3f} refusal={report.refusal_acc} handoff={report.handoff_acc}"
    )
    typer.echo(report.table())


@finetune_app.command()
def gate(
    candidate: str = typer.Option(..., help="Run id (or run folder) to gate."),
    base: str = typer.Option("base", help="base | default | live | RUN_ID."),
    data: Path = typer.Option(..., help="Held-out transcripts (JSONL)."),
    min_gain: float = typer.Option(0.10, help="Required next-action accuracy gain over the base."),
    max_validity_drop: float = typer.Option(0.0, help="Allowed drop in tool-call validity."),
    limit: int | None = typer.Option(None, help="Score at most this many steps."),
) -> None:
    """Gate a run against a base; writes gate.md + gate.png into the run and records the verdict."""
    from finetune.gate import GateThresholds
    from finetune.models import gate_run

    thresholds = GateThresholds(min_next_action_gain=min_gain, max_validity_drop=max_validity_drop)
    result = _run(
        lambda: gate_run(candidate, _registry(), data, base=base, thresholds=thresholds, limit=limit)
    )
    typer.echo(("PASSED: " if result.passed else "FAILED: ") + result.reason)
    if not result.passed:
        raise typer.Exit(2)


@finetune_app.command()
def synth(
    out: Path = typer.Option(..., help="Output JSONL."),
    recipe: str = typer.Option(
        "demo",
        help="demo (own templates + demo store) | tasks (retail task specs) | people (customers who write "
        "like the dev replays: retail task specs when --data-dir has them, plus the demo store).",
    ),
    n: int = typer.Option(500, help="Conversations (demo and people recipes; tasks: at most)."),
    split: str = typer.Option("train", help="train | heldout (held-out specs, store seed and phrasings)."),
    seed: int = typer.Option(0),
    data_dir: Path = typer.Option(Path("../shared/data/retail"), help="Retail folder (tasks, people)."),
) -> None:
    """Synthesize support transcripts in the documented JSONL format."""
    from finetune.people import PeopleReport, synth_people
    from finetune.synth import synth_demo, synth_tasks, write_jsonl
    from specialist.errors import InvalidInput

    report = PeopleReport()

    def go() -> int:
        if split not in {"train", "heldout"}:
            raise InvalidInput("split must be train or heldout")
        if recipe == "demo":
            return write_jsonl(synth_demo(n, split=split, seed=seed), out)  # type: ignore[arg-type]
        if recipe == "tasks":
            return write_jsonl(synth_tasks(data_dir, split=split, seed=seed, limit=n), out)  # type: ignore[arg-type]
        if recipe == "people":
            records = synth_people(n, data_dir=data_dir, split=split, seed=seed, report=report)  # type: ignore[arg-type]
            return write_jsonl(records, out)
        raise InvalidInput(f"unknown recipe {recipe!r} (demo | tasks | people)")

    written = _run(go)
    extra = {"report": report.to_json()} if recipe == "people" else {}
    typer.echo(json.dumps({"written": written, "out": str(out), **extra}))


@finetune_app.command("build-dataset")
def build_dataset_cmd(
    inputs: list[Path] = typer.Argument(..., help="Transcript JSONL files."),
    out: Path = typer.Option(..., help="Dataset folder to write."),
    val_fraction: float = typer.Option(0.1, help="Share of conversations for validation."),
    pii: str = typer.Option("placeholder", help="placeholder | surrogate | off."),
) -> None:
    """Scrub PII and write SFT/DPO train/validation files with a manifest of hashes and skip reports."""
    from finetune.dataset import build_dataset

    result = _run(
        lambda: build_dataset(
            inputs,
            out,
            val_fraction=val_fraction,
            scrub=pii != "off",
            pii_mode=pii if pii != "off" else "placeholder",
        )
    )
    typer.echo(json.dumps(result.manifest, indent=2))


@models_app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json")) -> None:
    """Training runs with their gate verdicts; the live model."""
    registry = _registry()
    runs = _run(registry.list_runs)
    live = _run(registry.live)
    if as_json:
        typer.echo(json.dumps({"live": live.to_dict(), "runs": runs}, indent=2))
        return
    typer.echo(f"live: {live.name} ({live.kind})")
    for r in runs:
        gate_info = r.get("gate") or {}
        verdict = "not gated" if not gate_info else ("passed" if gate_info.get("passed") else "failed")
        mark = "*" if r.get("live") else " "
        typer.echo(f"{mark} {r.get('run_id')}  {r.get('kind')}  {r.get('status')}  gate: {verdict}")


@models_app.command()
def promote(
    run_id: str = typer.Argument(..., help="A run that passed its gate."),
    merged: bool = typer.Option(False, help="Also export a merged safetensors model."),
) -> None:
    """Make a gated run live (refused with the reason otherwise); serving picks it up without a restart."""
    record = _run(lambda: _registry().promote(run_id, merged=merged))
    typer.echo(json.dumps(record.to_dict(), indent=2))


@models_app.command()
def rollback() -> None:
    """Make the previously live model live again."""
    record = _run(_registry().rollback)
    typer.echo(f"live: {record.name}")


@models_app.command("prune-cache")
def prune_cache() -> None:
    """Delete cached GGUF conversions that neither the live model nor its rollback target uses."""
    removed = _run(_registry().prune_cache)
    for path in removed:
        typer.echo(f"deleted {path}")
    typer.echo(f"{len(removed)} cached file(s) deleted")


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.add_typer(finetune_app, name="finetune")
    app.add_typer(models_app, name="models")
