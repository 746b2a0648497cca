"""`specialist serve` as a process: demo key, JSON logs with ids, discovery for CLI writes, clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from serve.client import ServiceClient
from tests.serve.conftest import ingest_demo, make_settings, seed_store
from tests.serve.sse import parse_sse

SPECIALIST = str(Path(sys.executable).with_name("specialist"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECIALIST_")}
    env.update(
        SPECIALIST_SERVE__PORT=str(port),
        SPECIALIST_SERVE__STATE_PATH=str(tmp / "service.sqlite"),
        SPECIALIST_SERVE__DISCOVERY_PATH=str(tmp / "service.json"),
        SPECIALIST_RETRIEVAL__DATA_DIR=str(tmp / "kb"),
        SPECIALIST_AGENT__STORE_PATH=str(tmp / "store.sqlite"),
        SPECIALIST_AGENT__CHECKPOINT_PATH=str(tmp / "checkpoints.sqlite"),
        SPECIALIST_FINETUNE__RUNS_DIR=str(tmp / "runs"),
        SPECIALIST_FINETUNE__REGISTRY_PATH=str(tmp / "registry.json"),
    )
    return env


def test_serve_process(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    seed_store(settings)
    ingest_demo(settings)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    out, err = (tmp_path / "out.txt").open("w"), (tmp_path / "err.txt").open("w")
    proc = subprocess.Popen(
        [SPECIALIST, "serve", "--model", "scripted", "--demo-key"],
        env=_env(tmp_path, port),
        stdout=out,
        stderr=err,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "err.txt").read_text()[-2000:]
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        printed = (tmp_path / "out.txt").read_text()
        match = re.search(rf"{re.escape(base)}/chat#key=(spk_\S+)", printed)
        assert match, printed
        headers = {"Authorization": f"Bearer {match.group(1)}"}
        conversation = httpx.post(base + "/api/conversations", headers=headers).json()["id"]
        r = httpx.post(
            f"{base}/api/conversations/{conversation}/messages",
            json={"text": "Do gift cards expire?"},
            headers={**headers, "X-Request-ID": "req-e2e-1"},
            timeout=60,
        )
        events = parse_sse(r.text)
        assert events[-1]["event"] == "done" and any(e["event"] == "citation" for e in events)

        # While the service owns the embedded knowledge base, CLI writes go through its API.
        discovery = json.loads((tmp_path / "service.json").read_text())
        assert discovery["url"] == base and discovery["pid"] == proc.pid
        client = ServiceClient.running(tmp_path / "service.json")
        assert client is not None
        report = client.upsert_documents(
            [{"id": "late", "title": "Late fees", "content": "There are no late fees."}]
        )
        assert report["added"] == ["late"]
        assert any(
            p["citation"]["doc_id"] == "late" for p in client.search("are there late fees")["passages"]
        )
        assert client.delete("late")["deleted"] == ["late"]
        client.close()

        # The CLI itself forwards its writes to the running service instead of failing on the lock.
        policy = tmp_path / "late-fees.md"
        policy.write_text("# Late fees\n\nThere are no late fees on any order.\n")
        cli = subprocess.run(
            [SPECIALIST, "ingest", str(policy), "--json"],
            env=_env(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        assert "through the running service" in cli.stderr
        assert json.loads(cli.stdout)["added"], cli.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        out.close()
        err.close()

    assert not (tmp_path / "service.json").exists()
    assert ServiceClient.running(tmp_path / "service.json") is None
    lines = [
        json.loads(line) for line in (tmp_path / "err.txt").read_text().splitlines() if line.startswith("{")
    ]
    turn = [
        line
        for line in lines
        if line.get("request_id") == "req-e2e-1" and line.get("path", "").endswith("/messages")
    ]
    assert turn and turn[0]["status"] == 200 and turn[0]["conversation_id"] == conversation
    assert all("level" in line and "msg" in line for line in lines)
