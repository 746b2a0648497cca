"""The `people` recipe: conversations in the agent graph's exact shape, customers who write like people,
and the dev replays kept out."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agent import choices, prompts
from agent.chat_model import ToolCall
from agent.confirmation import is_explicit_yes
from agent.grounding import Source, check_reply
from agent.tool_specs import WRITE_TOOLS
from finetune.dataset import GRAPH_STEP, build_dataset, read_jsonl, sft_examples
from finetune.people import (
    NO,
    OFF_TOPIC,
    POLICY_QUESTIONS,
    SWITCH_TO_CANCEL,
    SWITCH_TO_RETURN,
    UNANSWERABLE,
    YES,
    DevReplays,
    PeopleReport,
    graph_refusal,
    jaccard,
    synth_people,
)
from finetune.synth import Action, load_retail, task_specs, write_jsonl
from finetune.transcripts import read_transcripts

from .conftest import RETAIL

HAS_RETAIL = (RETAIL / "tasks_train.json").exists()
needs_retail = pytest.mark.skipif(not HAS_RETAIL, reason="../shared/data/retail not present")
ORDER_ID = re.compile(r"#?W\d{7}\b")
ID_LIKE = re.compile(r"^#W\d{7}$|^\d{10}$|^(?:credit_card|paypal|gift_card)_\d+$|^[a-z]+_[a-z]+_\d{4}$|@")


@pytest.fixture(scope="module")
def made() -> tuple[list[dict[str, Any]], PeopleReport]:
    """A few hundred conversations (task specs and extras when the retail folder is there, demo store)."""
    report = PeopleReport()
    records = list(synth_people(320, data_dir=RETAIL if HAS_RETAIL else None, seed=5, report=report))
    return records, report


def _body(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in record["messages"] if m["role"] != "system"]


def _steps(record: dict[str, Any]) -> list[tuple[int, dict[str, Any], str]]:
    """(index without the system message, message, category) of every assistant step."""
    cats = record["metadata"]["step_categories"]
    return [(i - 1, m, cats[str(i)]) for i, m in enumerate(record["messages"]) if m["role"] == "assistant"]


def _call(message: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    calls = message.get("tool_calls") or []
    if not calls:
        return None
    return calls[0]["function"]["name"], json.loads(calls[0]["function"]["arguments"])


def _values(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def test_transcripts_are_valid_and_every_step_is_categorised(made: Any, tmp_path: Path) -> None:
    records, report = made
    path = tmp_path / "people.jsonl"
    write_jsonl(records, path)
    transcripts, read = read_transcripts(path)
    assert len(transcripts) == len(records) == 320 and not read.skipped
    assert sum(report.written.values()) == 320
    for rec in records:
        assert rec["metadata"]["recipe"] == "people"
        assert {int(k) for k in rec["metadata"]["step_categories"]} == {
            i for i, m in enumerate(rec["messages"]) if m["role"] == "assistant"
        }
    scenarios = Counter(r["metadata"]["scenario"] for r in records)
    expected = {"demo_writes", "status", "policy", "handoff", "out_of_policy", "user_address", "off_topic"}
    assert expected <= set(scenarios)
    if HAS_RETAIL:
        assert scenarios["task_writes"] > 100


def test_every_id_in_a_target_appears_earlier(made: Any) -> None:
    """What the graph enforces at run time: a target's ids come from the customer or a tool result."""
    checked = 0
    for rec in made[0]:
        body = _body(rec)
        for index, message, category in _steps(rec):
            call = _call(message)
            if category == GRAPH_STEP or call is None:
                continue
            seen = " ".join(str(m.get("content") or "") for m in body[:index])
            for value in (v for arg in call[1].values() for v in _values(arg)):
                if ID_LIKE.search(value):
                    assert value in seen or value.lstrip("#") in seen, (rec["id"], call, value)
                    checked += 1
    assert checked > 1000


def test_every_target_is_a_choice_the_graph_offers(made: Any) -> None:
    """Each target tool call is admitted by `agent.choices.derive` on the history before it (the safety
    rules: the guided ordering of the run-time agent is narrower than what the data teaches)."""
    for rec in made[0]:
        body = _body(rec)
        for index, message, category in _steps(rec):
            call = _call(message)
            if category == GRAPH_STEP or call is None:
                continue
            possible = choices.derive(body[:index], guided=False)
            assert possible.admits(ToolCall(call[0], call[1])), (rec["id"], index, call)
        assert graph_refusal(rec) is None


def test_path_identify_profile_orders_products_then_proposal(made: Any) -> None:
    for rec in made[0]:
        body = _body(rec)
        calls = [(i, _call(m), c) for i, m, c in _steps(rec) if _call(m) is not None]
        names = [c[1][0] for c in calls if c[1]]
        if "get_order_details" in names:
            assert "get_user_details" in names[: names.index("get_order_details")], rec["id"]
        read: set[str] = set()
        products: set[str] = set()
        for index, call, category in calls:
            assert call is not None
            name, args = call
            if category == GRAPH_STEP:
                read.clear()  # a write was executed: reading again is allowed
                continue
            if name.startswith("get_"):
                key = name + json.dumps(args, sort_keys=True)
                assert key not in read, (rec["id"], "read twice", key)
                read.add(key)
            if name == "get_product_details":
                products.add(args["product_id"])
            if name in {"exchange_delivered_order_items", "modify_pending_order_items"}:
                order = next(
                    json.loads(m["content"])
                    for m in reversed(body[:index])
                    if m["role"] == "tool" and m["content"].startswith('{"order_id": "' + args["order_id"])
                )
                by_id = {i["item_id"]: i["product_id"] for i in order["items"]}
                assert {by_id[i] for i in args["item_ids"]} <= products, rec["id"]


def test_stated_order_ids_in_first_messages_are_few(made: Any) -> None:
    """People rarely know their order ids: the profile lookup finds the orders."""
    firsts = [_body(r)[0]["content"] for r in made[0]]
    share = sum(bool(ORDER_ID.search(f)) for f in firsts) / len(firsts)
    assert 0.03 < share <= 0.2, share
    writes = [_body(r)[0]["content"] for r in made[0] if r["metadata"]["scenario"].endswith("writes")]
    assert sum(bool(ORDER_ID.search(f)) for f in writes) / len(writes) <= 0.25


def test_customers_write_like_people(made: Any) -> None:
    firsts = [_body(r)[0]["content"] for r in made[0]]
    writes = [_body(r)[0]["content"] for r in made[0] if r["metadata"]["scenario"].endswith("writes")]
    assert len(set(writes)) == len(writes) and len(set(firsts)) > 0.95 * len(firsts)
    joined = "\n".join(firsts)
    for marker in ("Actually", "one with", "PayPal", "Also", "the same one but"):
        assert marker in joined, marker
    # a payment method id only where words cannot tell it from the customer's other methods
    with_ids = [f for f in firsts if re.search(r"\b(?:credit_card|paypal|gift_card)_\d+", f)]
    assert len(with_ids) <= 0.02 * len(firsts)
    assert any(f == f.lower() and any(ch.isalpha() for ch in f) for f in firsts)  # some all lower case


def test_graph_steps_are_exactly_the_graphs_texts(made: Any) -> None:
    from agent.graph import _OFF_TOPIC, _ON_TOPIC  # the graph's own off-topic rule

    seen: Counter[str] = Counter()
    for rec in made[0]:
        body = _body(rec)
        for index, message, category in _steps(rec):
            call = _call(message)
            before = body[index - 1] if index else None
            if category == GRAPH_STEP and call is None:
                text = message["content"]
                assert before is not None
                if before["role"] == "tool" and before["content"] == prompts.PENDING_CONFIRMATION:
                    proposal = _call(body[index - 2])
                    assert proposal is not None
                    assert text == prompts.write_details(*proposal)
                    seen["listing"] += 1
                elif before["role"] == "user":
                    assert text == prompts.OFF_TOPIC
                    assert _OFF_TOPIC.search(before["content"]) and not _ON_TOPIC.search(before["content"])
                    seen["off_topic"] += 1
                elif before["content"].startswith("ticket "):
                    assert text == prompts.HANDED_OFF.format(ticket_id=before["content"].split()[1])
                    seen["handoff"] += 1
                else:  # the answer to a policy search: a passage's words with its label, or the honest line
                    passages = json.loads(before["content"])
                    labels = {p["label"] for p in passages}
                    cited = re.search(r"\[([\w-]+)\]$", text)
                    assert text == prompts.NO_INFORMATION or (cited is not None and cited[1] in labels)
                    seen["policy"] += 1
            elif category == GRAPH_STEP:  # the graph executes a confirmed write
                assert call is not None and call[0] in WRITE_TOOLS
                assert body[index - 1]["role"] == "user" and is_explicit_yes(body[index - 1]["content"])
                listing = body[index - 2]["content"]
                assert listing == prompts.write_details(*call)
                seen["execution"] += 1
            elif call is not None and call[0] in WRITE_TOOLS:
                assert body[index + 1]["content"] == prompts.PENDING_CONFIRMATION
    assert min(seen.values()) > 0 and set(seen) == {"listing", "off_topic", "handoff", "policy", "execution"}


def test_text_targets_are_the_lines_the_graph_expects(made: Any) -> None:
    """IDENTIFY_FIRST before identification, write_done after a write, grounded fixed replies elsewhere."""
    kinds: Counter[str] = Counter()
    for rec in made[0]:
        body = _body(rec)
        for index, message, category in _steps(rec):
            if category == GRAPH_STEP or _call(message) is not None:
                continue
            history, text = body[:index], message["content"]
            facts = choices.read_facts(history)
            if facts.user_id is None:
                assert text == prompts.IDENTIFY_FIRST
            elif facts.last_write_done:
                write = _call(history[-2])
                assert write is not None
                assert text == prompts.write_done(write[0], json.loads(history[-1]["content"]))
            else:
                sources = [
                    Source(text=m["content"], from_customer=m["role"] == "user")
                    for m in history
                    if m["role"] in {"user", "tool"}
                ]
                assert check_reply(text, sources, fixed_lines=(prompts.NOT_CONFIRMED,)).text == text, text
            kinds[category] += 1
    assert {"ask_identity", "reply", "answer", "out_of_policy", "acknowledge"} <= set(kinds)


def test_confirmations_read_as_the_graph_reads_them() -> None:
    assert all(is_explicit_yes(y) for y in YES)
    assert not any(is_explicit_yes(n) for n in [*NO, *SWITCH_TO_RETURN, *SWITCH_TO_CANCEL])


def test_own_questions_are_not_copies_of_the_bench_questions() -> None:
    bench = Path(__file__).resolve().parents[2] / "bench" / "data" / "policy_questions.jsonl"
    theirs = [row["question"] for row in read_jsonl(bench)]
    ours = [q for _, _, q in POLICY_QUESTIONS] + UNANSWERABLE + OFF_TOPIC
    assert max(jaccard(a, b) for a in ours for b in theirs) <= 0.8


def _dev_replay(user_id: str, actions: list[Action], first: str) -> dict[str, Any]:
    """A dev replay in the shared file's shape: first message, identification, the gold writes."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "..."},
        {"role": "user", "content": first},
    ]
    calls = [("find_user_id_by_email", {"email": "x@example.com"}, user_id)]
    calls += [(a.name, a.args, "{}") for a in actions]
    for n, (name, args, result) in enumerate(calls):
        call = {"id": f"c{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{n}", "name": name, "content": result})
    return {"id": "dev-x", "task_id": 0, "tools": [], "messages": messages}


def test_dev_replay_parsing_finds_the_same_task_and_near_copies() -> None:
    actions = [Action("cancel_pending_order", {"order_id": "#W0000001", "reason": "ordered by mistake"})]
    dev = DevReplays()
    first = "Hi, I'm Ann Lee, zip 12345. Please cancel the order with my desk lamp, I ordered it by mistake."
    dev.add(_dev_replay("ann_lee_1234", actions, first), {})
    assert dev.same_task("ann_lee_1234", actions)
    assert not dev.same_task("someone_else_1234", actions) and dev.shares_write(actions)
    assert dev.near(first) and dev.near(first.replace("Hi,", "Hello,"))
    assert not dev.near("Where is my order with the desk lamp? I'm Ann Lee, zip 12345.")


@needs_retail
def test_specs_with_a_dev_replays_writes_and_near_copies_are_kept_out(tmp_path: Path) -> None:
    folder = tmp_path / "retail"
    folder.mkdir()
    for name in ("users.json.gz", "orders.json.gz", "products.json.gz", "tasks_train.json"):
        (folder / name).symlink_to((RETAIL / name).resolve())
    index, spec = task_specs(RETAIL, split="train")[0]
    actions = [Action(a["name"], a["arguments"]) for a in spec["actions"]]
    plain = PeopleReport()
    before = list(synth_people(40, data_dir=folder, seed=9, report=plain))
    ours = next(r for r in before if r["metadata"].get("task_index") == index)
    first = _body(ours)[0]["content"]
    (folder / "dev_replays.jsonl").write_text(json.dumps(_dev_replay(spec["user_id"], actions, first)) + "\n")
    report = PeopleReport()
    after = list(synth_people(40, data_dir=folder, seed=9, report=report))
    assert report.dropped_same_writes == plain.dropped_same_writes + 1
    assert all(r["metadata"].get("task_index") != index for r in after)
    firsts = [_body(r)[0]["content"] for r in after]
    assert all(jaccard(first, f) <= 0.8 for f in firsts)


@needs_retail
def test_no_first_message_is_near_a_real_dev_replay(made: Any) -> None:
    store = load_retail(RETAIL)
    dev = DevReplays.load(RETAIL / "dev_replays.jsonl", store["orders"])
    assert len(dev.first_messages) == 74 and dev.tasks
    assert not any(dev.near(_body(r)[0]["content"]) for r in made[0])
    records, report = made
    assert report.dropped_same_writes >= 1  # the shared data has one such spec (index 418)
    for rec in records:
        writes = [c for _, m, c in _steps(rec) if c == "write"]
        if rec["metadata"].get("task_index") is not None:
            assert rec["metadata"]["task_index"] % 5 != 0 and writes


@needs_retail
def test_heldout_split_uses_only_heldout_specs() -> None:
    recs = list(synth_people(60, data_dir=RETAIL, split="heldout", seed=1))
    tasks = [r["metadata"]["task_index"] for r in recs if "task_index" in r["metadata"]]
    assert tasks and all(i % 5 == 0 for i in tasks)


def test_dataset_builder_takes_them(made: Any, tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    write_jsonl(made[0][:60], path)
    build = build_dataset([path], tmp_path / "ds", pii_mode="surrogate")
    rows = read_jsonl(tmp_path / "ds" / "sft_train.jsonl") + read_jsonl(tmp_path / "ds" / "sft_val.jsonl")
    assert rows and build.manifest["conversations"]["train"] > 40
    assert GRAPH_STEP not in {r["category"] for r in rows}
    assert sum(len(sft_examples(r)) for r in made[0][:60]) >= len(rows) > 200


def test_cli_writes_the_people_recipe(tmp_path: Path) -> None:
    from serve.cli import app

    out = tmp_path / "p.jsonl"
    data = RETAIL if HAS_RETAIL else tmp_path / "none"
    result = CliRunner().invoke(
        app,
        ["finetune", "synth", "--recipe", "people", "--n", "25", "--out", str(out), "--data-dir", str(data)],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["written"] == 25 == len(read_jsonl(out)) and summary["report"]["written"] == 25


def test_shipped_config_builds_its_dataset_with_the_people_recipe(tmp_path: Path) -> None:
    """`specialist finetune sft` with the shipped config synthesizes and builds this recipe on first use."""
    from finetune.config import TrainConfig
    from finetune.train import ensure_dataset

    shipped = TrainConfig.load(Path("finetune/configs/cpu-smollm2.yaml"))
    assert (shipped.recipe, shipped.synth_conversations, shipped.max_length) == ("people", 1400, 2048)
    data = str(RETAIL) if HAS_RETAIL else str(tmp_path / "none")
    config = TrainConfig.load(
        Path("finetune/configs/cpu-smollm2.yaml"),
        [f"dataset={tmp_path / 'ds'}", "synth_conversations=30", f"data_dir={data}"],
    )
    folder = ensure_dataset(config)
    recipes = {r["metadata"]["recipe"] for r in read_jsonl(folder / "conversations_train.jsonl")}
    assert recipes == {"people"} and read_jsonl(folder / "sft_train.jsonl")
