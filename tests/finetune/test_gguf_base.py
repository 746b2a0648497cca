"""The base GGUF llama.cpp serves: the shipped Q4_1 re-quantized once, cached by its sha256 and the type."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from finetune.base_model import file_sha256, smollm2_gguf_path
from finetune.registry import DEFAULT_BASE_TYPE, base_record, default_record, serving_base_gguf

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")

GGML_F16, GGML_Q8_0 = 1, 8  # ggml_type of a tensor
LLAMA_FTYPE = {"f16": 1, "q8_0": 7}  # general.file_type


@pytest.mark.parametrize(("weight_type", "ggml_type"), [("f16", GGML_F16), ("q8_0", GGML_Q8_0)])
def test_the_fast_base_is_converted_once_and_reused(tmp_path: Path, weight_type: str, ggml_type: int) -> None:
    from gguf import GGUFReader

    source = smollm2_gguf_path()
    fast = serving_base_gguf(source, weight_type, tmp_path)
    assert fast.parent == tmp_path and fast.name == f"{file_sha256(source)[:32]}-{weight_type}.gguf"
    reader = GGUFReader(str(fast))
    assert reader.fields["general.file_type"].contents() == LLAMA_FTYPE[weight_type]
    matrices = [t for t in reader.tensors if len(t.shape) == 2]
    assert matrices and all(int(t.tensor_type) == ggml_type for t in matrices)
    assert len(reader.tensors) == len(GGUFReader(str(source)).tensors)

    written = fast.stat().st_mtime_ns
    assert serving_base_gguf(source, weight_type, tmp_path) == fast  # a cache hit, not a rewrite
    assert fast.stat().st_mtime_ns == written and [p.name for p in tmp_path.iterdir()] == [fast.name]
    assert serving_base_gguf(source, "source", tmp_path) == source


def test_records_serve_the_fast_base_and_keep_the_shipped_one(tmp_path: Path) -> None:
    assert DEFAULT_BASE_TYPE == "f16"
    base = base_record(base_dir=tmp_path / "base")
    assert Path(base.base_gguf).parent == tmp_path / "base" and base.base_gguf.endswith("-f16.gguf")
    assert base.base_gguf_source == str(smollm2_gguf_path())
    default = default_record(tmp_path / "lora", base_dir=tmp_path / "base")
    assert default.base_gguf == base.base_gguf and default.gguf_lora
    as_shipped = base_record(base_dir=tmp_path / "base", base_type="source")
    assert as_shipped.base_gguf == as_shipped.base_gguf_source == str(smollm2_gguf_path())


def test_a_base_that_cannot_be_requantized_is_served_as_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a GGUF file")
    with caplog.at_level(logging.WARNING, logger="finetune.registry"):
        assert serving_base_gguf(broken, "q8_0", tmp_path / "cache") == broken
    assert "as it is" in caplog.text and "could not re-quantize" in caplog.text
    assert not list((tmp_path / "cache").glob("*.gguf"))
