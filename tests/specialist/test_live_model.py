"""The live-model record: what the registry writes to its history and the API shows, read back the same."""

from __future__ import annotations

from dataclasses import replace

from specialist.live_model import LiveModel


def test_a_promoted_record_round_trips_through_its_json() -> None:
    record = LiveModel(
        name="run-7",
        kind="run",
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        base_gguf="/models/base.gguf",
        base_dir="var/base/smollm2",
        adapter_dir="var/runs/run-7/adapter",
        export_dir="var/runs/run-7/export/adapter",
        promoted_at="2026-12-02T10:00:00Z",
        gate={"passed": True, "reason": "gain +0.12", "data_sha256": "ab"},
    )
    data = record.to_dict()
    # the serving files are derived on demand, never written: they do not appear until set
    assert "gguf_lora" not in data and "gguf_merged" not in data and "base_gguf_source" not in data
    assert LiveModel.from_dict(data) == record
    assert LiveModel.from_dict({**data, "written_by_a_later_version": 1}) == record


def test_what_names_a_model_is_always_shown() -> None:
    bare = LiveModel(name="default", kind="default")
    assert bare.to_dict() == {
        "name": "default",
        "kind": "default",
        "base_model": "",
        "base_gguf": None,
        "adapter_dir": None,
        "prompt_format": "compact",
    }
    served = replace(bare, gguf_merged="var/gguf_lora/merged-x-q8_0.gguf")
    assert served.to_dict()["gguf_merged"] == "var/gguf_lora/merged-x-q8_0.gguf"
    assert served.get("kind") == "default" and served.get("no_such_field") is None
