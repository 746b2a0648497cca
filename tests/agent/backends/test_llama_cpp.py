"""The llama.cpp engine: prompt-lookup drafts, loop stop, greedy output unchanged, weight repacking."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import agent.backends
from agent.backends.llama_cpp import lookup_draft, loop_start, looping, shifted_run, whole_sentences
from agent.chat_model import ChatMessage
from agent.tool_format import END_OF_TURN, chat_messages, chatml
from agent.tool_specs import TOOL_SPECS
from finetune.base_model import smollm2_gguf_path
from specialist.live_model import LiveModel


def test_lookup_draft_continues_the_latest_earlier_match() -> None:
    assert lookup_draft([1, 2, 3, 9, 1, 2, 3, 7, 8, 5, 1, 2], k=3) == [3, 7, 8]
    assert lookup_draft([1, 2, 3, 4, 1, 2], k=10) == [3, 4, 1, 2]  # cut at the end of the context
    assert lookup_draft([5, 6, 7], k=4) == []  # the last token never occurred before
    assert lookup_draft([4], k=4) == []


def test_looping_sees_short_cycles_only() -> None:
    assert looping([7] * 30)
    assert looping([1, 2, 3] * 10)
    assert looping(list(range(20)) + [4, 5, 6, 7, 8, 9, 10] * 5)
    assert not looping([7] * 29)  # too short to tell
    assert not looping(list(range(40)))
    # two identical items in an exchange call repeat once or twice, never for 30 tokens
    ids = [11, 12, 13, 14, 15, 16]
    assert not looping([1, 2, 3, *ids, *ids, 20, 21, *ids, *ids, 22, 23, 24, 25, 26, 27])


def test_loop_start_finds_where_the_cycle_began() -> None:
    said = [50, 51, 52, 53]
    assert loop_start([*said, *[8, 9] * 15]) == len(said)  # "is a | durable, durable, ..."
    assert loop_start([*said, 5, *[6, 7, 5] * 10]) == len(said)  # the cycle's first token already repeats
    assert loop_start([7] * 30) == 0
    assert loop_start(list(range(40))) == 40  # no loop: everything was said


def test_whole_sentences_cuts_back_to_the_last_full_stop() -> None:
    assert whole_sentences("Your order is pending. It holds a Tablet, E-Reader") == "Your order is pending."
    assert whole_sentences("Is it 2.5 kg? Yes! Then the") == "Is it 2.5 kg? Yes!"
    assert whole_sentences("no sentence end at all") == "no sentence end at all"
    assert whole_sentences("no sentence end at all", strict=True) == ""


def test_shifted_run_finds_the_kept_history_further_right() -> None:
    system, dropped, kept = list(range(100, 110)), list(range(200, 230)), list(range(300, 340))
    cached = [*system, *dropped, *kept, 7, 7]
    assert shifted_run(cached, [*system, *kept, 1, 2], 10) == (40, 40)
    assert shifted_run(cached, [*system, *kept[:10], 1, 2], 10) is None  # a run under min_run is not kept
    assert shifted_run(cached, [*system, 5, 6, *kept], 10) is None  # the prompt goes on with new tokens


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from agent.backends.llama_cpp import LlamaCppChatModel

    return LlamaCppChatModel(smollm2_gguf_path(), max_new_tokens=48)


CONVERSATIONS = [
    [ChatMessage("user", "Hi, I'm Mei Martin, zip 32124. Where is my order #W5564375?")],
    [
        ChatMessage("user", "My email is omar.anderson@example.com"),
        ChatMessage("assistant", "Thanks. What can I do for you?"),
        ChatMessage("user", "Cancel order #W6067464, I ordered it by mistake."),
    ],
    [ChatMessage("user", "List the colours of the rainbow, then the days of the week.")],
]


def _prompt(engine, messages):  # type: ignore[no-untyped-def]
    text = chatml(chat_messages(messages, TOOL_SPECS))
    return engine._llm.tokenize(text.encode(), add_bos=False, special=True)


def _gaps(engine, prompt: list[int], out: list[int]) -> list[float]:  # type: ignore[no-untyped-def]
    """For each output token, how far its logit is below the best one, evaluating one token at a time."""
    import numpy as np

    llm = engine._llm
    llm.n_tokens = 0
    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    llm.eval(prompt)
    gaps = []
    for token in out:
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
        gaps.append(float(logits.max() - logits[token]))
        llm.eval([token])
    return gaps


def test_plain_decoding_is_llama_cpp_greedy_sampling(engine) -> None:  # type: ignore[no-untyped-def]
    system = ChatMessage("system", "You are the support agent of an online store.")
    engine.draft_tokens = 0
    for turns in CONVERSATIONS:
        prompt = _prompt(engine, [system, *turns])
        engine._llm.n_tokens = 0  # both from a cold cache
        ours = engine.complete([system, *turns], TOOL_SPECS)
        engine._llm.n_tokens = 0
        reference = engine._llm.create_completion(
            prompt=prompt, max_tokens=48, temperature=0.0, stop=[END_OF_TURN]
        )
        want = reference["choices"][0]["text"]
        if engine.stats.capped:  # a text reply cut at the cap keeps its whole sentences
            want = whole_sentences(want)
        assert ours.raw.strip() == want.strip()
    engine.draft_tokens = 4


def test_speculative_decoding_keeps_only_greedy_tokens(engine) -> None:  # type: ignore[no-untyped-def]
    """Drafted tokens are kept only where the batched pass chose them too.

    A batched pass rounds differently from a one-token pass, so on near-ties the two may pick different
    tokens (it happens with the untuned base, whose distributions are flat); each kept token is still the
    argmax up to that rounding.
    """
    system = ChatMessage("system", "You are the support agent of an online store.")
    engine.draft_tokens = 4
    drafted = accepted = 0
    for turns in CONVERSATIONS:
        prompt = _prompt(engine, [system, *turns])
        out = engine._greedy(engine._llm, prompt)
        drafted, accepted = drafted + engine.stats.drafted, accepted + engine.stats.accepted
        assert len(out) - 1 <= engine.stats.batches + engine.stats.accepted <= len(out)
        assert max(_gaps(engine, prompt, out)) < 0.25
    assert drafted > accepted > 0


def test_a_conversation_reuses_its_kv_cache(engine) -> None:  # type: ignore[no-untyped-def]
    messages = [ChatMessage("system", "You are the support agent of an online store."), *CONVERSATIONS[1]]
    first = engine.complete(messages, TOOL_SPECS)
    messages += [ChatMessage("assistant", first.raw), ChatMessage("user", "yes")]
    engine.complete(messages, TOOL_SPECS)
    assert engine.stats.reused >= first.prompt_tokens - 1
    assert engine.stats.evaluated < 60


def test_text_replies_stop_at_the_text_cap_and_tool_calls_do_not(engine) -> None:  # type: ignore[no-untyped-def]
    from agent.backends.llama_cpp import is_tool_call_start

    long_text = [ChatMessage("user", "Write three long paragraphs about the history of the rainbow.")]
    saved = engine.max_new_tokens, engine.max_text_tokens
    try:
        engine.max_new_tokens, engine.max_text_tokens = 60, 20
        capped = engine.complete(long_text, TOOL_SPECS)
        assert engine.stats.capped and capped.completion_tokens == 20
        engine.max_text_tokens = 80
        free = engine.complete(long_text, TOOL_SPECS)
        assert free.completion_tokens > 20
        assert capped.raw and free.raw.startswith(capped.raw)  # the same greedy text, cut back
    finally:
        engine.max_new_tokens, engine.max_text_tokens = saved
    tokenize = engine._llm.tokenize
    call = tokenize(b'<tool_call>{"name": "get_order_details", "arguments": {}}', add_bos=False, special=True)
    assert is_tool_call_start(engine._llm, call) and is_tool_call_start(engine._llm, call[:2])
    assert not is_tool_call_start(engine._llm, tokenize(b"Order #W5564375 is pending", add_bos=False))


def test_dropped_history_is_cut_out_of_the_cache_not_re_read(engine) -> None:  # type: ignore[no-untyped-def]
    system = ChatMessage("system", "You are the support agent of an online store.")
    said = [ChatMessage(("user", "assistant")[i % 2], f"Message {i}: " + "words " * 40) for i in range(8)]
    question = ChatMessage("user", "What is my order status?")

    def next_prompt_evaluates(shift: bool) -> int:
        engine.shift_history = shift
        engine.complete([system, *said], TOOL_SPECS)
        # the next prompt drops the two oldest messages and adds a question
        assert engine.complete([system, *said[2:], question], TOOL_SPECS).completion_tokens > 0
        assert (engine.stats.shifted > 100) is shift
        return int(engine.stats.evaluated)

    engine.max_new_tokens = 8
    try:
        assert next_prompt_evaluates(True) < next_prompt_evaluates(False) / 3
    finally:
        engine.shift_history, engine.max_new_tokens = False, 48


def test_decode_threads_come_from_the_settings_and_change_no_token(engine) -> None:  # type: ignore[no-untyped-def]
    from agent.backends import local_model_from_record

    one = local_model_from_record(
        LiveModel(name="base", kind="base", base_gguf=str(smollm2_gguf_path())),
        max_new_tokens=48,
        decode_threads=1,
    )
    assert one.decode_threads == 1 and engine.decode_threads == 2  # type: ignore[attr-defined]
    system = ChatMessage("system", "You are the support agent of an online store.")
    turns = [system, *CONVERSATIONS[1]]
    assert one.complete(turns, TOOL_SPECS).raw == engine.complete(turns, TOOL_SPECS).raw
    one.close()  # type: ignore[attr-defined]


def test_the_engine_takes_its_tuning_defaults_from_the_settings(engine) -> None:  # type: ignore[no-untyped-def]
    from agent.settings import ModelSettings

    defaults = ModelSettings()
    assert (engine.draft_tokens, engine.max_text_tokens, engine.shift_history) == (
        defaults.draft_tokens,
        defaults.max_text_tokens,
        defaults.shift_history,
    )
    assert engine.decode_threads == defaults.decode_threads  # 2, with the conftest's bounded spin


def test_every_engine_runs_on_the_one_llama_cpp_thread_and_a_closed_one_refuses(engine) -> None:  # type: ignore[no-untyped-def]
    """A second model (the benchmark's base, a model swapped out by a reload) adds no OpenMP team."""
    import threading

    from agent.backends.llama_cpp import LlamaCppChatModel
    from specialist.errors import ModelUnavailable

    seen: list[str] = []
    model = LlamaCppChatModel(smollm2_gguf_path(), max_new_tokens=8)
    turns = [ChatMessage("system", "You are the support agent of an online store."), *CONVERSATIONS[0]]
    for each in (engine, model):
        real_eval = each._llm.eval

        def eval_here(tokens, real_eval=real_eval):  # type: ignore[no-untyped-def]
            seen.append(threading.current_thread().name)
            return real_eval(tokens)

        each._llm.eval = eval_here
        try:
            assert each.complete(turns, TOOL_SPECS).completion_tokens > 0
        finally:
            each._llm.eval = real_eval
    assert len(seen) == 2 and len(set(seen)) == 1 and seen[0].startswith("llama.cpp")
    model.close()
    model.close()  # twice is fine
    with pytest.raises(ModelUnavailable, match="closed"):
        model.complete(turns, TOOL_SPECS)
    assert engine.complete(turns, TOOL_SPECS).completion_tokens > 0  # the shared thread goes on


def test_two_decode_threads_only_where_idle_threads_spin_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.backends.llama_cpp import openmp_threads

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("GOMP_SPINCOUNT", "1000000")
    assert openmp_threads(2) == (2, 2)
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")  # threads sleep at once: one decoding thread
    assert openmp_threads(2) == (2, 1)
    monkeypatch.setenv("GOMP_SPINCOUNT", "infinity")  # threads spin for good: one thread each
    assert openmp_threads(2) == (1, 1)


def test_calls_from_many_threads_all_run_on_the_engine_thread(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The service asks from a pool of turn threads; llama.cpp always runs on the engine's one thread."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    seen: list[str] = []
    real_eval = engine._llm.eval

    def eval_here(tokens):  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread().name)
        return real_eval(tokens)

    monkeypatch.setattr(engine._llm, "eval", eval_here)
    system = ChatMessage("system", "You are the support agent of an online store.")
    with ThreadPoolExecutor(len(CONVERSATIONS)) as pool:
        replies = list(pool.map(lambda turns: engine.complete([system, *turns], TOOL_SPECS), CONVERSATIONS))
    assert all(reply.raw for reply in replies)
    assert len(seen) == len(CONVERSATIONS)
    assert len(set(seen)) == 1 and seen[0].startswith("llama.cpp")


def test_a_text_reply_that_loops_keeps_only_what_came_before_the_loop(engine) -> None:  # type: ignore[no-untyped-def]
    ask = "Write the letter a one hundred times: a a a a a a a a a a a a a a a a a a a a"
    reply = engine.complete([ChatMessage("system", "You are helpful."), ChatMessage("user", ask)])
    assert engine.stats.looped and engine.stats.text_reply  # the base model does loop here
    assert reply.completion_tokens >= 30  # it wrote the loop...
    assert reply.text == "" and reply.raw == ""  # ...and nothing but it: the graph says it has no information


# --- weight repacking (AMX) ---------------------------------------------------------------------------


def _cpu_has(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def test_the_amx_fix_makes_the_tile_configuration_load(tmp_path: Path) -> None:
    """`ggml_amx_fix.h` (force-included when the Makefile builds llama-cpp-python): with it, code shaped like
    llama.cpp's tile set-up (a stack configuration, then `_tile_loadconfig`) runs instead of faulting."""
    compiler = shutil.which("g++")
    if compiler is None or not _cpu_has("amx_tile"):
        pytest.skip("needs g++ and a CPU with AMX")
    header = Path(agent.backends.__file__).parent / "ggml_amx_fix.h"
    source = tmp_path / "tiles.cpp"
    source.write_text(
        "#include <immintrin.h>\n#include <cstdint>\n#include <unistd.h>\n#include <sys/syscall.h>\n"
        "struct cfg { uint8_t palette_id = 0, start_row = 0; uint8_t reserved[14] = {0};"
        " uint16_t colsb[16] = {0}; uint8_t rows[16] = {0}; };\n"
        "__attribute__((noinline)) void load() { alignas(64) cfg tc = {}; tc.palette_id = 1;\n"
        "  for (int i = 0; i < 8; ++i) { tc.rows[i] = 16; tc.colsb[i] = 64; }\n"
        "  _tile_loadconfig(&tc); _tile_zero(0); _tile_release(); }\n"
        "int main() { if (syscall(SYS_arch_prctl, 0x1023, 18)) return 2; load(); return 0; }\n"
    )
    binary = tmp_path / "tiles"
    flags = ["-O2", "-mamx-tile", "-mamx-int8", f"-include{header}"]
    subprocess.run([compiler, *flags, str(source), "-o", str(binary)], check=True, timeout=120)
    assert subprocess.run([str(binary)], timeout=30).returncode == 0


def test_repacking_is_used_only_where_the_check_saw_it_run(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from agent.backends.llama_cpp import LlamaCppChatModel, repacking_works

    junk = tmp_path / "not-a-model.gguf"
    junk.write_bytes(b"GGUF but not really")
    assert repacking_works(junk) is False  # a child that fails is a verdict, not an error
    assert engine.repack_weights == "auto" and engine.repacked == repacking_works(smollm2_gguf_path())
    plain = LlamaCppChatModel(smollm2_gguf_path(), max_new_tokens=8, repack_weights="off")
    assert plain.repacked is False
    plain.close()


def test_the_installed_llama_cpp_runs_its_amx_kernels() -> None:
    """On a CPU with AMX, the llama-cpp-python `make install` built runs them (the Makefile's fix is in)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    if not _cpu_has("amx_int8"):
        pytest.skip("the CPU has no AMX")
    from agent.backends.llama_cpp import repacking_works

    assert repacking_works(smollm2_gguf_path()), "llama-cpp-python was built without ggml_amx_fix.h"


def test_repacked_weights_answer_as_the_plain_kernels_do(engine) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from agent.backends.llama_cpp import LlamaCppChatModel

    if not engine.repacked:
        pytest.skip("weight repacking does not run here")
    plain = LlamaCppChatModel(smollm2_gguf_path(), max_new_tokens=8, repack_weights="off")
    system = ChatMessage("system", "You are the support agent of an online store.")
    for turns in CONVERSATIONS:
        prompt = _prompt(engine, [system, *turns])
        fast, slow = (_last_logits(model, prompt) for model in (engine, plain))
        assert int(fast.argmax()) == int(slow.argmax())
        assert float(np.abs(fast - slow).max()) < 0.1 * float(slow.max() - slow.min())
    plain.close()


def _last_logits(model, prompt: list[int]):  # type: ignore[no-untyped-def]
    import numpy as np

    llm = model._llm
    llm.n_tokens = 0
    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    llm.eval(prompt)
    return np.array(np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),)))
