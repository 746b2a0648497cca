"""The kb commands as a content owner uses them: ingest, search, status, delete, rebuild, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrieval.knowledge_base import open_knowledge_base
from retrieval.settings import RetrievalSettings
from serve.cli import app


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "kb"
    monkeypatch.setenv("SPECIALIST_RETRIEVAL__DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)  # no .env of the developer's checkout
    return data


def test_kb_commands_end_to_end(env: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pets.md").write_text("# Pets\n\n## Stores\n\nDogs on a leash are welcome in our stores.\n")
    (docs / "notes.docx").write_bytes(b"PK")

    result = runner.invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 0, result.output
    assert "added 1" in result.output and "failed notes.docx" not in result.output
    assert "unsupported format" in result.output

    result = runner.invoke(app, ["ingest", "--demo", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["added"]) == 8

    result = runner.invoke(app, ["kb", "search", "can I bring my dog", "-k", "2"])
    assert result.exit_code == 0 and "[pets v1 § Stores]" in result.output

    result = runner.invoke(app, ["kb", "search", "refund", "--filter", "tag=gift-cards", "--json"])
    assert {p["citation"]["doc_id"] for p in json.loads(result.output)} == {"gift-cards"}

    status = json.loads(runner.invoke(app, ["kb", "status", "--json"]).output)
    assert status["documents"] == 9 and status["backend"] == "edge"

    assert runner.invoke(app, ["kb", "delete", "pets"]).exit_code == 0
    result = runner.invoke(app, ["kb", "search", "dogs on a leash", "--mode", "bm25", "--json"])
    assert "pets" not in {p["citation"]["doc_id"] for p in json.loads(result.output)}
    missing = runner.invoke(app, ["kb", "delete", "pets"])
    assert missing.exit_code == 1 and "no document with id 'pets'" in missing.output

    result = runner.invoke(app, ["kb", "rebuild", "--json"])
    assert result.exit_code == 0 and len(json.loads(result.output)["updated"]) == 8
    result = runner.invoke(app, ["kb", "rollback"])
    assert result.exit_code == 0 and "current version: v0001" in result.output


def test_cli_reports_a_knowledge_base_held_by_another_owner(env: Path) -> None:
    with open_knowledge_base(RetrievalSettings(data_dir=env)):
        result = CliRunner().invoke(app, ["kb", "status"])
    assert result.exit_code == 1
    assert "in use by pid" in result.output and "API" in result.output


def test_ingest_usage_errors(env: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["ingest"]).exit_code == 2
    assert runner.invoke(app, ["ingest", "watch"]).exit_code == 2
    result = runner.invoke(app, ["ingest", "/does/not/exist"])
    assert result.exit_code == 1 and "does not exist" in result.output
