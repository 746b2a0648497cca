"""Constrained decisions on the real base model: what `agent.choices` does not allow cannot come out."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from agent.chat_model import ChatMessage, ToolCall
from agent.choices import call_key, derive
from agent.decoding import json_schema, tool_specs
from agent.prompts import system_prompt
from agent.store.database import RetailDatabase
from agent.tool_specs import TOOL_SPECS


def _call(name: str, arguments: dict[str, Any], n: int, result: str) -> list[dict[str, Any]]:
    call_id = f"c{n}"
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    return [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": result, "tool_call_id": call_id, "name": name},
    ]


def _situations(db: RetailDatabase) -> list[list[dict[str, Any]]]:
    """Histories of a customer who wants to return or exchange an item, at each step of the lookups."""
    data = db.export()
    order = next(o for o in data["orders"].values() if o["status"] == "delivered" and len(o["items"]) > 1)
    user = data["users"][order["user_id"]]
    item = order["items"][0]
    product = data["products"][item["product_id"]]
    ask = f"Hi, I'm {user['email']}. I want to exchange the {item['name']} I received for another option."
    history: list[dict[str, Any]] = [{"role": "user", "content": ask}]
    out = [list(history)]
    history += _call("find_user_id_by_email", {"email": user["email"]}, 1, order["user_id"])
    out.append(list(history))
    history += _call("get_user_details", {"user_id": order["user_id"]}, 2, json.dumps(user))
    out.append(list(history))
    history += _call("get_order_details", {"order_id": order["order_id"]}, 3, json.dumps(order))
    out.append(list(history))
    history += _call("get_product_details", {"product_id": item["product_id"]}, 4, json.dumps(product))
    out.append(list(history))
    return out


@pytest.fixture(scope="module")
def base_model() -> Any:
    from agent.backends import local_model_from_record
    from finetune.registry import base_record

    model = local_model_from_record(base_record(), max_new_tokens=160)
    yield model
    model.close()


def test_an_invented_tool_or_id_is_impossible_with_choices(db: RetailDatabase, base_model: Any) -> None:
    free_invalid = 0
    for history in _situations(db):
        possible = derive(history)
        prompt = [ChatMessage("system", system_prompt()), *[ChatMessage.from_openai(m) for m in history]]
        free = base_model.complete(prompt, TOOL_SPECS)
        free_invalid += bool(free.tool_calls) and not possible.admits(free.tool_calls[0])
        chosen = base_model.complete(prompt, TOOL_SPECS, possible)
        assert not chosen.tool_calls or possible.admits(chosen.tool_calls[0]), chosen
        only = len(possible.actions) == 1 and not possible.reply  # who they are: one step, nothing to rank
        assert base_model.last_trace.scored > 0 or only  # the candidates were ranked by the model
    # the same prompts, decoded freely, made calls outside the state (invented ids, a write before lookups)
    assert free_invalid >= 1


def test_the_transformers_backend_decides_within_choices_too(db: RetailDatabase) -> None:
    import torch

    from agent.backends.local import TransformersChatModel
    from finetune.registry import base_record

    torch.set_num_threads(1)
    model = TransformersChatModel.from_record(base_record(), max_new_tokens=8)
    history = _situations(db)[3]
    possible = derive(history)
    prompt = [ChatMessage("system", system_prompt()), *[ChatMessage.from_openai(m) for m in history]]
    chosen = model.complete(prompt, TOOL_SPECS, possible)
    assert not chosen.tool_calls or possible.admits(chosen.tool_calls[0])
    assert model.last_trace.scored > 0


def test_schema_for_guided_decoding_names_only_possible_values(db: RetailDatabase) -> None:
    history = _situations(db)[4]  # the order and the item's product looked up: an exchange is possible
    possible = derive(history)
    specs = tool_specs(possible, TOOL_SPECS)
    assert {s["function"]["name"] for s in specs} == set(possible.names())
    exchanges = next(s for s in specs if s["function"]["name"] == "exchange_delivered_order_items")
    order_ids = exchanges["function"]["parameters"]["properties"]["order_id"]["enum"]
    assert order_ids == [json.loads(history[-3]["content"])["order_id"]]
    schema = json_schema(possible)
    assert len(schema["anyOf"]) == len(possible.actions)
    invented = {"order_id": "#W1", "item_ids": ["1"], "new_item_ids": ["2"], "payment_method_id": "x"}
    assert not possible.admits(ToolCall("exchange_delivered_order_items", invented))


def test_many_long_choices_are_scored_in_batches_that_fit(base_model: Any) -> None:
    import math

    from agent.backends.llama_cpp import _LlamaScorer, engine_thread

    # 60 candidates of ~15 tokens: ~900 batch rows, more than the engine's batch holds at once (an
    # exchange over a long product listing came to this, and the decode hit a NULL sequence slot)
    prefix = "<|im_start|>user\nWhich one do you want?<|im_end|>\n<|im_start|>assistant\nI want "
    words = ("keyboard", "thermostat", "water bottle", "office chair", "backpack", "desk lamp")
    cands = [f"the {words[i % 6]} with option number {i} and a long description of it" for i in range(60)]

    def score() -> tuple[list[float], list[float]]:
        scorer = _LlamaScorer(base_model, base_model._llm)
        together = scorer.logprobs(prefix, cands)
        alone = [scorer.logprobs(prefix, [c])[0] for c in (cands[0], cands[31], cands[59])]
        return together, alone

    together, alone = engine_thread().submit(score).result()
    assert len(together) == 60 and all(math.isfinite(x) and x < 0 for x in together)
    for got, want in zip((together[0], together[31], together[59]), alone, strict=True):
        assert abs(got - want) < 0.05 * abs(want)  # batched scores are the one-by-one scores


def test_choices_after_a_long_prompt_are_scored_in_the_kv_cells_it_leaves(base_model: Any) -> None:
    import math

    from agent.backends.llama_cpp import _LlamaScorer, engine_thread

    # A prompt near the context's end leaves fewer free KV cells than the batch has rows: groups must fit
    # those ("failed to find a memory slot for batch of size 504" in a long bench conversation).
    n_ctx = int(base_model._llm.n_ctx())
    filler = "The order holds a keyboard, a lamp and a water bottle. " * (n_ctx // 14)
    prefix = f"<|im_start|>user\n{filler}"
    while len(base_model._llm.tokenize(prefix.encode(), add_bos=False, special=True)) > n_ctx - 300:
        prefix = prefix[:-60]
    prefix += "Which one?<|im_end|>\n<|im_start|>assistant\nThe "
    cands = [f"item number {i} with a long description of its options and colour" for i in range(40)]

    def score() -> list[float]:
        return _LlamaScorer(base_model, base_model._llm).logprobs(prefix, cands)

    scores = engine_thread().submit(score).result()
    assert len(scores) == 40 and all(math.isfinite(x) and x < 0 for x in scores)


def test_a_declined_write_is_not_chosen_again_the_next_likeliest_call_is(
    db: RetailDatabase, base_model: Any
) -> None:
    history = _situations(db)[4]  # the order and the item's product looked up: an exchange is possible
    possible = derive(history)
    prompt = [ChatMessage("system", system_prompt()), *[ChatMessage.from_openai(m) for m in history]]
    forced = replace(possible, reply=False)  # a call, whichever the model likes best
    first = base_model.complete(prompt, TOOL_SPECS, forced).tool_calls[0]
    declined = frozenset([call_key(first.name, first.arguments)])
    again = base_model.complete(prompt, TOOL_SPECS, replace(forced, excluded=declined))
    assert again.tool_calls, again
    second = again.tool_calls[0]
    assert (second.name, second.arguments) != (first.name, first.arguments)
    assert replace(forced, excluded=declined).admits(second) and not replace(
        forced, excluded=declined
    ).admits(first)
    # each call declined in turn: the model goes down its own ranking and never repeats one
    seen = {*declined, call_key(second.name, second.arguments)}
    for _ in range(3):
        reply = base_model.complete(prompt, TOOL_SPECS, replace(forced, excluded=frozenset(seen)))
        if not reply.tool_calls:
            break
        key = call_key(reply.tool_calls[0].name, reply.tool_calls[0].arguments)
        assert key not in seen
        seen.add(key)
