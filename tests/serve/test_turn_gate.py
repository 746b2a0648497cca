"""One reply at a time per conversation: a second message while the first streams gets a clear 409."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from agent.chat_model import ChatReply, ScriptedChatModel
from serve.auth import Role
from tests.serve.conftest import ingest_demo, make_settings, seed_store
from tests.serve.live import live_server


def test_second_message_while_streaming_is_a_conflict(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    customers = seed_store(settings)
    ingest_demo(settings)
    entered, release = threading.Event(), threading.Event()

    def slow_policy(messages: list[Any], tools: list[Any]) -> ChatReply:
        entered.set()
        release.wait(30)
        return ChatReply(text="Thanks for waiting.")

    with live_server(settings, model=ScriptedChatModel(policy=slow_policy)) as (base, services):
        key = services.keys.create(role=Role.customer, customer_id=customers[0]).secret
        headers = {"Authorization": f"Bearer {key}"}
        conversation = httpx.post(base + "/api/conversations", headers=headers).json()["id"]
        url = f"{base}/api/conversations/{conversation}/messages"
        first: list[httpx.Response] = []
        thread = threading.Thread(
            target=lambda: first.append(httpx.post(url, json={"text": "hello"}, headers=headers, timeout=60))
        )
        thread.start()
        assert entered.wait(30)
        second = httpx.post(url, json={"text": "hello again"}, headers=headers, timeout=30)
        assert second.status_code == 409 and "still streaming" in second.json()["error"]["message"]
        other = httpx.post(base + "/api/conversations", headers=headers).json()["id"]
        release.set()
        thread.join(60)
        assert first[0].status_code == 200 and "event: done" in first[0].text
        # The conversation is free again, and other conversations were never blocked.
        again = httpx.post(url, json={"text": "one more"}, headers=headers, timeout=30)
        assert again.status_code == 200
        r = httpx.post(
            f"{base}/api/conversations/{other}/messages", json={"text": "hi"}, headers=headers, timeout=30
        )
        assert r.status_code == 200
