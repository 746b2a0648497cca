"""Live signals: ratings (own conversation only), automatic flags with reasons, the review queue, corrections
checked against the tools and the state, the scrubbed export, and erasure of a customer's account data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from finetune.dataset import DPO_TRAIN, SFT_TRAIN, build_dataset, read_jsonl
from finetune.transcripts import parse_transcript
from serve.feedback import turn_flags
from serve.turns import TurnEvent
from tests.serve.conftest import Service
from tests.serve.sse import send

EMAIL = "ada.lovelace@example.com"
SPECIALIST = str(Path(sys.executable).with_name("specialist"))


def _new(service: Service, who: str = "alice") -> str:
    r = service.client.post("/api/conversations", headers=service.auth(who))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _queue(service: Service, **params: Any) -> list[dict[str, Any]]:
    r = service.client.get("/api/review", params=params, headers=service.auth("engineer"))
    assert r.status_code == 200, r.text
    return list(r.json()["conversations"])


def test_flags_name_their_reasons() -> None:
    events = [
        TurnEvent("invalid_call", {"name": "cancel_pending_order", "arguments": {}}),
        TurnEvent("tool_end", {"name": "cancel_pending_order", "ok": False, "content": "Error"}),
        TurnEvent("tool_end", {"name": "get_order_details", "ok": False, "content": "Error: not found"}),
        TurnEvent("tool_end", {"name": "return_delivered_order_items", "ok": False, "content": "Error: x"}),
        TurnEvent("message", {"text": "ok", "removed": ["$12.00"]}),
        TurnEvent("handoff", {"ticket_id": "T-1"}),
    ]
    flags = dict(
        turn_flags(events, text="where is my order W1234567", previous="where is my order #W1234567")
    )
    assert set(flags) == {"refused_write", "tool_error", "guard_removal", "handoff", "reask"}
    assert "cancel_pending_order" in flags["refused_write"] and "return_delivered" in flags["refused_write"]
    assert flags["tool_error"] == "get_order_details refused or failed"
    assert (
        turn_flags(
            [TurnEvent("tool_end", {"name": "get_user_details", "ok": True})], text="hi", previous=None
        )
        == []
    )
    assert dict(turn_flags([], text="and my refund?", previous="where is my order")) == {}


def test_rating_flags_the_conversation_and_a_reviewer_corrects_it(service: Service, tmp_path: Path) -> None:
    alice, bob, eng = service.auth("alice"), service.auth("bob"), service.auth("engineer")
    conversation = _new(service)
    empty = service.client.post(
        f"/api/conversations/{conversation}/ratings", json={"value": "down"}, headers=alice
    )
    assert empty.status_code == 422 and "no reply" in empty.json()["error"]["message"]
    send(service.client, conversation, f"Do gift cards expire? I am {EMAIL}", alice)

    # another customer may not rate it; a customer may not see the queue
    other = service.client.post(
        f"/api/conversations/{conversation}/ratings", json={"value": "up"}, headers=bob
    )
    assert other.status_code == 403 and "another customer" in other.json()["error"]["message"]
    assert service.client.get("/api/review", headers=alice).status_code == 403
    bad = service.client.post(
        f"/api/conversations/{conversation}/ratings", json={"value": "meh"}, headers=alice
    )
    assert bad.status_code == 422
    too_far = service.client.post(
        f"/api/conversations/{conversation}/ratings", json={"value": "up", "turn": 5}, headers=alice
    )
    assert too_far.status_code == 422 and "turn 5" in too_far.json()["error"]["message"]

    rated = service.client.post(
        f"/api/conversations/{conversation}/ratings",
        json={"value": "down", "comment": f"it should have looked up my account, {EMAIL}"},
        headers=alice,
    )
    assert rated.status_code == 201, rated.text
    assert rated.json()["turn"] == 1 and rated.json()["value"] == "down"

    queued = _queue(service, reason="low_rating")
    assert queued[0]["id"] == conversation and queued[0]["reasons"] == ["low_rating"]
    assert all(c["id"] != conversation for c in _queue(service, reason="handoff"))
    assert service.client.get("/api/review", params={"reason": "bogus"}, headers=eng).status_code == 422

    view = service.client.get(f"/api/review/{conversation}", headers=eng)
    assert view.status_code == 200, view.text
    body = view.json()
    assert EMAIL not in view.text and "[EMAIL_1]" in view.text  # messages, choices and comment scrubbed
    assert [m["role"] for m in body["messages"]][:2] == ["system", "user"]
    tool_step = next(s for s in body["steps"] if s["action"] == "search_policies")
    assert any(m.get("role") == "tool" for m in body["messages"])  # tool results are shown
    assert "get_user_details" in [c["name"] for c in tool_step["choices"]]
    assert body["ratings"][0]["comment"].endswith("[EMAIL_1]")

    step = tool_step["index"]
    url = f"/api/review/{conversation}/steps/{step}"

    def review(payload: dict[str, Any]) -> Any:
        return service.client.post(url, json=payload, headers=eng)

    unknown = review({"verdict": "corrected", "tool_call": {"name": "launch_rockets", "arguments": {}}})
    assert (
        unknown.status_code == 422 and "no tool named 'launch_rockets'" in unknown.json()["error"]["message"]
    )
    misfit = review(
        {"verdict": "corrected", "tool_call": {"name": "get_user_details", "arguments": {"user_id": 7}}}
    )
    assert (
        misfit.status_code == 422
        and "Bad arguments for get_user_details" in misfit.json()["error"]["message"]
    )
    missing = review({"verdict": "corrected", "tool_call": {"name": "get_order_details", "arguments": {}}})
    assert missing.status_code == 422 and "order_id" in missing.json()["error"]["message"]
    not_allowed = review(
        {
            "verdict": "corrected",
            "tool_call": {"name": "get_order_details", "arguments": {"order_id": "#W0000000"}},
        }
    )
    assert not_allowed.status_code == 422
    assert (
        "not possible" in not_allowed.json()["error"]["message"]
        or "allowed" in not_allowed.json()["error"]["message"]
    )
    assert review({"verdict": "corrected"}).status_code == 422
    assert (
        service.client.post(
            f"/api/review/{conversation}/steps/1", json={"verdict": "good"}, headers=eng
        ).status_code
        == 422
    )  # message 1 is the customer's

    user_id = service.customers[0]
    fixed = review(
        {"verdict": "corrected", "tool_call": {"name": "get_user_details", "arguments": {"user_id": user_id}}}
    )
    assert fixed.status_code == 200, fixed.text
    stored = fixed.json()
    assert stored["reviewer"] == "eng" and stored["verdict"] == "corrected" and stored["created_at"] > 0
    assert stored["message"]["tool_calls"][0]["function"]["name"] == "get_user_details"
    reply_step = next(s for s in body["steps"] if s["action"] == "reply")
    good = service.client.post(
        f"/api/review/{conversation}/steps/{reply_step['index']}", json={"verdict": "good"}, headers=eng
    )
    assert good.status_code == 200 and good.json()["verdict"] == "good"
    reopened = service.client.get(f"/api/review/{conversation}", headers=eng).json()
    assert [s["review"]["verdict"] for s in reopened["steps"] if s["review"]] == ["corrected", "good"]

    # the export: the correction as metadata, the text scrubbed, a valid transcript for the dataset builder
    exported = service.client.get("/api/review/export", params={"reviewed": "true"}, headers=eng)
    assert exported.status_code == 200, exported.text
    assert service.client.get("/api/review/export", headers=alice).status_code == 403
    lines = [json.loads(line) for line in exported.text.splitlines()]
    record = next(r for r in lines if r["id"] == conversation)
    assert EMAIL not in exported.text and "[EMAIL_1]" in record["messages"][1]["content"]
    assert record["corrections"][0]["index"] == step and record["corrections"][0]["reviewer"] == "eng"
    assert record["rating"] == 1.0 and record["outcome"] == "unsatisfied"
    assert record["metadata"]["source"] == "live" and record["metadata"]["good_steps"] == [
        reply_step["index"]
    ]
    assert [f["reason"] for f in record["metadata"]["flags"]] == ["low_rating"]
    parse_transcript(record, fallback_id="x")
    src = tmp_path / "live.jsonl"
    src.write_text(exported.text)
    ds = build_dataset([src], tmp_path / "ds", val_fraction=0.0)
    pairs = read_jsonl(ds.out_dir / DPO_TRAIN)
    pair = next(p for p in pairs if p["conversation_id"] == conversation and p["source"] == "correction")
    assert pair["chosen"][0]["tool_calls"][0]["function"]["name"] == "get_user_details"
    assert pair["rejected"][0]["tool_calls"][0]["function"]["name"] == "search_policies"
    targets = [r for r in read_jsonl(ds.out_dir / SFT_TRAIN) if r["conversation_id"] == conversation]
    assert sorted(r["step"] for r in targets) == sorted([step, reply_step["index"]])  # reviewed steps only
    corrected_target = next(r for r in targets if r["step"] == step)["completion"][0]
    assert corrected_target["tool_calls"][0]["function"]["name"] == "get_user_details"
    assert ds.manifest["live"][0]["corrections"] >= 1


def test_hand_off_and_reask_are_flagged(service: Service) -> None:
    alice = service.auth("alice")
    conversation = _new(service)
    send(service.client, conversation, "How long does shipping take to Canada?", alice)
    send(service.client, conversation, "how long does shipping take to canada??", alice)
    send(service.client, conversation, "Please let me talk to a human", alice)
    queued = next(c for c in _queue(service) if c["id"] == conversation)
    assert set(queued["reasons"]) == {"reask", "handoff"}
    turns = {f["reason"]: f["turn"] for f in queued["flags"]}
    assert turns == {"reask": 2, "handoff": 3}
    assert [c["id"] for c in _queue(service, reason="reask")] == [conversation]
    newest = _queue(service)
    assert [c["flagged_at"] for c in newest] == sorted((c["flagged_at"] for c in newest), reverse=True)


def test_deleting_account_data_removes_the_conversations_from_exports(service: Service) -> None:
    alice, eng = service.auth("alice"), service.auth("engineer")
    conversation = _new(service)
    send(service.client, conversation, "Do you ship to Canada?", alice)
    before = service.client.get("/api/review/export", headers=eng).text
    assert conversation in before
    assert (
        service.client.delete(f"/api/customers/{service.customers[0]}/data", headers=alice).status_code == 403
    )
    erased = service.client.delete(f"/api/customers/{service.customers[0]}/data", headers=eng)
    assert erased.status_code == 200 and erased.json()["conversations"] >= 1
    after = service.client.get("/api/review/export", headers=eng).text
    assert conversation not in after and service.customers[0] not in after
    assert service.client.get(f"/api/conversations/{conversation}", headers=alice).status_code == 404
    assert service.client.get(f"/api/review/{conversation}", headers=eng).status_code == 404
    assert all(c["id"] != conversation for c in _queue(service))


def test_cli_export_needs_an_engineer_key(service: Service, tmp_path: Path) -> None:
    bob = service.auth("bob")
    conversation = _new(service, "bob")
    send(service.client, conversation, f"Please let me talk to a human, I am {EMAIL}", bob)
    s = service.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECIALIST_")}
    env.update(
        SPECIALIST_SERVE__STATE_PATH=str(s.serve.state_path),
        SPECIALIST_AGENT__CHECKPOINT_PATH=str(s.agent.checkpoint_path),
        SPECIALIST_AGENT__STORE_PATH=str(s.agent.store_path),
        HF_HUB_OFFLINE="1",
    )
    out = tmp_path / "flagged.jsonl"

    def run(key: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [SPECIALIST, "transcripts", "export", str(out), "--key", key, *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    refused = run(service.keys["bob"])
    assert refused.returncode == 1 and "exports are for engineers" in refused.stderr and not out.exists()
    bad_date = run(service.keys["engineer"], "--since", "yesterday")
    assert bad_date.returncode == 1 and "is not a date" in bad_date.stderr
    done = run(service.keys["engineer"], "--flagged", "--since", "2026-01-01")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert report["conversations"] == len(records) and report["flagged"] == len(records)
    mine = next(r for r in records if r["id"] == conversation)
    assert mine["outcome"] == "handed_off" and EMAIL not in out.read_text()
    assert [f["reason"] for f in mine["metadata"]["flags"]] == ["handoff"]
    assert any(m.get("tool_calls") for m in mine["messages"]) and mine["tools"]
