"""Settings of the agent room (composed into serve.settings.Settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypedDict

from pydantic import BaseModel, Field


class EngineOptions(TypedDict, total=False):
    """The llama.cpp engine's tuning options, as `ModelSettings` names them (passed through unchanged)."""

    draft_tokens: int
    max_text_tokens: int
    shift_history: bool
    decode_threads: int
    repack_weights: Literal["auto", "on", "off"]


class ModelSettings(BaseModel):
    """Which behaviour model answers, and where."""

    backend: str = "local"  # local | openai | scripted
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str | None = None
    max_new_tokens: int = Field(default=256, ge=1)
    # llama.cpp engine: tokens guessed from the context and checked in one batch per step (0 turns it off)
    draft_tokens: int = Field(default=4, ge=0, le=16)
    # llama.cpp engine: a text reply (not a tool call) stops here, cut back to its last whole sentence; the
    # default model was trained on replies of at most 74 tokens
    max_text_tokens: int = Field(default=80, ge=8)
    # llama.cpp engine: when a prompt drops old history, cut it out of the KV cache and move the rest back
    # instead of re-reading it (the kept tokens were computed with the dropped ones in view: approximate)
    shift_history: bool = False
    # llama.cpp engine: threads for decoding steps; 2 only pay off where idle OpenMP threads spin a little
    # before they sleep (`specialist.openmp`, GOMP_SPINCOUNT), else 1 is used. On a CPU shared with a training
    # job, 1 (and GOMP_SPINCOUNT=0) leaves it a core: see the README
    decode_threads: int = Field(default=2, ge=1, le=64)
    # llama.cpp engine: weights repacked for the CPU's fastest kernels (AMX tiles on recent Intel Xeons): 1.8x
    # faster here. "auto": where a one-time check in a child process sees them run and agree with the plain
    # kernels (a llama-cpp-python built without the Makefile's AMX fix crashes in them)
    repack_weights: Literal["auto", "on", "off"] = "auto"
    timeout_s: float = Field(default=60.0, gt=0)
    phrasing_model: str | None = None  # optional general model for the final reply; off by default

    def engine_options(self) -> EngineOptions:
        """The llama.cpp engine's options among these settings (the fields `EngineOptions` names)."""
        return EngineOptions(
            draft_tokens=self.draft_tokens,
            max_text_tokens=self.max_text_tokens,
            shift_history=self.shift_history,
            decode_threads=self.decode_threads,
            repack_weights=self.repack_weights,
        )


class AgentSettings(BaseModel):
    """The support agent's state, store and limits."""

    store_path: Path = Path("var/store.sqlite")
    checkpoint_path: Path = Path("var/checkpoints.sqlite")
    postgres_url: str | None = None
    refund_approval_threshold: float = Field(default=500.0, ge=0)
    max_message_chars: int = Field(default=4000, ge=1)
    max_steps_per_turn: int = Field(default=12, ge=1)  # identify, profile, up to ~6 orders, product, proposal
    # How the new item of an exchange or item change is chosen, both constrained: "model" lets the model pick
    # among all available variants; "matcher" first keeps the variants whose option values best fit the
    # customer's words about that item (`agent.variants.match_variants`: values named, directions such as "a
    # bigger one" or "less bright", orders of preference, options to keep). On the 27 gold swaps of the dev
    # replays whose product was looked up, the matcher keeps the gold variant alone in 25 (the two others are
    # "the same type as the one I received" and a swap never put in words); on the 463 swaps of the 500 task
    # specs (options written out), alone in 424.
    variant_choice: Literal["matcher", "model"] = "matcher"
    # A write the systems refuse (wrong item, order not pending...) goes back to the model this many times per
    # turn for another try; after that the graph tells the customer the system's reason itself. The default
    # small model never corrected a refused write (it re-read the order, then replied off the point), so 0.
    retry_refused_writes: int = Field(default=0, ge=0, le=5)
    # A policy answer is quoted from the passages found when one of them names every topic term of the
    # question (agent.answers.topic_terms, synonyms counted) and its best sentence scores at least this
    # (0.5 x cosine + 0.5 x share of the question's words in the passage), or any sentence scores 0.6; else
    # the graph says it doesn't know. Measured on bench/data/policy_questions.jsonl (bench/policy.py): the
    # middle of the thresholds with the most right answers and none to an unanswerable calibration question
    # (0.00-0.48: 0.86 of 42 right). On the test half it answered 0.63 of 41 answerable questions right (fact
    # + citation) and none of 40 unanswerable ones, no better than the plain 0.52 score threshold before
    # (0.66): the generic words and synonyms, written from the calibration half, fit it more than they carry.
    policy_answer_threshold: float = Field(default=0.24, ge=0.0, le=1.0)
