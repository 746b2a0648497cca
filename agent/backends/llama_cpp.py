"""The in-process behaviour model on llama.cpp: the base GGUF with the adapter merged in, or as a LoRA."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

from agent.chat_model import ChatMessage, ChatReply, ToolSpec
from agent.choices import Choices
from agent.decoding import Trace, choose
from agent.settings import EngineOptions, ModelSettings
from agent.tool_format import END_OF_TURN, chat_messages, chatml, parse_reply
from specialist.errors import InvalidInput, ModelUnavailable
from specialist.live_model import LiveModel
from specialist.openmp import configure_openmp, libgomp_loaded, threads_sleep, threads_spin_first

log = logging.getLogger(__name__)


_LOAD_LOCK = threading.Lock()
SCORING_SEQUENCES = 64  # candidates scored in one batch at most (more are scored in several)
_repack_on_load = False  # what `patched_llama`'s default parameters say while `load_llama` holds _LOAD_LOCK


def patched_llama() -> Any:
    """llama_cpp.Llama whose models load without llama.cpp's extra weight buffers (repacked weights, AMX
    tiles) unless `load_llama` asks for them.

    A llama-cpp-python built by GCC 12 without `ggml_amx_fix.h` crashes (SIGSEGV) in its AMX kernels on
    the first prompt, so repacking is opted into per model, where `repacking_works` saw it run.
    """
    import llama_cpp.llama_cpp as lib
    from llama_cpp import Llama

    if not getattr(lib, "_specialist_patched", False):
        default = lib.llama_model_default_params
        context_default = lib.llama_context_default_params

        def params_as_asked() -> Any:
            params = default()
            params.use_extra_bufts = _repack_on_load
            return params

        def context_params() -> Any:
            # room for the candidates of a constrained step, scored side by side in one batch, each its own
            # sequence over the shared prompt (one unified KV cache: the prompt's cells are not copied)
            params = context_default()
            params.n_seq_max = SCORING_SEQUENCES
            params.kv_unified = True
            return params

        lib.llama_model_default_params = params_as_asked
        lib.llama_context_default_params = context_params
        lib._specialist_patched = True  # type: ignore[attr-defined]
    return Llama


def load_llama(gguf: Path, *, repack: bool, **kwargs: Any) -> Any:
    """A llama_cpp.Llama on `gguf`, with its weights repacked for this CPU's fastest kernels or not."""
    global _repack_on_load
    Llama = patched_llama()
    with _LOAD_LOCK:
        _repack_on_load = repack
        try:
            return Llama(model_path=str(gguf), verbose=False, **kwargs)
        finally:
            _repack_on_load = False


# Run in a child process by `repacking_works`: the last-token logits of one prompt, with the weights
# repacked and without; exit 0 when they agree, 3 when they do not (a crash exits by its signal).
_REPACK_PROBE = """
import sys
import numpy as np
from agent.backends.llama_cpp import load_llama

def logits(repack):
    llm = load_llama(sys.argv[1], repack=repack, n_ctx=512, n_threads=1, n_threads_batch=2)
    tokens = llm.tokenize(sys.argv[2].encode(), add_bos=False)
    llm.eval(tokens[:-1])  # a prompt batch
    llm.eval(tokens[-1:])  # and one decoding step
    return np.array(np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),)))

repacked, plain = logits(True), logits(False)
agree = repacked.argmax() == plain.argmax() and np.corrcoef(repacked, plain)[0, 1] > 0.99
sys.exit(0 if agree else 3)
"""
_PROBE_TEXT = (
    "Customer: I want to return the wall clock from order #W6067464 (item 8917609800) to my credit card. "
    "Agent: Order #W6067464 was delivered, so the wall clock can be returned. The refund of $195.59 goes to"
)
_repacking_verdicts: dict[str, bool] = {}


def repacking_works(gguf: Path, *, timeout_s: float = 180.0) -> bool:
    """Whether llama.cpp runs this model with repacked weights here, and agrees with its plain kernels.

    Checked once per file and process, in a child process, because a faulty build crashes rather than
    raising: llama-cpp-python built by GCC 12 without `ggml_amx_fix.h` (see the Makefile) dies in its AMX
    kernels. Plain kernels are the fallback; the verdict is logged.
    """
    import subprocess
    import sys

    key = str(Path(gguf).resolve())
    if key not in _repacking_verdicts:
        try:
            child = subprocess.run(
                [sys.executable, "-c", _REPACK_PROBE, key, _PROBE_TEXT],
                capture_output=True,
                timeout=timeout_s,
            )
            code: int | str = child.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        _repacking_verdicts[key] = code == 0
        log.info("llama.cpp weight repacking for %s: %s (probe exit %s)", key, code == 0, code)
    return _repacking_verdicts[key]


_ENGINE_THREAD: ThreadPoolExecutor | None = None
_ENGINE_THREAD_LOCK = threading.Lock()


def engine_thread() -> ThreadPoolExecutor:
    """The one thread every llama.cpp call of this process runs on, whichever model and thread asks.

    OpenMP gives each thread that calls into llama.cpp its own team of worker threads, and an idle team
    lives as long as its thread. Once a process's OpenMP threads outnumber the cores, libgomp cuts every
    team's spin to almost nothing, and with it the gain of 2 decoding threads: 14 recorded calls took
    46-51 s with a second model's engine thread alive (the benchmark's base model, a model swapped out by
    a reload) against 24-25 s without it, and 30 calls issued from 4 rotating threads 103 s against 53 s.
    """
    global _ENGINE_THREAD
    with _ENGINE_THREAD_LOCK:
        if _ENGINE_THREAD is None:
            _ENGINE_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama.cpp")
        return _ENGINE_THREAD


def openmp_threads(decode_threads: int) -> tuple[int, int]:
    """Threads for prompts and for decoding steps, given how this process's OpenMP threads wait.

    - Both use a second thread only where idle threads sleep in the end: threads that spin for good stall
      a CPU shared with other work (a call took ~20x longer next to a training job).
    - Decoding steps use `decode_threads` only where idle threads also spin a little first: a step is
      ~1 ms of work between Python calls, and a thread woken from sleep for each made 2 threads slower
      than 1.

    libgomp reads its settings once, when it loads (torch loads the same libgomp.so.1), so they are set
    here only if nothing loaded it yet.
    """
    if not libgomp_loaded():
        configure_openmp()
    if not threads_sleep():
        return 1, 1
    return 2, decode_threads if threads_spin_first() else 1


def lookup_draft(tokens: Sequence[int], *, max_ngram: int = 3, k: int = 4) -> list[int]:
    """Prompt-lookup drafting: the k tokens that followed the latest earlier occurrence of the last n-gram.

    The agent's replies copy much from its context (tool names, ids, the call syntax), so these guesses are
    often right; a wrong one only costs its share of one batched evaluation.
    """
    n = len(tokens)
    for size in range(min(max_ngram, n - 1), 0, -1):
        tail = list(tokens[n - size :])
        for start in range(n - size - 1, -1, -1):
            if list(tokens[start : start + size]) == tail:
                return list(tokens[start + size : min(n, start + size + k)])
    return []


def looping(tokens: Sequence[int], *, span: int = 30, max_period: int = 10) -> bool:
    """Whether the last `span` tokens repeat one cycle of at most `max_period` tokens (3+ times: a loop).

    A small model sometimes loops ("0000...", "Yoga Mat, T-Shirt, Yoga Mat, T-Shirt, ..."); nothing it
    writes after that is usable, so decoding stops there instead of running to `max_new_tokens`.
    """
    return loop_start(tokens, span=span, max_period=max_period) < len(tokens)


TEXT_PROBE_TOKENS = 6  # enough tokens to tell a "<tool_call>" from text


def is_tool_call_start(llm: Any, out: Sequence[int]) -> bool:
    """Whether the reply so far opens a tool call (its first tokens read "<tool_call>", or a prefix of it)."""
    head = llm.detokenize(list(out[:TEXT_PROBE_TOKENS])).decode("utf-8", errors="replace").lstrip()
    return head.startswith("<tool_call>"[: len(head)])


def whole_sentences(text: str, *, strict: bool = False) -> str:
    """Text cut back to its last complete sentence (all of it when it has none, or nothing if `strict`)."""
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
    return text[: ends[-1]] if ends else ("" if strict else text)


def loop_start(tokens: Sequence[int], *, span: int = 30, max_period: int = 10) -> int:
    """Where the loop `looping` sees at the end of `tokens` begins (its first full cycle); len(tokens) if
    there is none. What comes before it is what the reply said."""
    n = len(tokens)
    start = n
    if n < span:
        return n
    for period in range(1, max_period + 1):
        if any(tokens[i] != tokens[i - period] for i in range(n - span + period, n)):
            continue
        j = n - 1
        while j - period >= 0 and tokens[j] == tokens[j - period]:
            j -= 1
        start = min(start, j + 1 - period)
    return max(start, 0)


def shifted_run(
    cached: Sequence[int], tokens: Sequence[int], start: int, *, min_run: int = 16
) -> tuple[int, int] | None:
    """Where the prompt's tokens after `start` continue in the cache further on: (position, length) of the
    longest run `cached[p:p+n] == tokens[start:start+n]` with p > start and n >= min_run, else None.

    That is the shape of a prompt whose old history was dropped: the shared prefix (system prompt), then
    messages the cache holds further to the right."""
    if len(tokens) - start < min_run:
        return None
    probe = list(tokens[start : start + min_run])
    best: tuple[int, int] | None = None
    for p in range(start + 1, len(cached) - min_run + 1):
        if cached[p] != probe[0] or list(cached[p : p + min_run]) != probe:
            continue
        n = min_run
        while p + n < len(cached) and start + n < len(tokens) and cached[p + n] == tokens[start + n]:
            n += 1
        if best is None or n > best[1]:
            best = (p, n)
    return best


@dataclass
class DecodeStats:
    """What the last call cost: prompt tokens reused from the KV cache and evaluated, and batches run."""

    reused: int = 0
    evaluated: int = 0
    generated: int = 0
    batches: int = 0
    drafted: int = 0
    accepted: int = 0
    looped: bool = False
    capped: bool = False  # a text reply stopped at a token limit (then cut back to whole sentences)
    text_reply: bool = False  # the reply is text, not a tool call
    shifted: int = 0  # cached tokens moved back into place after dropped history (`shift_history`)


class LlamaCppChatModel:
    """Greedy decoding on llama.cpp; `reload()` swaps in a newly promoted adapter.

    - **KV prefix reuse:** consecutive calls evaluate only what follows their common token prefix (the system
      prompt and tool list, and within a conversation the turns so far). `reused_tokens` says how many the
      last call reused.
    - **Threads:** the prompt is evaluated on `threads` threads, decoding steps on `decode_threads` (both 2
      by default, see `openmp_threads`). With OpenMP threads that spin ~10 ms before they sleep
      (`specialist.openmp`), 58 recorded benchmark calls took ~30% less time on 2 decoding threads than on
      1, with identical tokens; with threads that sleep at once, 2 were ~40% slower than 1. Every call of
      every model runs on the process's one llama.cpp thread (`engine_thread`), so a second model or a
      pool of calling threads adds no OpenMP team.
    - **Speculative decoding with prompt lookup:** each step evaluates the next token together with a draft
      of up to `draft_tokens` tokens guessed from the context (`lookup_draft`) in one batch, and keeps the
      draft tokens that are the batch's own greedy choices: greedy decoding in fewer passes over the
      weights. A batched pass rounds slightly differently from a one-token pass, so a near-tie may break
      the other way (on 30 held-out steps of the default model, 29 outputs were identical to llama-cpp-
      python's greedy sampling; the other was a degenerate loop either way). `draft_tokens=0` turns it off.
    - **Loops stop early** (`looping`): a greedy loop ends the reply instead of running to the token limit.
      A text reply keeps only the whole sentences before the loop (`loop_start`), possibly none.
    - **Text replies are capped** at `max_text_tokens` (tool calls keep `max_new_tokens`): the model was
      trained on replies of at most 74 tokens, and a longer one is a small model rambling ("Order #W1 is
      delivered: Tablet, E-Reader, ..., Expert, 1500 animals, Expert, ..."); the reply is cut back to its
      last whole sentence. On 4 benchmark tasks 5 of 28 calls ran to the 160-token limit that way.
    - **History shift** (`shift_history`, off by default): a prompt that dropped old history after the
      system prompt finds the messages it kept further right in the cache; they are moved back into place
      (`kv_cache_seq_shift`) instead of being re-read. Approximate: those tokens were computed with the
      dropped ones in view.
    - **Weight repacking** (`repack_weights`, "auto" by default): a model without a run-time LoRA loads with
      its weights repacked for the CPU's fastest kernels (AMX on this machine: 58 recorded benchmark calls
      took 59 s instead of 105 s) where `repacking_works` saw them run and agree with the plain kernels;
      `repacked` says which it got.
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
        **options: Unpack[EngineOptions],
    ) -> None:
        # the tuning options default to the settings' defaults (`ModelSettings`), written once there
        tuned = ModelSettings().engine_options()
        tuned.update(options)
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.max_text_tokens = tuned["max_text_tokens"]
        prompt_threads, self.decode_threads = openmp_threads(tuned["decode_threads"])
        self._threads = threads or prompt_threads
        self._n_ctx = n_ctx
        self.draft_tokens = tuned["draft_tokens"]
        self.shift_history = tuned["shift_history"]
        self.repack_weights = tuned["repack_weights"]
        self._lock = threading.Lock()
        self._closed = False
        self.reused_tokens = 0
        self.stats = DecodeStats()
        self.last_trace = Trace()
        self._llm, self.repacked = self._load(gguf, lora)
        self._stop_ids = self._stops(self._llm)
        self.record: LiveModel | None = None  # the live-model record it serves, when built from one

    @classmethod
    def from_record(
        cls,
        record: LiveModel,
        *,
        max_new_tokens: int = 256,
        **options: Unpack[EngineOptions],
    ) -> LlamaCppChatModel:
        """Build from a live-model record (`base_gguf`, optional `gguf_lora` or `gguf_merged`, `name`)."""
        gguf, lora = _model_files(record)
        model = cls(
            gguf,
            lora=lora,
            name=record.name,
            max_new_tokens=max_new_tokens,
            **options,
        )
        model.record = record
        return model

    def _load(self, gguf: Path, lora: Path | None) -> tuple[Any, bool]:
        """The loaded model, and whether its weights were repacked (`repack_weights`)."""
        for path in (gguf, lora):
            if path is not None and not path.exists():
                raise ModelUnavailable(f"model file missing: {path}")
        if self.repack_weights == "auto":
            # a run-time LoRA stays on the plain kernels: with it, repacking made a prompt 2.2x slower here
            repack = lora is None and repacking_works(gguf)
        else:
            repack = self.repack_weights == "on"
        llm = load_llama(
            gguf,
            repack=repack,
            lora_path=str(lora) if lora else None,
            n_ctx=self._n_ctx,
            n_threads=1,
            n_threads_batch=self._threads,
        )
        return llm, repack

    def reload(self, record: LiveModel) -> None:
        """Swap in another live model without restarting."""
        gguf, lora = _model_files(record)
        llm, repacked = self._load(gguf, lora)
        stops = self._stops(llm)
        with self._lock:
            self._llm, self._stop_ids, self.repacked = llm, stops, repacked
            self.reused_tokens = 0
            self.name = record.name
            self.record = record

    def close(self) -> None:
        """Free the weights (after the call in progress); later calls fail with ModelUnavailable."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            closer = getattr(self._llm, "close", None)
            if callable(closer):
                closer()

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = (), choices: Choices | None = None
    ) -> ChatReply:
        """Greedy completion of one conversation (same prompt as training: compact ChatML); with `choices`,
        the step is chosen within them (`agent.decoding`)."""
        prompt = chatml(chat_messages(messages, tools))
        if choices is not None:
            return engine_thread().submit(self._choose, prompt, choices).result()
        # on the process's one llama.cpp thread, whatever thread asks (`engine_thread`)
        raw, tokens, out = engine_thread().submit(self._run, prompt).result()
        parsed = parse_reply(raw)
        return ChatReply(
            text=parsed.text,
            tool_calls=parsed.tool_calls,
            raw=raw,
            prompt_tokens=len(tokens),
            completion_tokens=len(out),
        )

    def _run(self, prompt: str) -> tuple[str, list[int], list[int]]:
        """Tokenize, decode and detokenize one prompt (on the engine thread, so `close` can free the model
        once that thread is done)."""
        with self._lock:
            if self._closed:
                raise ModelUnavailable(f"model {self.name!r} was closed")
            llm = self._llm
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            if len(tokens) >= self._n_ctx:
                raise ModelUnavailable(f"prompt of {len(tokens)} tokens exceeds the context ({self._n_ctx})")
            out = self._greedy(llm, tokens)
            self.reused_tokens = self.stats.reused
            kept = [t for t in out if t not in self._stop_ids]
            looped_text = self.stats.looped and self.stats.text_reply
            if looped_text:
                # "... is a durable, durable, durable, ..." is not shown: what came before the loop, in whole
                # sentences, or nothing (the graph then says it does not have the information)
                kept = kept[: loop_start(kept)]
            raw = llm.detokenize(kept).decode("utf-8", errors="replace")
            if looped_text or self.stats.capped:
                raw = whole_sentences(raw, strict=looped_text)
            return raw, tokens, out

    def _choose(self, prompt: str, choices: Choices) -> ChatReply:
        """A constrained step on the engine thread: candidates scored on the KV cache (`_LlamaScorer`)."""
        with self._lock:
            if self._closed:
                raise ModelUnavailable(f"model {self.name!r} was closed")
            scorer = _LlamaScorer(self, self._llm)
            reply, trace = choose(scorer, prompt, choices, max_text_tokens=self.max_text_tokens)
            self.last_trace = trace
            reply.prompt_tokens = scorer.prompt_tokens
            reply.completion_tokens = scorer.evaluated
            return reply

    @staticmethod
    def _stops(llm: Any) -> set[int]:
        end = llm.tokenize(END_OF_TURN.encode(), add_bos=False, special=True)
        return {int(llm.token_eos()), *(end if len(end) == 1 else [])}

    def _greedy(self, llm: Any, tokens: list[int]) -> list[int]:
        """Greedy tokens after the prompt, up to an end-of-turn token or `max_new_tokens`."""
        import numpy as np

        ctx, n_vocab, stops = llm._ctx, llm.n_vocab(), self._stop_ids
        stats = DecodeStats()
        cached = llm.input_ids[: llm.n_tokens].tolist()
        reuse = min(llm.longest_token_prefix(cached, tokens), len(tokens) - 1)  # the last one yields logits
        found = shifted_run(cached, tokens, reuse) if self.shift_history else None
        if found is not None:
            # the prompt dropped old history after the shared prefix: drop it from the cache too and move
            # the run that follows it back into place (llama.cpp re-rotates the moved keys)
            start, size = found
            size = min(size, len(tokens) - 1 - reuse)
            ctx.kv_cache_seq_rm(-1, start + size, -1)
            ctx.kv_cache_seq_rm(-1, reuse, start)
            ctx.kv_cache_seq_shift(0, start, start + size, reuse - start)
            llm.input_ids[reuse : reuse + size] = cached[start : start + size]
            stats.shifted = size
            reuse += size
        ctx.kv_cache_seq_rm(-1, reuse, -1)
        llm.n_tokens = reuse
        stats.reused, stats.evaluated = reuse, len(tokens) - reuse
        ctx.set_n_threads(1, self._threads)
        llm.eval(tokens[reuse:])
        ctx.set_n_threads(self.decode_threads, self.decode_threads)  # small batches from here on

        def argmax(i: int) -> int:
            return int(np.argmax(np.ctypeslib.as_array(ctx.get_logits_ith(i), shape=(n_vocab,))))

        out: list[int] = []
        seq = list(tokens)
        nxt = argmax(-1)
        room = self._n_ctx - 1
        limit = self.max_new_tokens
        text_reply: bool | None = None  # known once TEXT_PROBE_TOKENS tokens are out
        while True:
            out.append(nxt)
            seq.append(nxt)
            if text_reply is None and len(out) >= TEXT_PROBE_TOKENS:
                text_reply = not is_tool_call_start(llm, out)
                if text_reply:
                    limit = min(limit, max(self.max_text_tokens, TEXT_PROBE_TOKENS))
            if nxt in stops or len(out) >= limit or llm.n_tokens + 1 >= room:
                break
            budget = min(limit - len(out), room - llm.n_tokens - 1)
            draft = lookup_draft(seq, k=self.draft_tokens)[:budget] if self.draft_tokens else []
            batch = [nxt, *draft]
            n_past = llm.n_tokens
            llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)
            ctx.decode(llm._batch)
            llm.input_ids[n_past : n_past + len(batch)] = batch
            stats.batches += 1
            stats.drafted += len(draft)
            accepted = 0
            for i in range(len(batch)):
                best = argmax(i)
                if i < len(draft) and best == draft[i] and best not in stops:
                    out.append(best)
                    seq.append(best)
                    accepted += 1
                    continue
                nxt = best
                break
            stats.accepted += accepted
            llm.n_tokens = n_past + 1 + accepted
            ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)  # drop the rejected draft tokens
            if len(out) >= limit:
                break
            if looping(out):
                stats.looped = True
                break
        stats.text_reply = bool(text_reply)
        stats.capped = stats.text_reply and len(out) >= limit and out[-1] not in stops
        stats.generated = len(out)
        self.stats = stats
        return out

    def stream(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()) -> Iterator[str]:
        """Yield the reply text word by word (tool calls are not streamed)."""
        reply = self.complete(messages, tools)
        for i, word in enumerate(reply.text.split(" ")):
            yield word if i == 0 else " " + word


def _model_files(record: LiveModel) -> tuple[Path, Path | None]:
    """The GGUF files of a record: the merged model (`gguf_merged`) when there is one, else the base and the
    adapter's GGUF LoRA. An adapter record with neither is refused: llama.cpp would silently serve the bare
    base model."""
    if record.gguf_merged:
        return Path(record.gguf_merged), None
    if record.adapter_dir and not record.gguf_lora:
        raise ModelUnavailable(
            f"model {record.name!r} has an adapter but no GGUF LoRA export; "
            "serve it with backend=transformers"
        )
    if not record.base_gguf:
        raise ModelUnavailable(f"model {record.name!r} has no GGUF file for llama.cpp")
    lora = record.gguf_lora
    return Path(record.base_gguf), Path(lora) if lora else None


class _LlamaScorer:
    """`agent.decoding.Scorer` on a loaded llama.cpp model: continuations are scored on the KV cache, each
    evaluating only the tokens after what the cache already holds (the prompt is read once per step)."""

    def __init__(self, engine: LlamaCppChatModel, llm: Any) -> None:
        self.engine, self.llm = engine, llm
        self.prompt_tokens = 0
        self.evaluated = 0
        self._tokens: dict[str, list[int]] = {}

    def _tokenize(self, text: str) -> list[int]:
        if text not in self._tokens:
            self._tokens[text] = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            if len(self._tokens[text]) >= self.engine._n_ctx - 64:
                raise ModelUnavailable(f"prompt of {len(self._tokens[text])} tokens exceeds the context")
        return self._tokens[text]

    def _logits_after(self, tokens: list[int], start: int) -> Any:
        """Evaluate `tokens` so that the logits of positions start..len-1 are at hand (rows of the array)."""
        import numpy as np

        llm, ctx = self.llm, self.llm._ctx
        cached = llm.input_ids[: llm.n_tokens].tolist()
        reuse = min(llm.longest_token_prefix(cached, tokens), start)
        ctx.kv_cache_seq_rm(-1, reuse, -1)
        llm.n_tokens = reuse
        if start > reuse:
            ctx.set_n_threads(1, self.engine._threads)
            llm.eval(tokens[reuse:start])
            self.evaluated += start - reuse
        tail = tokens[start:]
        ctx.set_n_threads(self.engine.decode_threads, self.engine._threads)
        llm._batch.set_batch(batch=tail, n_past=start, logits_all=True)
        ctx.decode(llm._batch)
        llm.input_ids[start : start + len(tail)] = tail
        llm.n_tokens = start + len(tail)
        self.evaluated += len(tail)
        n_vocab = llm.n_vocab()
        return np.stack(
            [np.ctypeslib.as_array(ctx.get_logits_ith(i), shape=(n_vocab,)).copy() for i in range(len(tail))]
        )

    def logprobs(self, prefix: str, continuations: Sequence[str]) -> list[float]:
        """Log-likelihood of each continuation after the prefix (joint tokenization, so merges are right).

        The continuations are decoded side by side in one batch, each as its own sequence that shares the
        prefix's cells in the KV cache (`kv_cache_seq_cp`), and removed again afterwards."""
        import llama_cpp

        base = self._tokenize(prefix)
        self.prompt_tokens = max(self.prompt_tokens, len(base))
        fulls = [self._tokenize(prefix + cont) for cont in continuations]
        splits = []
        for full in fulls:
            k = 0
            while k < min(len(base), len(full)) and base[k] == full[k]:
                k += 1
            splits.append(max(k, 1))
        start = min(splits) - 1  # every continuation is decoded from here; seq 0 holds what comes before
        llm, ctx = self.llm, self.llm._ctx
        cached = llm.input_ids[: llm.n_tokens].tolist()
        reuse = min(llm.longest_token_prefix(cached, base), start)
        ctx.kv_cache_seq_rm(0, reuse, -1)
        llm.n_tokens = reuse
        if start > reuse:
            ctx.set_n_threads(1, self.engine._threads)
            llm.eval(base[reuse:start])
            self.evaluated += start - reuse
        scores = [0.0] * len(fulls)
        todo = [i for i, full in enumerate(fulls) if splits[i] < len(full)]
        n_vocab = llm.n_vocab()
        ctx.set_n_threads(self.engine.decode_threads, self.engine._threads)
        # A group's rows fit the batch and the KV cells the prompt leaves free (seq 0 holds `start` of them;
        # the scoring sequences share those and each row takes a new one).
        capacity = min(int(llm.n_batch), int(llm.n_ctx()) - start - 1)
        for group in _groups(todo, [len(fulls[i]) - 1 - start for i in todo], capacity):
            try:
                self._score_group(group, fulls, splits, start, scores, n_vocab)
            finally:  # the scoring sequences never outlive the group, also when decoding fails
                for seq in range(1, len(group) + 1):
                    llama_cpp.llama_memory_seq_rm(ctx.memory, seq, -1, -1)
        return scores

    def _score_group(
        self,
        group: Sequence[int],
        fulls: Sequence[list[int]],
        splits: Sequence[int],
        start: int,
        scores: list[float],
        n_vocab: int,
    ) -> None:
        """Decode one group of continuations side by side (one sequence each) and add up their scores."""
        import numpy as np

        llm, ctx = self.llm, self.llm._ctx
        batch = llm._batch.batch
        rows: dict[int, tuple[int, int]] = {}  # candidate -> (first row, number of rows)
        n = 0
        for seq, i in enumerate(group, start=1):
            ctx.kv_cache_seq_cp(0, seq, 0, start)
            tail = fulls[i][start:-1]
            rows[i] = (n, len(tail))
            for j, token in enumerate(tail):
                batch.token[n] = token
                batch.pos[n] = start + j
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = True
                n += 1
        batch.n_tokens = n
        ctx.decode(llm._batch)
        self.evaluated += n
        for i in group:
            first, count = rows[i]
            logits = np.stack(
                [np.ctypeslib.as_array(ctx.get_logits_ith(first + r), shape=(n_vocab,)) for r in range(count)]
            )
            logits = logits - logits.max(axis=1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            offset = splits[i] - 1 - start  # the row that predicts the first token after the prefix
            targets = fulls[i][splits[i] :]
            scores[i] = float(sum(logp[offset + r, t] for r, t in enumerate(targets)))

    def greedy(self, prefix: str, *, stop: str, max_tokens: int) -> str:
        """Greedy text after the prefix up to `stop` (the engine's own decoder for a reply)."""
        if stop == END_OF_TURN:
            tokens = self._tokenize(prefix)
            self.prompt_tokens = max(self.prompt_tokens, len(tokens))
            decoded = self.engine._greedy(self.llm, tokens)
            kept = [t for t in decoded if t not in self.engine._stop_ids]
            text = self.llm.detokenize(kept).decode("utf-8", errors="replace")
            return whole_sentences(text) if self.engine.stats.capped else text
        import numpy as np

        tokens = list(self._tokenize(prefix))
        out: list[int] = []
        text = ""
        for _ in range(max_tokens):
            rows = self._logits_after(tokens, len(tokens) - 1)
            nxt = int(np.argmax(rows[-1]))
            if nxt in self.engine._stop_ids:
                break
            tokens.append(nxt)
            out.append(nxt)
            text = self.llm.detokenize(out).decode("utf-8", errors="replace")
            if stop in text:
                return text.split(stop)[0]
        return text


def _groups(todo: Sequence[int], sizes: Sequence[int], capacity: int) -> Iterator[list[int]]:
    """Candidates in groups that fit one decode: at most SCORING_SEQUENCES - 1 sequences and `capacity`
    batch rows (each candidate takes `sizes[k]` rows). A candidate longer than the batch cannot be scored."""
    room = min(SCORING_SEQUENCES - 1, 63)
    group: list[int] = []
    used = 0
    for candidate, size in zip(todo, sizes, strict=True):
        if size > capacity:
            raise InvalidInput(f"a choice of {size} tokens does not fit the engine's batch of {capacity}")
        if group and (len(group) == room or used + size > capacity):
            yield group
            group, used = [], 0
        group.append(candidate)
        used += size
    if group:
        yield group
