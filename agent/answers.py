"""Policy answers composed by the graph from the retrieved passages: the best one or two sentences, quoted
verbatim with their citation labels, or nothing when no sentence answers the question well enough."""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.grounding import Source, check_reply

_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPHASIS = re.compile(r"\*\*|__|(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w)|`")
_WORD = re.compile(r"[a-z0-9]+")
_END = ".!?"
# Question words and fillers carry no topic: leaving them out of the lexical score keeps it on the subject.
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "do",
        "does",
        "did",
        "for",
        "from",
        "have",
        "has",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "this",
        "to",
        "us",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "am",
        "any",
        "anything",
        "get",
        "got",
        "please",
        "still",
        "just",
        "like",
        "also",
        "about",
        "need",
        "want",
    ]
)


class Embedder(Protocol):
    """What the answerer needs of an embedder (retrieval's DenseEmbedder): normalised sentence vectors."""

    def embed_query(self, text: str) -> list[float]:
        """Vector of a question."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors of passages or sentences."""
        ...


@dataclass(frozen=True)
class PolicyAnswer:
    """A customer-facing answer quoted from the passages, the labels it cites, and its score."""

    text: str
    labels: list[str] = field(default_factory=list)
    score: float = 0.0


@dataclass(frozen=True)
class Candidate:
    """One sentence of one passage, scored against the question."""

    sentence: str
    label: str
    passage: int  # rank of its passage in the search result
    position: int  # its place in the passage
    doc_id: str
    heading: str  # title and section of its passage
    score: float


@dataclass(frozen=True)
class _Embedded:
    sentences: list[str]
    vectors: list[list[float]]
    terms: frozenset[str]
    heading: str


def policy_sentences(text: str) -> list[str]:
    """A passage's sentences, list items and numbered steps, markdown stripped, each on one line."""
    blocks: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            blocks.append([])  # a blank line or a heading ends the paragraph
            continue
        if _LIST_ITEM.match(line) or not blocks:
            blocks.append([_LIST_ITEM.sub("", line, count=1)])
        else:
            blocks[-1].append(line)
    sentences: list[str] = []
    for block in blocks:
        flat = _clean(" ".join(block))
        sentences.extend(s.strip() for s in _SENTENCE_END.split(flat) if len(s.split()) >= 3)
    return sentences


def _clean(text: str) -> str:
    return " ".join(_EMPHASIS.sub("", _LINK.sub(r"\1", text)).split())


def _terms(text: str) -> set[str]:
    # A five-letter prefix is a crude stem ("returned" meets "return"), like the groundedness guard's.
    return {w[:5] for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class PolicyAnswerer:
    """Answers a policy question with the passages' best sentences when they clear `threshold`."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        threshold: float,
        lexical_weight: float = 0.5,
        second_margin: float = 0.1,
        max_sentences: int = 2,
        cache_size: int = 512,
    ) -> None:
        self.embedder = embedder
        self.threshold = threshold
        # score = (1 - w) * cosine(question, "title — section: sentence") + w * the share of the question's
        # words found in the sentence's passage (its title and section included). On the calibration half of
        # bench/data/policy_questions.jsonl, at the lowest threshold with no answer to an unanswerable
        # question, w=0 answered 0.52 of the answerable ones right, 0.3 0.69, 0.45-0.6 0.74: 0.5.
        self.lexical_weight = lexical_weight
        # a second sentence is added only when it scores within this much of the best one
        self.second_margin = second_margin
        self.max_sentences = max_sentences
        self._cache: OrderedDict[tuple[str, str], _Embedded] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def answer(self, question: str, passages: Sequence[Mapping[str, Any]]) -> PolicyAnswer | None:
        """The best one or two cited sentences of `passages` for `question`, or None below the threshold."""
        ranked = self.candidates(question, passages)
        if not ranked or ranked[0].score < self.threshold:
            return None
        chosen = [ranked[0], *self._second(ranked)]
        chosen.sort(key=lambda c: (c.passage, c.position))
        return self._compose(chosen, passages, score=ranked[0].score)

    def candidates(self, question: str, passages: Sequence[Mapping[str, Any]]) -> list[Candidate]:
        """Every sentence of the passages scored against the question, best first."""
        question = question.strip()
        if not question:
            return []
        query = self.embedder.embed_query(question)
        asked = _terms(question)
        w = self.lexical_weight
        found: list[Candidate] = []
        for rank, passage in enumerate(passages):
            embedded = self._embedded(passage)
            covered = len(asked & embedded.terms) / len(asked) if asked else 0.0
            label = str(passage.get("label", ""))
            doc_id = str(passage.get("doc_id") or label.rsplit("-", 1)[0])
            for position, (sentence, vector) in enumerate(
                zip(embedded.sentences, embedded.vectors, strict=True)
            ):
                found.append(
                    Candidate(
                        sentence=sentence,
                        label=label,
                        passage=rank,
                        position=position,
                        doc_id=doc_id,
                        heading=embedded.heading,
                        score=(1 - w) * _cosine(query, vector) + w * covered,
                    )
                )
        found.sort(key=lambda c: -c.score)
        return found

    def _second(self, ranked: list[Candidate]) -> list[Candidate]:
        """The runner-up, if it is above the threshold, close to the best and from the same passage (or the
        same section, when a long one was cut into several)."""
        if self.max_sentences < 2:
            return []
        best = ranked[0]
        for other in ranked[1:]:
            if other.score < max(self.threshold, best.score - self.second_margin):
                return []
            near = other.passage == best.passage or (
                other.doc_id == best.doc_id and other.heading == best.heading
            )
            if near and other.sentence != best.sentence:
                return [other]
        return []

    def _embedded(self, passage: Mapping[str, Any]) -> _Embedded:
        """The passage's sentences and their vectors (cached per heading and text: passages recur)."""
        text = str(passage.get("text", ""))
        heading = self._heading(passage)
        key = (heading, text)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        sentences = policy_sentences(text)
        # Under its heading a sentence keeps its subject ("Balance and expiry: ... do not expire").
        inputs = [f"{heading}: {s}" if heading else s for s in sentences]
        vectors = self.embedder.embed_documents(inputs) if inputs else []
        embedded = _Embedded(sentences, vectors, frozenset(_terms(f"{heading} {text}")), heading)
        with self._lock:
            self._cache[key] = embedded
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return embedded

    @staticmethod
    def _heading(passage: Mapping[str, Any]) -> str:
        # the graph may hand "Title § Section" as the title: one form for both
        title = str(passage.get("title", "")).strip().replace(" § ", " — ")
        section = str(passage.get("section", "") or "").strip()
        return f"{title} — {section}" if title and section else title or section

    def _compose(
        self, chosen: list[Candidate], passages: Sequence[Mapping[str, Any]], *, score: float
    ) -> PolicyAnswer | None:
        """Quote the sentences with their labels, checked by the groundedness guard as the graph will."""
        sources = [Source(text=str(p.get("text", "")), label=str(p.get("label", ""))) for p in passages]
        lines: list[str] = []
        labels: list[str] = []
        for candidate in chosen:
            line = _cited(candidate.sentence, [candidate.label])
            checked = check_reply(line, sources)
            if checked.removed:
                continue  # the guard would replace it: say nothing rather than half an answer
            # The guard also credits the passages that back the sentence's facts: cite them all inline, so
            # the text it returns is exactly this one.
            cites = [candidate.label, *(n for n in checked.citations if n != candidate.label)]
            lines.append(_cited(candidate.sentence, cites))
            labels.extend(n for n in cites if n not in labels)
        if not lines:
            return None
        text = " ".join(lines)
        final = check_reply(text, sources)
        if final.removed or final.text != text:
            return None
        return PolicyAnswer(text=text, labels=labels, score=score)


def _cited(sentence: str, labels: Sequence[str]) -> str:
    """`sentence` with its citation marks before the final stop ("... 30 days [returns-1].")."""
    body, end = (sentence[:-1], sentence[-1]) if sentence[-1] in _END else (sentence.rstrip(":;,"), ".")
    marks = "".join(f" [{label}]" for label in labels)
    return f"{body.rstrip()}{marks}{end}"


def answerer_from_kb(kb: Any, threshold: float) -> PolicyAnswerer | None:
    """An answerer sharing the knowledge base's embedder, or None when the KB has none (e.g. a test fake)."""
    embedder = getattr(kb, "embedder", None)
    if embedder is None or not callable(getattr(embedder, "embed_query", None)):
        return None
    return PolicyAnswerer(embedder, threshold=threshold)
