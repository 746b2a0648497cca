"""Reading a Server-Sent Events response in tests."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Events of an SSE body: [{'id':..., 'event':..., 'data': <parsed JSON>}], pings skipped."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        data_lines = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data_lines.append(value)
            else:
                fields[name] = value
        if data_lines:
            fields["data"] = json.loads("\n".join(data_lines))
            events.append(fields)
    return events


def send(
    client: TestClient, conversation_id: str, text: str, headers: dict[str, str]
) -> list[dict[str, Any]]:
    """Send a message and return the streamed events (asserts a 200 event stream)."""
    with client.stream(
        "POST", f"/api/conversations/{conversation_id}/messages", json={"text": text}, headers=headers
    ) as response:
        body = response.read().decode()
        assert response.status_code == 200, body
        assert response.headers["content-type"].startswith("text/event-stream")
    return parse_sse(body)
