"""The live-data loop on its own: conversations through the service, flags, corrections, export, retraining.

Recipe:
  1. The retail store (`--data`, `store import` format) and the demo policies; the service (the real FastAPI
     app, in process) serving the committed default model.
  2. A batch of scripted conversations (`--batch` dev replays after the first `--heldout`): each replay's
     customer lines, in order, sent by a customer key bound to the replay's customer.
     A SIMULATED CUSTOMER whose request was not done in the end (the changes made are not exactly the
     replay's gold writes) rates each reply of the conversation down, through the ratings API.
  3. The service flags what went wrong (`serve.feedback`: low ratings among its reasons). A SIMULATED
     REVIEWER (this script, not a person) goes through every assistant step of each flagged turn with the
     replay's gold tool calls: the first of the next three gold calls not made yet (identification left
     out: the key already identifies the customer) that the review API accepts at that step is the right
     step (the API refuses a call that was not possible there; none accepted: counted as `refused`); a
     step that made one of them is marked good.
  4. Export (`serve.transcript_export`, as `specialist transcripts export --reviewed`), then SFT of the
     default adapter on the export (its reviewed steps only, `--weight`) mixed with `--synth` synthesized
     conversations of the default's own recipe (rehearsal: what it knew is not trained away), for a fixed
     budget (`--steps`, `--minutes`). With `--method dpo`, DPO of the default adapter instead, on the
     export's corrections as pairs (chosen = the reviewer's step, rejected = what the model did), the
     default itself as the reference (no rehearsal data: the reference holds the policy near what it knew).
  5. Gate (`finetune.gate.decide`, the report written into the run folder) and score: the candidate and the
     default, teacher-forced within `agent.choices` on the gold calls of the held-out replays (the first
     `--heldout`, never in the batch), the gate on the steps where a model has a choice; with `--tasks`,
     also both end to end on those held-out replays (the scripted customer of bench/agent.py): the share
     of tasks whose store ends as the gold writes leave it.
The last line is one JSON object: conversations, flagged, corrections, export_s, train_s,
default_next_action_acc, candidate_next_action_acc, gate_passed (and more).

    .venv/bin/python bench/loop.py --data ../shared/data/retail               # 40 conversations, 20 held out
    .venv/bin/python bench/loop.py --data ../shared/data/retail --limit 2 --steps 2   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's `agent`, not bench/agent.py

from agent.tool_specs import IDENTIFY_TOOLS


def _key(name: str, arguments: Any) -> str:
    return json.dumps([name, arguments], sort_keys=True)


def gold_calls(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The replay's gold tool calls in order, without identification (a customer key identifies)."""
    from finetune.evaluate import replay_conversation

    return [call for _, call in replay_conversation(record) if call["name"] not in IDENTIFY_TOOLS]


def made_calls(messages: list[dict[str, Any]]) -> list[str]:
    """The tool calls of a transcript's messages, as comparable keys."""
    out = []
    for m in messages:
        for call in m.get("tool_calls") or []:
            fn = call["function"]
            args = json.loads(fn["arguments"]) if isinstance(fn["arguments"], str) else fn["arguments"]
            out.append(_key(fn["name"], args))
    return out


def done_writes(messages: list[dict[str, Any]]) -> list[str]:
    """The writes a transcript carried out (a result that is not an error), as comparable keys."""
    from agent.tool_specs import WRITE_TOOLS

    results = {m.get("tool_call_id"): str(m.get("content") or "") for m in messages if m["role"] == "tool"}
    out = []
    for m in messages:
        for call in m.get("tool_calls") or []:
            fn = call["function"]
            done = call.get("id") in results and not results[call.get("id")].startswith("Error")
            if fn["name"] in WRITE_TOOLS and done:
                args = json.loads(fn["arguments"]) if isinstance(fn["arguments"], str) else fn["arguments"]
                out.append(_key(fn["name"], args))
    return out


def request_done(messages: list[dict[str, Any]], gold: list[dict[str, Any]]) -> bool:
    """What the SIMULATED CUSTOMER knows at the end: whether exactly the changes they asked for were made
    (the replay's gold writes; none for a question)."""
    from agent.tool_specs import WRITE_TOOLS

    wanted = sorted(_key(g["name"], g["arguments"]) for g in gold if g["name"] in WRITE_TOOLS)
    return sorted(done_writes(messages)) == wanted


def review_conversation(
    client: Any, auth: dict[str, str], services: Any, cid: str, gold: list[dict[str, Any]]
) -> dict[str, int]:
    """The simulated reviewer on one flagged conversation: good or corrected, per step of a flagged turn."""
    from serve.review import step_action, transcript_messages, turn_of

    counts = {"good": 0, "corrections": 0, "refused": 0}
    messages = transcript_messages(services.agent().history(cid, include_tools=True))
    flagged_turns = {f.turn for f in services.feedback.flags(cid)}
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or turn_of(messages, i) not in flagged_turns:
            continue
        made = made_calls(messages[:i])
        pending = [g for g in gold if _key(g["name"], g["arguments"]) not in made]
        did = made_calls([message])
        if not pending:
            if step_action(message) == "reply":
                body: dict[str, Any] = {"verdict": "good"}
            else:
                continue  # the gold has no step left; a reply's words are not the reviewer's to invent
        elif did and did[0] in {_key(g["name"], g["arguments"]) for g in pending[:3]}:
            body = {"verdict": "good"}
        else:
            # the next gold call this step allows (a replay's gold path may skip a lookup ours makes first)
            for call in pending[:3]:
                body = {"verdict": "corrected", "tool_call": call}
                r = client.post(f"/api/review/{cid}/steps/{i}", json=body, headers=auth)
                if r.status_code == 200:
                    counts["corrections"] += 1
                    break
            else:
                counts["refused"] += 1
            continue
        r = client.post(f"/api/review/{cid}/steps/{i}", json=body, headers=auth)
        counts["good" if r.status_code == 200 else "refused"] += 1
    return counts


def heldout_tasks(
    data: dict[str, Any],
    replays_path: Path,
    n: int,
    settings: Any,
    work: Path,
    default: Any,
    candidate: Any,
) -> dict[str, Any]:
    """Both models on the held-out replays end to end (bench/agent.py's scripted customer, each task on a
    fresh copy of the store): the share of tasks whose store ends exactly as the gold writes leave it."""
    from agent.store.database import RetailDatabase
    from bench.agent import Bench, CountingModel, load_replays, run_tasks
    from retrieval import open_knowledge_base

    folder = work / "tasks"
    folder.mkdir(exist_ok=True)
    template = RetailDatabase(folder / "template.sqlite")
    template.replace_all(data)
    out: dict[str, Any] = {}
    with open_knowledge_base(settings.retrieval) as kb:
        bench = Bench(
            template=template,
            data=data,
            replays=load_replays(replays_path, n),
            steps=[],
            questions=[],
            kb=kb,
            work=folder,
            probe=False,
        )
        for label, model in (("default", default), ("candidate", candidate)):
            episodes = run_tasks(label, CountingModel(model), bench)
            won = [e.replay_id for e in episodes if e.success]
            out[f"{label}_task_success"] = round(len(won) / len(episodes), 4) if episodes else None
            out[f"{label}_tasks_won"] = won
    template.close()
    return out


def main() -> None:
    """Run the loop; print the summary JSON last."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data/retail"))
    parser.add_argument(
        "--batch", type=int, default=40, help="live conversations (dev replays after the held-out)"
    )
    parser.add_argument(
        "--heldout", type=int, default=20, help="the first N dev replays, scored, never talked"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="cap both --batch and --heldout (a quick run)"
    )
    parser.add_argument(
        "--method",
        choices=("sft", "dpo"),
        default="sft",
        help="sft: the reviewed steps as targets (with --synth rehearsal); dpo: the corrections as "
        "preference pairs (chosen = the reviewer's step, rejected = the model's), the default the reference",
    )
    parser.add_argument("--steps", type=int, default=30, help="training steps (the fixed budget)")
    parser.add_argument("--minutes", type=float, default=20.0, help="training time budget in minutes")
    parser.add_argument(
        "--lr", type=float, default=1e-4, help="learning rate (the default model goes on from its adapter)"
    )
    parser.add_argument("--beta", type=float, default=0.1, help="DPO's beta (--method dpo)")
    parser.add_argument("--weight", type=float, default=3.0, help="the export's weight in the mix")
    parser.add_argument(
        "--synth", type=int, default=150, help="synthesized conversations (people recipe) mixed in; 0: none"
    )
    parser.add_argument("--synth-weight", type=float, default=1.0, help="their weight in the mix")
    parser.add_argument(
        "--no-ratings", action="store_true", help="the simulated customers do not rate (flags only)"
    )
    parser.add_argument(
        "--min-gain", type=float, default=0.10, help="the gate's next-action gain over the default"
    )
    parser.add_argument(
        "--tasks",
        action="store_true",
        help="also run the held-out replays end to end with both models (bench/agent.py's scripted customer)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temp folder)")
    args = parser.parse_args()
    batch_n = min(args.batch, args.limit) if args.limit else args.batch
    heldout_n = min(args.heldout, args.limit) if args.limit else args.heldout

    from fastapi.testclient import TestClient

    from agent.store.database import RetailDatabase, load_json_dir
    from bench.agent import DecisionOnly, load_model, parse_replay, replay_owner
    from finetune.config import TrainConfig
    from finetune.evaluate import evaluate_constrained, replay_steps
    from finetune.gate import GateResult, GateThresholds, as_eval_report, decide, write_report
    from finetune.registry import DEFAULT_MODEL_DIR, read_run, write_run
    from finetune.train import train_dpo, train_sft, write_model_card
    from ingest import Ingestor, demo_policy_dir
    from retrieval import open_knowledge_base
    from serve.app import create_app
    from serve.auth import Role
    from serve.settings import Settings
    from serve.transcript_export import export_transcripts

    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    replays_path = args.data / "dev_replays.jsonl"
    records = [json.loads(line) for line in replays_path.read_text().splitlines() if line.strip()]
    batch = records[heldout_n : heldout_n + batch_n]
    data = load_json_dir(args.data)
    settings = Settings.model_validate(
        {
            "retrieval": {"data_dir": str(work / "kb")},
            "agent": {
                "store_path": str(work / "store.sqlite"),
                "checkpoint_path": str(work / "checkpoints.sqlite"),
                "refund_approval_threshold": 1e12,
            },
            "finetune": {"runs_dir": str(work / "runs"), "registry_path": str(work / "registry.json")},
            "serve": {
                "state_path": str(work / "service.sqlite"),
                "discovery_path": str(work / "service.json"),
                "rate_limit_per_minute": 100_000,
                "rate_limit_burst": 100_000,
            },
        }
    )
    store = RetailDatabase(settings.agent.store_path)
    store.replace_all(data)
    store.close()
    with open_knowledge_base(settings.retrieval) as kb:
        ingestor = Ingestor(kb, settings.ingest)
        ingestor.ingest_path(demo_policy_dir())
        ingestor.close()
    default = load_model("default")
    print(f"{len(batch)} live conversations, {heldout_n} held-out replays; work {work}", flush=True)
    # the default's held-out score first, on a fresh engine (its score does not depend on the loop)
    steps = replay_steps(replays_path, limit=heldout_n)
    default_report = evaluate_constrained(DecisionOnly(default), steps)
    print(
        f"default on {default_report.n} held-out steps: {default_report.next_action_acc:.3f} "
        f"({default_report.choice_next_action_acc:.3f} on the {default_report.n_choice} with a choice)",
        flush=True,
    )

    # 2-3: the conversations through the service, its flags, the simulated reviewer's verdicts
    app = create_app(settings, model=default)
    reviewed = {"good": 0, "corrections": 0, "refused": 0}
    flagged: list[str] = []
    with TestClient(app, raise_server_exceptions=False) as client:
        services = app.state.services
        reviewer_key = services.keys.create(role=Role.engineer, name="simulated-reviewer").secret
        engineer = {"Authorization": f"Bearer {reviewer_key}"}
        talk_started = time.perf_counter()
        conversations: dict[str, dict[str, Any]] = {}
        rated_down = 0
        for record in batch:
            replay = parse_replay(record)
            owner = replay_owner(data, replay)
            if owner is None:
                continue
            key = services.keys.create(role=Role.customer, customer_id=owner).secret
            auth = {"Authorization": f"Bearer {key}"}
            cid = client.post("/api/conversations", headers=auth).json()["id"]
            for text in [str(m.get("content") or "") for m in record["messages"] if m["role"] == "user"]:
                r = client.post(
                    f"/api/conversations/{cid}/messages",
                    params={"stream": "false"},
                    json={"text": text},
                    headers=auth,
                )
                if r.status_code != 200 or any(e["type"] == "handoff" for e in r.json()["events"]):
                    break
            conversations[cid] = record
            if not args.no_ratings:  # an unhappy customer rates every reply down
                history = services.agent().history(cid, include_tools=True)
                if not request_done(list(history), gold_calls(record)):
                    turns = client.get(f"/api/conversations/{cid}", headers=auth).json()["conversation"][
                        "turns"
                    ]
                    for turn in range(1, turns + 1):
                        body = {"value": "down", "comment": "my request was not done", "turn": turn}
                        client.post(f"/api/conversations/{cid}/ratings", json=body, headers=auth)
                    rated_down += 1
        talk_s = time.perf_counter() - talk_started
        queue = client.get("/api/review", params={"limit": 1000}, headers=engineer).json()["conversations"]
        flagged = [c["id"] for c in queue if c["id"] in conversations]
        for cid in flagged:
            for k, v in review_conversation(
                client, engineer, services, cid, gold_calls(conversations[cid])
            ).items():
                reviewed[k] += v
        print(
            f"talked {len(conversations)} conversations in {talk_s:.0f} s; flagged {len(flagged)}; "
            f"reviewer: {reviewed}",
            flush=True,
        )

        # 4: export and retrain
        export_started = time.perf_counter()
        export = export_transcripts(
            conversations=services.conversations,
            feedback=services.feedback,
            history=lambda cid: services.agent().history(cid, include_tools=True),
            out=work / "live.jsonl",
            reviewed=True,
            pii_mode="surrogate",  # as the default model's training data
        )
        export_s = time.perf_counter() - export_started
    print(f"export: {export.to_dict()}", flush=True)

    mix = [f"{{path: {export.out}, weight: {args.weight}}}"]
    # rehearsal (SFT): conversations like the default's training data, so it keeps what it knew
    if args.synth and args.method == "sft":
        from finetune.people import synth_people
        from finetune.synth import write_jsonl

        synth_path = work / "synth.jsonl"
        write_jsonl(synth_people(args.synth, data_dir=args.data, seed=16), synth_path)
        mix.append(f"{{path: {synth_path}, weight: {args.synth_weight}}}")
    overrides = [
        f"dataset={work / 'ds'}",
        f"mix=[{', '.join(mix)}]",
        f"init_adapter={DEFAULT_MODEL_DIR / 'adapter'}",
        f"output_dir={work / 'runs'}",
        "run_name=loop",
        f"max_steps={args.steps}",
        f"learning_rate={args.lr}",
        f"beta={args.beta}",
        f"time_budget_min={args.minutes}",
        f"threads={args.threads}",
    ]
    train_started = time.perf_counter()
    config = TrainConfig.load(Path("cpu-smollm2.yaml"), overrides)
    train = train_dpo if args.method == "dpo" else train_sft
    run = train(config) if export.conversations else None
    train_s = time.perf_counter() - train_started

    # 5: gate and score on the held-out replays
    result: dict[str, Any] = {
        "method": args.method,
        "default_next_action_acc": round(default_report.next_action_acc, 4),
        "default_choice_next_action_acc": round(default_report.choice_next_action_acc, 4),
    }
    if run is None:
        result.update(candidate_next_action_acc=None, gate_passed=False, gate_reason="nothing to train on")
    else:
        candidate = load_model("default", default_run=run.run_dir)
        cand_report = evaluate_constrained(DecisionOnly(candidate), steps)
        base_eval, cand_eval = as_eval_report(default_report), as_eval_report(cand_report)
        thresholds = GateThresholds(min_next_action_gain=args.min_gain)
        passed, reason = decide(base_eval, cand_eval, thresholds)
        gate = GateResult(passed, reason, base_eval, cand_eval, thresholds)
        write_report(gate, run.run_dir / "gate")
        record = read_run(run.run_dir)
        record.update(gate=gate.to_json(), status="gated" if passed else "gate failed")
        write_run(run.run_dir, record)
        write_model_card(run.run_dir)
        result.update(
            candidate_next_action_acc=round(cand_report.next_action_acc, 4),
            candidate_choice_next_action_acc=round(cand_report.choice_next_action_acc, 4),
            gate_passed=passed,
            gate_reason=reason,
            run_dir=str(run.run_dir),
        )
        if args.tasks:
            result.update(heldout_tasks(data, replays_path, heldout_n, settings, work, default, candidate))
    print(
        json.dumps(
            {
                "conversations": len(conversations),
                "rated_down": rated_down,
                "flagged": len(flagged),
                "corrections": reviewed["corrections"],
                "marked_good": reviewed["good"],
                "refused_corrections": reviewed["refused"],
                "export_s": round(export_s, 2),
                "train_s": round(train_s, 1),
                "heldout_steps": len(steps),
                "export_sha256": export.sha256,
                "seconds": round(time.perf_counter() - started, 1),
                **result,
            }
        )
    )


if __name__ == "__main__":
    main()
