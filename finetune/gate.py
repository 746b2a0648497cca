"""The eval gate: a candidate ships only if it beats the base on next action without losing validity."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.chat_model import ChatModel
from finetune.dataset import content_hash
from finetune.evaluate import (
    ConstrainedReport,
    EvalReport,
    Step,
    evaluate,
    evaluate_constrained,
    replay_steps,
    steps_of,
)


@dataclass(frozen=True)
class GateThresholds:
    """How much better the candidate must be."""

    min_next_action_gain: float = 0.10
    max_validity_drop: float = 0.0


@dataclass
class GateResult:
    """Both reports and the verdict."""

    passed: bool
    reason: str
    base: EvalReport
    candidate: EvalReport
    thresholds: GateThresholds
    data_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        """The verdict as recorded in run.json."""
        return {
            "passed": self.passed,
            "reason": self.reason,
            "data_sha256": self.data_sha256,
            "thresholds": self.thresholds.__dict__,
            "base": _summary(self.base),
            "candidate": _summary(self.candidate),
        }


def _summary(r: EvalReport) -> dict[str, Any]:
    keys = (
        "model",
        "n",
        "next_action_acc",
        "choice_n",
        "choice_next_action_acc",
        "arg_exact",
        "valid_rate",
        "refusal_acc",
        "handoff_acc",
    )
    return {k: getattr(r, k) for k in keys}


def decide(base: EvalReport, candidate: EvalReport, thresholds: GateThresholds) -> tuple[bool, str]:
    """The verdict and its reason. On constrained steps the gain counts only the steps where a model chooses:
    a step the choices leave one call to is the graph's, the same for any model."""
    got, had, where = candidate.next_action_acc, base.next_action_acc, ""
    if candidate.choice_next_action_acc is not None and base.choice_next_action_acc is not None:
        got, had = candidate.choice_next_action_acc, base.choice_next_action_acc
        where = f" on the {candidate.choice_n} steps with a choice"
    gain = got - had
    drop = base.valid_rate - candidate.valid_rate
    if gain < thresholds.min_next_action_gain:
        return False, (
            f"next-action accuracy{where} {got:.3f} vs base {had:.3f}: "
            f"gain {gain:+.3f} < required {thresholds.min_next_action_gain:+.3f}"
        )
    if drop > thresholds.max_validity_drop:
        return False, (
            f"tool-call validity {candidate.valid_rate:.3f} is worse than base {base.valid_rate:.3f} "
            f"(allowed drop {thresholds.max_validity_drop:.3f})"
        )
    return True, (
        f"next-action accuracy{where} {got:.3f} vs base {had:.3f} "
        f"(gain {gain:+.3f}); validity {candidate.valid_rate:.3f} vs {base.valid_rate:.3f}"
    )


def run_gate(
    candidate: ChatModel,
    base: ChatModel,
    data: Path,
    *,
    thresholds: GateThresholds | None = None,
    limit: int | None = None,
    steps: list[Step] | None = None,
) -> GateResult:
    """Evaluate base and candidate on the same held-out steps and decide.

    On dev replays (real-style tasks, `is_replay_file`) both models choose within `agent.choices`, as they
    do when serving; validity is then the share of calls inside the choices. Synthesized transcripts are
    scored on free generation, as before."""
    thresholds = thresholds or GateThresholds()
    if steps is None and is_replay_file(data):
        replays = replay_steps(data, limit=limit)
        base_report = as_eval_report(evaluate_constrained(base, replays))
        cand_report = as_eval_report(evaluate_constrained(candidate, replays))
        passed, reason = decide(base_report, cand_report, thresholds)
        return GateResult(passed, reason, base_report, cand_report, thresholds, content_hash(data))
    steps = steps if steps is not None else steps_of(data, limit=limit)
    base_report = evaluate(base, steps)
    cand_report = evaluate(candidate, steps)
    passed, reason = decide(base_report, cand_report, thresholds)
    return GateResult(passed, reason, base_report, cand_report, thresholds, content_hash(data))


def is_replay_file(path: Path) -> bool:
    """Whether a JSONL file holds dev replays (records with a `task_id` and a system message first)."""
    with path.open() as fh:
        first = fh.readline()
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and "task_id" in record and bool(record.get("messages"))


def as_eval_report(report: ConstrainedReport) -> EvalReport:
    """A constrained report in the gate's shape (per tool as the categories)."""
    return EvalReport(
        model=report.model,
        n=report.n,
        next_action_acc=report.next_action_acc,
        arg_exact=report.arg_exact,
        valid_rate=1.0 - report.invalid_calls / report.n if report.n else 0.0,
        refusal_acc=None,
        handoff_acc=report.per_tool.get("transfer_to_human_agents", {}).get("acc"),
        per_category={k: {"n": v["n"], "acc": v["acc"]} for k, v in report.per_tool.items()},
        errors=report.errors[:50],
        choice_n=report.n_choice,
        choice_next_action_acc=report.choice_next_action_acc,
    )


def write_report(result: GateResult, out_dir: Path) -> Path:
    """Markdown + PNG chart (base vs candidate per category) + JSON; returns the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gate.json").write_text(
        json.dumps(
            {
                **result.to_json(),
                "base_report": result.base.to_json(),
                "candidate_report": result.candidate.to_json(),
            },
            indent=2,
        )
    )
    _chart(result, out_dir / "gate.png")
    b, c = result.base, result.candidate
    rows = [
        ("next-action accuracy", b.next_action_acc, c.next_action_acc),
        ("argument exact match", b.arg_exact, c.arg_exact),
        ("tool-call validity", b.valid_rate, c.valid_rate),
        ("refusal correctness", b.refusal_acc, c.refusal_acc),
        ("hand-off correctness", b.handoff_acc, c.handoff_acc),
    ]
    if c.choice_n is not None:  # constrained steps: what the gate decides on
        rows.insert(
            1,
            (
                f"next action, the {c.choice_n} steps with a choice",
                b.choice_next_action_acc,
                c.choice_next_action_acc,
            ),
        )
    lines = [
        f"# Gate: {'PASSED' if result.passed else 'FAILED'}",
        "",
        result.reason,
        "",
        f"Held-out data sha256 `{result.data_sha256[:16]}…`, {c.n} steps. Thresholds: next-action gain >= "
        f"{result.thresholds.min_next_action_gain:.2f}, "
        f"validity drop <= {result.thresholds.max_validity_drop:.2f}.",
        "",
        f"| metric | base ({b.model}) | candidate ({c.model}) |",
        "|---|---:|---:|",
        *[f"| {name} | {_fmt(x)} | {_fmt(y)} |" for name, x, y in rows],
        "",
        "## Next-action accuracy per category",
        "",
        "| category | n | base | candidate |",
        "|---|---:|---:|---:|",
    ]
    for cat in sorted(set(b.per_category) | set(c.per_category)):
        n = int(c.per_category.get(cat, b.per_category.get(cat, {"n": 0}))["n"])
        lines.append(
            f"| {cat} | {n} | {_fmt(b.per_category.get(cat, {}).get('acc'))} | "
            f"{_fmt(c.per_category.get(cat, {}).get('acc'))} |"
        )
    lines += ["", "![base vs candidate](gate.png)", ""]
    path = out_dir / "gate.md"
    path.write_text("\n".join(lines))
    return path


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _chart(result: GateResult, path: Path) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    cats = sorted(set(result.base.per_category) | set(result.candidate.per_category))
    labels = ["overall", *cats]
    base = [result.base.next_action_acc] + [result.base.per_category.get(c, {}).get("acc", 0.0) for c in cats]
    cand = [result.candidate.next_action_acc] + [
        result.candidate.per_category.get(c, {}).get("acc", 0.0) for c in cats
    ]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(labels)), 3.8))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], base, width=0.4, label="base")
    ax.bar([x + 0.2 for x in xs], cand, width=0.4, label="candidate")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("next-action accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
