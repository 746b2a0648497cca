"""JSON files written whole: a reader sees the old file or the new one."""

from __future__ import annotations

import stat
from pathlib import Path

from specialist.jsonio import read_json, read_jsonl, write_json


def test_write_json_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "registry.json"
    write_json(target, {"history": [1]})
    write_json(target, {"history": [1, 2]})
    assert read_json(target) == {"history": [1, 2]}
    assert target.read_text().startswith('{\n  "history"')  # indented for people reading it
    assert [p.name for p in target.parent.iterdir()] == ["registry.json"]  # no temporary file left


def test_a_file_holding_a_key_is_private(tmp_path: Path) -> None:
    target = tmp_path / "service.json"
    write_json(target, {"key": "spk_x"}, indent=None, mode=0o600, fsync=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == '{"key": "spk_x"}'


def test_jsonl_rows_skip_blank_lines(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_jsonl(rows) == [{"a": 1}, {"a": 2}]
