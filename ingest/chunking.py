"""Heading-aware chunking with llama-index: sections first, then token-bounded sentence windows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ingest.document import SourceDocument
from ingest.settings import IngestSettings
from retrieval.chunk import Chunk
from specialist.errors import InvalidDocument

_MIN_BODY_TOKENS = 32


def chunk_id(doc_id: str, version: int, index: int) -> str:
    """Chunk ids carry the document version, so a new version never overwrites the old one in place."""
    return f"{doc_id}:v{version}:{index}"


class Chunker:
    """Markdown → sections (MarkdownNodeParser) → chunks of at most `chunk_tokens` embedder tokens."""

    def __init__(self, settings: IngestSettings, token_counter: Callable[[str], list[Any]]) -> None:
        self.settings = settings
        self._tokens = token_counter

    def chunk(self, doc: SourceDocument, *, version: int, content_hash: str) -> list[Chunk]:
        """Split a document into chunks that keep its title and section path."""
        from llama_index.core import Document
        from llama_index.core.node_parser import MarkdownNodeParser

        if doc.text_format == "markdown":
            nodes = MarkdownNodeParser().get_nodes_from_documents([Document(text=doc.text)])
            sections = [
                self._section(doc.title, n.metadata.get("header_path", "/"), n.get_content()) for n in nodes
            ]
        else:
            sections = [("", doc.text)]
        chunks: list[Chunk] = []
        for section, body in sections:
            if not body.strip():
                continue
            for piece in self._split(doc.title, section, body):
                chunks.append(
                    Chunk(
                        chunk_id=chunk_id(doc.doc_id, version, len(chunks)),
                        doc_id=doc.doc_id,
                        title=doc.title,
                        section=section,
                        text=piece,
                        version=version,
                        content_hash=content_hash,
                        source=doc.source,
                        index=len(chunks),
                        effective_from=doc.effective_from,
                        effective_to=doc.effective_to,
                        tags=doc.tags,
                    )
                )
        if not chunks:
            raise InvalidDocument("no indexable text after parsing (only headings?)")
        return chunks

    def _split(self, title: str, section: str, body: str) -> list[str]:
        from llama_index.core.node_parser import SentenceSplitter

        # The title and section are embedded with every chunk: leave room for them under the limit.
        prefix_tokens = len(self._tokens(f"{title} — {section}\n"))
        size = max(_MIN_BODY_TOKENS, self.settings.chunk_tokens - prefix_tokens)
        splitter = SentenceSplitter(
            chunk_size=size, chunk_overlap=min(self.settings.chunk_overlap, size // 4), tokenizer=self._tokens
        )
        return [piece.strip() for piece in splitter.split_text(body) if piece.strip()]

    @staticmethod
    def _section(title: str, header_path: str, content: str) -> tuple[str, str]:
        path = [p for p in header_path.strip("/").split("/") if p]
        lines = content.split("\n", 1)
        if lines and lines[0].startswith("#"):
            path.append(lines[0].lstrip("#").strip())
            content = lines[1] if len(lines) > 1 else ""
        if path and path[0].strip().lower() == title.strip().lower():
            path = path[1:]
        return " > ".join(path), content.strip()
