"""The in-process behaviour model on llama.cpp: the base GGUF plus the adapter as a GGUF LoRA."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agent.chat_model import ChatMessage, ChatReply, ToolSpec
from agent.tool_format import END_OF_TURN, chat_messages, chatml, parse_reply
from specialist.errors import ModelUnavailable


def patched_llama() -> Any:
    """llama_cpp.Llama with llama.cpp's extra weight buffers (AMX repacking) off.

    With them on, decoding crashes (SIGSEGV) on this machine's AMX CPU with llama-cpp-python 0.3.36.
    """
    import llama_cpp.llama_cpp as lib
    from llama_cpp import Llama

    if not getattr(lib, "_specialist_patched", False):
        default = lib.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = default()
            params.use_extra_bufts = False
            return params

        lib.llama_model_default_params = without_extra_buffers
        lib._specialist_patched = True  # type: ignore[attr-defined]
    return Llama


def openmp_threads_sleep() -> bool:
    """Whether llama.cpp's OpenMP threads will sleep at barriers instead of spinning.

    On a CPU shared with other work (a training job), 2 spinning threads made a call ~20x slower (86 s
    instead of 4 s for ~700 prompt tokens). libgomp reads OMP_WAIT_POLICY once, when it is loaded; torch
    loads the same libgomp.so.1 (llama.cpp then reuses it), so this only helps if it comes first.
    """
    maps = Path("/proc/self/maps")
    if not (maps.exists() and "libgomp" in maps.read_text()):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"


class LlamaCppChatModel:
    """Greedy decoding with llama-cpp-python; `reload()` swaps in a newly promoted adapter.

    Consecutive calls reuse the KV cache of their common token prefix (llama-cpp-python keeps the last
    prompt's state and evaluates only what follows the shared prefix): the system prompt and tool list,
    and within a conversation the turns so far. `reused_tokens` says how many the last call reused.
    """

    def __init__(
        self,
        gguf: Path,
        *,
        lora: Path | None = None,
        name: str = "llama.cpp",
        max_new_tokens: int = 256,
        threads: int | None = None,
        n_ctx: int = 2048,
    ) -> None:
        self.name = name
        self.max_new_tokens = max_new_tokens
        # 2 threads (both cores) only where idle threads sleep: spinning ones stall a shared CPU
        self._threads = threads or (2 if openmp_threads_sleep() else 1)
        self._n_ctx = n_ctx
        self._lock = threading.Lock()
        self.reused_tokens = 0
        self._llm = self._load(gguf, lora)
        self.record: dict[str, Any] = {"base_gguf": str(gguf), "gguf_lora": str(lora) if lora else None}

    @classmethod
    def from_record(cls, record: dict[str, Any], *, max_new_tokens: int = 256) -> LlamaCppChatModel:
        """Build from a live-model record (`base_gguf`, optional `gguf_lora`, `name`)."""
        _check_record(record)
        model = cls(
            Path(record["base_gguf"]),
            lora=Path(record["gguf_lora"]) if record.get("gguf_lora") else None,
            name=str(record.get("name", "llama.cpp")),
            max_new_tokens=max_new_tokens,
        )
        model.record = dict(record)
        return model

    def _load(self, gguf: Path, lora: Path | None) -> Any:
        for path in (gguf, lora):
            if path is not None and not path.exists():
                raise ModelUnavailable(f"model file missing: {path}")
        Llama = patched_llama()
        return Llama(
            model_path=str(gguf),
            lora_path=str(lora) if lora else None,
            n_ctx=self._n_ctx,
            n_threads=self._threads,
            n_threads_batch=self._threads,
            verbose=False,
        )

    def reload(self, record: dict[str, Any]) -> None:
        """Swap in another live model without restarting."""
        _check_record(record)
        lora = Path(record["gguf_lora"]) if record.get("gguf_lora") else None
        llm = self._load(Path(record["base_gguf"]), lora)
        with self._lock:
            self._llm = llm
            self.reused_tokens = 0
            self.name = str(record.get("name", self.name))
            self.record = dict(record)

    def complete(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()) -> ChatReply:
        """Greedy completion of one conversation (same prompt as training: compact ChatML)."""
        prompt = chatml(chat_messages(messages, tools))
        with self._lock:
            llm = self._llm
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            self.reused_tokens = llm.longest_token_prefix(llm._input_ids[: llm.n_tokens].tolist(), tokens)
            out = llm.create_completion(
                prompt=tokens, max_tokens=self.max_new_tokens, temperature=0.0, stop=[END_OF_TURN]
            )
        raw = str(out["choices"][0]["text"])
        parsed = parse_reply(raw)
        usage = out.get("usage") or {}
        return ChatReply(
            text=parsed.text,
            tool_calls=parsed.tool_calls,
            raw=raw,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )

    def stream(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()) -> Iterator[str]:
        """Yield the reply text word by word (tool calls are not streamed)."""
        reply = self.complete(messages, tools)
        for i, word in enumerate(reply.text.split(" ")):
            yield word if i == 0 else " " + word


def _check_record(record: dict[str, Any]) -> None:
    """Refuse an adapter record without its GGUF LoRA: llama.cpp would silently serve the bare base model."""
    if record.get("adapter_dir") and not record.get("gguf_lora"):
        raise ModelUnavailable(
            f"model {record.get('name', '?')!r} has an adapter but no GGUF LoRA export; "
            "serve it with backend=transformers"
        )
