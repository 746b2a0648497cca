"""The synthesizer: valid transcripts, every behaviour category, and the held-out rules."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from agent import prompts
from agent.confirmation import is_explicit_yes
from agent.prompts import system_prompt
from agent.tool_specs import TOOL_NAMES, TOOL_SPECS
from finetune.dataset import sft_examples
from finetune.synth import synth_demo, synth_tasks, task_specs, write_jsonl
from finetune.transcripts import read_transcripts

from .conftest import RETAIL


def test_demo_transcripts_are_valid_and_varied(tmp_path: Path) -> None:
    path = tmp_path / "demo.jsonl"
    write_jsonl(synth_demo(80, split="train", seed=1), path)
    transcripts, report = read_transcripts(path)
    assert len(transcripts) == 80 and not report.skipped
    cats: Counter[str] = Counter()
    for t in transcripts:
        assert t.messages[0] == {"role": "system", "content": system_prompt()} and t.tools == TOOL_SPECS
        for index, cat in t.metadata["step_categories"].items():
            assert t.messages[int(index)]["role"] == "assistant"
            cats[cat] += 1
        for m in t.messages:
            for c in m.get("tool_calls") or []:
                assert c["function"]["name"] in TOOL_NAMES
    for needed in (
        "identify",
        "lookup",
        "write",
        "graph",
        "no_information",
        "policy",
        "refuse",
        "decline",
        "handoff",
        "ask_identity",
    ):
        assert cats[needed] > 0, needed
    users = {json.dumps(t.messages[1]) for t in transcripts}
    assert len(users) > 70  # varied openings


def test_writes_are_proposed_then_listed_by_the_graph_and_done_only_after_a_yes(tmp_path: Path) -> None:
    """The transcripts have the agent graph's shape: the model proposes, the graph lists, a yes executes."""
    proposals = executions = 0
    for rec in synth_demo(60, split="train", seed=2):
        msgs, cats = rec["messages"], rec["metadata"]["step_categories"]
        for i, m in enumerate(msgs):
            names = [c["function"]["name"] for c in m.get("tool_calls") or []]
            if not any(n.startswith(("cancel_", "modify_", "return_", "exchange_")) for n in names):
                continue
            if cats[str(i)] == "write":  # the model's proposal: nothing happens yet
                proposals += 1
                assert msgs[i + 1]["content"] == prompts.PENDING_CONFIRMATION
                assert msgs[i + 2]["content"].startswith("To confirm") and cats[str(i + 2)] == "graph"
            else:  # the graph's execution, right after the customer's yes
                executions += 1
                assert cats[str(i)] == "graph" and msgs[i - 1]["role"] == "user"
                assert is_explicit_yes(msgs[i - 1]["content"])
                assert msgs[i - 2]["content"].startswith("To confirm")
    assert proposals > executions > 0


def test_graph_steps_are_never_training_targets() -> None:
    rec = next(
        r
        for r in synth_demo(40, split="train", seed=2)
        if "graph" in r["metadata"]["step_categories"].values()
    )
    steps = sft_examples(rec)
    assert steps and all(s["category"] != "graph" for s in steps)
    assert any(s["category"] == "write" for s in steps)


@pytest.mark.skipif(not (RETAIL / "tasks_train.json").exists(), reason="../shared/data/retail not present")
def test_task_wording_is_the_specs_own_sometimes() -> None:
    recs = [r for r in synth_tasks(RETAIL, split="train", limit=60) if not r["id"].endswith("-x")]
    firsts = [r["messages"][1]["content"] for r in recs]
    assert any("because" in f and "Cancel order #W" in f for f in firsts)
    assert any(not f.lstrip().startswith(("Cancel", "Return", "For")) for f in firsts)


def test_heldout_demo_uses_another_store() -> None:
    train = {json.dumps(r["messages"][1:]) for r in synth_demo(30, split="train", seed=0)}
    held = list(synth_demo(30, split="heldout", seed=0))
    assert not train & {json.dumps(r["messages"][1:]) for r in held}
    train_emails = {
        m["content"]
        for r in synth_demo(30, split="train", seed=0)
        for m in r["messages"]
        if "@" in m["content"]
    }
    assert train_emails and not train_emails & {m["content"] for r in held for m in r["messages"]}


@pytest.mark.skipif(not (RETAIL / "tasks_train.json").exists(), reason="../shared/data/retail not present")
def test_task_recipe_holds_out_every_fifth_spec() -> None:
    held = {i for i, _ in task_specs(RETAIL, split="heldout")}
    train = {i for i, _ in task_specs(RETAIL, split="train")}
    assert held == {i for i in range(500) if i % 5 == 0} and not held & train
    recs = list(synth_tasks(RETAIL, split="heldout", limit=6))
    assert {r["id"].split("-")[2] for r in recs if not r["id"].endswith("-x")} <= {f"{i:04d}" for i in held}
    gold = next(r for r in recs if not r["id"].endswith("-x"))
    calls = [c["function"]["name"] for m in gold["messages"] for c in m.get("tool_calls") or []]
    assert calls[0].startswith("find_user_id") and "get_order_details" in calls
