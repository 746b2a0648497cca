"""Backends: the in-process transformers model, and the OpenAI HTTP backend against a real local server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from agent.backends import OpenAIChatModel, build_backend
from agent.chat_model import ChatMessage, ChatModel
from agent.settings import ModelSettings
from agent.tool_specs import TOOL_SPECS
from finetune.base_model import smollm2_gguf_path
from specialist.errors import BackendUnavailable, ModelUnavailable
from specialist.live_model import LiveModel

# llama-cpp-python's OpenAI-compatible server on the base GGUF (AMX weight repacking off: it crashes here)
SERVER = (
    "import sys; from agent.backends.llama_cpp import patched_llama; patched_llama(); "
    "from llama_cpp.server.__main__ import main; sys.argv = ['server'] + sys.argv[1:]; main()"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama-cpp-python server on loopback (skipped only if llama-cpp-python is not installed)."""
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] not installed")
    port = _free_port()
    args = ["--model", str(smollm2_gguf_path()), "--host", "127.0.0.1", "--port", str(port)]
    args += ["--n_threads", "1", "--n_ctx", "2048", "--chat_format", "chatml", "--model_alias", "smollm2"]
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as out:  # a file, not a pipe: llama.cpp logs more than a pipe buffer holds
        proc = subprocess.Popen([sys.executable, "-c", SERVER, *args], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"server not ready: {log.read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_openai_backend_against_a_real_server(llama_server: str) -> None:
    model = OpenAIChatModel(llama_server, "smollm2", timeout_s=120, max_tokens=12)
    assert isinstance(model, ChatModel)
    messages = [ChatMessage("system", "You are a helpful assistant."), ChatMessage("user", "Say hello.")]
    reply = model.complete(messages, TOOL_SPECS)
    assert reply.text and reply.completion_tokens > 0 and reply.prompt_tokens > 0
    streamed = "".join(model.stream(messages))
    assert streamed.strip()


def test_runtime_lora_load_is_reported_when_the_server_lacks_it(llama_server: str) -> None:
    model = OpenAIChatModel(llama_server, "smollm2", timeout_s=30)
    with pytest.raises(ModelUnavailable, match="did not load adapter"):
        model.reload(LiveModel(name="run-1", kind="run", export_dir="/nowhere/adapter"))
    assert model.model == "smollm2"  # still serving what it served


def test_unreachable_server_is_backend_unavailable() -> None:
    model = OpenAIChatModel(f"http://127.0.0.1:{_free_port()}", "x", timeout_s=2)
    with pytest.raises(BackendUnavailable):
        model.complete([ChatMessage("user", "hi")])


def test_build_backend_needs_openai_settings() -> None:
    with pytest.raises(ModelUnavailable, match="OPENAI_BASE_URL"):
        build_backend(ModelSettings(backend="openai"))
    with pytest.raises(ModelUnavailable, match="unknown model backend"):
        build_backend(ModelSettings(backend="nope"), registry=object())


def test_transformers_backend_answers_with_the_compact_prompt(tmp_path: Path) -> None:
    import torch

    from agent.backends.local import TransformersChatModel
    from finetune.registry import base_record

    torch.set_num_threads(1)
    model = TransformersChatModel.from_record(base_record(), max_new_tokens=8)
    messages = [ChatMessage("system", "You are a support agent."), ChatMessage("user", "hello")]
    prompt = model.prompt(messages, TOOL_SPECS)
    assert prompt.startswith("<|im_start|>system\nYou are a support agent.\nTools: find_user_id_by_email")
    assert prompt.endswith("<|im_start|>assistant\n")
    reply = model.complete(messages, TOOL_SPECS)
    assert reply.completion_tokens > 0 and reply.prompt_tokens == len(model._tokenizer(prompt)["input_ids"])
    batch = model.complete_batch(
        [(messages, TOOL_SPECS), ([messages[0], ChatMessage("user", "hi")], TOOL_SPECS)]
    )
    assert batch[0].raw == reply.raw  # the cached system prefix does not change the answer
    assert len(batch) == 2


def test_the_in_process_engine_follows_the_record_and_the_setting(tmp_path: Path) -> None:
    """auto: llama.cpp for the base and an adapter with its GGUF LoRA or merged file; else transformers."""
    from agent.backends import local_model_from_record, runs_on_llama_cpp
    from agent.backends.llama_cpp import LlamaCppChatModel
    from agent.backends.local import TransformersChatModel
    from finetune.registry import base_record, default_record

    default = default_record(tmp_path / "gguf")
    assert default.gguf_lora and Path(default.gguf_lora).parent == tmp_path / "gguf"
    assert Path(default.gguf_merged).parent == tmp_path / "gguf"
    assert runs_on_llama_cpp(default) and runs_on_llama_cpp(base_record())
    assert runs_on_llama_cpp(replace(default, gguf_lora=None))  # the merged file alone serves it
    unconverted = replace(default, gguf_lora=None, gguf_merged=None)
    assert not runs_on_llama_cpp(unconverted)

    fast = local_model_from_record(base_record(), max_new_tokens=4)
    assert isinstance(fast, LlamaCppChatModel)
    reply = fast.complete([ChatMessage("user", "hello")])
    assert reply.completion_tokens > 0 and reply.prompt_tokens > 0
    assert isinstance(local_model_from_record(unconverted, max_new_tokens=4), TransformersChatModel)
    with pytest.raises(ModelUnavailable, match="no GGUF LoRA"):  # never the bare base in its place
        local_model_from_record(unconverted, engine="llama.cpp")
    with pytest.raises(ModelUnavailable, match="no GGUF LoRA"):
        fast.reload(unconverted)


def test_finetune_eval_scores_an_openai_endpoint(llama_server: str, tmp_path: Path) -> None:
    """`specialist finetune eval --model URL` scores any OpenAI-compatible endpoint on held-out data."""
    import json

    from typer.testing import CliRunner

    from finetune.synth import synth_demo, write_jsonl
    from serve.cli import app

    heldout = tmp_path / "heldout.jsonl"
    write_jsonl(synth_demo(2, split="heldout", seed=11), heldout)
    args = ["finetune", "eval", "--model", llama_server, "--endpoint-model", "smollm2"]
    args += ["--data", str(heldout), "--limit", "3", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["n"] == 3
    assert 0.0 <= report["next_action_acc"] <= 1.0 and 0.0 <= report["valid_rate"] <= 1.0

    missing = CliRunner().invoke(app, ["finetune", "eval", "--model", llama_server, "--data", str(heldout)])
    assert missing.exit_code != 0 and "--endpoint-model" in missing.output
