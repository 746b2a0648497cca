"""JSON files every room keeps: one object read and written whole, atomically; JSONL rows read in order.

Records that another process may read at any moment (the model registry, the knowledge base's version
pointer, the running service's address) are written to a temporary file next to the target and moved over
it with `os.replace`, so a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_json(path: Path) -> Any:
    """The JSON value in a file."""
    return json.loads(Path(path).read_text())


def write_json(
    path: Path, value: Any, *, indent: int | None = 2, mode: int = 0o666, fsync: bool = False
) -> None:
    """Replace the file with `value` as JSON in one step (folders made as needed).

    `mode` is the new file's permission before the umask (0o600 for a file holding a key); `fsync` makes
    the content durable before the switch, for a pointer that must survive a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        json.dump(value, fh, indent=indent)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All JSON rows of a file (blank lines skipped)."""
    with Path(path).open() as fh:
        return [json.loads(line) for line in fh if line.strip()]
