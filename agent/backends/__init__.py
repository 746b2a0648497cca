"""Behaviour-model backends: in-process (llama.cpp or transformers) and OpenAI-compatible HTTP (vLLM)."""

from __future__ import annotations

from typing import Any, Unpack

from agent.backends.openai_http import OpenAIChatModel
from agent.chat_model import ChatModel
from agent.settings import EngineOptions, ModelSettings
from specialist.errors import ModelUnavailable
from specialist.live_model import LiveModel

__all__ = ["OpenAIChatModel", "build_backend", "local_model_from_record"]


def local_model_from_record(
    record: LiveModel,
    *,
    engine: str = "auto",
    max_new_tokens: int = 256,
    **options: Unpack[EngineOptions],
) -> ChatModel:
    """The in-process model of a live-model record.

    `auto` runs it on llama.cpp (several times faster on CPU) when the record has the base GGUF and, for
    an adapter, its GGUF LoRA export (`gguf_lora`) or the merged model (`gguf_merged`); otherwise, or
    without llama-cpp-python, on transformers. `options` tune the llama.cpp engine (`EngineOptions`).
    """
    if engine == "llama.cpp" or (engine == "auto" and runs_on_llama_cpp(record)):
        try:
            from agent.backends.llama_cpp import LlamaCppChatModel

            return LlamaCppChatModel.from_record(record, max_new_tokens=max_new_tokens, **options)
        except ImportError:
            if engine == "llama.cpp":
                raise ModelUnavailable("llama-cpp-python is not installed") from None
    from agent.backends.local import TransformersChatModel

    return TransformersChatModel.from_record(record, max_new_tokens=max_new_tokens)


def runs_on_llama_cpp(record: LiveModel) -> bool:
    """Whether llama.cpp can serve the record as it is: the base GGUF, and the adapter's GGUF LoRA if any."""
    if not record.base_gguf:
        return False
    return not record.adapter_dir or bool(record.gguf_lora or record.gguf_merged)


def build_backend(settings: ModelSettings, *, registry: Any = None) -> ChatModel:
    """The backend named by settings.backend: `local` (the registry's live model) or `openai`."""
    if settings.backend == "openai":
        if not settings.openai_base_url or not settings.openai_model:
            raise ModelUnavailable(
                "backend=openai needs SPECIALIST_MODEL__OPENAI_BASE_URL and __OPENAI_MODEL"
            )
        model = OpenAIChatModel(
            settings.openai_base_url,
            settings.openai_model,
            api_key=settings.openai_api_key,
            timeout_s=settings.timeout_s,
            max_tokens=settings.max_new_tokens,
        )
        if registry is not None:
            live = registry.live()
            if live.kind == "run":
                model.reload(live)
        return model
    if settings.backend in {"local", "llama.cpp", "transformers"}:
        if registry is None:
            raise ModelUnavailable("the local backend needs the model registry")
        engine = "auto" if settings.backend == "local" else settings.backend
        return local_model_from_record(
            registry.live(),
            engine=engine,
            max_new_tokens=settings.max_new_tokens,
            **settings.engine_options(),
        )
    raise ModelUnavailable(f"unknown model backend {settings.backend!r}")
