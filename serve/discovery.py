"""How CLI commands find a running service: a file with its address and a local write key.

The embedded knowledge base is owned by one process, so while the service runs, `specialist ingest`
and `specialist kb ...` send their writes to it instead of opening the engine themselves.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from specialist.jsonio import read_json, write_json

if TYPE_CHECKING:
    from serve.auth import KeyStore
    from serve.settings import Settings


@dataclass(frozen=True)
class ServiceAddress:
    """A running service: its base URL, process id and a content-owner key valid while it runs."""

    url: str
    pid: int
    key: str


class Discovery:
    """Publishes and withdraws the discovery file of this process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._key_id: str | None = None
        self._keys: KeyStore | None = None

    def publish(self, *, settings: Settings, keys: KeyStore) -> None:
        """Write the file (mode 0600) with a fresh content-owner key."""
        from serve.auth import Role

        issued = keys.create(role=Role.content_owner, name="local-cli")
        self._key_id, self._keys = issued.principal.key_id, keys
        host = settings.serve.host if settings.serve.host not in ("0.0.0.0", "::") else "127.0.0.1"
        record = {"url": f"http://{host}:{settings.serve.port}", "pid": os.getpid(), "key": issued.secret}
        write_json(self.path, record, indent=None, mode=0o600)  # it holds a write key

    def withdraw(self) -> None:
        """Remove the file and revoke its key."""
        try:
            current = read_json(self.path)
            if current.get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass
        if self._keys is not None and self._key_id is not None:
            with contextlib.suppress(Exception):
                self._keys.revoke(self._key_id)


def find_service(path: Path) -> ServiceAddress | None:
    """The running service advertised at `path`, or None (a stale file of a dead process is ignored)."""
    try:
        record = read_json(path)
        address = ServiceAddress(url=str(record["url"]), pid=int(record["pid"]), key=str(record["key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(address.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return address
