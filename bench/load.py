"""Load benchmark of the service: concurrent customer conversations over SSE against `specialist serve`.

Recipe:
  1. Seed a throwaway store and knowledge base (demo policies) in a temp folder.
  2. Start `specialist serve` on loopback with the scripted model (the service is measured, not a model).
  3. Baseline: GET /healthz on the same server, same concurrency.
  4. Sequential turns (one at a time): the latency the service adds to one turn, from its own metrics.
  5. Load: N concurrent conversations for S seconds; latency to the first streamed event and to the end.
The last line is one JSON object: requests, errors, rps, p50_ms, p95_ms, p99_ms, concurrency (+ details).

    .venv/bin/python bench/load.py --concurrency 50 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
SPECIALIST = str(Path(sys.executable).with_name("specialist"))
QUESTIONS = [
    "How long do I have to return an item?",
    "Can I cancel an order that has already shipped?",
    "How are refunds paid back?",
    "Can I exchange a shirt for a different size?",
    "How much does shipping cost?",
    "How do I change the address of my order?",
    "Do gift cards expire?",
    "How do I delete my account data?",
]
TURNS_PER_CONVERSATION = 4


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values, 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(workdir: Path, *, port: int, model: str, rate_limit: int) -> dict[str, str]:
    """Environment for a throwaway service under `workdir`, with a seeded store and the demo policies."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        SPECIALIST_SERVE__HOST="127.0.0.1",
        SPECIALIST_SERVE__PORT=str(port),
        SPECIALIST_SERVE__STATE_PATH=str(workdir / "service.sqlite"),
        SPECIALIST_SERVE__DISCOVERY_PATH=str(workdir / "service.json"),
        SPECIALIST_SERVE__RATE_LIMIT_PER_MINUTE=str(rate_limit),
        SPECIALIST_SERVE__RATE_LIMIT_BURST=str(rate_limit),
        SPECIALIST_SERVE__LOG_LEVEL="WARNING",
        SPECIALIST_RETRIEVAL__DATA_DIR=str(workdir / "kb"),
        SPECIALIST_AGENT__STORE_PATH=str(workdir / "store.sqlite"),
        SPECIALIST_AGENT__CHECKPOINT_PATH=str(workdir / "checkpoints.sqlite"),
        SPECIALIST_FINETUNE__REGISTRY_PATH=str(workdir / "registry.json"),
        SPECIALIST_MODEL__BACKEND="scripted" if model == "scripted" else "local",
    )
    for args in (["store", "seed"], ["ingest", "--demo"]):
        subprocess.run([SPECIALIST, *args], env=env, cwd=ROOT, check=True, capture_output=True)
    return env


def customer_keys(env: dict[str, str], n: int) -> list[str]:
    """One customer key per simulated customer (distinct customers from the seeded store)."""
    import sqlite3

    from serve.auth import KeyStore, Role
    from serve.state import StateDB

    with sqlite3.connect(env["SPECIALIST_AGENT__STORE_PATH"]) as conn:
        users = [r[0] for r in conn.execute("SELECT user_id FROM users ORDER BY user_id LIMIT ?", (n,))]
    db = StateDB(Path(env["SPECIALIST_SERVE__STATE_PATH"]))
    keys = KeyStore(db)
    secrets = [keys.create(role=Role.customer, customer_id=users[i % len(users)]).secret for i in range(n)]
    db.close()
    return secrets


def start_server(env: dict[str, str], base: str) -> subprocess.Popen[bytes]:
    """`specialist serve` in the background; returns once /readyz answers 200."""
    proc = subprocess.Popen(
        [SPECIALIST, "serve"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"specialist serve exited with {proc.returncode}")
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit("specialist serve did not become ready in 180 s")


class Results:
    """Latencies and errors of one phase."""

    def __init__(self) -> None:
        self.first_ms: list[float] = []
        self.end_ms: list[float] = []
        self.errors: list[str] = []

    def summary(self, seconds: float, concurrency: int) -> dict[str, Any]:
        """The phase's figures."""
        return {
            "requests": len(self.end_ms) + len(self.errors),
            "errors": len(self.errors),
            "rps": round(len(self.end_ms) / seconds, 1) if seconds else 0.0,
            "mean_ms": round(sum(self.end_ms) / len(self.end_ms), 2) if self.end_ms else 0.0,
            "p50_ms": round(percentile(self.end_ms, 50), 2),
            "p95_ms": round(percentile(self.end_ms, 95), 2),
            "p99_ms": round(percentile(self.end_ms, 99), 2),
            "first_p50_ms": round(percentile(self.first_ms, 50), 2),
            "first_p95_ms": round(percentile(self.first_ms, 95), 2),
            "first_p99_ms": round(percentile(self.first_ms, 99), 2),
            "concurrency": concurrency,
        }


async def healthz_worker(session: aiohttp.ClientSession, base: str, deadline: float, out: Results) -> None:
    """GET /healthz in a loop until the deadline."""
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            async with session.get(base + "/healthz") as r:
                await r.read()
                if r.status != 200:
                    out.errors.append(f"healthz {r.status}")
                    continue
        except aiohttp.ClientError as exc:
            out.errors.append(f"healthz {type(exc).__name__}")
            continue
        ms = (time.perf_counter() - start) * 1000
        out.first_ms.append(ms)
        out.end_ms.append(ms)


async def one_turn(
    session: aiohttp.ClientSession, base: str, key: str, conversation: str, text: str, out: Results
) -> None:
    """Send one message and read its SSE stream to the end."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    start = time.perf_counter()
    first: float | None = None
    saw_done = False
    try:
        async with session.post(
            f"{base}/api/conversations/{conversation}/messages", json={"text": text}, headers=headers
        ) as r:
            if r.status != 200:
                out.errors.append(f"turn {r.status}: {(await r.read())[:120]!r}")
                return
            async for raw in r.content:
                line = raw.decode()
                if line.startswith("event:"):
                    if first is None:
                        first = time.perf_counter()
                    kind = line[6:].strip()
                    if kind == "error":
                        out.errors.append("error event")
                    elif kind == "done":
                        saw_done = True
    except aiohttp.ClientError as exc:
        out.errors.append(f"turn {type(exc).__name__}")
        return
    if not saw_done or first is None:
        out.errors.append("stream ended without done")
        return
    end = time.perf_counter()
    out.first_ms.append((first - start) * 1000)
    out.end_ms.append((end - start) * 1000)


async def customer(
    session: aiohttp.ClientSession, base: str, key: str, index: int, deadline: float, out: Results
) -> None:
    """One simulated customer: conversations of a few turns, back to back, until the deadline."""
    turn = index
    while time.perf_counter() < deadline:
        async with session.post(base + "/api/conversations", headers={"Authorization": f"Bearer {key}"}) as r:
            body = await r.json(content_type=None)
            if r.status != 201:
                out.errors.append(f"create {r.status}")
                await asyncio.sleep(0.05)
                continue
        conversation = body["id"]
        for _ in range(TURNS_PER_CONVERSATION):
            if time.perf_counter() >= deadline:
                break
            await one_turn(session, base, key, conversation, QUESTIONS[turn % len(QUESTIONS)], out)
            turn += 1


async def run_phase(
    base: str, *, kind: str, concurrency: int, seconds: float, keys: list[str]
) -> dict[str, Any]:
    """Drive one phase and summarise it."""
    out = Results()
    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        deadline = start + seconds
        if kind == "healthz":
            tasks = [healthz_worker(session, base, deadline, out) for _ in range(concurrency)]
        else:
            tasks = [
                customer(session, base, keys[i % len(keys)], i, deadline, out) for i in range(concurrency)
            ]
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    summary = out.summary(elapsed, concurrency)
    if out.errors:
        summary["error_samples"] = sorted(set(out.errors))[:5]
    return summary


def scrape(base: str) -> dict[str, float]:
    """Sums and counts of the service's turn, retrieval and model histograms."""
    text = httpx.get(base + "/metrics", timeout=10).text
    values: dict[str, float] = {}
    for name in ("turn_seconds", "retrieval_seconds", "model_seconds"):
        for suffix in ("sum", "count"):
            m = re.search(rf"^specialist_{name}_{suffix} (\S+)$", text, re.MULTILINE)
            values[f"{name}_{suffix}"] = float(m.group(1)) if m else 0.0
    return values


def overhead(before: dict[str, float], after: dict[str, float], *, mean_end_ms: float) -> dict[str, float]:
    """Where one turn's time goes: the agent (model, retrieval, graph) and the service around it."""
    turns = max(after["turn_seconds_count"] - before["turn_seconds_count"], 1.0)
    per = {
        k: (after[f"{k}_sum"] - before[f"{k}_sum"]) * 1000 / turns
        for k in ("turn_seconds", "retrieval_seconds", "model_seconds")
    }
    return {
        "agent_ms": round(per["turn_seconds"], 2),
        "retrieval_ms": round(per["retrieval_seconds"], 2),
        "model_ms": round(per["model_seconds"], 2),
        "graph_ms": round(per["turn_seconds"] - per["retrieval_seconds"] - per["model_seconds"], 2),
        # HTTP, auth, rate limit, SSE framing and the thread hand-off: what serve adds to a turn.
        "service_overhead_ms": round(mean_end_ms - per["turn_seconds"], 2),
    }


def main() -> None:
    """Run the phases and print the report; the last line is JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", choices=["scripted", "default"], default="scripted")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="specialist-load-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = prepare(Path(tmp), port=port, model=args.model, rate_limit=1_000_000)
        keys = customer_keys(env, args.concurrency)
        server = start_server(env, base)
        try:
            warm = asyncio.run(run_phase(base, kind="turns", concurrency=2, seconds=2, keys=keys))
            baseline = asyncio.run(
                run_phase(
                    base,
                    kind="healthz",
                    concurrency=args.concurrency,
                    seconds=max(args.seconds / 4, 3),
                    keys=keys,
                )
            )
            before = scrape(base)
            sequential = asyncio.run(
                run_phase(base, kind="turns", concurrency=1, seconds=max(args.seconds / 6, 3), keys=keys)
            )
            parts = overhead(before, scrape(base), mean_end_ms=sequential["mean_ms"])
            load = asyncio.run(
                run_phase(base, kind="turns", concurrency=args.concurrency, seconds=args.seconds, keys=keys)
            )
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"warm-up: {warm['requests']} turns, {warm['errors']} errors")
    print(
        f"baseline GET /healthz x{args.concurrency}: {baseline['rps']} rps, "
        f"p50 {baseline['p50_ms']} ms, p99 {baseline['p99_ms']} ms"
    )
    print(
        f"one turn at a time: p50 {sequential['p50_ms']} ms end, "
        f"{sequential['first_p50_ms']} ms first event; mean {sequential['mean_ms']} ms = agent "
        f"{parts['agent_ms']} (model {parts['model_ms']} + retrieval {parts['retrieval_ms']} + graph and "
        f"checkpoints {parts['graph_ms']}) + service overhead {parts['service_overhead_ms']} ms"
    )
    print(
        f"load x{args.concurrency} for {args.seconds:g} s: {load['requests']} turns, "
        f"{load['errors']} errors, "
        f"{load['rps']} turns/s; to first event p50/p95/p99 {load['first_p50_ms']}/{load['first_p95_ms']}/"
        f"{load['first_p99_ms']} ms; to end {load['p50_ms']}/{load['p95_ms']}/{load['p99_ms']} ms"
    )
    ratio_p50 = load["p50_ms"] / baseline["p50_ms"] if baseline["p50_ms"] else 0.0
    ratio_rps = load["rps"] / baseline["rps"] if baseline["rps"] else 0.0
    print(
        f"vs baseline: turn p50 {ratio_p50:.1f}x the /healthz p50; turn throughput {ratio_rps:.3f}x /healthz"
    )
    if load.get("error_samples"):
        print("error samples:", load["error_samples"])
    result = {
        "requests": load["requests"],
        "errors": load["errors"],
        "rps": load["rps"],
        "p50_ms": load["p50_ms"],
        "p95_ms": load["p95_ms"],
        "p99_ms": load["p99_ms"],
        "concurrency": args.concurrency,
        "first_event_p50_ms": load["first_p50_ms"],
        "first_event_p95_ms": load["first_p95_ms"],
        "first_event_p99_ms": load["first_p99_ms"],
        "baseline_healthz_p50_ms": baseline["p50_ms"],
        "baseline_healthz_rps": baseline["rps"],
        "p50_vs_baseline": round(ratio_p50, 2),
        "sequential_p50_ms": sequential["p50_ms"],
        "service_overhead_ms": parts["service_overhead_ms"],
        "agent_turn_ms": parts["agent_ms"],
        "model": args.model,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
