"""Malformed transcript lines are skipped with line numbers; a file with nothing usable is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.dataset import build_dataset
from finetune.transcripts import read_transcripts
from specialist.errors import InvalidTranscript

GOOD = {
    "id": "ok-1",
    "messages": [
        {"role": "user", "content": "where is #W1?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "a",
                    "type": "function",
                    "function": {"name": "get_order_details", "arguments": '{"order_id": "#W1"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": '{"status": "pending"}'},
        {"role": "assistant", "content": "It is pending."},
    ],
    "tools": [],
}


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_lines_are_skipped_and_reported(tmp_path: Path) -> None:
    no_result = json.loads(json.dumps(GOOD))
    del no_result["messages"][2]
    lines = [
        json.dumps(GOOD),
        "{not json",
        json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}),
        json.dumps(no_result),
        json.dumps({"messages": []}),
        json.dumps({**GOOD, "id": "ok-2"}),
    ]
    got, report = read_transcripts(_write(tmp_path / "t.jsonl", lines))
    assert [t.id for t in got] == ["ok-1", "ok-2"]
    reasons = dict(report.skipped)
    assert sorted(reasons) == [2, 3, 4, 5]
    assert "bad JSON" in reasons[2]
    assert "unknown role 'wizard'" in reasons[3]
    assert "no result" in reasons[4]
    assert "empty conversation" in reasons[5]
    assert report.lines()[0].startswith("line 2:")


def test_a_file_without_usable_conversations_is_a_clear_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", ["[]", "{oops"])
    with pytest.raises(InvalidTranscript, match="no usable conversation"):
        read_transcripts(path)
    with pytest.raises(InvalidTranscript, match="line 1"):
        build_dataset([path], tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_corrections_must_point_at_an_assistant_step(tmp_path: Path) -> None:
    bad = {**GOOD, "corrections": [{"index": 0, "message": {"role": "assistant", "content": "x"}}]}
    _, report = read_transcripts(_write(tmp_path / "c.jsonl", [json.dumps(bad), json.dumps(GOOD)]))
    assert report.skipped and "correction" in report.skipped[0][1]
