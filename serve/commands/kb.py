"""CLI of the kb area: `ingest PATH|--demo|watch PATH`, `kb search|status|delete|rebuild|rollback`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from ingest.pipeline import Ingestor, RunReport
    from retrieval.knowledge_base import KnowledgeBase
    from serve.client import ServiceClient

kb_app = typer.Typer(help="Search and manage the policy knowledge base.", no_args_is_help=True)


@contextmanager
def _opened(
    *, with_ingestor: bool = True, progress: bool = False
) -> Iterator[tuple[KnowledgeBase, Ingestor | None]]:
    """Open the configured knowledge base (and its ingestor); errors become one clear line."""
    from ingest.pipeline import Ingestor
    from retrieval.knowledge_base import open_knowledge_base
    from serve.context import load_settings
    from specialist.errors import SpecialistError

    settings = load_settings()
    try:
        with open_knowledge_base(settings.retrieval) as kb:
            ingestor = Ingestor(kb, settings.ingest, progress=_progress_bar() if progress else None)
            try:
                yield kb, ingestor if with_ingestor else None
            finally:
                ingestor.close()
    except SpecialistError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _running_service() -> ServiceClient | None:
    """The running service, if one owns the knowledge base: CLI commands then go through its API."""
    from serve.client import ServiceClient
    from serve.context import load_settings

    return ServiceClient.running(load_settings().serve.discovery_path)


def _via_service(call: Callable[[ServiceClient], dict[str, Any]], as_json: bool) -> bool:
    """Run `call` against the running service and print its report; False when no service runs."""
    from specialist.errors import SpecialistError

    client = _running_service()
    if client is None:
        return False
    try:
        result = call(client)
    except SpecialistError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        client.close()
    typer.echo(f"(through the running service at {client.address.url})", err=True)
    if as_json or "added" not in result:
        typer.echo(json.dumps(result))
        return True
    typer.echo(
        f"added {len(result['added'])}, updated {len(result['updated'])}, "
        f"unchanged {len(result['unchanged'])}, deleted {len(result['deleted'])}, "
        f"failed {len(result['failed'])} (version {result.get('version', '')})"
    )
    for failure in result["failed"]:
        typer.echo(f"  failed {failure['ref']}: {failure['reason']}")
    return True


def _progress_bar() -> Callable[[int, int], None] | None:
    if not sys.stderr.isatty():
        return None
    from rich.progress import Progress

    bar = Progress(transient=True)
    task = bar.add_task("embedding chunks", total=None)

    def update(done: int, total: int) -> None:
        if not bar.live.is_started and done < total:  # lazily: nothing to embed, no bar
            bar.start()
        bar.update(task, completed=done, total=total)
        if done >= total and bar.live.is_started:
            bar.stop()

    return update


def _print_report(report: RunReport, as_json: bool) -> None:
    if as_json:
        typer.echo(report.to_json())
        return
    typer.echo(report.summary())
    for failure in report.failed:
        typer.echo(f"  failed {failure.ref}: {failure.reason}")


def ingest(
    target: str | None = typer.Argument(
        None, help="A file or folder to index, or `watch` followed by a folder."
    ),
    watch_path: Path | None = typer.Argument(None, help="With `watch`: the folder to watch."),
    demo: bool = typer.Option(False, "--demo", help="Index the demo store's policy documents."),
    as_json: bool = typer.Option(False, "--json", help="Print the run report as JSON."),
) -> None:
    """Index Markdown, HTML, text, PDF and JSONL documents (incremental: only changes are re-embedded)."""
    from ingest import demo_policy_dir

    if target == "watch":
        if watch_path is None:
            typer.echo("error: usage: specialist ingest watch PATH", err=True)
            raise typer.Exit(2)
        _watch(watch_path, as_json)
        return
    if demo == (target is not None):
        typer.echo("error: give a PATH or --demo (not both)", err=True)
        raise typer.Exit(2)
    path = demo_policy_dir() if demo else Path(str(target))
    if _via_service(lambda client: client.ingest_path(path), as_json):
        return
    with _opened(progress=True) as (_kb, ingestor):
        assert ingestor is not None
        report = _run(lambda: ingestor.ingest_path(path))
    _print_report(report, as_json)
    if report.failed and not (report.added or report.updated or report.unchanged or report.deleted):
        raise typer.Exit(1)


def _run(step: Callable[[], Any]) -> Any:
    from specialist.errors import SpecialistError

    try:
        return step()
    except SpecialistError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _watch(path: Path, as_json: bool) -> None:
    from ingest.watcher import watch

    with _opened() as (_kb, ingestor):
        assert ingestor is not None
        typer.echo(f"watching {path} (Ctrl-C to stop)", err=True)
        _run(lambda: watch(ingestor, path, on_report=lambda r: _print_report(r, as_json)))


@kb_app.command("search")
def search(
    query: str = typer.Argument(..., help="What to look for."),
    k: int = typer.Option(5, "--k", "-k", min=1, max=100, help="How many passages."),
    filters: list[str] = typer.Option(
        [], "--filter", "-f", help="tag=NAME (repeatable), at=YYYY-MM-DD, in_force=false."
    ),
    mode: str = typer.Option("hybrid", help="hybrid, dense or bm25."),
    as_json: bool = typer.Option(False, "--json", help="Print passages as JSON."),
) -> None:
    """Search the knowledge base (hybrid dense + BM25, only policies in force now by default)."""
    from retrieval.passage import SearchFilters

    if mode not in ("hybrid", "dense", "bm25"):
        typer.echo("error: --mode must be hybrid, dense or bm25", err=True)
        raise typer.Exit(2)
    plain = not filters and mode == "hybrid"
    if plain and _via_service(lambda client: client.search(query, k=k), as_json=True):
        return
    with _opened(with_ingestor=False) as (kb, _):
        parsed = _run(lambda: SearchFilters.parse(filters))
        passages = _run(lambda: kb.search(query, k=k, filters=parsed, mode=mode))  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in passages]))
        return
    if not passages:
        typer.echo("no passages found")
    for n, p in enumerate(passages, start=1):
        typer.echo(f"{n}. [{p.citation.label}] {p.citation.title} (score {p.score:.3f})")
        typer.echo(f"   {' '.join(p.text.split())[:300]}")


@kb_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Backend, current and previous version, documents and chunks."""
    if _via_service(lambda client: client.status(), as_json=True):
        return
    with _opened() as (kb, ingestor):
        assert ingestor is not None
        info = kb.status().to_dict()
        info["documents"] = ingestor.registry.count(kb.version)
    if as_json:
        typer.echo(json.dumps(info))
        return
    for key, value in info.items():
        typer.echo(f"{key}: {value}")


@kb_app.command("delete")
def delete(
    doc_id: str = typer.Argument(..., help="Document id."), as_json: bool = typer.Option(False, "--json")
) -> None:
    """Remove a document and every one of its chunks."""
    if _via_service(lambda client: client.delete(doc_id), as_json):
        return
    with _opened() as (_kb, ingestor):
        assert ingestor is not None
        report = _run(lambda: ingestor.delete(doc_id))
    _print_report(report, as_json)


@kb_app.command("rebuild")
def rebuild(as_json: bool = typer.Option(False, "--json")) -> None:
    """Re-chunk and re-embed everything into a new version and switch to it (the old one is kept)."""
    if _via_service(lambda client: client.rebuild(), as_json):
        return
    with _opened(progress=True) as (_kb, ingestor):
        assert ingestor is not None
        report = _run(ingestor.rebuild)
    _print_report(report, as_json)


@kb_app.command("rollback")
def rollback() -> None:
    """Switch back to the version before the last rebuild."""
    if _via_service(lambda client: client.rollback(), as_json=True):
        return
    with _opened() as (_kb, ingestor):
        assert ingestor is not None
        version = _run(ingestor.rollback)
    typer.echo(f"current version: {version}")


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.command("ingest")(ingest)
    app.add_typer(kb_app, name="kb")
