"""Source documents: reading files (Markdown, HTML, text, PDF, JSONL) into one normalised form."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from retrieval.passage import parse_datetime
from specialist.errors import InvalidDocument, InvalidInput

TextFormat = Literal["markdown", "text"]
SUFFIXES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".text": "text",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
}
_ID_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
_FRONT_MATTER_RE = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)


@dataclass(frozen=True)
class SourceDocument:
    """A document ready to chunk: markdown or plain text, with identity and validity window."""

    doc_id: str
    title: str
    text: str
    source: str
    text_format: TextFormat = "markdown"
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def content_hash(self) -> str:
        """Hash of everything that ends up in the index (not where the document came from)."""
        return hashlib.sha256(
            json.dumps(self.to_record(include_source=False), sort_keys=True).encode()
        ).hexdigest()

    def to_record(self, *, include_source: bool = True) -> dict[str, Any]:
        """JSON-ready form (stored in the registry so a rebuild can re-chunk without the files)."""
        record: dict[str, Any] = {
            "id": self.doc_id,
            "title": self.title,
            "content": self.text,
            "format": self.text_format,
            "effective_from": self.effective_from.isoformat() if self.effective_from else None,
            "effective_to": self.effective_to.isoformat() if self.effective_to else None,
            "tags": list(self.tags),
        }
        if include_source:
            record["source"] = self.source
        return record


@dataclass(frozen=True)
class DocumentError:
    """Why one input could not be indexed."""

    ref: str
    reason: str
    source: str = ""


def document_from_record(record: Mapping[str, Any], *, source: str, max_bytes: int) -> SourceDocument:
    """Validate a `{id, title, content, [effective_from, effective_to, tags, format]}` record."""
    if not isinstance(record, Mapping):
        raise InvalidDocument("a document must be a JSON object with id, title and content")
    missing = [k for k in ("id", "title", "content") if not record.get(k)]
    if missing:
        raise InvalidDocument(f"missing or empty field(s): {', '.join(missing)}")
    doc_id, title, content = record["id"], record["title"], record["content"]
    if not all(isinstance(v, str) for v in (doc_id, title, content)):
        raise InvalidDocument("id, title and content must be strings")
    fmt: TextFormat = "text" if record.get("format") == "text" else "markdown"
    if record.get("format") not in (None, "", "markdown", "text"):
        raise InvalidDocument(f"format {fmt!r} is not supported in a record (use markdown or text)")
    return _document(
        doc_id=doc_id,
        title=title,
        text=content,
        source=source,
        text_format=fmt,
        meta=record,
        max_bytes=max_bytes,
    )


def read_path(path: Path, *, max_bytes: int) -> tuple[list[SourceDocument], list[DocumentError], list[Path]]:
    """Read a file or every supported file under a folder; returns documents, errors and files seen."""
    path = path.expanduser()
    if not path.exists():
        raise InvalidInput(f"{path} does not exist")
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path))
        if path.is_dir()
        else [path]
    )
    docs: list[SourceDocument] = []
    errors: list[DocumentError] = []
    for file in files:
        root = path if path.is_dir() else file.parent
        try:
            for item in _read_file(file, root=root, max_bytes=max_bytes):
                if isinstance(item, DocumentError):
                    errors.append(item)
                else:
                    docs.append(item)
        except InvalidDocument as exc:
            errors.append(DocumentError(ref=str(file), reason=str(exc), source=str(file.resolve())))
    return docs, errors, files


def _hidden(file: Path, root: Path) -> bool:
    return any(part.startswith(".") or part.endswith("~") for part in file.relative_to(root).parts)


def _read_file(file: Path, *, root: Path, max_bytes: int) -> Iterator[SourceDocument | DocumentError]:
    kind = SUFFIXES.get(file.suffix.lower())
    if kind is None:
        raise InvalidDocument(
            f"unsupported format {file.suffix or '(no extension)'!r}; supported: {', '.join(SUFFIXES)}"
        )
    size = file.stat().st_size
    if kind != "jsonl" and size > max_bytes:
        raise InvalidDocument(
            f"file is {size} bytes, over the limit of {max_bytes} (SPECIALIST_INGEST__MAX_DOCUMENT_BYTES)"
        )
    source = str(file.resolve())
    default_id = file.relative_to(root).with_suffix("").as_posix()
    if kind == "pdf":
        title, text = _read_pdf(file)
        yield _document(
            doc_id=default_id,
            title=title,
            text=text,
            source=source,
            text_format="markdown",
            meta={},
            max_bytes=max_bytes,
        )
        return
    raw = file.read_bytes()
    if b"\x00" in raw[:8192]:
        raise InvalidDocument("binary file (contains NUL bytes); expected UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidDocument(f"not valid UTF-8 text (bad byte at offset {exc.start})") from exc
    if kind == "jsonl":
        yield from _read_jsonl(text, file=file, source=source, max_bytes=max_bytes)
        return
    meta, text = _front_matter(text)
    if kind == "html":
        title, text = _html_to_markdown(text)
        fmt: TextFormat = "markdown"
    elif kind == "markdown":
        title, fmt = _markdown_title(text), "markdown"
    else:
        title, fmt = "", "text"
    yield _document(
        doc_id=str(meta.get("id") or default_id),
        title=str(meta.get("title") or title or _humanize(file.stem)),
        text=text,
        source=source,
        text_format=fmt,
        meta=meta,
        max_bytes=max_bytes,
    )


def _read_jsonl(
    text: str, *, file: Path, source: str, max_bytes: int
) -> Iterator[SourceDocument | DocumentError]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        ref = f"{file.name}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield DocumentError(ref=ref, reason=f"invalid JSON ({exc.msg})", source=source)
            continue
        try:
            yield document_from_record(record, source=source, max_bytes=max_bytes)
        except InvalidDocument as exc:
            doc_ref = (
                record.get("id") if isinstance(record, dict) and isinstance(record.get("id"), str) else None
            )
            yield DocumentError(ref=f"{doc_ref} ({ref})" if doc_ref else ref, reason=str(exc), source=source)


def _document(
    *,
    doc_id: str,
    title: str,
    text: str,
    source: str,
    text_format: TextFormat,
    meta: Mapping[str, Any],
    max_bytes: int,
) -> SourceDocument:
    doc_id = doc_id.strip()
    if not _ID_RE.match(doc_id):
        raise InvalidDocument(f"document id {doc_id[:60]!r} must be 1-200 printable characters")
    if len(text.encode()) > max_bytes:
        raise InvalidDocument(
            f"content is over the limit of {max_bytes} bytes (SPECIALIST_INGEST__MAX_DOCUMENT_BYTES)"
        )
    if not text.strip():
        raise InvalidDocument("empty document (no text to index)")
    if "\x00" in text:
        raise InvalidDocument("content contains NUL characters (binary data?)")
    start = _date(meta.get("effective_from"), "effective_from")
    end = _date(meta.get("effective_to"), "effective_to")
    if start and end and end <= start:
        raise InvalidDocument("effective_to must be after effective_from")
    tags = meta.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",")]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidDocument("tags must be a list of strings")
    return SourceDocument(
        doc_id=doc_id,
        title=" ".join(title.split())[:300],
        text=text.strip(),
        source=source,
        text_format=text_format,
        effective_from=start,
        effective_to=end,
        tags=tuple(sorted({t for t in tags if t})),
    )


def _date(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return parse_datetime(value.isoformat())
    try:
        return parse_datetime(str(value))
    except InvalidInput as exc:
        raise InvalidDocument(f"{name}: {exc}") from exc


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    match = _FRONT_MATTER_RE.match(text)
    if not match:
        return {}, text
    import yaml

    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise InvalidDocument(f"front matter is not valid YAML: {exc}") from exc
    if not isinstance(meta, dict):
        raise InvalidDocument(
            "front matter must be a YAML mapping (id, title, effective_from, effective_to, tags)"
        )
    return meta, text[match.end() :]


def _markdown_title(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return ""


def _humanize(stem: str) -> str:
    return stem.replace("_", " ").replace("-", " ").strip().capitalize()


def _html_to_markdown(html: str) -> tuple[str, str]:
    """Headings become Markdown headings so the Markdown parser keeps section paths for HTML too."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "nav", "footer", "noscript"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    lines: list[str] = []
    body = soup.body or soup
    for el in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "td"]):
        if el.find_parent(["li", "td"]) is not None and el.name in ("p",):
            continue
        text = el.get_text(" ", strip=True)
        if not text:
            continue
        if el.name.startswith("h"):
            lines.append(f"\n{'#' * int(el.name[1])} {text}\n")
            title = title or (text if el.name == "h1" else "")
        elif el.name == "li":
            lines.append(f"- {text}")
        else:
            lines.append(f"\n{text}\n")
    return title, "\n".join(lines).strip()


def _read_pdf(file: Path) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(file))
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        metadata: Any = reader.metadata
        title = str(metadata.get("/Title") or "") if metadata else ""
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise InvalidDocument(f"cannot read PDF: {exc}") from exc
    if not any(pages):
        raise InvalidDocument("PDF has no extractable text (scanned images?)")
    text = "\n\n".join(f"## Page {n}\n\n{body}" for n, body in enumerate(pages, start=1) if body)
    return title or _humanize(file.stem), text
