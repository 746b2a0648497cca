"""`ingest watch`: re-index a folder whenever its files change (incremental, so only changes re-embed)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from ingest.pipeline import Ingestor, RunReport


def watch(
    ingestor: Ingestor,
    path: Path,
    *,
    on_report: Callable[[RunReport], None],
    stop: threading.Event | None = None,
    debounce_ms: int | None = None,
) -> None:
    """Index `path` now, then again after every batch of file changes, until `stop` is set."""
    from watchfiles import watch as watch_changes

    path = path.expanduser().resolve()
    on_report(ingestor.ingest_path(path))
    debounce = ingestor.settings.watch_debounce_ms if debounce_ms is None else debounce_ms
    for _changes in watch_changes(
        path, debounce=debounce, step=20, stop_event=stop, yield_on_timeout=False, raise_interrupt=False
    ):
        report = ingestor.ingest_path(path)
        if report.changed or report.failed:
            on_report(report)
