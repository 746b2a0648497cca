"""The in-process behaviour model on transformers: base weights + the live LoRA adapter, merged, on CPU."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agent.chat_model import ChatMessage, ChatReply, ToolSpec
from agent.choices import Choices
from agent.decoding import Trace, choose
from agent.tool_format import END_OF_TURN, parse_reply, prompt_text
from specialist.errors import ModelUnavailable
from specialist.live_model import LiveModel


class TransformersChatModel:
    """SmolLM2 (or any causal LM folder) + optional LoRA adapter; greedy decoding; reloadable."""

    def __init__(
        self,
        base_dir: Path,
        *,
        adapter_dir: Path | None = None,
        name: str = "local",
        max_new_tokens: int = 256,
        bf16: bool = False,
    ) -> None:
        self.name = name
        self.max_new_tokens = max_new_tokens
        # float32 by default: bf16 autocast measured no faster for decoding here and changes outputs
        self.bf16 = bf16
        self._lock = threading.Lock()
        self._model, self._tokenizer = self._load(base_dir, adapter_dir)
        self._prefix: dict[str, Any] = {}
        self.last_trace = Trace()
        self.record: LiveModel | None = None  # the live-model record it serves, when built from one

    @classmethod
    def from_record(cls, record: LiveModel, *, max_new_tokens: int = 256) -> TransformersChatModel:
        """Build from a live-model record (`base_dir`, optional `adapter_dir`, `name`)."""
        model = cls(
            _base_dir(record),
            adapter_dir=Path(record.adapter_dir) if record.adapter_dir else None,
            name=record.name,
            max_new_tokens=max_new_tokens,
        )
        model.record = record
        return model

    @staticmethod
    def _load(base_dir: Path, adapter_dir: Path | None) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not (base_dir / "config.json").exists():
            raise ModelUnavailable(f"base model folder missing: {base_dir}")
        tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
        if adapter_dir is not None:
            if not (adapter_dir / "adapter_config.json").exists():
                raise ModelUnavailable(f"adapter missing: {adapter_dir}")
            from peft import PeftModel

            # merged into the weights: no LoRA overhead per token
            model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        model.eval()
        return model, tokenizer

    def reload(self, record: LiveModel) -> None:
        """Swap in another live model (e.g. a newly promoted adapter) without restarting."""
        adapter = Path(record.adapter_dir) if record.adapter_dir else None
        model, tokenizer = self._load(_base_dir(record), adapter)
        with self._lock:
            self._model, self._tokenizer = model, tokenizer
            self._prefix = {}
            self.name = record.name
            self.record = record

    def prompt(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]) -> str:
        """The exact prompt text the model sees."""
        return prompt_text(self._tokenizer, messages, tools)

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = (), choices: Choices | None = None
    ) -> ChatReply:
        """Greedy completion of one conversation; with `choices`, the step is chosen within them."""
        if choices is None:
            return self.complete_batch([(messages, tools)])[0]
        import torch

        with self._lock, torch.inference_mode():
            scorer = _TransformersScorer(self._model, self._tokenizer)
            reply, self.last_trace = choose(scorer, self.prompt(messages, tools), choices)
            reply.prompt_tokens, reply.completion_tokens = scorer.prompt_tokens, scorer.evaluated
            return reply

    def complete_batch(
        self,
        items: Sequence[tuple[Sequence[ChatMessage], Sequence[ToolSpec]]],
        *,
        max_new_tokens: int | None = None,
        action_only: bool = False,
    ) -> list[ChatReply]:
        """Greedy completions of several conversations at once (left-padded batch).

        `action_only` stops a row once its action is known (a finished tool call, or a reply that did not
        start with one): enough for next-action scoring, several times faster.
        """
        import torch

        with self._lock:
            model, tok = self._model, self._tokenizer
            prompts = [prompt_text(tok, m, t) for m, t in items]
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                enc, cache = self._encode(prompts)
                stop = [_ActionStop(tok, enc["input_ids"].shape[1])] if action_only else []
                out = model.generate(
                    **enc,
                    **({"cache": cache} if cache is not None else {}),
                    max_new_tokens=max_new_tokens or self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.convert_tokens_to_ids(END_OF_TURN),
                    stopping_criteria=stop or None,
                )
        replies = []
        for row, ids in enumerate(out):
            new = ids[enc["input_ids"].shape[1] :]
            raw = tok.decode(new, skip_special_tokens=False).split(END_OF_TURN)[0]
            raw = raw.replace(tok.pad_token or "", "") if tok.pad_token != END_OF_TURN else raw
            parsed = parse_reply(raw)
            replies.append(
                ChatReply(
                    text=parsed.text,
                    tool_calls=parsed.tool_calls,
                    raw=raw,
                    prompt_tokens=int(enc["attention_mask"][row].sum()),
                    completion_tokens=int((new != tok.pad_token_id).sum()),
                )
            )
        return replies

    def _encode(self, prompts: list[str]) -> tuple[dict[str, Any], Any]:
        """Token ids of the prompts and a KV cache of their shared system prefix (computed once, reused).

        Every prompt starts with the same system message (prompt + tool list): ~40% of its tokens. Rows
        are laid out as [prefix][left padding][rest], so the cached prefix lines up for the whole batch.
        """
        import copy

        import torch

        tok = self._tokenizer
        split = [p.find("<|im_start|>", 1) for p in prompts]
        prefix = prompts[0][: split[0]] if split[0] > 0 else ""
        if not prefix or any(p[:s] != prefix for p, s in zip(prompts, split, strict=True)):
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            return dict(enc), None
        if self._prefix.get("text") != prefix:
            ids = tok(prefix, return_tensors="pt", add_special_tokens=False)["input_ids"]
            from transformers import DynamicCache

            cache = DynamicCache()
            self._model(input_ids=ids, past_key_values=cache, use_cache=True)
            self._prefix = {"text": prefix, "ids": ids, "cache": cache}
        rest = tok(
            [p[len(prefix) :] for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False
        )
        n = len(prompts)
        prefix_ids = self._prefix["ids"]
        cache = copy.deepcopy(self._prefix["cache"])
        if n > 1:
            cache.batch_repeat_interleave(n)
        input_ids = torch.cat([prefix_ids.expand(n, -1), rest["input_ids"]], dim=1)
        mask = torch.cat(
            [torch.ones(n, prefix_ids.shape[1], dtype=rest["attention_mask"].dtype), rest["attention_mask"]],
            1,
        )
        return {"input_ids": input_ids, "attention_mask": mask}, cache

    def stream(self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()) -> Iterator[str]:
        """Yield the reply text word by word (tool calls are not streamed)."""
        reply = self.complete(messages, tools)
        for i, word in enumerate(reply.text.split(" ")):
            yield word if i == 0 else " " + word


class _ActionStop:
    """Per-row stop: after `</tool_call>`, or once a row has written some text that is not a tool call."""

    def __init__(self, tokenizer: Any, prompt_len: int, reply_tokens: int = 16) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.reply_tokens = reply_tokens

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = []
        for row in input_ids:
            new = row[self.prompt_len :]
            text = self.tokenizer.decode(new, skip_special_tokens=False)
            finished = "</tool_call>" in text or END_OF_TURN in text
            done.append(finished or (len(new) >= self.reply_tokens and "<tool_call>" not in text))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _TransformersScorer:
    """`agent.decoding.Scorer` on a transformers causal LM: one KV cache, cropped back to the shared prefix
    after each continuation, so the prompt is read once per step."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        from transformers import DynamicCache

        self.model, self.tokenizer = model, tokenizer
        self.cache = DynamicCache()
        self.ids: list[int] = []
        self.prompt_tokens = 0
        self.evaluated = 0

    def _tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _logits(self, tokens: list[int], start: int) -> Any:
        """Logits of positions start..len-1 of `tokens`, reusing the cache for what it already holds."""
        import torch

        common = 0
        limit = min(len(self.ids), start)
        while common < limit and self.ids[common] == tokens[common]:
            common += 1
        if len(self.ids) > common:
            self.cache.crop(common - len(self.ids))  # this transformers takes the number to drop, negated
        self.ids = self.ids[:common]
        if start > common:
            self.model(input_ids=torch.tensor([tokens[common:start]]), cache=self.cache, use_cache=True)
            self.evaluated += start - common
        out = self.model(input_ids=torch.tensor([tokens[start:]]), cache=self.cache, use_cache=True)
        self.evaluated += len(tokens) - start
        self.ids = list(tokens)
        return out.logits[0].float()

    def logprobs(self, prefix: str, continuations: Sequence[str]) -> list[float]:
        """Log-likelihood of each continuation after the prefix (joint tokenization)."""
        base = self._tokenize(prefix)
        self.prompt_tokens = max(self.prompt_tokens, len(base))
        scores = []
        for cont in continuations:
            full = self._tokenize(prefix + cont)
            k = 0
            while k < min(len(base), len(full)) and base[k] == full[k]:
                k += 1
            k = max(k, 1)
            if k >= len(full):
                scores.append(0.0)
                continue
            logp = self._logits(full[:-1], k - 1).log_softmax(-1)
            scores.append(float(sum(logp[i, t] for i, t in enumerate(full[k:]))))
        return scores

    def greedy(self, prefix: str, *, stop: str, max_tokens: int) -> str:
        """Greedy text after the prefix, up to `stop` or the end of the turn."""
        tokens = self._tokenize(prefix)
        self.prompt_tokens = max(self.prompt_tokens, len(tokens))
        end = self.tokenizer.convert_tokens_to_ids(END_OF_TURN)
        out: list[int] = []
        text = ""
        for _ in range(max_tokens):
            nxt = int(self._logits(tokens, len(tokens) - 1)[-1].argmax())
            if nxt in (end, self.tokenizer.eos_token_id):
                break
            tokens.append(nxt)
            out.append(nxt)
            text = self.tokenizer.decode(out, skip_special_tokens=False)
            if stop in text:
                return text.split(stop)[0]
        return text


def _base_dir(record: LiveModel) -> Path:
    """The transformers weights of a record's base (ModelUnavailable for a record without them)."""
    if not record.base_dir:
        raise ModelUnavailable(f"model {record.name!r} has no transformers weights (base_dir)")
    return Path(record.base_dir)
